// Cluster failures (issue 13, "Tests must show"): three `walcast serve --nats` children on one
// slot, a 3-server JetStream cluster, a writer committing all along, and per-user clients that
// reconnect to a random node every time (node hopping) and resume with `since`.
//   - three nodes: one slot, one walsender;
//   - the capture node SIGKILLed under load, twice (with the default 6 min ack delay, every kill
//     lands between publishing and acknowledging: the next leader reads the slot from far back and
//     must skip what the stream holds): another node captures within 5 s;
//   - the capture node SIGSTOPped: another takes over; resumed (SIGCONT), the old one appends
//     nothing: every message after the new epoch marker carries the new epoch;
//   - the clients got every row they may read exactly once, in order, without resync;
//   - the stream holds each committed change once, in position order, and the slot was never
//     acknowledged past what the ack delay allows.
import { jetstream, jetstreamManager, DeliverPolicy, type JsMsg } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import t from 'tap';
import { CLUSTER_HEADERS } from '../../src/cluster/ctl.js';
import { migrate } from '../../src/sql/migrate.js';
import { checkDelivery, converged, ResumingClient, ServeChild, steadyWriter, USERS, type Row } from '../helpers/chaos.js';
import { query, sleep, waitUntil } from '../helpers/capture.js';
import { withNats } from '../helpers/nats.js';
import { withPostgres } from '../helpers/pg.js';
import { SECRET } from '../helpers/tokens.js';
import { comparePos, freePort } from '../helpers/ws.js';

const TAKEOVER_MS = 5_000;

interface NodeStatus {
  replication: string;
  cluster: { node: string; role: 'capture' | 'edge'; capture: { node: string; epoch: number } | null };
}

