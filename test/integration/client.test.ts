// The client SDK (src/client, `walcast/client`) against a real daemon (in process, JWT secret,
// a policy allowing reads) on a throwaway Postgres, with the `ws` constructor as in Node 20:
// subscribe and receive; drops of every kind (network, daemon restart on the same port and
// slot, too slow, token expiry) under a writer with nothing lost or repeated; token refresh
// before exp keeping the connection; resync surfacing, directly and after a reconnect; channels
// (broadcast, merged presence, rejoin and re-track after a drop, removal). Last, the
// same modules loaded as they are by a headless Chromium: skipped without one, except under CI
// (CI set), where a missing /usr/bin/chromium is a failure.

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ts from 'typescript';
import t, { type Test } from 'tap';
import WebSocket from 'ws';
import { comparePositions, createClient, type Change, type Channel, type ClientOptions, type DisconnectInfo, type PresenceState, type Subscription, type WalcastClient, type WalcastError } from '../../src/client/index.js';
import { formatWalPosition as formatPosition } from '../../src/protocol/position.js';
import { resolveServeConfig, type ServeFlags } from '../../src/config.js';
import { startDaemon, type Daemon } from '../../src/daemon.js';
import { silentLogger } from '../../src/log.js';
import { migrate } from '../../src/sql/migrate.js';
import { query, sleep, sqlClient, waitUntil } from '../helpers/capture.js';
import { withPostgres } from '../helpers/pg.js';
import { hsToken, inSeconds } from '../helpers/tokens.js';
import { duplicates, freePort, orderViolations } from '../helpers/ws.js';
import { SECRET } from '../helpers/tokens.js';

const db = await withPostgres(t);
await migrate(db.url);
const url = db.url;
await query(
  url,
  `create table items (id bigserial primary key, n int not null default 0, body text);
   create table other (id bigserial primary key);
   select walcast.enable('items'), walcast.enable('other');
   insert into walcast.casbin_rule (ptype, v0, v1, v2, v3, v4) values
     ('p', '*', 'table', 'public.items', 'read', 'true'),
     ('p', '*', 'channel', 'room:*', 'join', 'true'),
     ('p', '*', 'channel', 'room:*', 'broadcast', 'true'),
     ('p', '*', 'channel', 'room:*', 'presence', 'true'),
     ('p', '*', 'channel', 'vip:*', 'join', 'true'),
     ('p', '*', 'channel', 'vip:*', 'broadcast', 'true');`,
);

async function daemon(flags: ServeFlags = {}): Promise<Daemon> {
  const d = await startDaemon(resolveServeConfig({ db: url, port: '0', jwtSecret: SECRET, progressInterval: '200ms', ...flags }, {}), silentLogger);
  t.teardown(() => d.stop());
  return d;
}

function client(t: Test, opts: Partial<ClientOptions> & { url: string }): WalcastClient {
  const c = createClient({ WebSocket, token: () => hsToken({ sub: 'alice' }), backoff: { baseMs: 50, capMs: 300 }, ...opts });
  t.teardown(() => c.close());
  return c;
}

/** Every change handed to the application, and the connection's drops. */
function record<R extends Record<string, unknown>>(sub: Subscription<R>): Change<R>[] {
  const got: Change<R>[] = [];
  sub.on('change', (c) => got.push(c));
  return got;
}

async function live(sub: Subscription<never> | Subscription, timeoutMs = 10_000): Promise<void> {
  await waitUntil(() => sub.state === 'live', timeoutMs, () => `subscription ${sub.id} live (is ${sub.state})`);
}

/** A TCP proxy in front of a port: drop every connection (the client sees 1006), refuse new ones, stall. */
class Proxy {
  private readonly sockets = new Set<net.Socket>();
  refusing = false;
  readonly upstreams: net.Socket[] = [];
  private constructor(
    private readonly server: net.Server,
    readonly port: number,
    private target: number,
  ) {}

  static async start(t: Test, target: number): Promise<Proxy> {
    let proxy: Proxy | null = null;
    const server = net.createServer((down) => proxy!.accept(down));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    proxy = new Proxy(server, (server.address() as net.AddressInfo).port, target);
    t.teardown(() => proxy!.stop());
    return proxy;
  }

