// Resume anywhere in the cluster's stream (issue 13 item 4, docs/dev/cluster-plan.md §8): a node
// keeps --history-age in memory, the stream keeps more; a client resuming from a position older
// than the node's window but still in the stream gets exactly what it missed, read from the
// stream, then live changes without a gap or a duplicate at the seam. Segments are bounded per
// node; an oversized transaction in the segment and a position older than the stream get resync.
import t from 'tap';
import { resolveServeConfig, type ServeFlags } from '../../src/config.js';
import { CLUSTER_CATCHUP } from '../../src/constants.js';
import { startDaemon, type Daemon } from '../../src/daemon.js';
import { silentLogger } from '../../src/log.js';
import { migrate } from '../../src/sql/migrate.js';
import { query, sleep, waitUntil } from '../helpers/capture.js';
import { withNats } from '../helpers/nats.js';
import { withPostgres } from '../helpers/pg.js';
import { comparePos, duplicates, orderViolations, WsClient } from '../helpers/ws.js';

type Status = { window: { floor: string }; cluster: { streamCatchUps: { open: number; opened: number; waited: number } } };

t.test('catch-ups from the cluster stream', async (t) => {
  const [db, nats] = await Promise.all([withPostgres(t), withNats(t, { size: 1 })]);
  await migrate(db.url);
  await query(db.url, "create table items (id int primary key, body text); create table ticks (id serial primary key); select walcast.enable('items'); select walcast.enable('ticks')");
  const config = (flags: ServeFlags) =>
    resolveServeConfig({ db: db.url, port: '0', auth: false, nats: nats.urls, cluster: 'cu', streamReplicas: '1', streamMaxBytes: '64MiB', natsAckDelay: '0', maxTransactionBytes: '256KiB', ...flags }, {});
  const start = async (id: string, flags: ServeFlags = {}): Promise<Daemon> => {
    const d = await startDaemon(config({ nodeId: id, ...flags }), silentLogger);
    t.teardown(() => d.stop());
    return d;
  };
  const a = await start('cu-a');
  await waitUntil(() => a.cluster?.capture?.current === 'streaming', 15_000, () => 'capture streaming');
  // A node whose window is one second: what is older it reads from the stream.
  const b = await start('cu-b', { historyAge: '1s' });
  const status = async (d: Daemon) => (await (await fetch(`http://127.0.0.1:${d.port}/status`)).json()) as Status;
  const client = async (d: Daemon) => {
    const c = await WsClient.connect(`ws://127.0.0.1:${d.port}/ws`);
    t.teardown(() => c.close());
    return c;
  };
  const ids = (c: WsClient, sub: string) => c.changes(sub).map((m) => (m.new as { id: number }).id);
  const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

  // b follows both tables (its clients subscribe), so that its window holds them, then forgets
  // them after a second; rows into `ticks` keep its window moving.
  const keep = await client(b);
  await keep.subscribe({ id: 'k', table: 'items' }, { timeoutMs: 20_000 });
  await keep.subscribe({ id: 't', table: 'ticks' }, { timeoutMs: 20_000 });
  const forgets = async (what: string, pos: string) =>
    waitUntil(async () => {
      await query(db.url, 'insert into ticks default values');
      return comparePos((await status(b)).window.floor, pos) >= 0;
    }, 15_000, () => `b forgot ${what}`);

  // A position before the rows, as a client got it.
  const first = await client(a);
  const since = (await first.subscribe({ id: 'w', table: 'items' })).position as string;
  await query(db.url, 'insert into items select g, repeat(\'x\', 200) from generate_series(1, 300) g');
  await first.waitChanges('w', 300);
  const lastOld = first.changes('w')[299].pos;
  await forgets('the rows', lastOld);

  await t.test('a position older than the node\'s window but in the stream resumes exactly', async (t) => {
    const c = await client(b);
    const reply = await c.subscribe({ id: 's', table: 'items', since }, { timeoutMs: 20_000 });
    t.equal(reply.type, 'subscribed');
    await c.waitChanges('s', 300);
    await query(db.url, "insert into items values (301, 'live'), (302, 'live')");
    await c.waitChanges('s', 302);
    await sleep(300); // nothing more may come
    t.same(ids(c, 's'), range(1, 302), 'every row once, in order, then the live ones');
    t.same(duplicates(c.changes('s').map((m) => m.pos)), [], 'no position twice');
    t.same(orderViolations(c.changes('s').map((m) => m.pos)), [], 'positions strictly increasing');
    t.ok((await status(b)).cluster.streamCatchUps.opened >= 1, 'read from the stream');
  });

  await t.test('resuming from the middle of the stream: only what is after the position', async (t) => {
    const mid = first.changes('w')[149].pos; // row 150
    const c = await client(b);
    await c.subscribe({ id: 'm', table: 'items', since: mid }, { timeoutMs: 20_000 });
    await c.waitChanges('m', 152);
    await sleep(300);
    t.same(ids(c, 'm'), range(151, 302));
  });

  await t.test(`more catch-ups than segments (${CLUSTER_CATCHUP.maxSegments}) at once: each waits its turn, all exact`, async (t) => {
    const n = CLUSTER_CATCHUP.maxSegments * 2 + 3;
    const clients = await Promise.all(Array.from({ length: n }, () => WsClient.connect(`ws://127.0.0.1:${b.port}/ws`)));
    t.teardown(() => Promise.all(clients.map((c) => c.close())));
    const before = (await status(b)).cluster.streamCatchUps;
    await Promise.all(clients.map((c) => c.subscribe({ id: 'x', table: 'items', since }, { timeoutMs: 60_000 })));
    await Promise.all(clients.map((c) => c.waitChanges('x', 302, 30_000)));
    for (const c of clients) if (ids(c, 'x').join() !== range(1, 302).join()) t.fail(`a client got ${ids(c, 'x').length} rows`);
    t.pass(`${n} clients got rows 1..302 exactly`);
    const after = (await status(b)).cluster.streamCatchUps;
    t.equal(after.opened - before.opened, n, 'one segment each');
    t.equal(after.open, 0, 'all closed once caught up');
    t.ok(after.waited > before.waited, 'some waited for a segment');
  });

  await t.test('an oversized transaction inside the segment: resync transaction_too_large', async (t) => {
    const w = await client(a);
    const before = (await w.subscribe({ id: 'o', table: 'items' })).position as string;
    // Past --max-transaction-bytes (256 KiB): published as one oversize marker.
    await query(db.url, "insert into items select g, repeat('y', 2000) from generate_series(1001, 1300) g");
    await query(db.url, "insert into items values (1400, 'after')");
    await w.waitFor(() => w.messages.some((m) => m.type === 'resync') || ids(w, 'o').includes(1400), 15_000, 'the marker reached a live client');
    await forgets('the big transaction', before);
    const c = await client(b);
    const reply = await c.subscribe({ id: 'big', table: 'items', since: before }, { timeoutMs: 20_000, allowFailure: true });
    t.match(reply, { type: 'resync', reason: 'transaction_too_large' });
  });

  await t.test('a position older than the stream: resync position_outside_window', async (t) => {
    // A stream of its own that keeps little: its first rows are gone from it.
    const s = await start('tiny-cu', { cluster: 'tinycu', slot: 'tinycu', streamMaxBytes: '32KiB', historyAge: '1s' });
    await waitUntil(() => s.cluster?.capture?.current === 'streaming', 15_000, () => 'tiny capture streaming');
    const w = await client(s);
    const early = (await w.subscribe({ id: 'e', table: 'items' })).position as string;
    type Tiny = Status & { cluster: { stream: { firstSeq: number } | null } };
    for (let i = 0; i < 40; i++) await query(db.url, `insert into items select g, repeat('z', 300) from generate_series(${3000 + i * 10}, ${3009 + i * 10}) g`);
    await waitUntil(async () => {
      const st = (await status(s)) as Tiny;
      return (st.cluster.stream?.firstSeq ?? 0) > 1 && comparePos(st.window.floor, early) > 0;
    }, 15_000, () => 'the stream and the window both dropped the first rows');
    const c = await client(s);
    const reply = await c.subscribe({ id: 'e', table: 'items', since: early }, { timeoutMs: 20_000, allowFailure: true });
    t.match(reply, { type: 'resync', reason: 'position_outside_window' });
  });
});
