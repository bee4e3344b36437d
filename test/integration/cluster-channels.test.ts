// Cluster increment 9 (issue 13, docs/dev/cluster-plan.md §9): channels across nodes. Two
// in-process `serve --nats` daemons (A, B) on one NATS server and one Postgres, a third node as a
// child process (C) for the stop and kill cases. A client broadcast on A reaches B's members once
// (the sender only with self), under B's policies (a user B refuses gets nothing, a revoked
// member stops receiving); presence tracked on one node is in the presence_state of joiners on
// the other (also the first joiner there) and in its diffs; malformed messages put on the
// channel subjects by a raw NATS client are dropped and counted; a stopped node's presence
// leaves at once, a SIGKILLed node's within 20 s.
import { connect } from '@nats-io/transport-node';
import t, { type Test } from 'tap';
import type { ChannelsBridge } from '../../src/cluster/channels-bridge.js';
import { aliveSubject, broadcastSubject, presenceSubject, presenceSyncSubject } from '../../src/cluster/subjects.js';
import { resolveServeConfig } from '../../src/config.js';
import { startDaemon, type Daemon } from '../../src/daemon.js';
import { createLogger, silentLogger } from '../../src/log.js';
import { migrate } from '../../src/sql/migrate.js';
import { ServeChild } from '../helpers/chaos.js';
import { query, waitUntil } from '../helpers/capture.js';
import { withNats } from '../helpers/nats.js';
import { withPostgres } from '../helpers/pg.js';
import { hsToken, SECRET } from '../helpers/tokens.js';
import { freePort, WsClient, type Msg } from '../helpers/ws.js';

const NS = 'ch1';
const RELATION = 'public.room_members {user_id} room:{room_id}';
type Metas = Record<string, { session: string; state: Record<string, unknown> }[]>;

const [db, nats] = await Promise.all([withPostgres(t), withNats(t, { size: 1 })]);
await migrate(db.url);
await query(
  db.url,
  `create table room_members (user_id text, room_id int, primary key (user_id, room_id));
   select walcast.enable('room_members');
   insert into room_members values ('ann', 1), ('ben', 1), ('ann', 3), ('ben', 3), ('cat', 2);
   insert into walcast.casbin_rule (ptype, v0, v1, v2, v3, v4) values
     ('p', '*', 'channel', 'room:*', 'join', 'g2(r.sub.id, r.obj.name)'),
     ('p', '*', 'channel', 'room:*', 'broadcast', 'g2(r.sub.id, r.obj.name)'),
     ('p', '*', 'channel', 'room:*', 'presence', 'g2(r.sub.id, r.obj.name)'),
     ('p', 'dan', 'channel', 'room:1', 'join', 'true');`,
);

const start = async (nodeId: string): Promise<Daemon> => {
  const cfg = resolveServeConfig(
    { db: db.url, port: '0', jwtSecret: SECRET, nats: nats.urls, nodeId, cluster: NS, streamReplicas: '1', streamMaxBytes: '64MiB', natsAckDelay: '0', relation: [RELATION] },
    {},
  );
  const d = await startDaemon(cfg, process.env.CLUSTER_TEST_LOG ? createLogger(process.env.CLUSTER_TEST_LOG).child({ node: nodeId }) : silentLogger);
  t.teardown(() => d.stop());
  return d;
};
const a = await start('a');
const b = await start('b');
// Policy changes reach the nodes through the stream: a capture node must be streaming.
await waitUntil(() => [a, b].some((d) => d.cluster?.role === 'capture' && d.cluster.capture?.current === 'streaming'), 20_000, () => 'a capture node streaming');

const bridge = (d: Daemon) => d.hub.channels?.bridged as ChannelsBridge;
/** A client of the daemon on `port` as `user`, closed when `tt` ends. */
const client = async (tt: Test, port: number, user: string): Promise<WsClient> => {
  const c = await WsClient.connect(`ws://127.0.0.1:${port}/ws?token=${await hsToken({ sub: user })}`);
  tt.teardown(() => c.close());
  return c;
};
const join = (c: WsClient, channel: string) => c.request({ type: 'join', channel });
const of = (c: WsClient, type: string, pred: (m: Msg) => boolean = () => true) => c.messages.filter((m) => m.type === type && pred(m));
const hasKey = (map: unknown, key: string) => Object.prototype.hasOwnProperty.call(map ?? {}, key);
const metaOf = (map: unknown, key: string) => (map as Metas)[key]?.[0];

