// The publisher's flow control and failure handling (src/cluster/publisher.ts) against a
// scripted JetStream client: what a real cluster does not produce on demand (a lost PubAck, a
// stream behind the prediction). The happy path and the real fence are in
// test/integration/cluster-publisher.test.ts. Interest routing's capture side (capture-routing.ts,
// capture-heartbeat.ts, capture-routes.ts): chain and ends headers fixed at enqueue, the
// heartbeat's acked/last bookkeeping under PubAcks in any order, the applied revision, route columns.
import type { JetStreamClient, JetStreamPublishOptions, PubAck } from '@nats-io/jetstream';
import { JetStreamApiError } from '@nats-io/jetstream';
import { TimeoutError } from '@nats-io/transport-node';
import t from 'tap';
import type { Relation } from '../../src/capture/pgoutput.types.js';
import type { Transaction } from '../../src/capture/types.js';
import { AckTracker } from '../../src/cluster/capture-heartbeat.js';
import { RouteColumns } from '../../src/cluster/capture-routes.js';
import { CaptureChain } from '../../src/cluster/capture-routing.js';
import { parseChain } from '../../src/cluster/chain-codec.js';
import { dataInterestKey, presenceKey } from '../../src/cluster/interest-keys.js';
import { InterestTable } from '../../src/cluster/interest-table.js';
import { Publisher } from '../../src/cluster/publisher.js';
import { setEnds } from '../../src/cluster/capture-routing.js';
import { PUBLISHER_TRANSITIONS } from '../../src/cluster/publisher-state.js';
import { ClusterFencedError, ClusterPublishError } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import { formatLsn } from '../../src/protocol/lsn.js';

const rel: Relation = { oid: 1, schema: 'public', name: 't', qualified: 'public.t', replicaIdentity: 'default', columns: [{ name: 'id', key: true, typeOid: 23, typeMod: -1 }], decoders: [] };
function tx(k: number, n: number): Transaction {
  const lsn = BigInt(k) * 0x100n;
  return { xid: k, lsn, lsnText: formatLsn(lsn), endLsn: lsn + 1n, commitTime: '2026-01-01T00:00:00.000000Z', changes: Array.from({ length: n }, (_, i) => ({ index: i, tag: 'insert' as const, relation: rel, new: { id: i } })) };
}

interface Call {
  subject: string;
  opts: Partial<JetStreamPublishOptions>;
  resolve: (pa: PubAck) => void;
  reject: (e: unknown) => void;
}

/** A JetStream client whose publishes wait until the test answers them. */
function scripted() {
  const calls: Call[] = [];
  const js = {
    publish: (subject: string, _data: Uint8Array, opts: Partial<JetStreamPublishOptions>) =>
      new Promise<PubAck>((resolve, reject) => calls.push({ subject, opts, resolve, reject })),
  } as unknown as JetStreamClient;
  const ack = (c: Call, duplicate = false, seq = c.opts.expect!.lastSequence! + 1) => c.resolve({ stream: 'S', seq, duplicate, domain: '' } as PubAck);
  return { js, calls, ack };
}
const tick = () => new Promise((r) => setImmediate(r));
const apiError = (description: string) => new JetStreamApiError({ code: 400, err_code: 10071, description });

t.test('the state table: only open leaves', async (t) => {
  t.same(PUBLISHER_TRANSITIONS.open, ['fenced', 'failed', 'closed']);
  for (const s of ['fenced', 'failed', 'closed'] as const) t.same(PUBLISHER_TRANSITIONS[s], [], `${s} is terminal`);
});

