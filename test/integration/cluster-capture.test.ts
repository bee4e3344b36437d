// Cluster increments 3b–5 (issue 13, docs/dev/cluster-plan.md §3–§6, whole-stream form): several
// `serve --nats` nodes elect one capture node, which alone reads the slot (one walsender) and
// publishes every committed change into the stream exactly once; every node follows the stream
// in order, so clients on any node get every change once, in position order, and may resume on
// another node. When the capture node stops, another takes over and the stream still holds each
// change once. One Postgres and one 3-server NATS cluster.
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, DeliverPolicy } from '@nats-io/jetstream';
import t from 'tap';
import { resolveServeConfig, type ServeFlags } from '../../src/config.js';
import { startDaemon, type Daemon } from '../../src/daemon.js';
import { createLogger, silentLogger } from '../../src/log.js';
import { migrate } from '../../src/sql/migrate.js';
import { CLUSTER_HEADERS } from '../../src/cluster/ctl.js';
import { query, waitUntil } from '../helpers/capture.js';
import { withNats } from '../helpers/nats.js';
import { withPostgres } from '../helpers/pg.js';
import { runCli } from '../helpers/cli.js';
import { freePort } from '../../src/util/free-port.js';
import { comparePos, duplicates, orderViolations, WsClient } from '../helpers/ws.js';

