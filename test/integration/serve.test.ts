// `walcast serve` end to end: real WebSocket clients against a daemon streaming from a real
// Postgres. The protocol basics, every filter operator on the common column types, events and
// ops (leave, truncate), fan-out, positions, progress, healthz/metrics, refusal to start
// without a key, `auth` under --no-auth, and a SIGTERM of a separate serve process.

import t from 'tap';
import { parseLsn } from '../../src/protocol/lsn.js';
import { resolveServeConfig, type ServeFlags } from '../../src/config.js';
import { startDaemon, type Daemon } from '../../src/daemon.js';
import { silentLogger } from '../../src/log.js';
import { migrate } from '../../src/sql/migrate.js';
import { query, releasedSlot, waitUntil } from '../helpers/capture.js';
import { runCli, spawnCli } from '../helpers/cli.js';
import { withPostgres } from '../helpers/pg.js';
import { comparePos, connectWs, orderViolations, servedPort, type ChangeMsg, type WsClient } from '../helpers/ws.js';

const db = await withPostgres(t);
await migrate(db.url);
const url = db.url;
t.teardown(() => {
  if (!t.passing()) t.comment(db.logTail(30));
});

async function daemonWith(flags: ServeFlags): Promise<Daemon> {
  const d = await startDaemon(resolveServeConfig({ db: url, port: '0', auth: false, ...flags }, {}), silentLogger);
  t.teardown(() => d.stop());
  return d;
}

async function table(name: string, columns: string): Promise<void> {
  await query(url, `create table ${name} (${columns})`);
  await query(url, `select walcast.enable('${name}')`);
}

// Every table is created before the daemon starts: see the catalog subtest for why.
await table('sentinel', 'id bigserial primary key, tag text');
await table('basic', 'id bigserial primary key, v text');
await table('f', 'id int primary key, i int, b int8, n numeric, t text, ok bool, ts timestamptz');
await table('ev', 'id int primary key, status text, title text');
await table('many', 'id bigserial primary key, v int');
await table('pa', 'id bigserial primary key, v text');
await table('pb', 'id bigserial primary key, v text');
await table('met', 'id bigserial primary key, v text');
await table('sg', 'id bigserial primary key, v text');

const daemon = await daemonWith({ progressInterval: '300ms' });
const wsUrl = `ws://127.0.0.1:${daemon.port}/ws`;
const POS = /^[0-9A-F]+\/[0-9A-F]+:\d+$/;
const ids = (cs: ChangeMsg[]) => cs.map((c) => (c.new ?? c.old)?.id);


/**
 * Subscribes `c` to public.sentinel (once), writes a sentinel row and waits for it: every change
 * committed before it for this connection has then been received (a connection's messages come
 * in position order).
 */
async function barrier(c: WsClient): Promise<void> {
  const sub = '__sentinel';
  if (!c.messages.some((m) => m.type === 'subscribed' && m.id === sub)) await c.subscribe({ id: sub, table: 'sentinel' });
  const tag = `b${Math.random().toString(36).slice(2)}`;
  await query(url, 'insert into sentinel (tag) values ($1)', [tag]);
  await c.next((m) => m.type === 'change' && m.sub === sub && (m as ChangeMsg).new?.tag === tag, 10_000, `sentinel ${tag}`);
}

