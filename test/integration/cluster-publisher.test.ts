// Cluster increment 3a (docs/dev/cluster-plan.md §3.2): the publisher against a real 3-server
// JetStream cluster. Pipelined transactions land exactly once, in position order, at the
// predicted gap-free sequences, message id = position, decoding back to the change; a stale
// writer (a second publisher at an old sequence) is fenced by 10071 and stores nothing; a
// re-publish of stored message ids is a duplicate at the same sequences, not a second copy.
import { DeliverPolicy, jetstream, jetstreamManager, type JetStreamClient, type JsMsg } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { isDeepStrictEqual } from 'node:util';
import t from 'tap';
import type { Relation } from '../../src/capture/pgoutput.types.js';
import type { CapturedChange, Transaction } from '../../src/capture/types.js';
import { TypeRegistry } from '../../src/capture/types-registry.js';
import { decodeChange, toCaptured } from '../../src/cluster/codec.js';
import { Publisher } from '../../src/cluster/publisher.js';
import { rowRouteToken } from '../../src/cluster/route.js';
import { clusterNames, ensureStream } from '../../src/cluster/stream.js';
import { ClusterFencedError } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import { formatLsn } from '../../src/protocol/lsn.js';
import { formatWalPosition } from '../../src/protocol/position.js';
import { withNats } from '../helpers/nats.js';

const types = new TypeRegistry();
const columns = [
  { name: 'id', key: true, typeOid: 23, typeMod: -1 },
  { name: 'room', key: false, typeOid: 23, typeMod: -1 },
  { name: 'body', key: false, typeOid: 25, typeMod: -1 },
];
const rel: Relation = {
  oid: 16400,
  schema: 'public',
  name: 'notes',
  qualified: 'public.notes',
  replicaIdentity: 'default',
  columns,
  decoders: columns.map((c) => types.decoder(c.typeOid)),
};
const routeOf = (c: CapturedChange) => rowRouteToken(23, c.tag === 'delete' ? c.old.room : c.tag === 'truncate' ? null : c.new.room);

/** Transaction k (from 1): 10 changes, inserts and an update, a delete; a truncate in every 50th. */
function tx(k: number): Transaction {
  const lsn = 0x1000000n + BigInt(k) * 0x1000n;
  const changes: CapturedChange[] = [];
  for (let i = 0; i < 10; i++) {
    const id = k * 100 + i;
    if (i === 9 && k % 50 === 0) changes.push({ index: i, tag: 'truncate', relation: rel, cascade: false, restartIdentity: true });
    else if (i === 8) changes.push({ index: i, tag: 'delete', relation: rel, old: { id: id - 1 } });
    else if (i === 7) changes.push({ index: i, tag: 'update', relation: rel, old: null, new: { id: id - 2, room: k % 7, body: `edited ${k}` }, unchangedToast: null });
    else changes.push({ index: i, tag: 'insert', relation: rel, new: { id, room: (k + i) % 7, body: `note ${k}.${i} é` } });
  }
  return { xid: 1000 + k, lsn, lsnText: formatLsn(lsn), endLsn: lsn + 0x80n, commitTime: `2026-01-01T00:00:${String(k % 60).padStart(2, '0')}.000001Z`, changes };
}