t.test('a broadcast on A reaches the members on B, once; the sender only with self', async (t) => {
  const ann = await client(t, a.port, 'ann');
  const ben = await client(t, b.port, 'ben');
  t.match(await join(ann, 'room:1'), { type: 'joined' });
  t.match(await join(ben, 'room:1'), { type: 'joined' });
  ann.send({ type: 'broadcast', channel: 'room:1', event: 'typing', payload: { user: 'ann' } });
  t.match(await ben.next((m) => m.type === 'broadcast'), { channel: 'room:1', event: 'typing', payload: { user: 'ann' }, from: 'ann' });
  ann.send({ type: 'broadcast', channel: 'room:1', event: 'echo', payload: [1, 'é'], self: true });
  t.match(await ann.next((m) => m.type === 'broadcast'), { event: 'echo', payload: [1, 'é'], from: 'ann' }, 'self: the sender gets it');
  t.match(await ben.next((m) => m.type === 'broadcast' && m.event === 'echo'), { payload: [1, 'é'] });
  // B's member speaks back: A's member gets it. After it, everything earlier has arrived.
  ben.send({ type: 'broadcast', channel: 'room:1', event: 'reply', payload: null });
  t.match(await ann.next((m) => m.type === 'broadcast' && m.event === 'reply'), { from: 'ben' });
  await ben.request({ type: 'ping' });
  t.same(of(ann, 'broadcast').map((m) => m.event), ['echo', 'reply'], 'the sender never got its own typing event, nor its echo twice (its node ignores its own NATS messages)');
  t.same(of(ben, 'broadcast').map((m) => m.event), ['typing', 'echo'], 'each broadcast once on B');
});

t.test('B refuses a user its policies do not let in: nothing of the channel reaches it', async (t) => {
  const ann = await client(t, a.port, 'ann');
  const ben = await client(t, b.port, 'ben');
  const cat = await client(t, b.port, 'cat');
  await join(ann, 'room:1');
  await join(ben, 'room:1');
  t.match(await join(cat, 'room:1'), { type: 'error', code: 'forbidden' }, 'cat is not in room 1');
  ann.send({ type: 'presence', channel: 'room:1', state: { here: 1 } });
  ann.send({ type: 'broadcast', channel: 'room:1', event: 'secret' });
  await ben.next((m) => m.type === 'broadcast' && m.event === 'secret');
  await cat.request({ type: 'ping' });
  t.same(cat.messages.filter((m) => m.channel === 'room:1' && m.type !== 'error'), [], 'cat got nothing of room 1');
});

t.test('presence across nodes: state for joiners (also the first on a node), diffs both ways', async (t) => {
  const ann = await client(t, a.port, 'ann');
  const ben = await client(t, b.port, 'ben');
  await join(ann, 'room:3');
  await ann.next((m) => m.type === 'presence_state');
  ann.send({ type: 'presence', channel: 'room:3', state: { status: 'online' } });
  await ann.request({ type: 'ping' });
  // ben is the first member of room 3 on B: B asks A for its presence before `joined`.
  const t0 = Date.now();
  await join(ben, 'room:3');
  const joinMs = Date.now() - t0;
  const st = await ben.next((m) => m.type === 'presence_state' && m.channel === 'room:3');
  t.match(metaOf(st.state, 'ann'), { state: { status: 'online' } }, `the first joiner on B sees what A holds (join took ${joinMs} ms)`);
  t.ok(joinMs < 2_000, 'the join waits a bounded time');
  const ben2 = await client(t, b.port, 'ben');
  await join(ben2, 'room:3');
  const st2 = await ben2.next((m) => m.type === 'presence_state' && m.channel === 'room:3');
  t.match(metaOf(st2.state, 'ann'), { state: { status: 'online' } }, 'a later joiner on B too');

  ann.send({ type: 'presence', channel: 'room:3', state: { status: 'away' } });
  const retrack = await ben.next((m) => m.type === 'presence_diff' && hasKey(m.joins, 'ann'));
  t.match(retrack, { joins: { ann: [{ state: { status: 'away' } }] }, leaves: { ann: [{ state: { status: 'online' } }] } }, 're-track on A: leave and join on B');

  ben.send({ type: 'presence', channel: 'room:3', state: { status: 'on B' } });
  t.match(await ann.next((m) => m.type === 'presence_diff' && hasKey(m.joins, 'ben')), { joins: { ben: [{ state: { status: 'on B' } }] } }, 'B to A as well');
  const ann2 = await client(t, a.port, 'ann');
  await join(ann2, 'room:3');
  const st3 = await ann2.next((m) => m.type === 'presence_state' && m.channel === 'room:3');
  t.match(st3.state, { ann: [{ state: { status: 'away' } }], ben: [{ state: { status: 'on B' } }] }, 'presence_state on A: local and remote');

  ann.send({ type: 'presence', channel: 'room:3', state: null });
  t.match(await ben.next((m) => m.type === 'presence_diff' && hasKey(m.leaves, 'ann')), { joins: {}, leaves: { ann: [{ state: { status: 'away' } }] } }, 'untrack on A → leave on B');
  ann.send({ type: 'presence', channel: 'room:3', state: { status: 'back' } });
  await ben.next((m) => m.type === 'presence_diff' && metaOf(m.joins, 'ann')?.state.status === 'back');
  await ann.request({ type: 'leave', channel: 'room:3' });
  t.match(await ben.next((m) => m.type === 'presence_diff' && hasKey(m.leaves, 'ann')), { leaves: { ann: [{ state: { status: 'back' } }] } }, 'leave on A → leave on B');
  ann2.send({ type: 'presence', channel: 'room:3', state: { status: 'tab 2' } });
  await ben.next((m) => m.type === 'presence_diff' && metaOf(m.joins, 'ann')?.state.status === 'tab 2');
  await ann2.close();
  t.match(await ben.next((m) => m.type === 'presence_diff' && hasKey(m.leaves, 'ann')), { leaves: { ann: [{ state: { status: 'tab 2' } }] } }, 'socket closed on A → leave on B');
  // Nobody of room 3 is left on A: it stops following the channel and forgets B's presence.
  await waitUntil(() => a.hub.channels?.localPresence('room:3') === null, 5_000, () => 'A closed room 3');
  t.same(a.hub.channels?.bridged?.remoteState('room:3'), [], 'room 3 closed on A, B\'s presence of it forgotten');
  t.ok(bridge(b).stats.nodes >= 1, 'B sees A alive');
});