  private accept(down: net.Socket): void {
    if (this.refusing) {
      down.destroy();
      return;
    }
    const up = net.connect(this.target, '127.0.0.1');
    this.upstreams.push(up);
    for (const s of [down, up]) {
      this.sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => {
        this.sockets.delete(s);
        down.destroy();
        up.destroy();
      });
    }
    down.pipe(up);
    up.pipe(down);
  }

  /** Destroys every connection: no close frame, the client sees 1006. */
  dropAll(): void {
    for (const s of this.sockets) s.destroy();
  }

  stop(): Promise<void> {
    this.dropAll();
    return new Promise((r) => this.server.close(() => r()));
  }
}

t.test('subscribe and receive changes: in order, typed, with positions from changes and progress', async (t) => {
  const d = await daemon({ slot: 'basic' });
  const c = client(t, { url: `ws://127.0.0.1:${d.port}/ws` });
  const opened = new Promise<{ session: string }>((r) => c.once('open', r));
  const sub = c.subscribe<{ id: string | number; n: number; body: string }>({ table: 'items' });
  const few = c.subscribe({ table: 'public.items', filter: 'n=eq.7', events: ['insert'] });
  const got = record(sub);
  const gotFew = record(few);
  t.ok((await opened).session, 'welcome with a session');
  await live(sub);
  await live(few);
  t.ok(sub.position, `a position from subscribed: ${sub.position}`);
  await query(url, "insert into items (n, body) values (1, 'a'), (7, 'b')");
  await query(url, "update items set body = 'c' where body = 'a'");
  await query(url, "delete from items where body = 'b'");
  await waitUntil(() => got.length === 4, 10_000, () => `4 changes (have ${got.length})`);
  t.same(got.map((m) => `${m.op}:${(m.new ?? m.old)?.body}`), ['insert:a', 'insert:b', 'update:c', 'delete:b']);
  t.same(got[2].changed, ['body']);
  t.same(orderViolations(got.map((m) => m.pos)), [], 'in position order');
  t.equal(sub.position, got[3].pos, 'position = the last change');
  t.same(gotFew.map((m) => m.new?.body), ['b'], 'the filtered, insert-only subscription');
  // Changes that are not for this client move the position by progress.
  await query(url, 'insert into other default values');
  const before = sub.position!;
  const progress = new Promise<string>((r) => c.once('progress', r));
  await progress;
  await waitUntil(() => sub.position !== before, 5_000, () => 'progress to move the position');
  t.pass(`progress moved the position past the last change: ${before} → ${sub.position}`);
  await sub.unsubscribe();
  // A row for both: once the subscription still there has it, the other would have it too.
  await query(url, "insert into items (n, body) values (7, 'after')");
  await waitUntil(() => gotFew.length === 2, 10_000, () => `the row on the other subscription (have ${gotFew.length})`);
  t.equal(got.length, 4, 'nothing after unsubscribe');
});