t.test('welcome, ping/pong, subscribe/unsubscribe', async (t) => {
  const c = await connectWs(t, wsUrl, { welcome: false });
  const welcome = await c.next((m) => m.type === 'welcome');
  t.equal(c.messages[0], welcome, 'welcome is the first message');
  t.equal(welcome.protocol, 1, 'protocol 1');
  t.ok(typeof welcome.session === 'string' && (welcome.session as string).length > 0, 'a session id');

  c.send({ type: 'ping', ref: 'p-1' });
  t.same(await c.next((m) => m.type === 'pong'), { type: 'pong', ref: 'p-1' }, 'pong echoes a string ref');
  c.send({ type: 'ping', ref: 42 });
  t.same(await c.next((m) => m.type === 'pong'), { type: 'pong', ref: 42 }, 'pong echoes a number ref');
  c.send({ type: 'ping' });
  t.same(await c.next((m) => m.type === 'pong'), { type: 'pong' }, 'pong without ref');

  c.send({ type: 'subscribe', id: 'b', table: 'basic', ref: 'sub-1' });
  const sub = await c.next((m) => m.type === 'subscribed');
  t.equal(sub.id, 'b', 'subscribed id');
  t.equal(sub.ref, 'sub-1', 'subscribed echoes ref');
  t.match(sub.position, POS, `subscribed has a position (${sub.position})`);
  c.send({ type: 'subscribe', id: 7, table: 'public.basic', ref: 8 });
  const sub7 = await c.next((m) => m.type === 'subscribed' && m.id === 7);
  t.equal(sub7.ref, 8, 'numeric id and ref');

  await query(url, "insert into basic (v) values ('one')");
  const [first] = await c.waitChanges('b', 1);
  t.equal(first.op, 'insert');
  t.same(first.new, { id: 1, v: 'one' }, 'the row');
  t.equal(first.table, 'public.basic');
  t.match(first.pos, POS, 'pos');
  t.ok(comparePos(first.pos, sub.position as string) > 0, 'after the subscribed position');
  t.match(first.commit_time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/, 'commit_time ISO UTC microseconds');

  c.send({ type: 'unsubscribe', id: 'b', ref: 'u-1' });
  t.same(await c.next((m) => m.type === 'unsubscribed'), { type: 'unsubscribed', id: 'b', ref: 'u-1' }, 'unsubscribed with ref');
  await query(url, "insert into basic (v) values ('two')");
  await c.waitChanges(7, 2);
  await barrier(c);
  t.same(ids(c.changes('b')), [1], 'no change for "b" after unsubscribed');
  t.same(ids(c.changes(7)), [1, 2], 'the other subscription got both');
  t.same(c.garbage, [], 'every frame was a JSON object with a type');
});