t.test('cluster chaos: kills, pauses, node hopping', async (t) => {
  const [db, nats] = await Promise.all([withPostgres(t), withNats(t, { size: 3 })]);
  const url = db.url;
  await migrate(url);
  await query(url, `create table items (id bigserial primary key, room int not null, body text not null default repeat('x', 40), at_lsn pg_lsn not null default pg_current_wal_insert_lsn()); select walcast.enable('items')`);
  for (const u of USERS) {
    await query(url, "insert into walcast.casbin_rule (ptype, v0, v1, v2, v3, v4) values ('p', $1, 'table', 'public.items', 'read', $2)", [u.user, u.cond]);
  }
  const ports = await Promise.all([freePort(), freePort(), freePort()]);
  const nodes = ports.map(
    (port, i) =>
      new ServeChild([
        '--db', url, '--port', String(port), '--jwt-secret', SECRET, '--progress-interval', '300ms',
        '--nats', nats.urls, '--node-id', `n${i + 1}`, '--cluster', 'kc', '--stream-max-bytes', '64MiB',
      ]),
  );
  t.teardown(() => {
    if (!t.passing()) for (const n of nodes) t.comment(`node, last lines:\n${n.proc?.stderr.split('\n').slice(-15).join('\n')}`);
    for (const n of nodes) n.killAll();
  });
  for (const n of nodes) await n.start();
  const status = async (i: number): Promise<NodeStatus | null> => {
    try {
      return (await (await fetch(`http://127.0.0.1:${ports[i]}/status`, { signal: AbortSignal.timeout(2_000) })).json()) as NodeStatus;
    } catch {
      return null;
    }
  };
  /** The node capturing and streaming (by its own status), or -1. */
  const captureNode = async (except = -1): Promise<number> => {
    for (let i = 0; i < nodes.length; i++) {
      if (i === except || !nodes[i].proc) continue;
      const s = await status(i);
      if (s?.cluster.role === 'capture' && s.replication === 'streaming') return i;
    }
    return -1;
  };
  await waitUntil(async () => (await captureNode()) >= 0, 15_000, () => 'a capture node');

  await t.test('three nodes: one slot, one walsender', async (t) => {
    const slots = await query<{ n: number }>(url, "select count(*)::int as n from pg_replication_slots where slot_type = 'logical'");
    t.equal(slots[0].n, 1, 'one slot');
    const senders = await query<{ n: number }>(url, 'select count(*)::int as n from pg_stat_replication');
    t.equal(senders[0].n, 1, 'one walsender');
    const roles = await Promise.all([0, 1, 2].map(async (i) => (await status(i))?.cluster.role));
    t.same(roles.filter((r) => r === 'capture').length, 1, `roles: ${roles.join(', ')}`);
  });

  // Clients hop: every reconnect goes to a node picked at random among those running.
  const alive = () => nodes.map((n, i) => (n.proc ? ports[i] : -1)).filter((p) => p > 0);
  const hop = () => {
    const a = alive();
    return a[Math.floor(Math.random() * a.length)];
  };
  const clients = USERS.map((u) => ({ c: new ResumingClient(u.user, hop, 'public.items', { url, sql: `select id from items where ${u.sql}` }), may: u.may }));
  t.teardown(() => Promise.all(clients.map(({ c }) => c.stop())));
  await waitUntil(() => clients.every(({ c }) => c.isLive), 15_000, () => 'every client subscribed');
  const firstCommit = (await query<{ lsn: string }>(url, 'select pg_current_wal_lsn()::text as lsn'))[0].lsn;
  const writer = steadyWriter(url, 'items');
  t.teardown(() => writer.stop());
  // Clients also hop while nothing fails: each connection dropped in turn.
  let hopping = true;
  const hopper = (async () => {
    for (let turn = 0; hopping; turn++) {
      await sleep(500);
      const { c } = clients[turn % clients.length];
      await c.pause();
      c.resume();
    }
  })();

  const takeovers: number[] = [];
  await t.test('the capture node SIGKILLed under load, twice: another captures within 5 s', async (t) => {
    for (let round = 0; round < 2; round++) {
      await sleep(1_500);
      const victim = await captureNode();
      t.ok(victim >= 0, `round ${round}: capture node n${victim + 1}`);
      const killedAt = Date.now();
      await nodes[victim].kill();
      await waitUntil(async () => (await captureNode(victim)) >= 0, 20_000, () => 'another capture node');
      const took = Date.now() - killedAt;
      takeovers.push(took);
      t.ok(took <= TAKEOVER_MS, `round ${round}: takeover in ${took} ms`);
      await nodes[victim].start(); // back as an edge
    }
  });

  await t.test('the capture node SIGKILLed while publishing one large transaction', async (t) => {
    const victim = await captureNode();
    const nc = await connect({ servers: nats.urls });
    t.teardown(() => nc.close());
    const jsm = await jetstreamManager(nc);
    const before = (await jsm.streams.info('WALCAST_kc')).state.last_seq;
    // Room 4: none of the steady writer's rooms (whose ids follow commit order).
    await query(url, "insert into items (room) select 4 from generate_series(1, 3000)");
    // Killed once part of it is in the stream (or at once, if it was quick: exactly once either way).
    await waitUntil(async () => (await jsm.streams.info('WALCAST_kc')).state.last_seq > before + 300, 10_000, () => 'publishing under way');
    await nodes[victim].kill();
    const killedAt = Date.now();
    await waitUntil(async () => (await captureNode(victim)) >= 0, 20_000, () => 'another capture node');
    takeovers.push(Date.now() - killedAt);
    t.ok(Date.now() - killedAt <= TAKEOVER_MS, `takeover in ${Date.now() - killedAt} ms`);
    await nodes[victim].start();
  });

  await t.test('an edge SIGKILLed: its clients go on elsewhere', async (t) => {
    const capture = await captureNode();
    const edge = [0, 1, 2].find((i) => i !== capture)!;
    await nodes[edge].kill();
    await sleep(1_000);
    t.equal(await captureNode(), capture, 'capture unaffected');
    await nodes[edge].start();
  });

  await t.test('an edge SIGKILLed during a client\'s catch-up: it resumes on another node', async (t) => {
    const capture = await captureNode();
    const edge = [0, 1, 2].find((i) => i !== capture && nodes[i].proc)!;
    let target = ports[edge];
    const c = new ResumingClient('carol', () => target, 'public.items', { url, sql: 'select id from items' });
    t.teardown(() => c.stop());
    await waitUntil(() => c.isLive, 10_000, () => 'the client live on the edge');
    await c.pause();
    // Room 5: none of the steady writer's rooms. A backlog of 20,000 rows to catch up on.
    await query(url, "insert into items (room) select 5 from generate_series(1, 20000)");
    const before = c.got.length;
    c.resume();
    await waitUntil(() => c.got.length > before, 10_000, () => 'the catch-up under way');
    target = ports[capture]; // where it reconnects
    await nodes[edge].kill();
    t.comment(`killed with ${c.got.length - before} of the 20,000 rows delivered`);
    const all = (await query<{ id: string; room: number }>(url, 'select id::text as id, room from items order by items.id')).map((r) => ({ id: Number(r.id), room: r.room }));
    await converged([{ c, may: () => true }], all, 30_000);
    await sleep(300);
    checkDelivery(t, c, all, () => true, 'catch-up across an edge kill');
    t.same(c.resyncs, [], 'no resync');
    await nodes[edge].start();
  });

  await t.test('the NATS server leading the stream SIGKILLed under load', async (t) => {
    const nc = await connect({ servers: nats.urls });
    t.teardown(() => nc.close());
    const info = await (await jetstreamManager(nc)).streams.info('WALCAST_kc');
    const leader = nats.servers.find((s) => s.name === info.cluster?.leader);
    t.ok(leader, `stream leader ${info.cluster?.leader}`);
    leader!.signal('SIGKILL');
    await sleep(3_000);
    await leader!.start();
    await waitUntil(async () => (await captureNode()) >= 0, 20_000, () => 'a capture node streaming after the NATS leader came back');
    t.pass('capture goes on');
  });

  let pausedEpoch = 0;
  await t.test('the capture node SIGSTOPped: another takes over; resumed, it appends nothing', async (t) => {
    await sleep(1_000);
    let victim = -1;
    let before = 0;
    await waitUntil(async () => {
      victim = await captureNode();
      before = victim < 0 ? 0 : ((await status(victim))?.cluster.capture?.epoch ?? 0);
      return before > 0;
    }, 10_000, () => 'the capture node and its epoch');
    const child = nodes[victim].proc!.child;
    child.kill('SIGSTOP');
    const stoppedAt = Date.now();
    let next = -1;
    await waitUntil(async () => (next = await captureNode(victim)) >= 0, 20_000, () => 'another capture node');
    takeovers.push(Date.now() - stoppedAt);
    t.ok(Date.now() - stoppedAt <= TAKEOVER_MS, `takeover from a paused leader in ${Date.now() - stoppedAt} ms`);
    await waitUntil(async () => (pausedEpoch = (await status(next))?.cluster.capture?.epoch ?? 0) > 0, 10_000, () => 'the new epoch');
    t.ok(pausedEpoch > before, `a new epoch (${before} → ${pausedEpoch})`);
    await sleep(1_000);
    child.kill('SIGCONT');
    await waitUntil(async () => (await status(victim))?.cluster.role === 'edge', 10_000, () => 'the resumed node to be an edge');
    t.pass('the resumed node stepped down');
    await sleep(1_000);
  });

  hopping = false;
  await hopper;
  await writer.stop();
  const rows: Row[] = (await query<{ id: string; room: number }>(url, 'select id::text as id, room from items order by items.id')).map((r) => ({ id: Number(r.id), room: r.room }));

  await t.test('every client got every row it may read once, in order, without resync', async (t) => {
    t.ok(rows.length > 200, `${rows.length} rows committed through ${takeovers.length} takeovers (${takeovers.join(', ')} ms)`);
    await converged(clients, rows, 30_000).catch(async (err: Error) => {
      for (const { c, may } of clients) {
        const have = new Set([...c.got.map((g) => g.id), ...c.refetched]);
        const miss = rows.filter((r) => may(r) && !have.has(r.id)).map((r) => r.id);
        t.comment(`${c.user}: live ${c.isLive}, connections ${c.connections}, resyncs ${c.resyncs.join(',')}, errors ${JSON.stringify(c.errors.slice(-3))}, lastPos ${c.lastPos}, got ${c.got.length}, missing ${miss.length}: ${miss.slice(0, 3).join(',')}..${miss.slice(-3).join(',')}`);
      }
      for (let i = 0; i < nodes.length; i++) {
        t.comment(`n${i + 1}: ${JSON.stringify(await status(i))}`);
        t.comment((nodes[i].proc?.stderr ?? '').split('\n').filter((l) => /"level":(40|50|60)/.test(l)).slice(-12).join('\n'));
      }
      throw err;
    });
    for (const { c, may } of clients) {
      const ids = new Set(c.got.map((g) => g.id));
      const miss = rows.filter((r) => may(r) && !ids.has(r.id) && !c.refetched.has(r.id)).map((r) => r.id);
      t.comment(`${c.user}: got ${c.got.length}, refetched ${c.refetched.size}, missing ${miss.length} first ${miss.slice(0, 5)} last ${miss.slice(-3)}; rows ${rows[0]?.id}..${rows[rows.length - 1]?.id}`);
    }
    await sleep(300); // a duplicate would arrive now
    for (const { c, may } of clients) {
      checkDelivery(t, c, rows, may, 'cluster');
      t.same(c.resyncs, [], `${c.user}: no resync`);
      t.ok(c.connections > 3, `${c.user}: ${c.connections} connections`);
    }
  });

  await t.test('the stream: each change once, in order; nothing from a deposed leader after the fence', async (t) => {
    const nc = await connect({ servers: nats.urls });
    t.teardown(() => nc.close());
    const info = await (await jetstreamManager(nc)).streams.info('WALCAST_kc');
    const consumer = await jetstream(nc).consumers.get('WALCAST_kc', { deliver_policy: DeliverPolicy.All });
    const all: JsMsg[] = [];
    for await (const m of await consumer.fetch({ max_messages: info.state.messages, expires: 10_000 })) {
      all.push(m);
      if (m.seq === info.state.last_seq) break;
    }
    const changes = all.filter((m) => !m.subject.endsWith('.ctl'));
    const positions = changes.map((m) => m.headers?.get(CLUSTER_HEADERS.position) ?? '?');
    let disorder = 0;
    for (let i = 1; i < positions.length; i++) if (comparePos(positions[i - 1], positions[i]) >= 0) disorder++;
    t.equal(disorder, 0, 'change positions strictly increase along the stream');
    t.equal(changes.length, rows.length, `one message per committed row (${changes.length})`);
    if (changes.length !== rows.length) {
      // Evidence for the next look (a change lost at a takeover): each missing row's place in the
      // stream, found by the WAL position of its insert (at_lsn; commit order follows it closely).
      const lsnOf = (m: JsMsg) => m.json<{ new?: { at_lsn?: string } }>().new?.at_lsn ?? null;
      const inStream = new Set(changes.map((m) => m.json<{ new?: { id: number } }>().new?.id));
      const missing = rows.filter((r) => !inStream.has(r.id)).map((r) => r.id);
      const wal = (l: string) => parseInt(l.split('/')[0], 16) * 2 ** 32 + parseInt(l.split('/')[1], 16);
      for (const id of missing.slice(0, 5)) {
        const [{ at }] = await query<{ at: string }>(url, 'select at_lsn::text as at from items where id = $1', [id]);
        const next = all.findIndex((m) => !m.subject.endsWith('.ctl') && lsnOf(m) !== null && wal(lsnOf(m) as string) > wal(at));
        const around = all.slice(Math.max(0, next - 6), next + 3).map((m) =>
          `seq ${m.seq} ${m.subject.endsWith('.ctl') ? `ctl ${JSON.stringify(m.json())}` : `row ${m.json<{ new?: { id: number } }>().new?.id} at ${lsnOf(m)}`} pos ${m.headers?.get(CLUSTER_HEADERS.position)} epoch ${m.headers?.get(CLUSTER_HEADERS.epoch)}`,
        );
        t.comment(`row ${id} (inserted at ${at}) is not in the stream; around where it belongs:\n${around.join('\n')}`);
      }
    }
    // After any leadership's epoch marker, nothing of an older epoch: a deposed leader's pipelined
    // publishes must not land after it (they did, by sequence alone, before messages were chained
    // by id too: a change was lost).
    let newest = 0;
    const late: string[] = [];
    for (const m of all) {
      const isEpoch = m.subject.endsWith('.ctl') && m.json<{ type: string }>().type === 'epoch';
      const epoch = isEpoch ? m.json<{ epoch: number }>().epoch : Number(m.headers?.get(CLUSTER_HEADERS.epoch));
      if (isEpoch) newest = Math.max(newest, epoch);
      else if (epoch < newest) late.push(`seq ${m.seq} epoch ${epoch} after marker ${newest} (pos ${m.headers?.get(CLUSTER_HEADERS.position)})`);
    }
    t.same(late.slice(0, 5), [], 'no message of an older epoch after any epoch marker');
    const fence = all.findIndex((m) => m.subject.endsWith('.ctl') && m.json<{ type: string; epoch: number }>().type === 'epoch' && m.json<{ epoch: number }>().epoch === pausedEpoch);
    t.ok(fence > 0, 'the epoch marker of the leader that took over from the paused one');
    const stale = all.slice(fence).filter((m) => Number(m.headers?.get(CLUSTER_HEADERS.epoch)) < pausedEpoch);
    t.equal(stale.length, 0, 'no message of an older epoch after its fence');
    const epochs = all.filter((m) => m.subject.endsWith('.ctl') && m.json<{ type: string }>().type === 'epoch').length;
    t.ok(epochs >= 4, `${epochs} epoch markers (one per leadership)`);
  });

  await t.test('the slot is not acknowledged within the ack delay', async (t) => {
    // Default --nats-ack-delay (6 min): nothing this test published may be acknowledged yet.
    const [slot] = await query<{ ok: boolean; lsn: string }>(url, "select confirmed_flush_lsn <= $1::pg_lsn as ok, confirmed_flush_lsn::text as lsn from pg_replication_slots where slot_name = 'walcast'", [firstCommit]);
    t.ok(slot.ok, `confirmed_flush_lsn ${slot.lsn} still before the first change of the test (${firstCommit})`);
  });
});