t.test('drops under a writer (network 1006 twice, daemon restart 1001 on the same port and slot): nothing lost, nothing twice', async (t) => {
  const port = await freePort();
  const first = await daemon({ slot: 'drops', port: String(port) });
  const proxy = await Proxy.start(t, port);
  const c = client(t, { url: `ws://127.0.0.1:${proxy.port}/ws` });
  const disconnects: DisconnectInfo[] = [];
  c.on('disconnect', (x) => disconnects.push(x));
  const all = c.subscribe<{ id: string; n: number }>({ table: 'items' });
  const odd = c.subscribe<{ id: string; n: number }>({ table: 'items', filter: 'n=eq.1', events: ['insert'] });
  const gotAll = record(all);
  const gotOdd = record(odd);
  await live(all);
  await live(odd);
  const [{ max: floor }] = await query<{ max: string | null }>(url, 'select max(id)::text as max from items');

  const TX = 240;
  let written = 0;
  const writer = (async () => {
    const pg = await import('pg');
    const w = new pg.default.Client({ connectionString: url });
    await w.connect();
    try {
      for (let i = 0; i < TX; i++) {
        // Some transactions hold several changes (indexes > 0 within one commit LSN).
        const rows = i % 5 === 0 ? 3 : 1;
        await w.query(`insert into items (n, body) select g % 2, 'w${i}' from generate_series(1, ${rows}) g`);
        written++;
        await sleep(8);
      }
    } finally {
      await w.end();
    }
  })();

  await waitUntil(() => written >= TX / 4, 30_000);
  proxy.dropAll();
  await waitUntil(() => written >= TX / 2, 30_000);
  await first.stop(); // clients closed with 1001
  await sleep(300);
  await daemon({ slot: 'drops', port: String(port) }); // the same port and slot
  await waitUntil(() => written >= (TX * 3) / 4, 30_000);
  proxy.dropAll();
  await writer;
  // A last row for both subscriptions: once they have it, everything before it has arrived.
  await query(url, "insert into items (n, body) values (1, 'last')");

  const want = await query<{ id: string; n: number }>(url, 'select id::text as id, n from items where items.id > $1 order by items.id', [floor ?? '0']);
  const wantOdd = want.filter((r) => r.n === 1);
  const lastId = want[want.length - 1].id;
  const has = (got: Change<{ id: string }>[]) => got.some((m) => String(m.new!.id) === lastId);
  await waitUntil(() => has(gotAll) && has(gotOdd), 30_000, () => `the last row ${lastId} (have ${gotAll.length}/${gotOdd.length} of ${want.length}/${wantOdd.length})`);
  const ids = gotAll.map((m) => String(m.new!.id));
  t.same(duplicates(ids), [], 'no row twice');
  t.equal(ids.length, want.length, `every row once (${want.length})`);
  t.same(ids, want.map((r) => r.id), 'exactly the rows written, in commit order');
  t.same(orderViolations(gotAll.map((m) => m.pos)), [], 'positions strictly increasing');
  t.same(gotOdd.map((m) => String(m.new!.id)), wantOdd.map((r) => r.id), 'the filtered subscription: its rows, once, in order');
  // While the daemon is down the proxy accepts and drops each attempt: more 1006 in between.
  const codes = disconnects.map((x) => x.code);
  t.equal(codes[0], 1006, 'dropped by the network');
  t.equal(codes[1], 1001, 'then the daemon going away');
  t.equal(codes.at(-1), 1006, 'then the network again');
  t.ok(codes.every((x) => x === 1006 || x === 1001), `only those: ${codes}`);
  t.ok(disconnects.every((x) => x.retryInMs !== null), 'each followed by a reconnect');
  t.comment(`duplicates the client dropped by position: ${all.duplicatesDropped + odd.duplicatesDropped}`);
  t.equal(c.state, 'open');
});

t.test('too slow (4008): the client reconnects and resumes from its position', async (t) => {
  const port = await freePort();
  const d = await daemon({ slot: 'slow', port: String(port), maxBackpressure: '64KiB' });
  const proxy = await Proxy.start(t, port);
  const c = client(t, { url: `ws://127.0.0.1:${proxy.port}/ws`, pingIntervalMs: 0 });
  const disconnects: DisconnectInfo[] = [];
  c.on('disconnect', (x) => disconnects.push(x));
  const sub = c.subscribe<{ id: string; n: number; body: string }>({ table: 'items', filter: 'n=eq.42' });
  const got = record(sub);
  await live(sub);
  // Stop reading from the daemon: its sends pile up past the limit.
  const up = proxy.upstreams[proxy.upstreams.length - 1];
  const slowCloses = d.server.slowCloses;
  up.pause();
  await query(url, "insert into items (n, body) select 42, repeat('x', 4000) from generate_series(1, 2000)");
  await waitUntil(() => d.server.slowCloses > slowCloses, 30_000, () => 'the daemon to close the unread socket');
  up.resume();
  // A last row: once it is in, every row before it has arrived (or is missing for good).
  await query(url, "insert into items (n, body) values (42, 'last')");
  await waitUntil(() => got.some((m) => m.new?.body === 'last'), 60_000, () => `the last row (have ${got.length})`);
  t.equal(disconnects[0]?.code, 4008, 'closed as too slow');
  t.equal(got.length, 2001, 'every row');
  t.same(duplicates(got.map((m) => String(m.new!.id))), [], 'none twice');
  t.same(orderViolations(got.map((m) => m.pos)), []);
});