t.test('publisher', async (t) => {
  const nats = await withNats(t, { size: 3 });
  const nc = await connect({ servers: nats.urls, name: 'walcast test-publisher' });
  t.teardown(() => nc.close());
  const jsm = await jetstreamManager(nc);
  const names = clusterNames('p1');
  // nats-server 2.9 reserves max_bytes on every replica: a small stream.
  const info = await ensureStream(jsm, { names, description: 'walcast test', maxAgeMs: 3_600_000, maxBytes: 64 * 1024 ** 2, replicas: 3 }, 'walcast', silentLogger);
  t.equal(info.state.last_seq, 0, 'a new stream');
  const js = jetstream(nc, { timeout: 5_000 });

  // Counts publishes awaiting their PubAck, to see the pipeline and its window.
  let inFlight = 0;
  let maxInFlight = 0;
  const counting = {
    publish: (...a: Parameters<JetStreamClient['publish']>) => {
      maxInFlight = Math.max(maxInFlight, ++inFlight);
      return js.publish(...a).finally(() => inFlight--);
    },
  } as unknown as JetStreamClient;

  const N = 200;
  const txs = Array.from({ length: N }, (_, i) => tx(i + 1));
  const total = N * 10;

  const readAll = async (from: number, count: number): Promise<JsMsg[]> => {
    const c = await js.consumers.get(names.stream, { opt_start_seq: from, deliver_policy: DeliverPolicy.StartSequence });
    const out: JsMsg[] = [];
    const it = await c.consume();
    for await (const m of it) {
      out.push(m);
      if (out.length === count) break;
    }
    return out;
  };

  await t.test('pipelined transactions land in position order at the predicted sequences', async (t) => {
    const p = new Publisher({ js: counting, ns: 'p1', stream: names.stream, epoch: 1, nextSeq: 1, log: silentLogger, window: 64, routeOf });
    const started = Date.now();
    await Promise.all(txs.map((x) => p.publish(x)));
    t.comment(`${total} changes in ${Date.now() - started} ms, at most ${maxInFlight} in flight`);
    t.ok(maxInFlight > 1, 'pipelined: more than one publish awaited its PubAck at once');
    t.ok(maxInFlight <= 64, `never more than the window in flight (${maxInFlight})`);
    t.equal(p.currentState, 'open');
    t.equal(p.nextSeq, total + 1);
    const last = txs[N - 1];
    t.equal(formatWalPosition(p.acked()!.lsn, p.acked()!.index), `${last.lsnText}:9`, 'acked() reaches the last position');
    t.equal(p.hold(Date.now(), 60_000), txs[0].lsn, 'within the delay the first transaction is held');
    t.equal(p.hold(Date.now() + 60_000, 60_000), null, 'past it nothing is');

    const s = await jsm.streams.info(names.stream);
    t.equal(s.state.messages, total, 'exactly the changes');
    t.equal(s.state.first_seq, 1);
    t.equal(s.state.last_seq, total);
    const got = await readAll(1, total);
    let bad = 0;
    for (let i = 0; i < total; i++) {
      const m = got[i];
      const x = txs[Math.floor(i / 10)];
      const c = x.changes[i % 10];
      const pos = `${x.lsnText}:${c.index}`;
      const wantSubject = `walcast.p1.s.d.public.notes.${c.tag === 'truncate' ? '=t' : routeOf(c)}`;
      const d = toCaptured(decodeChange(m.data), rel);
      const ok = m.seq === i + 1 && m.headers?.get('Nats-Msg-Id') === pos && m.subject === wantSubject && isDeepStrictEqual(d.change, c)
        && d.head.lsn === x.lsn && d.head.endLsn === x.endLsn && d.head.xid === x.xid && d.head.commitTime === x.commitTime;
      if (!ok) {
        bad++;
        t.same(d.change, c, `seq ${m.seq}: ${pos} decodes back to its change`);
        t.fail(`seq ${m.seq} (want ${i + 1}), id ${m.headers?.get('Nats-Msg-Id')} (want ${pos}), subject ${m.subject} (want ${wantSubject})`);
        if (bad > 5) break;
      }
    }
    t.equal(got.length, total);
    t.equal(bad, 0, 'every message: its seq, id, subject and payload');
  });

  await t.test('a stale writer is fenced by its expected last sequence and stores nothing', async (t) => {
    const stale = new Publisher({ js, ns: 'p1', stream: names.stream, epoch: 7, nextSeq: 1, log: silentLogger, routeOf });
    const fresh = tx(N + 1);
    const err = await stale.publish(fresh).then(() => null, (e: unknown) => e);
    t.type(err, ClusterFencedError, 'the publish is refused');
    t.equal((err as ClusterFencedError).code, 'cluster_fenced');
    t.match((err as Error).message, /another capture appended/);
    t.equal(((err as Error).cause as { code?: number }).code, 10071, 'JetStream refused it: wrong last sequence');
    t.equal(stale.currentState, 'fenced');
    await stale.settled();
    t.equal(stale.acked(), null, 'nothing of it PubAck\'ed');
    const again = await stale.publish(tx(N + 2)).then(() => null, (e: unknown) => e);
    t.equal(again, err, 'later publishes reject with the same error');
    const s = await jsm.streams.info(names.stream);
    t.equal(s.state.messages, total, 'nothing of it stored');
    t.equal(s.state.last_seq, total);
  });

  await t.test('re-publishing stored message ids is a duplicate at the same sequences; then publishing goes on', async (t) => {
    // A restarted writer re-sends the last transaction from the sequence it had.
    const acks: boolean[] = [];
    const watching = {
      publish: (...a: Parameters<JetStreamClient['publish']>) => js.publish(...a).then((pa) => { acks.push(pa.duplicate); return pa; }),
    } as unknown as JetStreamClient;
    const p = new Publisher({ js: watching, ns: 'p1', stream: names.stream, epoch: 11, nextSeq: total - 9, log: silentLogger, routeOf });
    await p.publish(txs[N - 1]);
    t.same(acks, Array(10).fill(true), 'every PubAck says duplicate');
    t.equal(p.currentState, 'open');
    t.equal(formatWalPosition(p.acked()!.lsn, p.acked()!.index), `${txs[N - 1].lsnText}:9`);
    let s = await jsm.streams.info(names.stream);
    t.equal(s.state.messages, total, 'not stored twice');
    await p.publish(tx(N + 1));
    t.same(acks.slice(10), Array(10).fill(false), 'the next transaction is stored');
    s = await jsm.streams.info(names.stream);
    t.equal(s.state.last_seq, total + 10, 'right after the last one');
    const [first] = await readAll(total + 1, 1);
    t.equal(first.headers?.get('Nats-Msg-Id'), `${tx(N + 1).lsnText}:0`);
  });
});
