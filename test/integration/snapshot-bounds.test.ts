// Snapshots within bounds (issue #14): many at once stay within the configured turns and a bounded
// amount of memory; a client that does not read its snapshot is closed with 4008 without holding
// back anyone else, and may start again; unsubscribe and close cancel a waiting or running
// snapshot and free its turn; a flood of snapshot subscribes gets an answer for each and leaves
// the daemon responsive; refusals and odd filter literals give the right rows or a clear error.
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import t from 'tap';
import WebSocket from 'ws';
import { resolveServeConfig } from '../../src/config.js';
import { startDaemon } from '../../src/daemon.js';
import { silentLogger } from '../../src/log.js';
import type { SnapshotStats } from '../../src/snapshot/snapshots.js';
import { query, waitUntil } from '../helpers/capture.js';
import { startTestDaemon } from '../helpers/daemon.js';
import { hsToken, SECRET } from '../helpers/tokens.js';
import { WsClient, type Msg } from '../helpers/ws.js';

const BULK_ROWS = 20_000; // ~200 bytes of JSON each
const BIG_ROWS = 20_000; // ~1 KB each: 20 MB, far more than the socket buffers of a client that stops reading
const SMALL_ROWS = 300;

const d = await startTestDaemon(
  t,
  `create table bulk (id bigserial primary key, n int not null, body text not null);
   create table big (id bigserial primary key, body text not null);
   create table small (id bigserial primary key, body text not null);
   create table secret (id bigserial primary key, body text);
   create table mine (id bigserial primary key, owner text, body text);
   create table odd (id bigserial primary key, t text, k int, n numeric);
   select walcast.enable('bulk'), walcast.enable('big'), walcast.enable('small'), walcast.enable('secret'), walcast.enable('mine'), walcast.enable('odd');
   insert into walcast.casbin_rule (ptype, v0, v1, v2, v3, v4) values
     ('p', '*', 'table', 'public.bulk', 'read', 'true'),
     ('p', '*', 'table', 'public.big', 'read', 'true'),
     ('p', '*', 'table', 'public.small', 'read', 'true'),
     ('p', '*', 'table', 'public.odd', 'read', 'true'),
     ('p', '*', 'table', 'public.mine', 'read', 'r.obj.row.owner == r.sub.id');
   insert into bulk (n, body) select g, repeat(chr(97 + g % 26), 160) from generate_series(1, ${BULK_ROWS}) g;
   insert into big (body) select repeat(md5(g::text), 31) from generate_series(1, ${BIG_ROWS}) g;
   insert into small (body) select 'small ' || g from generate_series(1, ${SMALL_ROWS}) g;
   insert into secret (body) values ('no rule reads this');
   insert into mine (owner, body) select 'someone else', 'not yours ' || g from generate_series(1, 50) g;`,
  { progressInterval: '200ms' },
  { snapshots: { maxConcurrent: 3, maxPerConnection: 1, maxQueued: 40 } },
);

/** The daemon's Snapshots (their figures). */
const snaps = d.daemon.snapshots;
const stats = (): SnapshotStats => snaps.stats;
const until = (cond: () => boolean, what: string, ms = 20_000) => waitUntil(cond, ms, () => `timed out waiting for ${what}; stats ${JSON.stringify(stats())}`);

interface Result {
  end: Msg;
  rows: number;
  idSum: number;
  frames: number;
  /** Frames of this subscription that came after its end (must be none). */
  after: number;
}

/**
 * A client that counts snapshot rows instead of keeping them (20 clients keeping 20k rows each
 * would be the test's memory, not the daemon's).
 */