t.test('a revoked member on B stops getting A\'s broadcasts', async (t) => {
  const ann = await client(t, a.port, 'ann');
  const ben = await client(t, b.port, 'ben');
  const dan = await client(t, b.port, 'dan');
  await join(ann, 'room:1');
  await join(ben, 'room:1');
  t.match(await join(dan, 'room:1'), { type: 'joined' }, 'dan by his own rule');
  ann.send({ type: 'broadcast', channel: 'room:1', event: 'before' });
  await dan.next((m) => m.type === 'broadcast' && m.event === 'before');
  const epochs = [a, b].map((d) => d.hub.auth?.epoch);
  await query(db.url, "delete from walcast.casbin_rule where v0 = 'dan'");
  await waitUntil(() => [a, b].every((d, i) => d.hub.auth?.epoch !== epochs[i]), 10_000, () => 'both nodes applied the revoke');
  ann.send({ type: 'broadcast', channel: 'room:1', event: 'after' });
  await ben.next((m) => m.type === 'broadcast' && m.event === 'after');
  t.match(await dan.next((m) => m.type === 'error'), { code: 'forbidden' }, 'dan is told');
  await dan.next((m) => m.type === 'left' && m.channel === 'room:1');
  await dan.request({ type: 'ping' });
  t.same(of(dan, 'broadcast').map((m) => m.event), ['before'], 'dan never got "after"');
});

