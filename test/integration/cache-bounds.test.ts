// Issue 11, item 7: memory keyed by what clients send stays bounded. The attack against a real
// daemon: tens of thousands of refused joins of distinct 255-character channel names (some a
// rule's pattern matches, some none does), subscribes to distinct unknown tables, and
// subscriptions under distinct long ids. Then: the authorizer's caches are within their bound,
// the heap after a full gc did not grow with the flood, the catalog holds only enabled tables,
// and interned subscription prefixes go when their subscriptions do.

import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import pg from 'pg';
import t from 'tap';
import WebSocket from 'ws';
import type { PolicyAuthorizer } from '../../src/auth/authorizer.js';
import { SERVER_DEFAULTS } from '../../src/constants.js';
import { Catalog } from '../../src/hub/catalog.js';
import { query } from '../helpers/capture.js';
import { startTestDaemon } from '../helpers/daemon.js';
import { hsToken } from '../helpers/tokens.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
function heapAfterGc(): number {
  for (let i = 0; i < 3; i++) gc();
  return process.memoryUsage().heapUsed;
}
const MB = 1024 * 1024;

const { url, daemon } = await startTestDaemon(
  t,
  `create table room_members (user_id text, room_id int, primary key (user_id, room_id));
   create table messages (id bigserial primary key, room_id int not null, body text);
   select walcast.enable('room_members'), walcast.enable('messages');
   insert into room_members values ('ann', 1);
   insert into walcast.casbin_rule (ptype, v0, v1, v2, v3, v4) values
     ('p', '*', 'channel', 'room:*', 'join', 'g2(r.sub.id, r.obj.name)'),
     ('p', '*', 'table', 'public.messages', 'read', 'true');`,
  { relation: ['public.room_members {user_id} room:{room_id}'] },
);
const auth = daemon.hub.auth as PolicyAuthorizer;
const BOUND = SERVER_DEFAULTS.decisionCacheEntries;

/** A bare client that counts replies by `type:code` and keeps nothing else. */
class Flooder {
  private ws!: WebSocket;
  private seq = 0;
  private waiting = new Map<string, () => void>();
  readonly tally = new Map<string, number>();

  static async open(sub: string): Promise<Flooder> {
    const f = new Flooder();
    f.ws = new WebSocket(`ws://127.0.0.1:${daemon.port}/ws?token=${await hsToken({ sub })}`);
    await new Promise<void>((resolve, reject) => {
      f.ws.once('error', reject);
      f.ws.on('message', (data) => {
        const m = JSON.parse(String(data)) as { type: string; code?: string; ref?: string };
        if (m.type === 'welcome') return resolve();
        const k = m.code ? `${m.type}:${m.code}` : m.type;
        f.tally.set(k, (f.tally.get(k) ?? 0) + 1);
        if (m.ref !== undefined) {
          const done = f.waiting.get(m.ref);
          f.waiting.delete(m.ref);
          done?.();
        }
      });
    });
    t.teardown(() => f.ws.close());
    return f;
  }

  /** Sends each message with a fresh ref, at most `window` unanswered at a time. */
  async run(msgs: Iterable<Record<string, unknown>>, window: number, each?: () => void): Promise<void> {
    const inFlight = new Set<Promise<void>>();
    for (const msg of msgs) {
      const ref = `f${++this.seq}`;
      const p = new Promise<void>((resolve) => this.waiting.set(ref, resolve)).then(() => void inFlight.delete(p));
      inFlight.add(p);
      this.ws.send(JSON.stringify({ ...msg, ref }));
      if (inFlight.size >= window) await Promise.race(inFlight);
      each?.();
    }
    await Promise.all(inFlight);
  }
}

/** Distinct channel names of the protocol's maximum length: half match `room:*`, half nothing. */
function* joins(from: number, n: number): Iterable<Record<string, unknown>> {
  for (let i = from; i < from + n; i++) {
    const prefix = i % 2 === 0 ? 'room:' : 'zz:';
    yield { type: 'join', channel: prefix + String(i).padStart(255 - prefix.length, 'x') };
  }
}

