// Issue 11, item 6: catch-up must not starve everyone. The attack: one user opens many
// connections with many subscriptions each, all resuming from before a few thousand
// transactions, while a good client is subscribed live and rows keep coming. The guarantees:
// every attacker subscription still gets every change exactly once, in order, then `subscribed`
// and the live ones; at no time do more catch-ups run than the limits allow (4 per connection,
// 16 per user: seen by the server's counters, and per connection from the client side, where a
// subscription that got a catch-up change but not yet `subscribed` is running); the rest waited;
// and the good client gets its live changes meanwhile. Its delivery latency is reported, not
// asserted (bench/ measures it properly).

import pg from 'pg';
import t from 'tap';
import WebSocket from 'ws';
import { resolveServeConfig } from '../../src/config.js';
import { SERVER_DEFAULTS } from '../../src/constants.js';
import { startDaemon } from '../../src/daemon.js';
import { silentLogger } from '../../src/log.js';
import { migrate } from '../../src/sql/migrate.js';
import { query, waitUntil } from '../helpers/capture.js';
import { withPostgres } from '../helpers/pg.js';
import { hsToken, SECRET } from '../helpers/tokens.js';
import { WsClient } from '../helpers/ws.js';

const WINDOW_TX = 2000;
const CONNECTIONS = 6;
const SUBS_PER_CONNECTION = 10;
const PER_CONNECTION = SERVER_DEFAULTS.maxCatchUpsPerConnection;
const PER_USER = SERVER_DEFAULTS.maxCatchUpsPerUser;

const db = await withPostgres(t);
await migrate(db.url);
const url = db.url;
await query(
  url,
  `create table items (id bigserial primary key, sent_ms double precision);
   select walcast.enable('items');
   insert into walcast.casbin_rule (ptype, v0, v1, v2, v3, v4) values ('p', '*', 'table', 'public.items', 'read', 'true');`,
);
const daemon = await startDaemon(resolveServeConfig({ db: url, port: '0', jwtSecret: SECRET, progressInterval: '200ms' }, {}), silentLogger);
t.teardown(() => daemon.stop());
const base = `ws://127.0.0.1:${daemon.port}/ws`;

/**
 * One attacker connection, lean (the test process also runs the daemon): per subscription, the
 * ids received in order, whether any came twice or out of order, and when `subscribed` came.
 */
class Attacker {
  readonly ids = new Map<number, { last: number; count: number; bad: string[]; subscribedAfter: number | null }>();
  /** Subscriptions that got a catch-up change and not yet `subscribed`: running right now. */
  private readonly running = new Set<number>();
  maxRunning = 0;
  closed: number | null = null;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      const m = JSON.parse(data.toString()) as { type: string; sub?: number; id?: number; new?: { id: string | number } };
      if (m.type === 'change') {
        const s = this.ids.get(m.sub as number);
        if (!s) return;
        const id = Number(m.new?.id);
        if (id !== s.last + 1) s.bad.push(`${s.last} then ${id}`);
        s.last = id;
        s.count++;
        if (s.subscribedAfter === null) {
          this.running.add(m.sub as number);
          this.maxRunning = Math.max(this.maxRunning, this.running.size);
        }
      } else if (m.type === 'subscribed') {
        const s = this.ids.get(m.id as number);
        if (s) s.subscribedAfter = s.count;
        this.running.delete(m.id as number);
      } else if (m.type !== 'welcome' && m.type !== 'progress') {
        for (const s of this.ids.values()) s.bad.push(`unexpected ${data.toString().slice(0, 200)}`);
      }
    });
    ws.on('close', (code) => (this.closed = code));
  }

  static async open(token: string): Promise<Attacker> {
    const ws = new WebSocket(`${base}?token=${token}`);
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    t.teardown(() => ws.terminate());
    return new Attacker(ws);
  }

  subscribe(id: number, since: string): void {
    this.ids.set(id, { last: 0, count: 0, bad: [], subscribedAfter: null });
    this.ws.send(JSON.stringify({ type: 'subscribe', id, table: 'public.items', since }));
  }
}