t.test('a cluster of nodes on one slot', async (t) => {
  const [db, nats] = await Promise.all([withPostgres(t), withNats(t, { size: 3 })]);
  await migrate(db.url);
  await query(db.url, 'create table items (id int primary key, room text not null, body text); select walcast.enable(\'items\')');
  const config = (flags: ServeFlags) =>
    resolveServeConfig({ db: db.url, port: '0', auth: false, nats: nats.urls, cluster: 'k1', streamMaxBytes: '64MiB', natsAckDelay: '0', ...flags }, {});
  const nodes: Daemon[] = [];
  const start = async (id: string): Promise<Daemon> => {
    const d = await startDaemon(config({ nodeId: id }), process.env.CLUSTER_TEST_LOG ? createLogger(process.env.CLUSTER_TEST_LOG).child({ node: id }) : silentLogger);
    nodes.push(d);
    t.teardown(() => d.stop());
    return d;
  };
  const captureNodes = () => nodes.filter((d) => d.cluster?.role === 'capture');
  const [a, b] = [await start('node-a'), await start('node-b')];
  await waitUntil(() => captureNodes().length === 1 && captureNodes()[0].cluster?.capture?.current === 'streaming', 15_000, () => 'one capture node streaming');
  const client = async (d: Daemon) => {
    const c = await WsClient.connect(`ws://127.0.0.1:${d.port}/ws`);
    t.teardown(() => c.close());
    return c;
  };
  const walsenders = async () =>
    (await query<{ n: string }>(db.url, "select count(*)::text as n from pg_stat_replication"))[0].n;

  await t.test('exactly one capture node, one slot, one walsender', async (t) => {
    t.equal(captureNodes().length, 1, 'one node captures');
    const slots = await query<{ n: string }>(db.url, "select count(*)::text as n from pg_replication_slots where slot_type = 'logical'");
    t.equal(slots[0].n, '1', 'one logical slot');
    t.equal(await walsenders(), '1', 'one walsender');
    const named = await query<{ name: string }>(db.url, 'select application_name as name from pg_stat_replication');
    t.same(named.map((r) => r.name), [`walcast ${captureNodes()[0].cluster!.nodeId}`], 'the walsender is named after the capture node');
    const backends = await query<{ name: string }>(db.url, "select distinct application_name as name from pg_stat_activity where application_name like 'walcast %' order by 1");
    t.same(backends.map((r) => r.name), ['walcast node-a', 'walcast node-b'], 'each node\'s connections carry its name');
    const edge = nodes.find((d) => d.cluster?.role === 'edge');
    t.equal(edge?.cluster?.capture, null, 'the edge runs no capture');
  });

  await t.test('status: GET /status, walcast status --nats, metrics', async (t) => {
    const cap = captureNodes()[0];
    const edge = cap === a ? b : a;
    await query(db.url, "insert into items values (0, 'r0', 'status')");
    type S = { cluster: { node: string; role: string; epoch: number | null; capture: { node: string }; nodes: { node: string; role: string; address: string; stale: boolean }[]; stream: { messages: number; lastSeq: number; lastPosition: string; replicas: number; leader: string } | null; lag: { followerMessages: number } } };
    const read = async (d: Daemon) => (await (await fetch(`http://127.0.0.1:${d.port}/status`)).json()) as S;
    await waitUntil(async () => {
      const s = await read(edge);
      return s.cluster.nodes.length === 2 && s.cluster.nodes.every((n) => n.address) && (s.cluster.stream?.messages ?? 0) >= 2 && s.cluster.lag.followerMessages === 0;
    }, 15_000, () => 'the node list and the stream figures');
    const s = await read(edge);
    t.equal(s.cluster.role, 'edge');
    t.equal(s.cluster.epoch, null, 'an edge has no epoch of its own');
    t.equal(s.cluster.capture.node, cap.cluster!.nodeId, 'names the capture node');
    t.same(s.cluster.nodes.map((n) => [n.node, n.role, n.stale]).sort(), [[a.cluster!.nodeId, a === cap ? 'capture' : 'edge', false], [b.cluster!.nodeId, b === cap ? 'capture' : 'edge', false]].sort(), 'both nodes, their roles');
    t.match(s.cluster.stream, { replicas: 3, leader: String, lastPosition: /^[0-9A-F]+\/[0-9A-F]+:\d+$/ }, 'the stream: replicas, leader, last position');
    t.ok((await read(cap)).cluster.epoch! > 0, 'the capture node shows its epoch');
    const cli = await runCli(['status', '--db', db.url, '--daemon', `http://127.0.0.1:${edge.port}`, '--nats', nats.urls, '--cluster', 'k1', '--json']);
    t.equal(cli.code, 0, cli.stderr);
    const j = JSON.parse(cli.lines.join('\n')) as { cluster: { reachable: boolean; capture: { node: string }; nodes: unknown[]; stream: { name: string } } };
    t.match(j.cluster, { reachable: true, capture: { node: cap.cluster!.nodeId }, stream: { name: 'WALCAST_k1' } }, 'walcast status --nats reads the lease and the stream');
    t.equal(j.cluster.nodes.length, 2);
    const human = await runCli(['status', '--db', db.url, '--daemon', `http://127.0.0.1:${edge.port}`, '--nats', nats.urls, '--cluster', 'k1']);
    t.match(human.lines.join('\n'), new RegExp(`capture\\s+${cap.cluster!.nodeId} \\(epoch \\d+\\)`), 'the table names the capture node');
    t.match(human.lines.join('\n'), /stream\s+WALCAST_k1: \d+ messages/);
    const metrics = await (await fetch(`http://127.0.0.1:${cap.port}/metrics`)).text();
    t.match(metrics, /\nwalcast_cluster_capture 1\n/, 'metrics: this node captures');
    t.match(metrics, /\nwalcast_stream_last_seq [1-9]\d*\n/, 'metrics: the stream');
    t.match(await (await fetch(`http://127.0.0.1:${edge.port}/metrics`)).text(), /\nwalcast_cluster_capture 0\n/, 'metrics: the edge does not');
  });

  let lastPos = '';
  await t.test('clients on every node get every change once, in order', async (t) => {
    const [ca, cb] = [await client(a), await client(b)];
    await ca.subscribe({ id: 's', table: 'items' });
    await cb.subscribe({ id: 's', table: 'items' });
    // 50 transactions of 1 to 3 rows: transactions must not be split or merged wrongly.
    let id = 0;
    for (let i = 0; i < 50; i++) {
      const rows = 1 + (i % 3);
      const values = Array.from({ length: rows }, () => `(${++id}, 'r${id % 4}', 'x')`).join(',');
      await query(db.url, `insert into items values ${values}`);
    }
    const got = await Promise.all([ca.waitChanges('s', id, 20_000), cb.waitChanges('s', id, 20_000)]);
    for (const [name, changes] of [['node-a', got[0]], ['node-b', got[1]]] as const) {
      const positions = changes.map((c) => c.pos);
      t.same(orderViolations(positions), [], `${name}: in position order`);
      t.same(duplicates(positions), [], `${name}: no duplicate`);
      t.same(changes.map((c) => (c.new as { id: number }).id), Array.from({ length: id }, (_, i) => i + 1), `${name}: every row, once`);
    }
    t.same(got[0].map((c) => c.pos), got[1].map((c) => c.pos), 'both nodes give the same positions');
    lastPos = got[0][got[0].length - 1].pos;
  });

  await t.test('a client resumes on another node', async (t) => {
    await query(db.url, "insert into items values (1001, 'r1', 'missed'), (1002, 'r2', 'missed')");
    const other = captureNodes()[0] === a ? b : a;
    const c = await client(other);
    const reply = await c.subscribe({ id: 's', table: 'items', since: lastPos });
    t.equal(reply.type, 'subscribed', 'resumed, not resync');
    const missed = await c.waitChanges('s', 2);
    t.same(missed.map((m) => (m.new as { id: number }).id), [1001, 1002], 'exactly the missed rows');
    t.ok(missed.every((m) => comparePos(m.pos, lastPos) > 0), 'all after since');
  });

  await t.test('a foreign message in the stream: left aside by every node; capture, fenced by it, is elected again', async (t) => {
    const cap = captureNodes()[0];
    const epochBefore = cap.cluster!.status().epoch!;
    const [ca, cb] = [await client(a), await client(b)];
    await ca.subscribe({ id: 'f', table: 'items' });
    await cb.subscribe({ id: 'f', table: 'items' });
    const nc = await connect({ servers: nats.urls, name: 'rogue' });
    t.teardown(() => nc.close());
    const js = jetstream(nc);
    await js.publish('walcast.k1.s.d.public.items.=n', 'not a change');
    await js.publish('walcast.k1.s.ctl', '{"v":1,"type":"mark","wal":"nonsense"}');
    // They name no node in a chain (Walcast-Chain): every node leaves them aside.
    await new Promise((r) => setTimeout(r, 300));
    await query(db.url, "insert into items values (3001, 'r1', 'after rogue'), (3002, 'r1', 'after rogue')");
    const got = await Promise.all([ca.waitChanges('f', 2, 15_000), cb.waitChanges('f', 2, 15_000)]);
    for (const g of got) t.same(g.map((m) => (m.new as { id: number }).id), [3001, 3002], 'the rows after it, once, in order');
    await waitUntil(() => captureNodes().length === 1 && captureNodes()[0].cluster!.status().epoch! > epochBefore, 10_000, () => 'a new epoch');
    t.pass(`capture elected again (epoch ${epochBefore} → ${captureNodes()[0].cluster!.status().epoch})`);
  });

  await t.test('the capture node stops: another takes over, the stream holds each change once', async (t) => {
    const old = captureNodes()[0];
    const survivor = old === a ? b : a;
    const c = await client(survivor);
    await c.subscribe({ id: 's', table: 'items' });
    // A writer keeps committing across the handover.
    let n = 2000;
    let writing = true;
    const writer = (async () => {
      while (writing) {
        await query(db.url, `insert into items values (${++n}, 'r0', 'handover')`);
      }
    })();
    const before = Date.now();
    await old.stop();
    await waitUntil(() => survivor.cluster?.role === 'capture' && survivor.cluster?.capture?.current === 'streaming', 10_000, () => 'the survivor captures');
    t.ok(Date.now() - before < 10_000, `takeover after a graceful stop in ${Date.now() - before} ms`);
    await new Promise((r) => setTimeout(r, 300));
    writing = false;
    await writer;
    const total = n - 2000;
    const got = await c.waitChanges('s', total, 20_000);
    t.same(got.map((m) => (m.new as { id: number }).id), Array.from({ length: total }, (_, i) => 2001 + i), `all ${total} rows written across the handover, once, in order`);
    t.equal(await walsenders(), '1', 'still one walsender');
  });

  await t.test('the stream: one message per change, positions strictly increasing, epochs', async (t) => {
    const nc = await connect({ servers: nats.urls });
    t.teardown(() => nc.close());
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info('WALCAST_k1');
    const js = jetstream(nc);
    const consumer = await js.consumers.get('WALCAST_k1', { deliver_policy: DeliverPolicy.All });
    const positions: string[] = [];
    let epochs = 0;
    let foreign = 0;
    const it = await consumer.fetch({ max_messages: info.state.messages, expires: 5_000 });
    for await (const m of it) {
      if (m.subject.endsWith('.ctl')) {
        if (m.json<{ type: string }>().type === 'epoch') epochs++;
        continue;
      }
      const pos = m.headers?.get(CLUSTER_HEADERS.position);
      if (pos) positions.push(pos);
      else foreign++; // the rogue message of the test above
      if (m.seq === info.state.last_seq) break;
    }
    t.ok(positions.length > 0, `${positions.length} change messages`);
    t.same(duplicates(positions), [], 'no position twice');
    t.same(orderViolations(positions), [], 'in position order');
    t.ok(epochs >= 3, `an epoch marker per leadership (${epochs})`);
    t.equal(foreign, 1, 'the one foreign change message, without a position');
    const rows = await query<{ n: string }>(db.url, 'select count(*)::text as n from items');
    t.equal(positions.length, Number(rows[0].n), 'as many change messages as rows inserted');
  });

  await t.test('a change larger than NATS max_payload: resync transaction_too_large, capture goes on', async (t) => {
    const d = captureNodes()[0];
    const c = await client(d); // the other node was stopped above
    await c.subscribe({ id: 'big', table: 'items' });
    // 1.5 MB of text: over the throwaway servers' max_payload (1 MB by default).
    await query(db.url, "insert into items values (5000, 'r0', repeat('b', 1500000))");
    const resync = await c.next((m) => m.type === 'resync' && m.sub === 'big', 10_000);
    t.equal(resync.reason, 'transaction_too_large', 'its subscribers are told to refetch');
    const again = await c.subscribe({ id: 'after', table: 'items' });
    t.equal(again.type, 'subscribed');
    await query(db.url, "insert into items values (5001, 'r0', 'small')");
    const next = await c.waitChanges('after', 1);
    t.equal((next[0].new as { id: number }).id, 5001, 'the next change arrives: capture went on');
    t.equal(captureNodes()[0], d, 'the same capture node');
  });

  await t.test('a position older than the stream: resync position_outside_window', async (t) => {
    // A cluster of its own (its own slot) with a stream of 64 KiB: the first rows are evicted.
    const first = await startDaemon(config({ nodeId: 'tiny-1', cluster: 'tiny', slot: 'tiny', streamMaxBytes: '64KiB' }), silentLogger);
    t.teardown(() => first.stop());
    await waitUntil(() => first.cluster?.capture?.current === 'streaming', 15_000, () => 'tiny: capturing');
    const c = await client(first);
    await c.subscribe({ id: 's', table: 'items' });
    await query(db.url, "insert into items select 10000 + g, 'r0', repeat('y', 200) from generate_series(1, 5) g");
    const early = (await c.waitChanges('s', 5))[0].pos;
    // 300 transactions of one row each (one simple query, each statement its own transaction):
    // the stream keeps only the newest 64 KiB. (The first node may fall behind the eviction on a
    // busy machine and reset its window: what it delivers is not the point here.)
    await query(db.url, Array.from({ length: 300 }, (_, i) => `insert into items values (${20001 + i}, 'r0', repeat('z', 300));`).join(''));
    const nc = await connect({ servers: nats.urls });
    t.teardown(() => nc.close());
    const jsm = await jetstreamManager(nc);
    const tail = async () => (await jsm.streams.info('WALCAST_tiny')).state;
    // The last change in the stream (idle marks may follow it).
    const lastRow = async (): Promise<number | null> => {
      const st = await tail();
      for (let seq = st.last_seq; seq >= Math.max(st.first_seq, st.last_seq - 20); seq--) {
        const m = await jsm.streams.getMessage('WALCAST_tiny', { seq });
        const id = m?.json<{ new?: { id: number } }>().new?.id;
        if (id !== undefined) return id;
      }
      return null;
    };
    await waitUntil(async () => (await lastRow()) === 20300, 20_000, () => 'the last row in the stream');
    const st = await tail();
    const early5 = await jsm.streams.getMessage('WALCAST_tiny', { seq: st.first_seq }).then((m) => m?.json<{ new?: { id: number } }>().new?.id);
    t.ok((early5 ?? 0) > 10005, `the stream's first row is ${early5}: the early rows were evicted`);
    // A node started now has only what the stream still holds.
    const later = await startDaemon(config({ nodeId: 'tiny-2', cluster: 'tiny', slot: 'tiny', streamMaxBytes: '64KiB' }), silentLogger);
    t.teardown(() => later.stop());
    const l = await client(later);
    const reply = await l.subscribe({ id: 's', table: 'items', since: early }, { allowFailure: true });
    t.match(reply, { type: 'resync', reason: 'position_outside_window' }, 'resync: the stream no longer holds it');
    // The position of row 20296, read from the stream: found by its id, since idle marks may
    // follow the last row (last_seq - 4 is not always it).
    let recent: string | null = null;
    for (let seq = st.last_seq; seq >= Math.max(st.first_seq, st.last_seq - 30) && recent === null; seq--) {
      const m = await jsm.streams.getMessage('WALCAST_tiny', { seq });
      if (m?.json<{ new?: { id: number } }>().new?.id === 20296) recent = m.header.get(CLUSTER_HEADERS.position);
    }
    t.ok(recent, 'row 20296 is in the stream');
    const ok = await l.subscribe({ id: 't', table: 'items', since: recent as string });
    t.equal(ok.type, 'subscribed', 'a position the stream holds resumes');
    const got = await l.waitChanges('t', 4);
    t.same(got.map((m) => (m.new as { id: number }).id), [20297, 20298, 20299, 20300], 'exactly the rows after it');
  });

  await t.test('a node with a short --history-age reads only the young end of the stream at start, older positions from the stream', async (t) => {
    const watcher = await client(captureNodes()[0]);
    const before = (await watcher.subscribe({ id: 'y', table: 'items' })).position as string;
    await query(db.url, "insert into items values (7990, 'r0', 'old')");
    const [old7990] = await watcher.waitChanges('y', 1);
    await new Promise((r) => setTimeout(r, 2_500)); // everything so far is older than 2 s
    await query(db.url, "insert into items values (8001, 'r0', 'young'), (8002, 'r0', 'young'), (8003, 'r0', 'young')");
    const young = (await watcher.waitChanges('y', 4)).slice(1);
    const d = await startDaemon(config({ nodeId: 'young', historyAge: '2s' }), silentLogger);
    t.teardown(() => d.stop());
    const st = (await (await fetch(`http://127.0.0.1:${d.port}/status`)).json()) as { window: { floor: string } };
    t.ok(comparePos(st.window.floor, old7990.pos) >= 0 && comparePos(st.window.floor, young[0].pos) < 0, `its window starts after the old rows, before the young ones (${st.window.floor})`);
    const c = await client(d);
    // An old position is not in its window but still in the stream: read from there.
    const old = await c.subscribe({ id: 'o', table: 'items', since: before }, { timeoutMs: 20_000 });
    t.equal(old.type, 'subscribed', 'an old position resumes from the stream');
    t.same(c.changes('o').map((m) => (m.new as { id: number }).id), [7990, 8001, 8002, 8003], 'exactly what came after it');
    const ok = await c.subscribe({ id: 'n', table: 'items', since: young[0].pos });
    t.equal(ok.type, 'subscribed');
    t.same((await c.waitChanges('n', 2)).map((m) => (m.new as { id: number }).id), [8002, 8003], 'a young one resumes exactly');
  });

  await t.test('several nodes on one port with --reuse-port: the kernel spreads clients across them', async (t) => {
    const port = await freePort();
    const shared = (id: string) => startDaemon(config({ nodeId: id, port: String(port), reusePort: true }), silentLogger);
    const r1 = await shared('reuse-1');
    t.teardown(() => r1.stop());
    const r2 = await shared('reuse-2');
    t.teardown(() => r2.stop());
    t.equal(r1.port, port);
    t.equal(r2.port, port, 'both listen on the one port');
    const sockets = await Promise.all(Array.from({ length: 24 }, () => WsClient.connect(`ws://127.0.0.1:${port}/ws`)));
    t.teardown(() => Promise.all(sockets.map((c) => c.close())));
    const counts = [r1.server.clients, r2.server.clients];
    t.equal(counts[0] + counts[1], 24, `all connected (${counts.join(' + ')})`);
    t.ok(counts[0] > 0 && counts[1] > 0, 'both nodes took some');
    for (const c of sockets.slice(0, 4)) await c.subscribe({ id: 's', table: 'items' });
    await query(db.url, "insert into items values (7000, 'r0', 'spread')");
    for (const c of sockets.slice(0, 4)) t.equal(((await c.waitChanges('s', 1))[0].new as { id: number }).id, 7000);
  });
});