t.test('token refresh before exp keeps the connection open (3 s tokens)', async (t) => {
  const d = await daemon({ slot: 'refresh' });
  let issued = 0;
  const c = client(t, {
    url: `ws://127.0.0.1:${d.port}/ws`,
    token: () => {
      issued++;
      return hsToken({ sub: 'alice' }, { exp: '3s' });
    },
  });
  const disconnects: DisconnectInfo[] = [];
  c.on('disconnect', (x) => disconnects.push(x));
  const refreshed: (string | null)[] = [];
  c.on('authenticated', (a) => refreshed.push(a.expiresAt));
  const sub = c.subscribe({ table: 'items' });
  const got = record(sub);
  await live(sub);
  // Three refreshes: past the expiry of the first two tokens (each is refreshed a second before).
  await waitUntil(() => refreshed.length >= 3, 20_000, () => `three refreshes (have ${refreshed.length})`);
  await query(url, "insert into items (n, body) values (0, 'still here')");
  await waitUntil(() => got.some((m) => m.new?.body === 'still here'), 5_000);
  t.same(disconnects, [], 'never dropped');
  t.ok(refreshed.length >= 3, `refreshed in-band ${refreshed.length} times`);
  t.ok(refreshed.every((x) => typeof x === 'string' && Date.parse(x) > Date.now() - 10_000), 'authenticated with expires_at');
  t.ok(issued >= 4, `the token function was asked ${issued} times`);
  t.equal(c.state, 'open');
});

t.test('4001: a refused token and an expired session come back with fresh tokens and resume', async (t) => {
  const d = await daemon({ slot: 'expiry' });
  let calls = 0;
  // 1st: already expired (refused on connect, 4001); 2nd and 3rd: the same 2 s token (the refresh
  // gets nothing fresher, so the server closes 4001 at exp); then fresh ones.
  let lasting: Promise<string> | null = null;
  const c = client(t, {
    url: `ws://127.0.0.1:${d.port}/ws`,
    token: () => {
      calls++;
      if (calls === 1) return hsToken({ sub: 'alice' }, { exp: inSeconds(-30) });
      if (calls <= 3) return (lasting ??= hsToken({ sub: 'alice' }, { exp: '2s' }));
      return hsToken({ sub: 'alice' });
    },
  });
  const disconnects: DisconnectInfo[] = [];
  c.on('disconnect', (x) => disconnects.push(x));
  const sub = c.subscribe<{ body: string }>({ table: 'items', filter: 'n=eq.5' });
  const got = record(sub);
  await live(sub);
  t.equal(disconnects[0]?.code, 4001, 'the expired token was refused');
  await query(url, "insert into items (n, body) values (5, 'one')");
  await waitUntil(() => disconnects.length === 2, 6_000, () => 'the expiry close');
  t.match(disconnects[1], { code: 4001, reason: 'token expired', retryInMs: 0 });
  await query(url, "insert into items (n, body) values (5, 'two')");
  await waitUntil(() => got.length === 2 && c.state === 'open', 10_000);
  await query(url, "insert into items (n, body) values (5, 'three')");
  await query(url, "insert into items (n, body) values (5, 'last')");
  await waitUntil(() => got.some((m) => m.new!.body === 'last'), 10_000, () => `the last row: ${JSON.stringify(got.map((m) => m.new!.body))}`);
  t.same(got.map((m) => m.new!.body), ['one', 'two', 'three', 'last'], 'resumed across the expiry: nothing lost or twice');
});

t.test('resync surfaces: a position outside the window, directly and on a reconnect; resubscribe() from now', async (t) => {
  const port = await freePort();
  const d = await daemon({ slot: 'resync', port: String(port), historyAge: '1s' });
  const c = client(t, { url: `ws://127.0.0.1:${port}/ws` });
  const reasons: string[] = [];
  const old = c.subscribe({ table: 'items', since: '0/1:0' }, { onResync: (r) => reasons.push(r) });
  await waitUntil(() => reasons.length === 1, 10_000);
  t.same(reasons, ['position_outside_window']);
  t.equal(old.state, 'ended');
  const got = record(old);
  old.resubscribe();
  await live(old);
  await query(url, "insert into items (n, body) values (0, 'after resubscribe')");
  await waitUntil(() => got.length === 1, 10_000);
  t.equal(got[0].new?.body, 'after resubscribe');

  // Through a proxy that refuses connections for a while: the window moves past the position.
  const proxy = await Proxy.start(t, port);
  const c2 = client(t, { url: `ws://127.0.0.1:${proxy.port}/ws` });
  const reasons2: string[] = [];
  const sub = c2.subscribe({ table: 'items' }, { onResync: (r) => reasons2.push(r) });
  const seen = record(sub);
  await live(sub);
  await query(url, "insert into items (n, body) values (0, 'seen')");
  await waitUntil(() => seen.length === 1, 10_000);
  proxy.refusing = true;
  proxy.dropAll();
  await waitUntil(() => c2.state === 'reconnecting', 10_000, () => `the drop (state ${c2.state})`);
  const stuck = sub.position!; // what the reconnect resumes from
  await query(url, "insert into items (n, body) values (0, 'missed')");
  // The ring keeps its newest entry whatever its age: later transactions push 'missed' out,
  // until the window starts after the subscription's position.
  const w = await sqlClient(t, url);
  await waitUntil(
    async () => {
      await w.query('insert into other default values');
      const floor = d.hub.ring.floor;
      return comparePositions(formatPosition(floor.lsn, floor.index), stuck) > 0;
    },
    15_000,
    () => `the window to move past ${stuck}`,
  );
  proxy.refusing = false;
  await waitUntil(() => reasons2.length === 1, 15_000, () => `a resync after the reconnect; got ${JSON.stringify(seen.map((x) => x.new?.body))}, ${sub.state}`);
  t.same(reasons2, ['position_outside_window'], 'the reconnect could not resume: resync, not silence');
  t.equal(sub.state, 'ended');
});