class Lean {
  private readonly pending = new Map<string, { r: Result; done?: (r: Result) => void }>();
  closeCode: number | null = null;
  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      const text = data.toString();
      // Snapshot frames are counted from the text (id by id), never parsed into row objects.
      const snap = text.startsWith('{"type":"snapshot","sub":"') ? text.slice(26, text.indexOf('"', 26)) : null;
      const m = snap === null ? (JSON.parse(text) as Msg) : ({ type: 'snapshot', sub: snap } as Msg);
      const key = String(m.type === 'subscribed' ? m.id : m.type === 'error' ? m.id : m.sub);
      const p = this.pending.get(key);
      if (!p) return;
      if (p.done === undefined) {
        if (m.type === 'snapshot') p.r.after++;
        return;
      }
      if (m.type === 'snapshot') {
        p.r.frames++;
        for (let at = text.indexOf('{"id":'); at >= 0; at = text.indexOf('{"id":', at + 6)) {
          p.r.rows++;
          p.r.idSum += parseInt(text.slice(at + 6, at + 26), 10);
        }
      } else if (m.type === 'subscribed' || m.type === 'error' || m.type === 'resync') {
        p.r.end = m;
        const done = p.done;
        p.done = undefined;
        done(p.r);
      }
    });
    ws.on('close', (code) => {
      this.closeCode = code;
      for (const p of this.pending.values()) p.done?.({ ...p.r, end: { type: 'closed', code } });
    });
  }

  static async connect(port: number, user: string): Promise<Lean> {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws?token=${await hsToken({ sub: user })}`);
    await new Promise<void>((resolve, reject) => {
      ws.once('message', () => resolve()); // welcome
      ws.once('error', reject);
    });
    const c = new Lean(ws);
    t.teardown(() => c.ws.terminate());
    return c;
  }

  snapshot(id: string, table: string, extra: Record<string, unknown> = {}): Promise<Result> {
    return new Promise((resolve) => {
      this.pending.set(id, { r: { end: { type: 'none' }, rows: 0, idSum: 0, frames: 0, after: 0 }, done: resolve });
      this.ws.send(JSON.stringify({ type: 'subscribe', id, table, snapshot: true, ...extra }));
    });
  }

}

const sumTo = (n: number) => (n * (n + 1)) / 2;

/** A full garbage collection (node started without --expose-gc: the flag is set at run time). */
v8.setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** A snapshot on a WsClient: everything of it up to its end (subscribed, error, resync). */
async function snapshotOf(c: WsClient, msg: Record<string, unknown>, timeoutMs = 30_000): Promise<{ rows: Record<string, unknown>[]; end: Msg; from: number }> {
  const ref = `r-${String(msg.id)}`;
  const from = c.messages.length;
  c.send({ type: 'subscribe', ref, snapshot: true, ...msg });
  const end = await c.next((m) => (m.type === 'subscribed' && m.id === msg.id) || (m.type === 'error' && m.ref === ref) || (m.type === 'resync' && m.sub === msg.id), timeoutMs, `the end of snapshot ${String(msg.id)}`);
  const rows = c.messages.slice(from, c.messages.indexOf(end)).filter((m) => m.type === 'snapshot' && m.sub === msg.id).flatMap((m) => m.rows as Record<string, unknown>[]);
  return { rows, end, from };
}

async function pingPong(c: WsClient, timeoutMs = 10_000): Promise<Msg> {
  return c.request({ type: 'ping' }, timeoutMs);
}

t.test('20 concurrent snapshots of a 20k-row table: all complete, within the turns and bounded memory', async (t) => {
  const before = stats();
  gc(); // the baseline without the garbage of setting up
  const rss0 = process.memoryUsage.rss();
  let peak = rss0;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 20);
  const started = Date.now();
  try {
    const clients = await Promise.all(Array.from({ length: 10 }, (_, i) => Lean.connect(d.daemon.port, `user${i}`)));
    const results = await Promise.all(clients.flatMap((c, i) => [c.snapshot(`a${i}`, 'bulk'), c.snapshot(`b${i}`, 'bulk')]));
    const took = Date.now() - started;
    for (const [i, r] of results.entries()) {
      t.equal(r.end.type, 'subscribed', `snapshot ${i} ends subscribed`);
      t.equal(r.rows, BULK_ROWS, `snapshot ${i}: every row`);
      t.equal(r.idSum, sumTo(BULK_ROWS), `snapshot ${i}: each row once (sum of ids)`);
      t.equal(r.after, 0, `snapshot ${i}: no snapshot frame after subscribed`);
    }
    const after = stats();
    t.ok(after.maxRunning <= 3, `never more than maxConcurrent (3) read at once (most: ${after.maxRunning})`);
    t.equal(after.done - before.done, 20, 'the 20 counted done');
    t.equal(after.rows - before.rows, 20 * BULK_ROWS, 'and their rows');
    await until(() => stats().running === 0 && stats().queued === 0, 'no snapshot running or waiting');
    const growth = (peak - rss0) / 2 ** 20;
    t.comment(`20 × ${BULK_ROWS} rows in ${took} ms; RSS ${(rss0 / 2 ** 20).toFixed(0)} MB before, peak +${growth.toFixed(1)} MB; maxRunning ${after.maxRunning}`);
    // What the daemon may hold by design: 3 snapshots × (highWater 1 MB unsent + a 64 KB frame +
    // a 500-row batch decoded) plus the 20 clients' parsing garbage in this same process. 20
    // snapshots × 4 MB = 80 MB were sent: a daemon holding whole snapshots (or the unsent
    // frames of all 20) would pass the bound; the clients here keep no rows.
    t.ok(growth < 150, `RSS grew by ${growth.toFixed(1)} MB (< 150 MB)`);
  } finally {
    clearInterval(sampler);
  }
});

t.test('a client that stops reading its snapshot is closed 4008; another one of the same table completes; it may start again', async (t) => {
  // Its own daemon on the same database: a short drain timeout and a small high-water mark.
  const slowDaemon = await startDaemon(resolveServeConfig({ db: d.url, port: '0', jwtSecret: SECRET, slot: 'bounds_slow' }, {}), silentLogger, {
    snapshots: { drainTimeoutMs: 1_500, highWater: 64 * 1024 },
  });
  t.teardown(() => slowDaemon.stop());
  const slowSnaps = slowDaemon.snapshots;
  const slow = await WsClient.connect(`ws://127.0.0.1:${slowDaemon.port}/ws?token=${await hsToken({ sub: 'slowpoke' })}`);
  t.teardown(() => slow.close());
  slow.pause();
  slow.send({ type: 'subscribe', id: 'slow', table: 'big', snapshot: true });
  const fast = await Lean.connect(slowDaemon.port, 'speedy');
  const full = await fast.snapshot('fast', 'big');
  t.equal(full.end.type, 'subscribed', 'the other client: subscribed');
  t.equal(full.rows, BIG_ROWS, 'with every row');
  await waitUntil(() => slowSnaps.stats.cancelled >= 1, 20_000, () => `the slow snapshot to be given up; ${JSON.stringify(slowSnaps.stats)}`);
  slow.resume();
  const close = await slow.waitClose(20_000);
  t.equal(close.code, 4008, `closed 4008 (${close.reason})`);
  t.notOk(slow.messages.some((m) => m.type === 'subscribed'), 'never subscribed');
  const got = slow.messages.filter((m) => m.type === 'snapshot').reduce((n, m) => n + (m.rows as unknown[]).length, 0);
  t.ok(got < BIG_ROWS, `it had read only part of the rows (${got})`);
  t.equal(slowSnaps.stats.running, 0, 'its turn is free');
  const again = await Lean.connect(slowDaemon.port, 'slowpoke');
  const retry = await again.snapshot('slow', 'big');
  t.equal(retry.end.type, 'subscribed', 'reconnected: subscribed');
  t.equal(retry.rows, BIG_ROWS, 'with every row');
  t.equal(retry.idSum, sumTo(BIG_ROWS), 'each once');
});