t.test('filters: every operator on int, int8, numeric, text, bool, timestamptz; AND', async (t) => {
  // Expected ids per filter, written out by hand.
  const cases: Array<[string, number[]]> = [
    ['i=eq.3', [3]],
    ['i=neq.3', [1, 2, 5, 6]],
    ['i=lt.2', [1, 6]],
    ['i=lte.2', [1, 2, 6]],
    ['i=gt.2', [3, 5]],
    ['i=gte.2', [2, 3, 5]],
    ['i=in.(1,5,7)', [1, 5]],
    ['i=is.null', [4]],
    ['i=is.not_null', [1, 2, 3, 5, 6]],
    ['b=eq.9007199254740993', [2]],
    ['b=eq.10', [1, 5]],
    ['b=neq.10', [2, 3, 6]],
    ['b=gt.10', [2]],
    ['b=lte.0', [3, 6]],
    ['b=in.(10,0)', [1, 5, 6]],
    ['b=is.null', [4]],
    ['n=eq.1.5', [1, 5]],
    ['n=neq.10', [1, 2, 5, 6]],
    ['n=gt.2', [2, 3]],
    ['n=gte.2.25', [2, 3]],
    ['n=lt.1', [6]],
    ['n=lte.1.50', [1, 5, 6]],
    ['n=in.(10,0.1)', [3, 6]],
    ['n=is.not_null', [1, 2, 3, 5, 6]],
    ['t=eq.apple', [1]],
    ['t=neq.apple', [2, 3, 5, 6]],
    ['t=gt.b', [2, 3]],
    ['t=lt.apple', [5, 6]],
    ['t=gte.banana', [2, 3]],
    ['t=lte.Apple', [5, 6]],
    ['t=in.(apple,cherry)', [1, 3]],
    ['t=is.null', [4]],
    ['ok=eq.true', [1, 4, 6]],
    ['ok=eq.false', [2, 5]],
    ['ok=neq.true', [2, 5]],
    ['ok=is.null', [3]],
    ['ok=in.(false)', [2, 5]],
    ['ts=eq.2024-01-01T00:00:00Z', [1, 5]],
    ['ts=neq.2024-01-01T00:00:00Z', [2, 4, 6]],
    ['ts=lt.2024-01-01T00:00:00Z', [4]],
    ['ts=lte.2024-01-01 00:00:00+00', [1, 4, 5]],
    ['ts=gt.2024-01-01T00:00:00Z', [2, 6]],
    ['ts=gte.2024-06-01T12:00:00Z', [2, 6]],
    ['ts=in.(2024-06-01T14:00:00+02:00,2000-01-01T00:00:00Z)', [2]],
    ['ts=is.null', [3]],
    ['i=gte.2&ok=eq.false', [2, 5]],
    ['n=eq.1.5&t=eq.apple', [1]],
    ['b=eq.10&ts=is.not_null', [1, 5]],
    ['i=is.not_null&t=lt.b&ok=eq.true', [1, 6]],
  ];
  const c = await connectWs(t, wsUrl);
  await Promise.all(cases.map(([filter], k) => c.subscribe({ id: `f${k}`, table: 'f', filter })));
  await c.subscribe({ id: 'all', table: 'f' });
  const rows = [
    "(1, 1, 10, 1.5, 'apple', true, '2024-01-01T00:00:00Z')",
    "(2, 2, 9007199254740993, 2.25, 'banana', false, '2024-06-01T12:00:00Z')",
    "(3, 3, -5, 10, 'cherry', null, null)",
    "(4, null, null, null, null, true, '2023-12-31T23:59:59.999999Z')",
    "(5, 5, 10, 1.50, 'Apple', false, '2024-01-01T01:00:00+01:00')",
    "(6, -1, 0, 0.1, '', true, '2025-01-01T00:00:00Z')",
  ];
  // Two rows per transaction, so some positions share a commit LSN.
  for (let i = 0; i < rows.length; i += 2) await query(url, `insert into f values ${rows[i]}, ${rows[i + 1]}`);
  await barrier(c);

  t.same(ids(c.changes('all')), [1, 2, 3, 4, 5, 6], 'the unfiltered subscription got every row');
  t.same(c.changes('all')[1].new?.b, '9007199254740993', 'an int8 beyond 2^53 arrives as text');
  const posOf = new Map(c.changes('all').map((ch) => [ch.new?.id, ch.pos]));
  cases.forEach(([filter, expected], k) => {
    const got = c.changes(`f${k}`);
    t.same(ids(got), expected, `${filter} → ${JSON.stringify(expected)}`);
    if (got.some((ch) => ch.pos !== posOf.get(ch.new?.id))) t.fail(`${filter}: positions equal to those of the unfiltered subscription`);
  });

  // Updates and deletes are matched on the new and the old row (also through the eq index).
  await c.subscribe({ id: 'p30', table: 'f', filter: 'i=eq.30' });
  const n0 = new Map(cases.map((_, k) => [`f${k}`, c.changes(`f${k}`).length]));
  await query(url, 'update f set i = 30 where id = 3');
  await query(url, 'delete from f where id = 2');
  await barrier(c);
  const later = (sub: string) => c.changes(sub).slice(n0.get(sub) ?? 0).map((ch) => `${ch.op}${(ch.new ?? ch.old)?.id}`);
  const k = (filter: string) => `f${cases.findIndex(([f]) => f === filter)}`;
  t.same(later(k('i=eq.3')), ['leave3'], 'i=eq.3: the update to 30 is a leave');
  t.same(later('p30'), ['update3'], 'i=eq.30: the update to 30 enters');
  t.same(later(k('i=gt.2')), ['update3'], 'i=gt.2: update, and the delete of a row with i=2 is not for it');
  t.same(later(k('i=neq.3')), ['update3', 'delete2'], 'i=neq.3: update entering, delete');
  t.same(later(k('b=eq.9007199254740993')), ['delete2'], 'b=eq.9007199254740993: the delete, matched on the old row');
  t.same(later(k('ts=is.null')), ['update3'], 'ts=is.null: update of a column it does not filter on');
});