t.test('many resumes of one user from the window floor: each gets everything once, in order; the limits hold; a live client is served', async (t) => {
  const good = await WsClient.connect(`${base}?token=${await hsToken({ sub: 'good' })}`);
  t.teardown(() => good.close());
  // The position before the window's transactions: what the attacker resumes from.
  const floor = (await good.subscribe({ id: 'probe', table: 'public.items' })).position as string;
  await query(url, `do $$ begin for i in 1..${WINDOW_TX} loop insert into items (sent_ms) values (null); commit; end loop; end $$`);
  await good.waitChanges('probe', WINDOW_TX, 30_000);
  good.send({ type: 'unsubscribe', id: 'probe' });

  const token = await hsToken({ sub: 'mallory' });
  const attackers = await Promise.all(Array.from({ length: CONNECTIONS }, () => Attacker.open(token)));
  await good.subscribe({ id: 'live', table: 'public.items' });
  const latencies: number[] = [];
  good.onMessage((m) => {
    const sent = (m.new as { sent_ms?: number } | undefined)?.sent_ms;
    if (m.type === 'change' && m.sub === 'live' && typeof sent === 'number') latencies.push(Date.now() - sent);
  });
  for (const a of attackers) for (let i = 0; i < SUBS_PER_CONNECTION; i++) a.subscribe(i, floor);

  // Rows keep coming while the attacker catches up; each is news for the good client.
  const w = new pg.Client({ connectionString: url });
  await w.connect();
  const allLive = () => attackers.every((a) => [...a.ids.values()].every((s) => s.subscribedAfter !== null));
  let live = 0;
  let duringFlood = 0;
  while (live < 30 || !allLive()) {
    if (live >= 5000) break;
    await w.query('insert into items (sent_ms) values ($1)', [Date.now()]);
    live++;
    if (!allLive()) duringFlood = live;
  }
  await w.end();
  const total = WINDOW_TX + live;

  await good.waitChanges('live', live, 30_000);
  await waitUntil(() => attackers.every((a) => [...a.ids.values()].every((s) => s.count >= total)) || attackers.some((a) => a.closed !== null), 60_000, () => 'every attacker subscription has every change');
  t.same(attackers.map((a) => a.closed), attackers.map(() => null), 'no attacker connection was closed');
  let everything = 0;
  for (const [k, a] of attackers.entries()) {
    for (const [id, s] of a.ids) {
      if (s.bad.length > 0 || s.count !== total || s.subscribedAfter === null) t.fail(`connection ${k} sub ${id}: ${s.count}/${total}, subscribed after ${s.subscribedAfter}, ${s.bad.slice(0, 3).join('; ')}`);
      else everything++;
    }
  }
  t.equal(everything, CONNECTIONS * SUBS_PER_CONNECTION, `every attacker subscription got all ${total} changes exactly once, in order, with subscribed`);
  t.ok(attackers.every((a) => [...a.ids.values()].every((s) => s.subscribedAfter !== null && s.subscribedAfter >= WINDOW_TX)), 'subscribed only after the whole window');

  const seen = Math.max(...attackers.map((a) => a.maxRunning));
  t.ok(seen <= PER_CONNECTION, `at most ${PER_CONNECTION} catch-ups of one connection ran at once, as its client saw them (saw ${seen})`);
  const stats = daemon.hub.catchUpStats;
  t.ok(stats.maxRunningPerConnection <= PER_CONNECTION, `server: at most ${PER_CONNECTION} per connection (${stats.maxRunningPerConnection})`);
  t.ok(stats.maxRunningPerUser <= PER_USER, `server: at most ${PER_USER} per user (${stats.maxRunningPerUser})`);
  t.equal(stats.maxRunningPerUser, Math.min(PER_USER, CONNECTIONS * PER_CONNECTION), 'the user limit was reached: the rest waited');
  t.ok(stats.maxWaiting > 0, `subscriptions waited their turn (${stats.maxWaiting} at most)`);
  // Rows of a few bytes: a unit per change examined, so no turn goes past the budget at all.
  t.ok(stats.maxTurnUnits <= SERVER_DEFAULTS.catchUpBudgetPerTurn, `no turn did more than the budget (${stats.maxTurnUnits} units in ${stats.turns} turns, the longest ${stats.maxTurnMs.toFixed(1)} ms)`);
  t.equal(stats.running + stats.waiting, 0, 'no catch-up left');

  t.equal(good.changes('live').length, live, `the good client got its ${live} live changes, ${duringFlood} of them written during the flood`);
  const during = latencies.slice(0, duringFlood).sort((a, b) => a - b);
  const at = (q: number) => during[Math.min(during.length - 1, Math.floor(q * during.length))]?.toFixed(1);
  t.comment(`good client delivery during the flood (daemon and clients in one process): n=${during.length} p50=${at(0.5)} ms p99=${at(0.99)} ms max=${at(1)} ms`);
});