t.test('at most `window` in flight, in order, with id and expectation; resolves when all are PubAck\'ed', async (t) => {
  const { js, calls, ack } = scripted();
  const p = new Publisher({ js, ns: 'n', stream: 'S', epoch: 1, nextSeq: 11, log: silentLogger, window: 3 });
  let done = false;
  const a = p.publish(tx(1, 4)).then(() => { done = true; });
  const b = p.publish(tx(2, 1));
  t.equal(calls.length, 3, 'three sent');
  t.same(calls.map((c) => [c.opts.msgID, c.opts.expect]), [
    ['0/100:0', { lastSequence: 10, streamName: 'S' }],
    ['0/100:1', { lastSequence: 11, streamName: 'S', lastMsgID: '0/100:0' }],
    ['0/100:2', { lastSequence: 12, streamName: 'S', lastMsgID: '0/100:1' }],
  ]);
  t.equal(calls[0].subject, 'walcast.n.s.d.public.t.=n', 'default route =n');
  ack(calls[1]);
  await tick();
  t.equal(calls.length, 4, 'one PubAck frees one slot');
  t.equal(p.acked(), null, 'seq 11 not PubAck\'ed yet');
  ack(calls[0]);
  ack(calls[2]);
  await tick();
  t.same(p.acked(), { lsn: 0x100n, index: 2 });
  t.notOk(done, 'index 3 pending');
  ack(calls[3]);
  await a;
  t.equal(calls.length, 5);
  ack(calls[4]);
  await b;
  t.same(p.acked(), { lsn: 0x200n, index: 0 });
  t.equal(p.nextSeq, 16);
  await p.publish(tx(3, 0));
  t.equal(p.hold(Date.now() + 10, 0), null, 'an empty transaction holds nothing once its delay is over');
});

t.test('a lost PubAck is retried once with the same id; a duplicate counts as stored', async (t) => {
  const { js, calls, ack } = scripted();
  const p = new Publisher({ js, ns: 'n', stream: 'S', epoch: 1, nextSeq: 1, log: silentLogger });
  const done = p.publish(tx(1, 1));
  calls[0].reject(new TimeoutError());
  await tick();
  t.equal(calls.length, 2, 'sent again');
  t.same(calls[1].opts, calls[0].opts, 'same id, same expectation');
  ack(calls[1], true);
  await done;
  t.equal(p.currentState, 'open');
  t.same(p.acked(), { lsn: 0x100n, index: 0 });
});

t.test('no PubAck after the retry: failed; queued and later publishes reject', async (t) => {
  const { js, calls } = scripted();
  const p = new Publisher({ js, ns: 'n', stream: 'S', epoch: 1, nextSeq: 1, log: silentLogger, window: 1 });
  const a = p.publish(tx(1, 1)).catch((e: unknown) => e);
  const b = p.publish(tx(2, 1)).catch((e: unknown) => e);
  calls[0].reject(new TimeoutError());
  await tick();
  calls[1].reject(new TimeoutError());
  const [ea, eb] = await Promise.all([a, b]);
  t.type(ea, ClusterPublishError);
  t.equal((ea as ClusterPublishError).code, 'cluster_publish_failed');
  t.equal(eb, ea, 'the queued transaction rejects with the same error');
  t.equal(calls.length, 2, 'the queued one was never sent');
  t.equal(p.currentState, 'failed');
  await t.rejects(p.publish(tx(3, 1)), ClusterPublishError);
  await p.settled();
});

t.test('10071: fenced when the stream is past the prediction, failed when behind it', async (t) => {
  {
    const { js, calls } = scripted();
    const p = new Publisher({ js, ns: 'n', stream: 'S', epoch: 1, nextSeq: 5, log: silentLogger });
    const e = p.publish(tx(1, 1)).catch((err: unknown) => err);
    calls[0].reject(apiError('wrong last sequence: 9'));
    t.type(await e, ClusterFencedError);
    t.equal(p.currentState, 'fenced');
    t.equal(p.failure, await e);
  }
  {
    const { js, calls } = scripted();
    const p = new Publisher({ js, ns: 'n', stream: 'S', epoch: 1, nextSeq: 5, log: silentLogger });
    const e = p.publish(tx(1, 2)).catch((err: unknown) => err);
    calls[1].reject(apiError('wrong last sequence: 4'));
    t.type(await e, ClusterPublishError, 'our own seq 5 is missing: not a fence');
    t.equal(p.currentState, 'failed');
  }
});