t.test('events, ops with new/old/changed, leave, truncate', async (t) => {
  const c = await connectWs(t, wsUrl);
  await c.subscribe({ id: 'all', table: 'ev' });
  await c.subscribe({ id: 'ins', table: 'ev', events: ['insert'] });
  await c.subscribe({ id: 'upd', table: 'ev', events: ['update'] });
  await c.subscribe({ id: 'del', table: 'ev', events: ['delete'] });
  await c.subscribe({ id: 'open', table: 'ev', filter: 'status=eq.open' });
  await c.subscribe({ id: 'openIns', table: 'ev', filter: 'status=eq.open', events: ['insert'] });
  await c.subscribe({ id: 'openUpd', table: 'ev', filter: 'status=eq.open', events: ['update'] });
  await c.subscribe({ id: 'openDel', table: 'ev', filter: 'status=eq.open', events: ['delete'] });

  await query(url, "insert into ev values (1, 'open', 'a')");
  await query(url, "insert into ev values (2, 'done', 'b')");
  await query(url, "update ev set title = 'a2' where id = 1"); // open stays open
  await query(url, "update ev set status = 'done' where id = 1"); // leaves "open"
  await query(url, "update ev set status = 'open' where id = 2"); // enters "open": an update
  await query(url, 'delete from ev where id = 2'); // an open row
  await query(url, 'delete from ev where id = 1'); // a done row
  await query(url, "insert into ev values (3, 'open', 'c')");
  await query(url, 'truncate ev');
  await barrier(c);

  const ops = (sub: string) => c.changes(sub).map((ch) => `${ch.op}${ch.op === 'truncate' ? '' : (ch.new ?? ch.old)?.id}`);
  t.same(ops('all'), ['insert1', 'insert2', 'update1', 'update1', 'update2', 'delete2', 'delete1', 'insert3', 'truncate'], 'no events: everything');
  t.same(ops('ins'), ['insert1', 'insert2', 'insert3'], 'events [insert]');
  t.same(ops('upd'), ['update1', 'update1', 'update2'], 'events [update]');
  t.same(ops('del'), ['delete2', 'delete1', 'truncate'], 'events [delete]: deletes and truncate');
  t.same(ops('open'), ['insert1', 'update1', 'leave1', 'update2', 'delete2', 'insert3', 'truncate'], 'filter status=eq.open: leave when moved out');
  t.same(ops('openIns'), ['insert1', 'insert3'], 'filter + events [insert]: no leave');
  t.same(ops('openUpd'), ['update1', 'leave1', 'update2'], 'filter + events [update]: updates and leave');
  t.same(ops('openDel'), ['leave1', 'delete2', 'truncate'], 'filter + events [delete]: leave, deletes, truncate');

  const all = c.changes('all');
  t.match(all[0], { op: 'insert', table: 'public.ev', new: { id: 1, status: 'open', title: 'a' } }, 'insert: new');
  t.notOk('old' in all[0] || 'changed' in all[0], 'insert: no old, no changed');
  t.same([all[2].new, all[2].old, all[2].changed], [{ id: 1, status: 'open', title: 'a2' }, { id: 1, status: 'open', title: 'a' }, ['title']], 'update: new, old, changed');
  t.same(all[3].changed, ['status'], 'update: changed status');
  t.same(all[5].old, { id: 2, status: 'open', title: 'b' }, 'delete: old');
  t.notOk('new' in all[5] || 'changed' in all[5], 'delete: no new, no changed');
  const trunc = all[8];
  t.equal(trunc.table, 'public.ev', 'truncate: table');
  t.notOk('new' in trunc || 'old' in trunc, 'truncate: no new, no old');

  const leave = c.changes('open')[2];
  t.same(leave.old, { id: 1, status: 'open', title: 'a2' }, 'leave: old is the row as the subscriber last saw it');
  t.notOk('new' in leave || 'changed' in leave, 'leave: no new, no changed');
  t.equal(leave.pos, all[3].pos, 'leave has the position of the update');
  t.equal(c.changes('open')[3].new?.status, 'open', 'entering the filter is an update with the new row');
});