const states = (view: PresenceState) => Object.fromEntries(Object.keys(view).sort().map((k) => [k, view[k].map((m) => m.state).sort((x, y) => JSON.stringify(x).localeCompare(JSON.stringify(y)))]));

function watchChannel(ch: Channel): { joins: string[]; leaves: string[]; got: unknown[]; errors: WalcastError[] } {
  const log = { joins: [] as string[], leaves: [] as string[], got: [] as unknown[], errors: [] as WalcastError[] };
  ch.onJoin((k) => log.joins.push(k));
  ch.onLeave((k) => log.leaves.push(k));
  ch.on('*', (payload, m) => log.got.push(m.from === undefined ? { event: m.event, payload } : { event: m.event, payload, from: m.from }));
  ch.onError((e) => log.errors.push(e));
  return log;
}

t.test('channels: broadcast (self on request, from SQL), presence merged across tabs, rejoin and re-track after a drop, removal when the right goes', async (t) => {
  const port = await freePort();
  await daemon({ slot: 'channels', port: String(port) });
  const proxy = await Proxy.start(t, port);
  const direct = `ws://127.0.0.1:${port}/ws`;
  const ann1 = client(t, { url: `ws://127.0.0.1:${proxy.port}/ws`, token: () => hsToken({ sub: 'ann' }) });
  const ann2 = client(t, { url: direct, token: () => hsToken({ sub: 'ann' }) });
  const ben = client(t, { url: direct, token: () => hsToken({ sub: 'ben' }) });
  const [a1, a2, b] = [ann1, ann2, ben].map((c) => c.channel('room:1'));
  const [l1, l2, lb] = [a1, a2, b].map(watchChannel);
  await Promise.all([a1.join(), a2.join(), b.join()]);
  a1.track({ status: 'online' });
  a2.track({ status: 'tab2' });
  b.track({ status: 'here' });
  const want = { ann: [{ status: 'online' }, { status: 'tab2' }], ben: [{ status: 'here' }] };
  await waitUntil(() => JSON.stringify(states(b.presenceState())) === JSON.stringify(want), 5_000, () => `ben's view: ${JSON.stringify(b.presenceState())}`);
  await waitUntil(() => JSON.stringify(states(a1.presenceState())) === JSON.stringify(want), 5_000, () => `ann's view: ${JSON.stringify(a1.presenceState())}`);
  t.same(lb.joins.sort(), ['ann', 'ben'], 'keys are user ids; two tabs of ann are one join');
  t.same(b.presenceState().ann.map((m) => m.session).sort(), [ann1.session, ann2.session].sort(), 'one meta per connection, by session');

  t.ok(a1.send('typing', { user: 'ann' }));
  a1.send('typing', { echo: true }, { self: true });
  await waitUntil(() => lb.got.length === 2 && l2.got.length === 2 && l1.got.length === 1, 5_000, () => JSON.stringify([l1.got, l2.got, lb.got]));
  t.same(lb.got, [{ event: 'typing', payload: { user: 'ann' }, from: 'ann' }, { event: 'typing', payload: { echo: true }, from: 'ann' }], 'ben got both, from ann');
  t.same(l2.got, lb.got, 'so did ann\'s other tab');
  t.same(l1.got, [{ event: 'typing', payload: { echo: true }, from: 'ann' }], 'the sender only the one with self');
  await query(url, `select walcast.broadcast('room:1', 'note', '{"from": "sql"}')`);
  await waitUntil(() => lb.got.length === 3 && l1.got.length === 2, 5_000);
  t.same(lb.got[2], { event: 'note', payload: { from: 'sql' } }, 'from SQL, to every member, without a sender');

  a1.track({ status: 'away' });
  await waitUntil(() => states(b.presenceState()).ann?.some((s) => s?.status === 'away'), 5_000);
  t.same(states(b.presenceState()), { ann: [{ status: 'away' }, { status: 'tab2' }], ben: [{ status: 'here' }] }, 'an update replaces that tab\'s meta');
  t.same(lb.leaves, [], 'no key left');

  // ann's first tab loses its connection: it comes back, rejoins and re-tracks; ann never left
  // for ben, because her second tab stayed.
  const oldSession = ann1.session;
  const rejoined = new Promise<void>((r) => a1.once('joined', () => r()));
  proxy.dropAll();
  await rejoined;
  await waitUntil(() => b.presenceState().ann?.some((m) => m.session === ann1.session && m.state?.status === 'away'), 5_000, () => `the re-tracked meta: ${JSON.stringify(b.presenceState())}`);
  t.not(ann1.session, oldSession, 'a new connection');
  t.notOk(b.presenceState().ann.some((m) => m.session === oldSession), 'the old connection\'s meta is gone');
  t.same(lb.leaves, [], 'ben never saw ann leave');
  await waitUntil(() => JSON.stringify(states(a1.presenceState())) === JSON.stringify(states(b.presenceState())), 5_000, () => 'the views to agree');
  t.pass('ann\'s rejoined view agrees with ben\'s');
  t.ok(a1.send('typing', { back: true }), 'broadcasts again once rejoined');
  await waitUntil(() => lb.got.some((g) => JSON.stringify(g).includes('back')), 5_000);

  a2.untrack();
  await ann1.close();
  await waitUntil(() => lb.leaves.includes('ann'), 5_000, () => `ann to leave: ${JSON.stringify(b.presenceState())}`);
  t.same(states(b.presenceState()), { ben: [{ status: 'here' }] }, 'ann left with her last meta');
  t.same([l1.errors, l2.errors, lb.errors], [[], [], []], 'no errors so far');

  // The right to join vip:* goes; the server removes the members at the next message.
  const [v2, vb] = [ann2, ben].map((c) => c.channel('vip:1'));
  const [lv2, lvb] = [v2, vb].map(watchChannel);
  await Promise.all([v2.join(), vb.join()]);
  await query(url, "delete from walcast.casbin_rule where v1 = 'channel' and v2 = 'vip:*' and v3 = 'join'");
  await waitUntil(() => {
    if (v2.joined) v2.send('ping', null);
    return lvb.errors.length > 0;
  }, 10_000, () => 'ben to be removed');
  t.match(lvb.errors[0], { code: 'forbidden', message: /removed/ }, 'ben is told');
  t.notOk(vb.joined, 'and is out');
  await waitUntil(() => lv2.errors.length > 0, 5_000);
  t.notOk(v2.joined, 'ann too');
  t.equal(vb.send('x', 1), false);
  await t.rejects(ben.channel('vip:2').join(), { code: 'forbidden' }, 'a new join is refused');
});