t.test('a PubAck at another sequence fails; close() rejects what is queued', async (t) => {
  const { js, calls, ack } = scripted();
  const p = new Publisher({ js, ns: 'n', stream: 'S', epoch: 1, nextSeq: 1, log: silentLogger });
  const e = p.publish(tx(1, 1)).catch((err: unknown) => err);
  ack(calls[0], true, 7);
  t.match((await e as Error).message, /seq 7 \(duplicate\), expected S seq 1/);
  t.equal(p.currentState, 'failed');

  const q = scripted();
  const p2 = new Publisher({ js: q.js, ns: 'n', stream: 'S', epoch: 1, nextSeq: 1, log: silentLogger });
  const pending = p2.publish(tx(1, 1)).catch((err: unknown) => err);
  p2.close();
  t.type(await pending, ClusterPublishError);
  t.equal(p2.currentState, 'closed');
  q.ack(q.calls[0]);
  await p2.settled();
  t.same(p2.acked(), { lsn: 0x100n, index: 0 }, 'a PubAck after close still counts in the ledger');
});

t.test('AckTracker: acked is the gap-free PubAck\'ed prefix; last per inc within it', async (t) => {
  const a = new AckTracker();
  a.join('aa');
  a.join('bb');
  t.equal(a.acked, 0, 'nothing before the marker');
  a.start(10);
  const A = new Set(['aa']);
  const AB = new Set(['aa', 'bb']);
  a.record(11, A);
  a.record(12, new Set<string>());
  a.join('cc'); // joined after the marker: 0 until something naming it is acked
  a.record(13, new Set(['cc', 'bb']));
  a.record(14, AB);
  t.throws(() => a.record(16, A), RangeError, 'seqs must follow each other');
  t.same(a.last(), { aa: 0, bb: 0, cc: 0 }, 'before the marker\'s PubAck');
  t.ok(a.ack(12));
  t.ok(a.ack(11));
  t.equal(a.acked, 0, 'the marker is not PubAck\'ed yet');
  t.ok(a.ack(10));
  t.equal(a.acked, 12);
  t.same(a.last(), { aa: 11, bb: 10, cc: 0 }, 'the marker for incs known then, 0 for a later one');
  t.ok(a.ack(14));
  t.equal(a.acked, 12, '13 is missing');
  t.same(a.last(), { aa: 11, bb: 10, cc: 0 }, 'nothing past the gap counts');
  t.notOk(a.ack(14), 'counted once');
  t.notOk(a.ack(9), 'before the marker');
  t.notOk(a.ack(15), 'not recorded');
  t.equal(a.held, 2);
  t.ok(a.ack(13));
  t.equal(a.acked, 14);
  t.same(a.last(), { aa: 14, bb: 14, cc: 13 });
  t.equal(a.held, 0, 'nothing held once all is acked');
  a.leave('bb');
  a.join('bb'); // back: a new chain, what was recorded before does not count for it
  a.record(15, AB);
  t.same(a.last(), { aa: 14, cc: 13, bb: 0 });
  a.ack(15);
  t.same(a.last(), { aa: 15, cc: 13, bb: 15 });
});

t.test('AckTracker: bounded by what is not acked through, over many seqs', async (t) => {
  const a = new AckTracker();
  a.join('aa');
  a.start(1);
  const A = new Set(['aa']);
  let max = 0;
  for (let s = 2; s <= 10_000; s++) {
    a.record(s, A);
    if (s % 3 === 0) {
      a.ack(s);
      a.ack(s - 1);
      a.ack(s - 2);
    }
    max = Math.max(max, a.held);
  }
  t.ok(max <= 3, `held at most ${max}`);
  t.equal(a.acked, 9_999);
  t.same(a.last(), { aa: 9_999 });
});