t.test('several subscriptions on one socket, 50 sockets on one table; positions', async (t) => {
  const N = 50;
  const clients = await Promise.all(Array.from({ length: N }, () => connectWs(t, wsUrl)));
  await Promise.all(clients.map((c, i) => c.subscribe({ id: `m${i}`, table: 'many' })));
  // One socket with three more subscriptions of its own.
  const multi = clients[0];
  await multi.subscribe({ id: 'even', table: 'many', filter: 'v=in.(0,2,4,6,8)' });
  await multi.subscribe({ id: 'odd', table: 'many', filter: 'v=in.(1,3,5,7,9)' });
  await multi.subscribe({ id: 'dup', table: 'many' });

  // 30 rows in 12 transactions of 1-4 rows.
  let v = 0;
  for (const size of [1, 4, 2, 3, 1, 1, 4, 2, 3, 4, 2, 3]) {
    await query(url, `insert into many (v) select x % 10 from unnest($1::int[]) x`, [Array.from({ length: size }, () => v++)]);
  }
  const want = Array.from({ length: v }, (_, i) => i + 1);
  await Promise.all(clients.map((c, i) => c.waitChanges(`m${i}`, v)));
  await barrier(multi);

  const ref = clients[0].changes('m0');
  const wrongIds = clients.map((c, i) => ({ i, got: ids(c.changes(`m${i}`)) })).filter((x) => JSON.stringify(x.got) !== JSON.stringify(want));
  const wrongPos = clients.map((c, i) => ({ i, got: c.changes(`m${i}`) })).filter((x) => x.got.some((ch, k) => ch.pos !== ref[k]?.pos));
  const allIds = wrongIds.length === 0;
  const allPos = wrongPos.length === 0;
  if (!allIds) t.comment(`wrong ids: ${JSON.stringify(wrongIds.slice(0, 3))}`);
  if (!allPos) t.comment(`sockets with other positions: ${wrongPos.map((x) => x.i).join(', ')}`);
  t.ok(allIds, `all ${N} sockets got the ${v} rows in order`);
  t.ok(allPos, 'positions are equal across sockets for the same change');
  t.same(orderViolations(ref.map((c) => c.pos)), [], 'positions strictly increasing');
  t.ok(new Set(ref.map((c) => c.pos.split(':')[0])).size === 12, 'one commit LSN per transaction');

  t.same(ids(multi.changes('dup')), want, 'second unfiltered subscription on the same socket');
  t.same(ids(multi.changes('even')), ref.filter((c) => (c.new?.v as number) % 2 === 0).map((c) => c.new?.id), 'even');
  t.same(ids(multi.changes('odd')), ref.filter((c) => (c.new?.v as number) % 2 === 1).map((c) => c.new?.id), 'odd');
  for (const s of ['dup', 'even', 'odd']) {
    const cs = multi.changes(s);
    t.same(orderViolations(cs.map((c) => c.pos)), [], `${s}: positions strictly increasing`);
    t.ok(cs.every((c) => c.pos === ref[(c.new?.id as number) - 1].pos), `${s}: same positions as m0 for the same change`);
  }
  // On one socket, messages come in position order across subscriptions.
  const onSocket = multi.changes().filter((c) => c.table === 'public.many').map((c) => c.pos);
  t.ok(onSocket.every((p, i) => i === 0 || comparePos(onSocket[i - 1], p) <= 0), 'one socket: position order across subscriptions');
  await Promise.all(clients.map((c) => c.close()));
});

t.test('progress: an idle subscriber gets a position past its last change', async (t) => {
  const c = await connectWs(t, wsUrl);
  const watcher = await connectWs(t, wsUrl);
  await c.subscribe({ id: 'a', table: 'pa' });
  await watcher.subscribe({ id: 'b', table: 'pb' });
  await query(url, "insert into pa (v) values ('x')");
  const [last] = await c.waitChanges('a', 1);
  const n0 = c.messages.length;
  const t0 = Date.now();
  for (let i = 0; i < 5; i++) await query(url, "insert into pb (v) values ('y')");
  const pb = await watcher.waitChanges('b', 5);
  const lastPb = pb[4].pos;
  const later = () => c.messages.slice(n0).filter((m) => m.type === 'progress');
  await c.waitFor(() => later().some((m) => comparePos(m.pos as string, last.pos) > 0), 3_000, 'a progress past the last change');
  const ms = Date.now() - t0;
  const p = later()[0];
  t.ok(comparePos(p.pos as string, last.pos) > 0, `progress ${p.pos} > last change ${last.pos}`);
  t.ok(ms < 3_000, `within a few progress intervals of 300 ms (${ms} ms)`);
  t.match(p.pos, POS, 'progress pos is a position');
  await c.waitFor(() => later().some((m) => comparePos(m.pos as string, lastPb) >= 0), 3_000, `a progress at or past the last pb change ${lastPb}`);
  t.pass(`a progress reaches the writes to pb (${lastPb})`);
  t.equal(c.changes('a').length, 1, 'no changes for pa meanwhile');
  t.same(orderViolations(c.ofType('progress').map((m) => m.pos as string)), [], 'progress positions strictly increase (sent only when moved)');
  t.ok(later().every((m) => comparePos(m.pos as string, last.pos) > 0), 'no progress at or before an already received change');
});