/** Debian's chromium, which CI installs (.ci/run), as test/e2e uses it. */
const CHROMIUM = '/usr/bin/chromium';

/** A Chromium to run headless, or null: Debian's, else (not under CI) one on the PATH. */
function findChromium(): string | null {
  if (existsSync(CHROMIUM)) return CHROMIUM;
  if (process.env.CI) return null;
  for (const bin of ['chromium', 'chromium-browser', 'google-chrome']) {
    if (spawnSync(bin, ['--version'], { stdio: 'ignore' }).status === 0) return bin;
  }
  return null;
}

const chromium = findChromium();
// Under CI a missing browser is a failure, not a skip: a failed install must not pass unseen.
if (!chromium && process.env.CI) t.fail(`${CHROMIUM} is missing: CI installs Debian's chromium in .ci/run (apt-get install chromium)`);

t.test('in a browser: plain ES modules, the global WebSocket, a token from fetch, a reconnect', { skip: chromium ? false : `no chromium installed (${CHROMIUM}, or one on the PATH)` }, async (t) => {
  const port = await freePort();
  await daemon({ slot: 'browser', port: String(port) });
  const proxy = await Proxy.start(t, port);
  // The client's modules, each compiled on its own to an ES module, served under /client/ as
  // dist/src/client serves them: the browser resolves the relative imports itself.
  const dir = join(import.meta.dirname, '../../src/client');
  const modules = new Map<string, string>();
  for (const f of readdirSync(dir).filter((x) => x.endsWith('.ts'))) {
    const out = ts.transpileModule(readFileSync(join(dir, f), 'utf8'), { compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022 } });
    modules.set(f.replace(/\.ts$/, '.js'), out.outputText);
  }
  const page = `<!doctype html><meta charset="utf-8"><script type="module">
    const post = (o) => fetch('/event', { method: 'POST', body: JSON.stringify(o) });
    try {
      const { createClient } = await import('/client/index.js');
      const client = createClient({ url: 'ws://127.0.0.1:${proxy.port}/ws', token: () => fetch('/token').then((r) => r.text()), backoff: { baseMs: 50, capMs: 300 } });
      client.on('disconnect', (d) => post({ type: 'disconnect', code: d.code }));
      client.subscribe({ table: 'items', filter: 'n=eq.77' }, {
        onSubscribed: (i) => post({ type: 'subscribed', resumed: i.resumed }),
        onChange: (c) => post({ type: 'change', pos: c.pos, body: c.new.body }),
      });
    } catch (e) {
      post({ type: 'fail', message: String((e && e.stack) || e) });
    }
  </script>`;
  const events: Record<string, unknown>[] = [];
  const web = http.createServer((req, res) => {
    if (req.method === 'POST') {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => {
        events.push(JSON.parse(body));
        res.end();
      });
      return;
    }
    if (req.url === '/token') {
      void hsToken({ sub: 'browser-user' }).then((tok) => res.end(tok));
      return;
    }
    const js = req.url?.startsWith('/client/') ? modules.get(req.url.slice('/client/'.length)) : undefined;
    if (req.url === '/') res.setHeader('content-type', 'text/html').end(page);
    else if (js !== undefined) res.setHeader('content-type', 'text/javascript').end(js);
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => web.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    web.closeAllConnections();
    return new Promise<void>((r) => web.close(() => r()));
  });
  const profile = mkdtempSync(join(tmpdir(), 'walcast-chromium-'));
  // In its own process group, so that its helper processes end with it.
  const browser = spawn(chromium!, ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', `--user-data-dir=${profile}`, `http://127.0.0.1:${(web.address() as net.AddressInfo).port}/`], { stdio: 'ignore', detached: true });
  const exited = new Promise((r) => browser.once('exit', r));
  t.teardown(async () => {
    try {
      process.kill(-browser.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
    await Promise.race([exited, sleep(5_000)]);
    try {
      rmSync(profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
    } catch {
      // a temporary directory: leave it
    }
  });
  const of = (type: string) => events.filter((e) => e.type === type);
  await waitUntil(() => of('subscribed').length === 1 || of('fail').length > 0, 30_000, () => `the page to subscribe: ${JSON.stringify(events)}`);
  t.same(of('fail'), [], 'the modules load');
  await query(url, "insert into items (n, body) values (77, 'one')");
  await waitUntil(() => of('change').length === 1, 10_000, () => `the change in the page: ${JSON.stringify(events)}`);
  proxy.dropAll();
  await query(url, "insert into items (n, body) values (77, 'two')");
  await waitUntil(() => of('subscribed').length === 2, 10_000, () => `the resubscribe: ${JSON.stringify(events)}`);
  await query(url, "insert into items (n, body) values (77, 'three')");
  await waitUntil(() => of('change').length === 3, 10_000, () => `three changes: ${JSON.stringify(events)}`);
  t.same(of('change').map((e) => e.body), ['one', 'two', 'three'], 'each once, across the reconnect');
  t.same(of('disconnect').map((e) => e.code), [1006], 'the drop, seen by the browser as 1006');
  t.same(of('subscribed').map((e) => e.resumed), [false, true], 'resumed with since');
});