t.test('setEnds: each inc\'s last message, not on the transaction\'s last', async (t) => {
  const out = [{ ends: null }, { ends: null }, { ends: null }, { ends: null }] as Array<{ ends: string | null }>;
  setEnds(out, [new Set(['a', 'b']), new Set(['a']), new Set(['c']), new Set(['c', 'd'])]);
  t.same(out.map((o) => o.ends), ['b', 'a', null, null], 'a ends at 1, b at 0; c and d end with the transaction');
});

/** An interest table fed keys with increasing revisions. */
function interests() {
  const table = new InterestTable();
  let rev = 0;
  const put = (key: string) => table.apply({ key, operation: 'PUT', revision: ++rev, value: '{}' });
  const del = (key: string) => table.apply({ key, operation: 'DEL', revision: ++rev });
  return { table, put, del };
}

const roomRel: Relation = {
  oid: 2, schema: 'public', name: 'msgs', qualified: 'public.msgs', replicaIdentity: 'full',
  columns: [{ name: 'id', key: true, typeOid: 23, typeMod: -1 }, { name: 'room', key: false, typeOid: 25, typeMod: -1 }], decoders: [],
};

t.test('a publisher with a chain: Walcast-Chain and Walcast-Ends fixed at enqueue, the marker without', async (t) => {
  const { js, calls, ack } = scripted();
  const I = interests();
  I.put(presenceKey('aaaaaaaa'));
  I.put(dataInterestKey('aaaaaaaa', 'public', 't', null));
  const chain = new CaptureChain(I.table, 7, silentLogger);
  const routes = new RouteColumns([[2, 'room']]);
  const p = new Publisher({ js, ns: 'n', stream: 'S', epoch: 7, nextSeq: 5, log: silentLogger, chain, routeOf: (c) => routes.routeOf(c), oldRouteOf: (c) => routes.oldRouteOf(c) });
  void p.publishCtl({ type: 'epoch', epoch: 7, node: 'x', after: null, end: null }, { lsn: 1n, index: 0 }, null, 'epoch-7');
  I.put(dataInterestKey('bbbbbbbb', 'public', 'msgs', 'r1')); // after the marker
  const lsn = 0x500n;
  const changes: Transaction['changes'] = [
    { index: 0, tag: 'insert', relation: rel, new: { id: 1 } },
    { index: 1, tag: 'insert', relation: roomRel, new: { id: 1, room: 'r1' } },
    { index: 2, tag: 'update', relation: roomRel, old: { id: 1, room: 'r1' }, new: { id: 1, room: 'r2' }, unchangedToast: null },
    { index: 3, tag: 'insert', relation: roomRel, new: { id: 2, room: 'r2' } },
  ];
  void p.publish({ xid: 1, lsn, lsnText: formatLsn(lsn), endLsn: lsn + 1n, commitTime: '2026-01-01T00:00:00.000000Z', changes });
  t.equal(calls.length, 5);
  const h = (i: number, name: string) => calls[i].opts.headers?.get(name) ?? '';
  t.equal(h(0, 'Walcast-Chain'), '', 'the marker names nobody');
  t.same(calls.map((c) => c.subject.split('.').slice(-1)[0]), ['ctl', '=n', 'r1', 'r2', 'r2'], 'routes by the route column; the moved row on its new route');
  t.equal(h(1, 'Walcast-Chain'), '7;aaaaaaaa=5', 'the whole-table follower, from the marker');
  t.equal(h(2, 'Walcast-Chain'), '7;bbbbbbbb=0', 'joined after the marker: its chain starts here');
  t.equal(h(3, 'Walcast-Chain'), '7;bbbbbbbb=7', 'the row leaving r1 names r1\'s follower');
  t.equal(h(4, 'Walcast-Chain'), '', 'r2 has no follower');
  t.same([1, 2, 3, 4].map((i) => h(i, 'Walcast-Ends')), ['aaaaaaaa', '', 'bbbbbbbb', ''], 'each inc\'s last change, not the last one');
  t.equal(h(4, 'Walcast-Last'), '1');
  t.equal(chain.heartbeat('x'), null, 'no heartbeat before the marker is PubAck\'ed');
  ack(calls[0]);
  await tick();
  t.match(chain.heartbeat('x'), { epoch: 7, markerSeq: 5, acked: 5, appliedRev: 3, appliedSeq: 5, last: { aaaaaaaa: 5, bbbbbbbb: 0 } });
  // A retry carries the same headers.
  calls[2].reject(new TimeoutError());
  await tick();
  t.equal(calls.length, 6);
  t.equal(calls[5].opts.headers?.get('Walcast-Chain'), '7;bbbbbbbb=0', 'the retry: same chain header');
  ack(calls[1]);
  ack(calls[5]);
  ack(calls[3]);
  await tick();
  t.match(chain.heartbeat('x'), { acked: 8, last: { aaaaaaaa: 6, bbbbbbbb: 8 } });
  // An interest applied while idle: the next heartbeat reports it from the last stamped seq on.
  I.put(dataInterestKey('cccccccc', 'public', 'msgs', 'r2'));
  t.match(chain.heartbeat('x'), { appliedRev: 4, appliedSeq: 9, last: { cccccccc: 0 } }, 'every seq after 9 is stamped at revision ≥ 4');
  void p.publishCtl({ type: 'mark', wal: 0x600n }, { lsn: 0x5ffn, index: 2147483647 }, null, 'mark-1');
  const mark = parseChain(calls[6].opts.headers!.get('Walcast-Chain'));
  t.same([...mark.links].sort(), [['aaaaaaaa', 6], ['bbbbbbbb', 8], ['cccccccc', 0]], 'a ctl mark concerns everyone');
  I.del(dataInterestKey('bbbbbbbb', 'public', 'msgs', 'r1'));
  void p.publishCtl({ type: 'mark', wal: 0x700n }, { lsn: 0x6ffn, index: 2147483647 }, null, 'mark-2');
  t.same([...parseChain(calls[7].opts.headers!.get('Walcast-Chain')).links.keys()].sort(), ['aaaaaaaa', 'cccccccc'], 'an inc without keys left');
  t.notOk('bbbbbbbb' in chain.heartbeat('x')!.last, 'and is no longer in the heartbeat');
});