t.test('a table enabled while the daemon runs can be subscribed to at once', async (t) => {
  const c = await connectWs(t, wsUrl);
  // A miss makes the daemon reread its catalog (at most once a second)...
  await new Promise((r) => setTimeout(r, 1_100));
  const miss = await c.subscribe({ id: 'nope', table: 'no_such_table' }, { allowFailure: true });
  t.match(miss, { type: 'error', code: 'unknown_table', id: 'nope' }, 'a table that does not exist: unknown_table');
  // A table enabled right after that reread: the next miss waits for its turn and rereads.
  await table('late', 'id bigserial primary key, v text');
  const reply = await c.subscribe({ id: 'late', table: 'late' }, { allowFailure: true });
  t.equal(reply.type, 'subscribed', `a just-enabled table is subscribable (got ${JSON.stringify(reply)})`);
  // Once the throttle has passed it works: the table did exist all along.
  await new Promise((r) => setTimeout(r, 1_100));
  t.equal((await c.subscribe({ id: 'late2', table: 'late' }, { allowFailure: true })).type, 'subscribed', 'a second later it is found');
});

t.test('GET /healthz and /metrics', async (t) => {
  const base = `http://127.0.0.1:${daemon.port}`;
  const health = await fetch(`${base}/healthz`);
  t.equal(health.status, 200, 'healthz 200 while streaming');
  const notFound = await fetch(`${base}/nope`);
  t.equal(notFound.status, 404, 'other paths 404');

  const metrics = async () => {
    const res = await fetch(`${base}/metrics`);
    t.equal(res.status, 200);
    const m = new Map<string, number>();
    for (const line of (await res.text()).split('\n')) {
      const mm = /^(walcast_[a-z_]+) (\S+)$/.exec(line);
      if (mm) m.set(mm[1], Number(mm[2]));
    }
    return m;
  };
  const clients = await Promise.all([1, 2, 3].map(() => connectWs(t, wsUrl)));
  for (const [i, c] of clients.entries()) {
    await c.subscribe({ id: 'x', table: 'met' });
    await c.subscribe({ id: 'y', table: 'met', filter: `id=gt.${i}` });
  }
  let m = await metrics();
  // Earlier subtests' sockets may still be closing on the server side.
  await waitUntil(async () => (m = await metrics()).get('walcast_clients') === 3, 5_000, () => `walcast_clients ${m.get('walcast_clients')}`);
  t.equal(m.get('walcast_clients'), 3, 'walcast_clients');
  t.equal(m.get('walcast_subscriptions'), 6, 'walcast_subscriptions');
  const before = m;
  await query(url, "insert into met (v) values ('a'), ('b'), ('c'), ('d')");
  await Promise.all(clients.map(async (c, i) => {
    await c.waitChanges('x', 4);
    await c.waitChanges('y', 4 - i);
  }));
  const after = await metrics();
  const delta = (k: string) => (after.get(k) ?? NaN) - (before.get(k) ?? NaN);
  t.equal(delta('walcast_changes_in_total'), 4, 'walcast_changes_in_total +4');
  t.equal(delta('walcast_deliveries_total'), 3 * 4 + (4 + 3 + 2), 'walcast_deliveries_total + every delivery');
  const lag = after.get('walcast_slot_lag_bytes');
  t.ok(lag !== undefined && lag >= 0 && lag < 64 * 1024 * 1024, `walcast_slot_lag_bytes plausible (${lag})`);
  const hist = after.get('walcast_history_bytes');
  t.ok(hist !== undefined && hist > 0 && hist < 256 * 1024 * 1024, `walcast_history_bytes plausible (${hist})`);
  t.ok((after.get('walcast_history_bytes') ?? 0) > (before.get('walcast_history_bytes') ?? 0), 'history grew with the new transaction');
  t.equal(after.get('walcast_replication_up'), 1, 'walcast_replication_up');
  await Promise.all(clients.map((c) => c.close()));
  await waitUntil(async () => (m = await metrics()).get('walcast_clients') === 0, 5_000, () => `walcast_clients ${m.get('walcast_clients')} after closing`);
  t.equal(m.get('walcast_subscriptions'), 0, 'subscriptions gone with their sockets');
});