t.test('malformed messages on the channel subjects are dropped and counted', async (t) => {
  const ann = await client(t, a.port, 'ann');
  const ben = await client(t, b.port, 'ben');
  await join(ann, 'room:1');
  await join(ben, 'room:1');
  const nc = await connect({ servers: nats.urls });
  t.teardown(() => nc.close());
  const before = bridge(b).stats.dropped;
  const good = { v: 1, node: 'intruder', inc: 1, channel: 'room:1', event: 'forged', from: 'x', payload: 1 };
  const bodies: (string | Uint8Array)[] = [
    'not json',
    new Uint8Array([0xff, 0xfe, 0x00]),
    '[]',
    JSON.stringify({ ...good, v: undefined }),
    JSON.stringify({ ...good, channel: 'room:2' }),
    JSON.stringify({ ...good, channel: 'r'.repeat(300) }),
    JSON.stringify({ ...good, inc: -5 }),
    JSON.stringify({ ...good, payload: undefined }),
    JSON.stringify({ ...good, payload: 'x'.repeat(64 * 1024) }),
    JSON.stringify({ ...good, pad: 'x'.repeat(600 * 1024) }),
  ];
  for (const body of bodies) nc.publish(broadcastSubject(NS, 'room:1'), body);
  const presence = { v: 1, node: 'intruder', inc: 1, channel: 'room:1', seq: 1, leaves: {} };
  for (const joins of [[], { u: 'x' }, { u: [{ state: {} }] }, { u: [{ session: 's', state: 'no' }] }, { '': [{ session: 's', state: {} }] }]) {
    nc.publish(presenceSubject(NS, 'room:1'), JSON.stringify({ ...presence, joins }));
  }
  nc.publish(presenceSubject(NS, 'room:1'), JSON.stringify({ ...presence, v: 99, joins: {} }));
  nc.publish(presenceSyncSubject(NS, 'room:1'), JSON.stringify({ v: 1, node: 'intruder', inc: 1, channel: 'room:1', target: 5 }), { reply: 'nowhere' });
  nc.publish(aliveSubject(NS), JSON.stringify({ v: 1, node: '', inc: 1, gone: false }));
  nc.publish(aliveSubject(NS), 'garbage');
  await nc.flush();
  await waitUntil(() => bridge(b).stats.dropped.malformed - before.malformed >= 18, 5_000, () => `B dropped them (${JSON.stringify(bridge(b).stats.dropped)})`);
  const after = bridge(b).stats.dropped;
  t.equal(after.malformed - before.malformed, 18, 'every malformed message dropped as malformed');
  t.equal(after.version - before.version, 1, 'the unknown version counted apart');
  t.ok(after.foreign - before.foreign >= 1, 'the one naming another channel');
  await waitUntil(() => bridge(a).stats.dropped.malformed >= 18, 5_000, () => `A dropped them (${JSON.stringify(bridge(a).stats.dropped)})`);
  t.pass('A dropped them too');
  ann.send({ type: 'broadcast', channel: 'room:1', event: 'still' });
  await ben.next((m) => m.type === 'broadcast' && m.event === 'still');
  t.same(of(ben, 'broadcast').map((m) => m.event), ['still'], 'nothing forged was delivered; the nodes carry on');
  t.same(of(ben, 'presence_diff'), [], 'no forged presence');
});

t.test('a gap in a node\'s diffs is repaired by a snapshot of it (a fake node on a raw NATS connection)', async (t) => {
  const ben = await client(t, b.port, 'ben');
  await join(ben, 'room:1');
  const nc = await connect({ servers: nats.urls });
  t.teardown(() => nc.close());
  const z = { v: 1, node: 'z', inc: 9, channel: 'room:1' };
  const meta = (n: number) => ({ session: 'zs', state: { n } });
  let current = 5;
  const asked: unknown[] = [];
  nc.subscribe(presenceSyncSubject(NS, 'room:1'), {
    callback: (_err, msg) => {
      const req = msg.json<{ node: string; target: string | null }>();
      asked.push(req);
      if (req.target === 'z' && msg.reply) msg.respond(JSON.stringify({ ...z, seq: current, part: 0, more: false, state: { zed: [meta(current)] } }));
    },
  });
  await nc.flush();
  const syncsBefore = bridge(b).stats.syncRequests;
  // Its first diff B sees is seq 5: B missed 1 to 4 and asks z for all it holds.
  nc.publish(presenceSubject(NS, 'room:1'), JSON.stringify({ ...z, seq: 5, joins: { zed: [meta(5)] }, leaves: {} }));
  t.match(await ben.next((m) => m.type === 'presence_diff' && hasKey(m.joins, 'zed')), { joins: { zed: [{ state: { n: 5 } }] }, leaves: {} }, 'the snapshot joins what z holds');
  current = 6;
  nc.publish(presenceSubject(NS, 'room:1'), JSON.stringify({ ...z, seq: 6, joins: { zed: [meta(6)] }, leaves: { zed: [meta(5)] } }));
  t.match(await ben.next((m) => m.type === 'presence_diff' && hasKey(m.joins, 'zed')), { joins: { zed: [{ state: { n: 6 } }] }, leaves: { zed: [{ state: { n: 5 } }] } }, 'the next diff applies as it is');
  current = 8;
  nc.publish(presenceSubject(NS, 'room:1'), JSON.stringify({ ...z, seq: 8, joins: { zed: [meta(8)] }, leaves: { zed: [meta(7)] } }));
  t.match(await ben.next((m) => m.type === 'presence_diff' && hasKey(m.joins, 'zed')), { joins: { zed: [{ state: { n: 8 } }] }, leaves: { zed: [{ state: { n: 6 } }] } }, 'seq 7 missing: a snapshot again, and only the difference to members');
  t.equal(bridge(b).stats.syncRequests - syncsBefore, 2, 'two targeted sync requests');
  t.match(asked, [{ node: 'b', target: 'z' }, { node: 'b', target: 'z' }], 'addressed to z');
  const ben2 = await client(t, b.port, 'ben');
  await join(ben2, 'room:1');
  t.match((await ben2.next((m) => m.type === 'presence_state')).state, { zed: [{ state: { n: 8 } }] }, 'a joiner on B sees z\'s presence');
  nc.publish(aliveSubject(NS), JSON.stringify({ v: 1, node: 'z', inc: 9, gone: true }));
  t.match(await ben.next((m) => m.type === 'presence_diff' && hasKey(m.leaves, 'zed')), { joins: {}, leaves: { zed: [{ state: { n: 8 } }] } }, 'z says it is gone: its presence leaves');
  nc.publish(presenceSubject(NS, 'room:1'), JSON.stringify({ ...z, seq: 1, joins: { zed: [meta(1)] }, leaves: {} }));
  // A barrier: B handles one publisher's messages in order; once it has dropped this one, it has seen the one before.
  const malformed = bridge(b).stats.dropped.malformed;
  nc.publish(presenceSubject(NS, 'room:1'), 'barrier');
  await waitUntil(() => bridge(b).stats.dropped.malformed > malformed, 5_000, () => 'B read the barrier');
  await ben.request({ type: 'ping' });
  t.ok(bridge(b).stats.dropped.stale >= 1, 'counted as stale');
  t.notOk(ben.messages.some((m) => m.type === 'presence_diff' && metaOf(m.joins, 'zed')?.state.n === 1), 'a late message of the stopped incarnation is dropped');
});