t.test('RouteColumns: read by oid at takeover, then from the slot by regclass text', async (t) => {
  const r = new RouteColumns([[2, 'room']]);
  t.equal(r.columnOf(roomRel), 'room');
  t.equal(r.routeOf({ index: 0, tag: 'insert', relation: roomRel, new: { id: 1, room: 'r 1' } }).startsWith('='), true, 'a non-plain value is hashed');
  t.equal(r.routeOf({ index: 0, tag: 'delete', relation: roomRel, old: { id: 1, room: null } }), '=0', 'NULL');
  t.equal(r.routeOf({ index: 0, tag: 'truncate', relation: roomRel, cascade: false, restartIdentity: false }), '=t');
  t.equal(r.oldRouteOf({ index: 0, tag: 'update', relation: roomRel, old: null, new: { id: 1, room: 'a' }, unchangedToast: null }), '=n', 'no old row: unknown');
  const routesRel: Relation = { ...rel, oid: 3, schema: 'walcast', name: 'routes', qualified: 'walcast.routes' };
  r.apply({ index: 0, tag: 'update', relation: routesRel, old: { rel: 'msgs' }, new: { rel: 'msgs', route_by: 'id' }, unchangedToast: null });
  t.equal(r.columnOf(roomRel), 'id', 'a change from the slot (bare name) wins');
  r.apply({ index: 0, tag: 'delete', relation: routesRel, old: { rel: 'msgs' } });
  t.equal(r.columnOf(roomRel), null, 'route removed');
  const odd: Relation = { ...roomRel, oid: 9, schema: 'My Schema', name: 'user', qualified: 'My Schema.user' };
  r.apply({ index: 0, tag: 'insert', relation: routesRel, new: { rel: '"My Schema"."user"', route_by: 'room' } });
  t.equal(r.columnOf(odd), 'room', 'quoted qualified names');
  t.equal(r.columnOf(rel), null, 'others unrouted');
});