t.test('without a key and without --no-auth, walcast serve refuses to start', async (t) => {
  const res = await runCli(['serve', '--db', url, '--port', '0', '--slot', 'authslot'], { timeoutMs: 20_000 });
  t.equal(res.code, 1, 'exit 1, like other configuration errors');
  t.match(res.stderrLines[0], /^walcast: no key to verify client tokens with$/, 'one line says what is wrong');
  t.match(res.stderrLines[1], /^ {2}fix: pass --jwt-secret .* --jwks .* --no-auth/, 'and how to fix it');
  t.equal(res.stderrLines[2], '  code: auth_config (docs/errors.md)', 'and its code');
  t.equal(res.stderrLines.length, 3, `nothing else (${res.stderr})`);
  t.throws(() => resolveServeConfig({ db: url, port: '0' }, {}), { code: 'auth_config' }, 'resolveServeConfig throws the typed error');
});

t.test('--no-auth: auth messages are answered authenticated and change nothing', async (t) => {
  const c = await connectWs(t, `${wsUrl}?token=anything`);
  const reply = await c.request({ type: 'auth', token: 'not even a jwt' });
  t.same(Object.keys(reply).sort(), ['ref', 'type'], 'no expires_at');
  t.equal(reply.type, 'authenticated', 'authenticated');
  await c.subscribe({ id: 'na', table: 'basic' });
  t.pass('subscribe works with or without a token');
});

t.test('SIGTERM to walcast serve: clients get 1001, exit 0, slot acknowledged', async (t) => {
  const SLOT = 'sigterm';
  const proc = spawnCli(['serve', '--db', url, '--no-auth', '--port', '0', '--slot', SLOT, '--history-age', '1s'], { timeoutMs: 40_000 });
  t.teardown(() => proc.kill('SIGKILL'));
  await proc.waitFor(() => servedPort(proc.stderr) !== null, 'serving line');
  const port = servedPort(proc.stderr) as number;
  const c = await connectWs(t, `ws://127.0.0.1:${port}/ws`);
  const c2 = await connectWs(t, `ws://127.0.0.1:${port}/ws`);
  await c.subscribe({ id: 's', table: 'sg' });
  const [{ lsn: before }] = await query<{ lsn: string }>(url, 'select pg_current_wal_lsn()::text as lsn');
  for (let i = 0; i < 20; i++) await query(url, `insert into sg (v) values ('r${i}')`);
  const got = await c.waitChanges('s', 20);
  const lastCommit = parseLsn(got[got.length - 1].pos.split(':')[0]);
  // With a 1 s window, the window's start soon is the last transaction (or a later mark).
  await new Promise((r) => setTimeout(r, 2_500));

  proc.kill('SIGTERM');
  const [close1, close2, res] = await Promise.all([c.waitClose(10_000), c2.waitClose(10_000), proc.wait(15_000)]);
  t.equal(close1.code, 1001, 'subscribed client closed with 1001');
  t.equal(close2.code, 1001, 'idle client closed with 1001');
  t.equal(res.code, 0, `exit 0 (signal ${res.signal}); stderr: ${res.stderr.slice(-500)}`);
  const slot = await releasedSlot(url, SLOT);
  t.ok(slot.confirmedFlush > parseLsn(before), `confirmed_flush_lsn moved past the LSN before the writes (${before})`);
  t.ok(slot.confirmedFlush >= lastCommit, 'confirmed_flush_lsn at least the commit LSN of the last delivered transaction');
});