t.test('a stopped node\'s presence leaves at once; a SIGKILLed node\'s within 20 s', async (t) => {
  const port = await freePort();
  const child = new ServeChild([
    '--db', db.url, '--port', String(port), '--jwt-secret', SECRET, '--relation', RELATION,
    '--nats', nats.urls, '--node-id', 'c', '--cluster', NS, '--stream-replicas', '1', '--stream-max-bytes', '64MiB',
  ]);
  t.teardown(() => {
    if (!t.passing()) t.comment(`node c, last lines:\n${child.proc?.stderr.split('\n').slice(-15).join('\n')}`);
    child.killAll();
  });
  const ann = await client(t, a.port, 'ann');
  const ben = await client(t, b.port, 'ben');
  await join(ann, 'room:3');
  await join(ben, 'room:3');
  /** A user on C tracks presence; A's and B's members see it; resolves with its session. */
  const trackOnC = async (label: string): Promise<string> => {
    await child.start();
    const onC = await WsClient.connect(`ws://127.0.0.1:${port}/ws?token=${await hsToken({ sub: 'ann' })}`);
    t.teardown(() => onC.terminate());
    await join(onC, 'room:3');
    onC.send({ type: 'presence', channel: 'room:3', state: { on: label } });
    const seen = await Promise.all([ann, ben].map((c) => c.next((m) => m.type === 'presence_diff' && metaOf(m.joins, 'ann')?.state.on === label, 10_000)));
    return metaOf(seen[0].joins, 'ann').session;
  };
  const leaveOf = (c: WsClient, session: string, timeoutMs: number) =>
    c.next((m) => m.type === 'presence_diff' && ((m.leaves as Metas).ann ?? []).some((x) => x.session === session), timeoutMs);

  const s1 = await trackOnC('stopping');
  let t0 = Date.now();
  t.equal(await child.stop(), 0, 'C stopped cleanly');
  await Promise.all([ann, ben].map((c) => leaveOf(c, s1, 5_000)));
  const stopMs = Date.now() - t0;
  t.ok(stopMs < 5_000, `a stopped node's presence left everywhere in ${stopMs} ms (it says so itself: no expiry wait)`);

  const s2 = await trackOnC('killed');
  t0 = Date.now();
  t.equal(await child.kill(), 'SIGKILL');
  await Promise.all([ann, ben].map((c) => leaveOf(c, s2, 25_000)));
  const killMs = Date.now() - t0;
  t.ok(killMs < 20_000, `a SIGKILLed node's presence left everywhere in ${killMs} ms`);
  t.ok(killMs >= 7_000, 'by expiry (C unheard of for 10 s), nothing sooner');
  t.ok(bridge(a).stats.expiredNodes >= 1 && bridge(b).stats.expiredNodes >= 1, 'both nodes expired C');
});
