// Interest routing (issue 13 item 2, docs/dev/cluster-plan.md §5–§6): a node receives only the
// tables its clients subscribe to — measured by NATS itself (/connz, per named connection) —
// and still hands its clients every change of them once, in order, including a subscription
// made while rows are being written (the seam between the stream and the node's feed).
import t from 'tap';
import { resolveServeConfig, type ServeFlags } from '../../src/config.js';
import { startDaemon, type Daemon } from '../../src/daemon.js';
import { createLogger, silentLogger } from '../../src/log.js';
import { migrate } from '../../src/sql/migrate.js';
import { query, sleep, waitUntil } from '../helpers/capture.js';
import { withNats } from '../helpers/nats.js';
import { withPostgres } from '../helpers/pg.js';
import { comparePos, duplicates, orderViolations, WsClient } from '../helpers/ws.js';

type Conn = { name?: string; out_msgs: number; out_bytes: number; subscriptions_list?: string[] };

t.test('interest routing', async (t) => {
  const [db, nats] = await Promise.all([withPostgres(t), withNats(t, { size: 1 })]);
  await migrate(db.url);
  await query(db.url, "create table ta (id int primary key, body text); create table tb (id int primary key, body text); select walcast.enable('ta'); select walcast.enable('tb')");
  const config = (flags: ServeFlags) =>
    resolveServeConfig({ db: db.url, port: '0', auth: false, nats: nats.urls, cluster: 'rt', streamReplicas: '1', streamMaxBytes: '64MiB', natsAckDelay: '0', ...flags }, {});
  const start = async (id: string): Promise<Daemon> => {
    const d = await startDaemon(config({ nodeId: id }), process.env.CLUSTER_TEST_LOG ? createLogger(process.env.CLUSTER_TEST_LOG).child({ node: id }) : silentLogger);
    t.teardown(() => d.stop());
    return d;
  };
  const a = await start('rt-a');
  await waitUntil(() => a.cluster?.capture?.current === 'streaming', 15_000, () => 'capture streaming');
  const [b, c] = [await start('rt-b'), await start('rt-c')];
  for (const d of [b, c]) await waitUntil(() => d.cluster?.following === true, 15_000, () => `${d.cluster?.nodeId} following`);
  const client = async (d: Daemon) => {
    const w = await WsClient.connect(`ws://127.0.0.1:${d.port}/ws`);
    t.teardown(() => w.close());
    return w;
  };
  const ids = (w: WsClient, sub: string) => w.changes(sub).map((m) => (m.new as { id: number }).id);
  const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
  const conn = async (node: string): Promise<Conn> => {
    const z = await nats.servers[0].monitor<{ connections: Conn[] }>('connz?subs=1&limit=1024');
    const found = z.connections.find((x) => x.name === `walcast ${node}`);
    if (!found) throw new Error(`no connection named walcast ${node}`);
    return found;
  };

  const streamBytes = async (): Promise<number> => {
    const z = await nats.servers[0].monitor<{ account_details?: { stream_detail?: { name: string; state: { bytes: number } }[] }[] }>('jsz?streams=true');
    const st = z.account_details?.flatMap((a) => a.stream_detail ?? []).find((x) => x.name === 'WALCAST_rt');
    if (!st) throw new Error('no stream WALCAST_rt in /jsz');
    return st.state.bytes;
  };

  const onB = await client(b);
  const onC = await client(c);
  await onB.subscribe({ id: 'a', table: 'ta' }, { timeoutMs: 20_000 });
  await onC.subscribe({ id: 'b', table: 'tb' }, { timeoutMs: 20_000 });

  await t.test('each node receives the table its clients follow, and every change of it once, in order', async (t) => {
    const before = { b: await conn('rt-b'), c: await conn('rt-c'), stream: await streamBytes() };
    const body = 'x'.repeat(500);
    for (let i = 0; i < 20; i++) {
      await query(db.url, `insert into ta select g, '${body}' from generate_series(${i * 10 + 1}, ${i * 10 + 10}) g`);
      await query(db.url, `insert into tb select g, '${body}' from generate_series(${i * 10 + 1}, ${i * 10 + 10}) g`);
    }
    // One transaction touching both tables: each node gets its part, whole.
    await query(db.url, `begin; insert into ta values (201, 'mixed'); insert into tb values (201, 'mixed'); insert into ta values (202, 'mixed'); commit`);
    await onB.waitChanges('a', 202, 20_000);
    await onC.waitChanges('b', 201, 20_000);
    await sleep(300);
    t.same(ids(onB, 'a'), range(1, 202), 'node b: every row of ta once, in order');
    t.same(ids(onC, 'b'), range(1, 201), 'node c: every row of tb once, in order');
    const after = { b: await conn('rt-b'), c: await conn('rt-c'), stream: await streamBytes() };
    const got = { b: after.b.out_bytes - before.b.out_bytes, c: after.c.out_bytes - before.c.out_bytes };
    // Half of what the stream stored is each node's share (two tables of the same rows); a node
    // receiving both would get all of it.
    const stored = after.stream - before.stream;
    for (const [node, n] of Object.entries(got)) {
      t.ok(n < stored * 0.65, `node ${node} received ${n} bytes of the ${stored} stored (its share: half)`);
      t.ok(n > stored * 0.4, `node ${node}: and about its share`);
    }
    const subsB = (await conn('rt-b')).subscriptions_list ?? [];
    t.ok(subsB.some((s) => s.endsWith('.r.d.public.ta.*')), 'b subscribes to ta');
    t.notOk(subsB.some((s) => s.includes('.r.d.public.tb.')), 'b does not subscribe to tb');
  });

  await t.test('a subscription made while rows are written: everything after its position, once', async (t) => {
    const ref = await client(a);
    await ref.subscribe({ id: 'r', table: 'tb' }, { timeoutMs: 20_000 });
    let stop = false;
    const writer = (async () => {
      for (let i = 1000; !stop && i < 1400; i++) await query(db.url, `insert into tb values (${i}, 'seam')`);
    })();
    await sleep(150);
    // b does not follow tb yet: its subscription starts from the stream, then b's feed carries it.
    const late = await client(b);
    const reply = await late.subscribe({ id: 'l', table: 'tb' }, { timeoutMs: 20_000 });
    await sleep(500);
    stop = true;
    await writer;
    await query(db.url, "insert into tb values (1500, 'end')");
    await ref.waitFor(() => ids(ref, 'r').includes(1500), 10_000, 'the last row on a');
    await late.waitFor(() => ids(late, 'l').includes(1500), 10_000, 'the last row on b');
    // "From now" on a table b does not follow yet: from the stream's end when it asked, then b's
    // feed; the rows arrive before `subscribed` (a catch-up), all at or before its position.
    const got = late.changes('l');
    t.ok(got.length > 0, 'rows came');
    const at = late.messages.findIndex((m) => m.type === 'subscribed' && m.id === 'l');
    const early = late.messages.slice(0, at).filter((m) => m.type === 'change') as typeof got;
    t.ok(early.every((m) => comparePos(m.pos, reply.position as string) <= 0), `the ${early.length} rows before \`subscribed\` are at or before its position`);
    const from = ref.changes('r').findIndex((m) => m.pos === got[0].pos);
    t.ok(from >= 0, 'its first row is one a saw');
    const want = ref.changes('r').slice(from).map((m) => (m.new as { id: number }).id);
    t.same(ids(late, 'l'), want, `from there on exactly what a saw (${want.length} rows), no gap at the seam`);
    t.ok(want.length > 5, `rows written during and after the subscribe (${want.length})`);
    t.same(duplicates(late.changes('l').map((m) => m.pos)), []);
    t.same(orderViolations(late.changes('l').map((m) => m.pos)), []);
  });

  await t.test('route_by: a node follows only the route values its subscriptions filter on', async (t) => {
    await query(db.url, "create table msgs (id int primary key, room int not null, body text); select walcast.enable('msgs', route_by => 'room')");
    const r1 = await client(b);
    const r23 = await client(c);
    await r1.subscribe({ id: 'm', table: 'msgs', filter: 'room=eq.1' }, { timeoutMs: 20_000 });
    await r23.subscribe({ id: 'm', table: 'msgs', filter: 'room=in.(2,3)' }, { timeoutMs: 20_000 });
    const before = { b: await conn('rt-b'), c: await conn('rt-c'), stream: await streamBytes() };
    const body = 'y'.repeat(500);
    for (let i = 0; i < 10; i++) await query(db.url, `insert into msgs select g, 1 + g % 6, '${body}' from generate_series(${i * 60 + 1}, ${i * 60 + 60}) g`);
    const want = (rooms: number[]) => range(1, 600).filter((id) => rooms.includes(1 + (id % 6)));
    await r1.waitChanges('m', want([1]).length, 20_000);
    await r23.waitChanges('m', want([2, 3]).length, 20_000);
    await sleep(300);
    t.same(ids(r1, 'm'), want([1]), 'b: room 1, every row once, in order');
    t.same(ids(r23, 'm'), want([2, 3]), 'c: rooms 2 and 3');
    const after = { b: await conn('rt-b'), c: await conn('rt-c'), stream: await streamBytes() };
    const stored = after.stream - before.stream;
    const gotB = after.b.out_bytes - before.b.out_bytes;
    const gotC = after.c.out_bytes - before.c.out_bytes;
    t.ok(gotB < stored * 0.3, `b received ${gotB} of ${stored} bytes stored (its share: 1/6)`);
    t.ok(gotC < stored * 0.45, `c received ${gotC} of ${stored} bytes stored (its share: 2/6)`);
    // A row moving out of room 1: published on room 2's subject, it still reaches b (its chain
    // names b), which tells its subscriber the row left.
    await query(db.url, 'update msgs set room = 2 where id = 6'); // 1 + 6 % 6 = 1
    await r1.waitFor(() => r1.changes('m').length > want([1]).length, 10_000, 'the row leaving room 1');
    const last = r1.changes('m').at(-1)!;
    t.match(last, { op: 'leave' }, 'b: the row left its filter');
    await r23.waitFor(() => ids(r23, 'm').includes(6), 10_000, 'the row entering room 2');
    t.pass('c: the row entered room 2');
  });

  await t.test('status shows what a node follows', async (t) => {
    const st = (await (await fetch(`http://127.0.0.1:${b.port}/status`)).json()) as { cluster: { follower: { routing: { state: string; interests: { tables: number; covered: number } } } } };
    t.equal(st.cluster.follower.routing.state, 'following');
    t.ok(st.cluster.follower.routing.interests.covered >= 2, 'ta and tb covered on b');
  });
});