t.test('unsubscribe cancels a waiting or a running snapshot; closing the connection frees its turn', async (t) => {
  const base = stats();
  // Three clients that stop reading hold the three turns (their snapshots wait for their sockets).
  const holders: WsClient[] = [];
  for (let i = 0; i < 3; i++) {
    const h = await d.as(`holder${i}`);
    h.pause();
    h.send({ type: 'subscribe', id: `hold${i}`, ref: `hold${i}`, table: 'big', snapshot: true });
    holders.push(h);
  }
  await until(() => stats().running === 3, 'the three holders running');

  // Waiting: unsubscribed, gone from the queue, never subscribed.
  const w = await d.as('waiter');
  w.send({ type: 'subscribe', id: 'waiting', ref: 'waiting', table: 'small', snapshot: true });
  await until(() => stats().queued === 1, 'the waiting snapshot queued');
  const unsub = await w.request({ type: 'unsubscribe', id: 'waiting' });
  t.match(unsub, { type: 'unsubscribed', id: 'waiting' }, 'a waiting snapshot: unsubscribed');
  await until(() => stats().queued === 0, 'the queue empty');
  t.equal(stats().cancelled - base.cancelled, 1, 'counted cancelled');

  // Closing a holder's connection mid-snapshot frees its turn: another snapshot runs.
  holders[0].terminate();
  await until(() => stats().running === 2 && stats().cancelled - base.cancelled === 2, "the closed holder's turn freed");
  const later = await snapshotOf(w, { id: 'later', table: 'small' });
  t.equal(later.end.type, 'subscribed', 'a later snapshot runs in the freed turn');
  t.equal(later.rows.length, SMALL_ROWS, 'with every row');
  t.notOk(w.messages.some((m) => (m.type === 'subscribed' && m.id === 'waiting') || (m.type === 'snapshot' && m.sub === 'waiting')), 'nothing ever came of the cancelled one');

  // Running: the unsubscribe is sent while the holder does not read; once it reads again:
  // unsubscribed, and no snapshot frame after it, never subscribed.
  const h = holders[1];
  h.send({ type: 'unsubscribe', id: 'hold1', ref: 'unhold1' });
  await until(() => stats().running === 1, 'the running snapshot cancelled');
  h.resume();
  const u = await h.next((m) => m.ref === 'unhold1', 20_000, 'the reply to the unsubscribe');
  t.match(u, { type: 'unsubscribed', id: 'hold1' }, 'a running snapshot: unsubscribed');
  await pingPong(h);
  const at = h.messages.indexOf(u);
  t.notOk(h.messages.slice(at).some((m) => m.type === 'snapshot'), 'no snapshot frame after unsubscribed');
  t.notOk(h.messages.some((m) => m.type === 'subscribed' || m.type === 'change'), 'never subscribed');
  t.ok(h.messages.slice(0, at).some((m) => m.type === 'snapshot' && m.sub === 'hold1'), 'it had been sending rows (it was running)');
  t.equal(stats().cancelled - base.cancelled, 3, 'counted cancelled');

  holders[2].terminate();
  await until(() => stats().running === 0 && stats().queued === 0, 'every turn free');
  // Nothing left open in the database: cancelled snapshots rolled back.
  await waitUntil(
    async () => (await query<{ n: number }>(d.url, "select count(*)::int as n from pg_stat_activity where state like 'idle in transaction%' or query like '%walcast_snapshot%' and state = 'active' and pid <> pg_backend_pid()"))[0].n === 0,
    10_000,
    () => 'the cancelled snapshots to end their transactions',
  );
  t.pass('no snapshot transaction left open');
});

