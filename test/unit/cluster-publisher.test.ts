// The publisher's flow control and failure handling (src/cluster/publisher.ts) against a
// scripted JetStream client: what a real cluster does not produce on demand (a lost PubAck, a
// stream behind the prediction). The happy path and the real fence are in
// test/integration/cluster-publisher.test.ts.
import type { JetStreamClient, JetStreamPublishOptions, PubAck } from '@nats-io/jetstream';
import { JetStreamApiError } from '@nats-io/jetstream';
import { TimeoutError } from '@nats-io/transport-node';
import t from 'tap';
import type { Relation } from '../../src/capture/pgoutput.types.js';
import type { Transaction } from '../../src/capture/types.js';
import { Publisher } from '../../src/cluster/publisher.js';
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
    ['0/100:1', { lastSequence: 11, streamName: 'S' }],
    ['0/100:2', { lastSequence: 12, streamName: 'S' }],
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
