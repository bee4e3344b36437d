// The elector's state table (src/cluster/elector-state.ts) and what a real NATS does not produce
// on demand (src/cluster/elector.ts), against an in-memory KV with revisions and CAS: a renew
// that loses its CAS, renews that time out or hang until the lease is stale, a renew that timed
// out here but landed, callbacks that throw. Short timings; the real server and the default
// timings are in test/integration/cluster-elector.test.ts.
import { JetStreamApiError } from '@nats-io/jetstream';
import type { KV, KvEntry } from '@nats-io/kv';
import { TimeoutError } from '@nats-io/transport-node';
import t from 'tap';
import { Elector, isCasFailure } from '../../src/cluster/elector.js';
import { canElectorMove, ELECTOR_TRANSITIONS, type ElectorState } from '../../src/cluster/elector-state.js';
import { silentLogger } from '../../src/log.js';

t.test('state table', async (t) => {
  const all = Object.keys(ELECTOR_TRANSITIONS) as ElectorState[];
  t.same(all.sort(), ['candidate', 'cooldown', 'leader', 'new', 'stopped']);
  const allowed = all.flatMap((f) => all.filter((to) => canElectorMove(f, to)).map((to) => `${f}>${to}`));
  t.same(allowed.sort(), ['candidate>leader', 'candidate>stopped', 'cooldown>candidate', 'cooldown>stopped', 'leader>candidate', 'leader>cooldown', 'leader>stopped', 'new>candidate', 'new>stopped'].sort());
  // Only candidate enters leader and leader never moves to itself: onElected / onDeposed alternate.
  t.same(all.filter((f) => canElectorMove(f, 'leader')), ['candidate']);
  t.notOk(canElectorMove('cooldown', 'leader'), 'no election straight out of cooldown');
  t.same(ELECTOR_TRANSITIONS.stopped, [], 'stopped is terminal');
});

t.test('CAS failures are told from other errors', async (t) => {
  t.ok(isCasFailure(new JetStreamApiError({ code: 400, err_code: 10071, description: 'wrong last sequence: 4' })));
  t.notOk(isCasFailure(new JetStreamApiError({ code: 503, err_code: 10008, description: 'jetstream not available' })));
  t.notOk(isCasFailure(new TimeoutError()));
});

t.test('timings must leave staleMs < expiryMs', async (t) => {
  const kv = memoryKv().kv;
  const base = { kv, nodeId: 'n', log: silentLogger, onElected: () => {}, onDeposed: () => {} };
  t.throws(() => new Elector({ ...base, staleMs: 2_000, expiryMs: 2_000 }), RangeError);
  t.throws(() => new Elector({ ...base, renewMs: 1_500 }), RangeError);
  t.doesNotThrow(() => new Elector(base));
});

// --- an in-memory KV: one subject, revisions from a counter, CAS on the last revision ----------

type Op = 'get' | 'create' | 'update' | 'delete';
/** What a call does instead of its normal work: throw, never answer, or store then throw. */
type Fault = { kind: 'throw'; err: Error } | { kind: 'hang' } | { kind: 'landThenThrow'; err: Error };