t.test('a flood of 200 snapshot subscribes on one connection: each answered, the daemon stays responsive', async (t) => {
  const base = stats();
  const flood = await d.as('flooder');
  const other = await d.as('bystander');
  const ids = Array.from({ length: 200 }, (_, i) => `f${i}`);
  for (const id of ids) flood.send({ type: 'subscribe', id, ref: id, table: 'small', snapshot: true });
  const pong = await pingPong(other, 20_000);
  t.equal(pong.type, 'pong', 'another client is answered during the flood');
  const open = () => ids.filter((id) => !flood.messages.some((m) => (m.type === 'subscribed' && m.id === id) || (m.type === 'error' && m.ref === id)));
  await flood.waitFor(() => open().length === 0, 60_000, `an answer to each subscribe (${open().length} left)`);
  const ends = new Map<string, Msg[]>();
  for (const m of flood.messages) {
    const id = m.type === 'subscribed' ? (m.id as string) : m.type === 'error' ? (m.ref as string) : null;
    if (id) ends.set(id, [...(ends.get(id) ?? []), m]);
  }
  const problems: string[] = [];
  let subscribed = 0;
  const codes = new Map<string, number>();
  for (const id of ids) {
    const e = ends.get(id) ?? [];
    if (e.length !== 1) problems.push(`${id}: ${e.length} answers`);
    const rows = flood.messages.filter((m) => m.type === 'snapshot' && m.sub === id).reduce((n, m) => n + (m.rows as unknown[]).length, 0);
    if (e[0]?.type === 'subscribed') {
      subscribed++;
      if (rows !== SMALL_ROWS) problems.push(`${id}: subscribed with ${rows} rows`);
    } else {
      const code = String(e[0]?.code);
      codes.set(code, (codes.get(code) ?? 0) + 1);
      if (code !== 'limit_exceeded') problems.push(`${id}: error ${code}`);
      if (rows !== 0) problems.push(`${id}: refused, yet ${rows} rows`);
    }
  }
  t.same(problems, [], 'each subscribe: its rows then subscribed, or limit_exceeded with no row');
  t.ok(subscribed > 0 && subscribed <= 100, `at most maxSubscriptions (100) subscribed: ${subscribed}; refused ${JSON.stringify(Object.fromEntries(codes))}`);
  t.equal(subscribed + (codes.get('limit_exceeded') ?? 0), 200, 'all 200 answered');
  t.ok(stats().maxRunning <= 3, 'still within the turns');
  t.equal(stats().done - base.done, subscribed, 'every accepted snapshot done');
  t.equal((await pingPong(flood)).type, 'pong', 'the flooding connection still answers');
  await until(() => stats().running === 0 && stats().queued === 0, 'nothing left running');
});