t.test('refused joins of distinct long channel names: caches within the bound, heap flat', async (t) => {
  const mallory = await Flooder.open('mallory');
  let over = 0;
  const check = () => void (auth.cachedRuleSets > 2 * BOUND && over++);
  // Fill the caches to their bound first, so that what follows would only add.
  await mallory.run(joins(0, BOUND + 500), 500, check);
  const before = heapAfterGc();
  const cachedBefore = auth.cachedRuleSets;
  const N = 16_000;
  await mallory.run(joins(10_000_000, N), 500, check);
  const after = heapAfterGc();
  const refused = mallory.tally.get('error:forbidden') ?? 0;
  t.equal(refused, BOUND + 500 + N, 'every join refused');
  t.equal(over, 0, 'the caches never held more than their bound');
  t.ok(auth.cachedRuleSets <= 2 * BOUND, `${auth.cachedRuleSets} cached rule sets ≤ 2 × ${BOUND} (was ${cachedBefore})`);
  const grown = (after - before) / MB;
  t.comment(`heap after gc: ${(before / MB).toFixed(1)} MB before ${N} refused joins, ${(after / MB).toFixed(1)} MB after (${grown >= 0 ? '+' : ''}${grown.toFixed(1)} MB)`);
  // Held per name, 20k names are ~25 MB (measured without the bound); allow noise well below.
  t.ok(grown < 8, `heap grew ${grown.toFixed(1)} MB over ${N} joins`);
  const ann = await Flooder.open('ann');
  await ann.run([{ type: 'join', channel: 'room:1' }], 1);
  t.equal(ann.tally.get('joined'), 1, 'a member still joins (its entry rebuilt if evicted)');
});

t.test('subscribes to distinct unknown tables store nothing', async (t) => {
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  t.teardown(() => pool.end());
  const catalog = new Catalog(pool);
  await catalog.reload();
  const enabled = catalog.size;
  const [{ n }] = await query<{ n: number }>(url, "select count(*)::int as n from pg_publication_tables where pubname = 'walcast' and (schemaname, tablename) not in (('walcast', 'broadcasts'), ('walcast', 'routes'), ('walcast', 'snapshot_marks'))");
  t.equal(enabled, n, 'the enabled tables (walcast.broadcasts, walcast.routes and walcast.snapshot_marks are in the publication but not subscribable)');
  const names = Array.from({ length: 2_000 }, (_, i) => `public.nope_${String(i).padStart(50, '0')}`);
  const found = await Promise.all(names.map((n) => catalog.table(n)));
  t.ok(found.every((x) => x === null), 'none found');
  t.equal(catalog.size, enabled, 'and none stored');

  // The same through the daemon: answered unknown_table, and the decision caches untouched.
  const cached = auth.cachedRuleSets;
  const floods = await Promise.all(['m1', 'm2', 'm3', 'm4'].map((s) => Flooder.open(s)));
  await Promise.all(floods.map((f, k) => f.run(names.slice(k * 250, k * 250 + 250).map((table, i) => ({ type: 'subscribe', id: i, table })), 100)));
  t.equal(floods.reduce((n, f) => n + (f.tally.get('error:unknown_table') ?? 0), 0), 1_000, 'every one unknown_table');
  t.ok(auth.cachedRuleSets <= cached, 'no decision cached for an unknown table');
});

t.test('subscription ids: interned prefixes go with their subscriptions', async (t) => {
  const f = await Flooder.open('sid');
  const base = daemon.hub.prefixes.size;
  const ids = Array.from({ length: 2_000 }, (_, i) => `${'i'.repeat(120)}${i}`);
  for (let k = 0; k < ids.length; k += 100) {
    const batch = ids.slice(k, k + 100);
    await f.run(batch.map((id) => ({ type: 'subscribe', id, table: 'public.messages' })), 100);
    await f.run(batch.map((id) => ({ type: 'unsubscribe', id })), 100);
  }
  t.equal(f.tally.get('subscribed'), 2_000);
  t.equal(f.tally.get('unsubscribed'), 2_000);
  t.equal(daemon.hub.prefixes.size, base, 'no prefix left behind');
});