function memoryKv() {
  let seq = 0;
  let last: { revision: number; operation: 'PUT' | 'DEL'; value: string } | null = null;
  const calls: Op[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const faults: Partial<Record<Op, Fault>> = {};
  const cas = (expected: number): void => {
    if ((last?.revision ?? 0) !== expected) throw new JetStreamApiError({ code: 400, err_code: 10071, description: `wrong last sequence: ${last?.revision ?? 0}` });
  };
  const write = (operation: 'PUT' | 'DEL', value: string): number => {
    last = { revision: ++seq, operation, value };
    return seq;
  };
  const entry = (): KvEntry | null =>
    last && ({ revision: last.revision, operation: last.operation, json: () => JSON.parse(last!.value) as unknown } as unknown as KvEntry);
  const run = async <T>(op: Op, work: () => T): Promise<T> => {
    calls.push(op);
    maxInFlight = Math.max(maxInFlight, ++inFlight);
    try {
      await Promise.resolve();
      const f = faults[op];
      if (f?.kind === 'hang') return await new Promise<T>(() => {});
      if (f?.kind === 'throw') throw f.err;
      const r = work();
      if (f?.kind === 'landThenThrow') {
        delete faults[op];
        throw f.err;
      }
      return r;
    } finally {
      inFlight--;
    }
  };
  const kv = {
    get: () => run('get', entry),
    create: (_k: string, v: string) =>
      run('create', () => {
        cas(last?.operation === 'PUT' ? -1 : (last?.revision ?? 0));
        return write('PUT', v);
      }),
    update: (_k: string, v: string, rev: number) =>
      run('update', () => {
        cas(rev);
        return write('PUT', v);
      }),
    delete: (_k: string, o: { previousSeq: number }) =>
      run('delete', () => {
        cas(o.previousSeq);
        write('DEL', '');
      }),
  } as unknown as KV;
  return {
    kv,
    calls,
    faults,
    maxInFlight: () => maxInFlight,
    /** Another node writes the key (a takeover behind the leader's back). */
    steal: (node: string) => write('PUT', JSON.stringify({ node, since: '' })),
    last: () => last,
  };
}

const FAST = { renewMs: 20, staleMs: 60, expiryMs: 100, cooldownMs: 50 };

/** Timings under which only a stall of seconds deposes: for tests asserting that nothing does. */
const PATIENT = { renewMs: 20, staleMs: 3_000, expiryMs: 5_000, cooldownMs: 50 };

function elector(kv: KV, extra: { onElected?: () => void; onDeposed?: () => void; timings?: typeof FAST } = {}) {
  const events: string[] = [];
  const el = new Elector({
    kv,
    nodeId: 'me',
    log: silentLogger,
    ...(extra.timings ?? FAST),
    onElected: (epoch) => {
      events.push(`elected ${epoch}`);
      extra.onElected?.();
    },
    onDeposed: (reason) => {
      events.push(`deposed ${reason}`);
      extra.onDeposed?.();
    },
  });
  return { el, events };
}

async function until(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

t.test('a renew that loses its CAS deposes at once', async (t) => {
  const m = memoryKv();
  const { el, events } = elector(m.kv);
  t.teardown(() => el.stop());
  el.start();
  await until(() => el.isLeader, 500, 'elected');
  t.same(events, ['elected 1'], 'the create of a free key wins, epoch = its revision');
  const stolen = m.steal('other');
  await until(() => events.length === 2, 500, 'deposed');
  t.same(events, ['elected 1', 'deposed lost']);
  t.equal(el.currentState, 'candidate');
  t.same(el.holder, { node: 'other', epoch: stolen }, 'sees who holds it');
  // The stolen lease is never renewed: it expires and this one takes it back, with a new epoch.
  await until(() => el.isLeader, 1_000, 're-elected');
  t.same(events, ['elected 1', 'deposed lost', `elected ${stolen + 1}`]);
  t.equal(m.maxInFlight(), 1, 'never two KV calls at once');
});

t.test('errors that are not CAS failures: retried until stale, then deposed', async (t) => {
  const m = memoryKv();
  const { el, events } = elector(m.kv);
  t.teardown(() => el.stop());
  el.start();
  await until(() => el.isLeader, 500, 'elected');
  m.faults.update = { kind: 'throw', err: new TimeoutError() };
  const from = m.calls.length;
  const t0 = performance.now();
  await until(() => events.length === 2, 1_000, 'deposed');
  const took = performance.now() - t0;
  t.same(events, ['elected 1', 'deposed stale']);
  // Bounds with room for a loaded machine: what matters is that it happens, by staleness.
  t.ok(took <= 20 * FAST.expiryMs, `deposed after ${Math.round(took)} ms`);
  t.ok(m.calls.slice(from).filter((c) => c === 'update').length >= 2, 'kept renewing meanwhile');
  t.equal(m.last()?.revision, 1, 'the key still holds the last renew...');
  delete m.faults.update;
  // ...so a candidate, this one included, waits for it to expire before taking it.
  const t1 = performance.now();
  await until(() => el.isLeader, 1_000, 're-elected');
  t.ok(performance.now() - t1 >= FAST.expiryMs - FAST.renewMs, 'only after expiry');
  t.same(events, ['elected 1', 'deposed stale', 'elected 2']);
  t.equal(m.maxInFlight(), 1, 'never two KV calls at once');
});

t.test('a renew that never answers: stale all the same, no overlapping tick', async (t) => {
  const m = memoryKv();
  const { el, events } = elector(m.kv);
  el.start();
  await until(() => el.isLeader, 500, 'elected');
  m.faults.update = { kind: 'hang' };
  const t0 = performance.now();
  await until(() => events.length === 2, 1_000, 'deposed');
  t.ok(performance.now() - t0 <= 20 * FAST.expiryMs, 'deposed by the tick while the renew hangs');
  t.same(events, ['elected 1', 'deposed stale']);
  await new Promise((r) => setTimeout(r, 5 * FAST.renewMs)); // ticks keep firing; none may start a step
  t.equal(m.calls.filter((c) => c === 'update').length, 1, 'one renew, still pending: no other KV call started');
  t.equal(m.maxInFlight(), 1);
  el.halt(); // stop() would wait for the hung step forever; the timer must still go for the test to end
});

t.test('a renew that timed out here but landed is recognised as our own', async (t) => {
  const m = memoryKv();
  const { el, events } = elector(m.kv, { timings: PATIENT });
  t.teardown(() => el.stop());
  el.start();
  await until(() => el.isLeader, 500, 'elected');
  m.faults.update = { kind: 'landThenThrow', err: new TimeoutError() };
  const rev = m.last()!.revision;
  // The next renew expects the old revision, loses the CAS to our own landed write, reads it back.
  await until(() => m.last()!.revision >= rev + 3, 1_000, 'renewing again');
  t.same(events, ['elected 1'], 'not deposed');
  t.ok(el.isLeader);
  t.same(el.holder, { node: 'me', epoch: 1 });
  await el.stop();
  t.equal(m.last()?.operation, 'DEL', 'stop() deletes at the adopted revision');
  t.same(events, ['elected 1', 'deposed stopped']);
});

t.test('callbacks that throw do not stop the elector', async (t) => {
  const m = memoryKv();
  const boom = () => {
    throw new Error('boom');
  };
  const { el, events } = elector(m.kv, { onElected: boom, onDeposed: boom });
  t.teardown(() => el.stop());
  el.start();
  await until(() => el.isLeader, 500, 'elected');
  await el.resign();
  t.equal(el.currentState, 'cooldown');
  t.equal(m.last()?.operation, 'DEL', 'resigned: key deleted');
  await until(() => el.isLeader, 1_000, 're-elected after cooldown');
  t.same(events, ['elected 1', 'deposed resigned', 'elected 3']);
  await el.resign();
  await el.resign(); // not leader: nothing
  await el.stop();
  await el.stop();
  t.same(events, ['elected 1', 'deposed resigned', 'elected 3', 'deposed resigned']);
});