t.test('a table the subscriber may not read: forbidden, no row; one whose rows are all others\': subscribed, empty', async (t) => {
  const c = await d.as('alice');
  const s = await snapshotOf(c, { id: 'secret', table: 'secret' });
  t.match(s.end, { type: 'error', code: 'forbidden', id: 'secret' }, 'forbidden');
  t.notOk(c.messages.some((m) => m.type === 'snapshot' && m.sub === 'secret'), 'not a row');
  const m = await snapshotOf(c, { id: 'mine', table: 'mine' });
  t.equal(m.end.type, 'subscribed', 'a table with a rule that may allow: subscribed');
  t.same(m.rows, [], 'but none of the rows is hers');
  await query(d.url, "insert into mine (owner, body) values ('alice', 'hers'), ('bob', 'his')");
  const [ch] = await c.waitChanges('mine', 1);
  t.match(ch, { op: 'insert', new: { owner: 'alice', body: 'hers' } }, 'her row comes live');
});

t.test('odd filter literals: the right rows (snapshot and changes agree), or bad_filter; never a crash', async (t) => {
  const VALUES: [string | null, number, string][] = [
    ['a', 1, '0.5'], ['a,b', 2, '1'], ['c"d', 3, '1.5'], ['e\\f', 4, '2'], ['NULL', 5, '2.5'], [null, 6, '3'],
    ['\uFFFD', 7, '3.5'], ['', 8, '4'], [' spaced ', 9, '4.5'], ['Äpfel', 10, '5'], ['ünï', 11, '5.5'],
  ];
  const insertAll = () => query(d.url, `insert into odd (t, k, n) select * from unnest($1::text[], $2::int[], $3::numeric[])`, [VALUES.map((v) => v[0]), VALUES.map((v) => v[1]), VALUES.map((v) => v[2])]);
  await insertAll();
  type Row = { id: number; t: string | null; k: number; n: string };
  const hundred = Array.from({ length: 100 }, (_, i) => i + 1);
  const cases: { id: string; filter: string; want: ((r: Row) => boolean) | 'bad_filter' | 'refused' }[] = [
    { id: 'nul', filter: 't=eq.x\u0000y', want: () => false },
    { id: 'nul-in', filter: 't=in.(a,"\u0000")', want: (r) => r.t === 'a' },
    { id: 'lone-surrogate', filter: 't=eq.\uD800', want: () => false },
    { id: 'replacement', filter: 't=eq.\uFFFD', want: (r) => r.t === '\uFFFD' },
    { id: 'quoted-in', filter: 't=in.("a,b","c\\"d","e\\\\f",NULL)', want: (r) => ['a,b', 'c"d', 'e\\f', 'NULL'].includes(r.t as string) },
    { id: 'empty', filter: 't=eq.', want: (r) => r.t === '' },
    { id: 'spaces', filter: 't=eq. spaced ', want: (r) => r.t === ' spaced ' },
    { id: 'in-100', filter: `k=in.(${hundred.join(',')})`, want: (r) => r.k >= 1 && r.k <= 100 },
    { id: 'in-101', filter: `k=in.(${[...hundred, 101].join(',')})`, want: 'bad_filter' },
    { id: 'in-empty', filter: 'k=in.()', want: () => false },
    { id: 'int8-overflow', filter: 'id=eq.99999999999999999999', want: 'bad_filter' },
    { id: 'int8-min', filter: 'id=gt.-9223372036854775808', want: () => true },
    { id: 'plus-zero', filter: 'k=eq.+01', want: (r) => r.k === 1 },
    { id: 'exponent', filter: 'n=eq.1e0', want: (r) => Number(r.n) === 1 },
    { id: 'long', filter: `t=eq.${'x'.repeat(2000)}`, want: () => false },
    // Past the filter's length limit the message itself is refused (bad_request, docs/PROTOCOL.md §5).
    { id: 'too-long', filter: `t=eq.${'x'.repeat(2100)}`, want: 'refused' },
    { id: 'text-neq', filter: 't=neq.a', want: (r) => r.t !== null && r.t !== 'a' },
    // Text order is by code unit (C), whatever the database's collation: Ä and ü sort after b.
    { id: 'text-gt', filter: 't=gt.b', want: (r) => r.t !== null && r.t > 'b' },
    { id: 'not-int', filter: 'k=eq.1_000', want: 'bad_filter' },
  ];
  const c = await d.as('oddity');
  const started: { id: string; from: number; end: Msg }[] = [];
  for (const k of cases) {
    const s = await snapshotOf(c, { id: k.id, table: 'odd', filter: k.filter });
    started.push({ id: k.id, from: s.from, end: s.end });
    if (k.want === 'bad_filter') t.match(s.end, { type: 'error', code: 'bad_filter', id: k.id }, `${k.id}: bad_filter`);
    else if (k.want === 'refused') t.match(s.end, { type: 'error', code: /^bad_(request|filter)$/, id: k.id }, `${k.id}: refused (${String(s.end.code)})`);
    else t.equal(s.end.type, 'subscribed', `${k.id}: subscribed (${JSON.stringify(s.end).slice(0, 200)})`);
  }
  await snapshotOf(c, { id: 'all', table: 'odd' });
  // The same values again, now as changes; then a marker seen by 'all': everything before it arrived.
  await insertAll();
  await query(d.url, "update odd set t = 'a' where k = 3 and id = (select max(id) from odd where k = 3)"); // c"d becomes a
  await query(d.url, 'delete from odd where id = (select min(id) from odd where k = 2)'); // an a,b goes
  await query(d.url, "insert into odd (t, k) values ('marker', -1)");
  await c.waitFor(() => c.changes('all').some((m) => m.new?.t === 'marker'), 20_000, 'the marker');
  const final = (await query<{ id: string; t: string | null; k: number; n: string }>(d.url, 'select id::text, t, k, n::text from odd')).map((r) => ({ ...r, id: Number(r.id) }));
  for (const k of cases) {
    if (typeof k.want !== 'function') {
      t.notOk(c.messages.some((m) => (m.type === 'snapshot' || m.type === 'change') && m.sub === k.id), `${k.id}: refused, nothing sent`);
      continue;
    }
    const want = final.filter(k.want).map((r) => r.id).sort((a, b) => a - b);
    const held = new Map<number, unknown>();
    const s = started.find((x) => x.id === k.id)!;
    for (const m of c.messages.slice(s.from)) {
      if (m.type === 'snapshot' && m.sub === k.id) for (const r of m.rows as Row[]) held.set(Number(r.id), r);
      if (m.type === 'change' && m.sub === k.id) {
        const ch = m as unknown as { op: string; new?: Row; old?: Row };
        if (ch.op === 'insert' || ch.op === 'update') held.set(Number(ch.new!.id), ch.new);
        else held.delete(Number(ch.old!.id));
      }
    }
    t.same([...held.keys()].sort((a, b) => a - b), want, `${k.id}: snapshot + changes = the rows matching ${JSON.stringify(k.filter.slice(0, 60))}`);
  }
  t.equal((await pingPong(c)).type, 'pong', 'the daemon still answers');
});
