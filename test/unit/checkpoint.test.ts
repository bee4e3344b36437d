import t from 'tap';
import { Checkpoint } from '../../src/capture/checkpoint.js';
import { Handoff } from '../../src/capture/handoff.js';
import { RetryBackoff as Backoff } from '../../src/util/backoff.js';

t.test('checkpoint target: min(processed, hold), never backwards', async (t) => {
  let held: bigint | null = null;
  const c = new Checkpoint(() => held);
  c.resumeFrom(100n);
  t.equal(c.target(), 100n, 'starts at the slot position');
  c.markProcessed(500n);
  t.equal(c.target(), 500n, 'follows processed without a hold');
  held = 300n;
  t.equal(c.target(), 300n, 'a hold below processed wins');
  held = 900n;
  t.equal(c.target(), 500n, 'a hold above processed does not push past processed');
  c.confirm(500n);
  held = 200n;
  t.equal(c.target(), 500n, 'never below what was acknowledged');
  c.markProcessed(400n);
  t.equal(c.processedLsn, 500n, 'processed only moves forward');
  c.markReceived(1000n);
  t.equal(c.receivedFor(500n), 1000n);
  t.equal(c.receivedFor(2000n), 2000n, 'write position is at least the flush position');
  c.reset(50n);
  held = null;
  t.equal(c.target(), 50n, 'a recreated slot starts afresh');
});

t.test('handoff delivers in order, waits on promises, signals pressure', async (t) => {
  const delivered: number[] = [];
  const done: number[] = [];
  const pressure: boolean[] = [];
  let release: (() => void) | null = null;
  const h = new Handoff<number>(
    {
      deliver: (n) => {
        delivered.push(n);
        if (n === 2) return new Promise<void>((r) => (release = r));
      },
      done: (n) => done.push(n),
      failed: () => t.fail('no failure expected'),
      pressure: (p) => pressure.push(p),
    },
    4,
  );
  h.push(1);
  h.push(2);
  for (let i = 3; i <= 8; i++) h.push(i);
  t.same(delivered, [1, 2], 'held at the pending promise');
  t.same(done, [1]);
  t.same(pressure, [true], 'paused past the high mark');
  (release as unknown as () => void)();
  await new Promise((r) => setImmediate(r));
  t.same(delivered, [1, 2, 3, 4, 5, 6, 7, 8], 'in order after release');
  t.same(done, [1, 2, 3, 4, 5, 6, 7, 8]);
  t.same(pressure, [true, false], 'resumed below half the mark');
});

t.test('handoff failure is final', async (t) => {
  const errors: Error[] = [];
  const done: number[] = [];
  const h = new Handoff<number>(
    {
      deliver: (n) => {
        if (n === 2) throw new Error('boom');
      },
      done: (n) => done.push(n),
      failed: (e) => errors.push(e),
      pressure: () => {},
    },
    10,
  );
  h.push(1);
  h.push(2);
  h.push(3);
  t.same(done, [1], 'the failed item and later ones are not done');
  t.equal(errors.length, 1);
  t.equal(errors[0].message, 'boom');
  const rejected = new Handoff<number>(
    { deliver: () => Promise.reject(new Error('async boom')), done: (n) => done.push(n), failed: (e) => errors.push(e), pressure: () => {} },
    10,
  );
  rejected.push(9);
  await new Promise((r) => setImmediate(r));
  t.equal(errors[1]?.message, 'async boom');
  t.notOk(done.includes(9));
});

t.test('backoff: full jitter under an exponential ceiling with a cap', async (t) => {
  const maxes = new Backoff(100, 1000, () => 0.999999);
  t.same([maxes.next(), maxes.next(), maxes.next(), maxes.next(), maxes.next()], [99, 199, 399, 799, 999]);
  const mins = new Backoff(100, 1000, () => 0);
  t.equal(mins.next(), 0, 'full jitter reaches zero');
  maxes.reset();
  t.equal(maxes.attempts, 0);
  t.equal(maxes.next(), 99, 'reset starts over');
  const far = new Backoff(100, 1000, () => 0.999999);
  const delays = Array.from({ length: 100 }, () => far.next());
  t.equal(Math.max(...delays), 999, 'the cap holds after many attempts');
});
