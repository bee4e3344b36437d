// SnapshotSlots (src/snapshot/slots.ts): turns for snapshots, in total and per connection, in
// arrival order with owners at their share passed over, a bounded queue, and aborts.
import t from 'tap';
import { LimitExceededError } from '../../src/errors.js';
import { SnapshotSlots } from '../../src/snapshot/slots.js';

/** A microtask turn or two: long enough for resolved acquires to be seen. */
const settle = () => new Promise<void>((r) => setImmediate(r));

/** Tracks an acquire: whether it resolved (and its release) or rejected (and why). */
function track(p: Promise<() => void>) {
  const s: { release: (() => void) | null; error: unknown; done: boolean } = { release: null, error: null, done: false };
  p.then(
    (r) => {
      s.release = r;
      s.done = true;
    },
    (e: unknown) => {
      s.error = e;
      s.done = true;
    },
  );
  return s;
}

t.test('global limit: at most maxConcurrent at once, then in arrival order', async (t) => {
  const slots = new SnapshotSlots({ maxConcurrent: 2, maxPerOwner: 10, maxQueued: 10 });
  const owners = [{}, {}, {}, {}, {}];
  const a = owners.map((o) => track(slots.acquire(o)));
  await settle();
  t.same(a.map((x) => x.release !== null), [true, true, false, false, false], 'two run, three wait');
  t.same(slots.stats, { running: 2, queued: 3, maxRunning: 2 });
  a[1].release!();
  await settle();
  t.same(a.map((x) => x.release !== null), [true, true, true, false, false], 'a freed turn goes to the first waiting');
  a[0].release!();
  a[2].release!();
  await settle();
  t.same(a.map((x) => x.release !== null), [true, true, true, true, true]);
  t.same(slots.stats, { running: 2, queued: 0, maxRunning: 2 }, 'never more than two');
  a[3].release!();
  a[4].release!();
  t.same(slots.stats, { running: 0, queued: 0, maxRunning: 2 });
  t.equal(slots.maxRunning, 2);
});

t.test('per-owner limit, and owners at their share passed over (not blocking those behind)', async (t) => {
  const slots = new SnapshotSlots({ maxConcurrent: 3, maxPerOwner: 2, maxQueued: 10 });
  const A = { name: 'A' };
  const B = { name: 'B' };
  const C = { name: 'C' };
  const a1 = track(slots.acquire(A));
  const a2 = track(slots.acquire(A));
  const a3 = track(slots.acquire(A)); // A is at its share: waits though a turn is free
  await settle();
  t.ok(a1.release && a2.release, 'A runs two');
  t.notOk(a3.done, 'A waits for a third, though a turn is free');
  t.same(slots.stats, { running: 2, queued: 1, maxRunning: 2 });
  const b1 = track(slots.acquire(B)); // passes A's waiter: runs at once
  await settle();
  t.ok(b1.release, 'B runs at once, not behind A');
  t.same(slots.stats, { running: 3, queued: 1, maxRunning: 3 });
  const b2 = track(slots.acquire(B)); // all turns taken: waits behind a3
  const c1 = track(slots.acquire(C));
  await settle();
  t.notOk(b2.done);
  t.notOk(c1.done);
  // B's turn frees: a3 first in line, but A is at its share; b2 is next and may run.
  b1.release!();
  await settle();
  t.notOk(a3.done, 'A still at its share: passed over');
  t.ok(b2.release, 'the first waiter that may run gets the turn');
  t.notOk(c1.done, 'one turn freed, one given');
  // One of A's ends: a3 is first in line again and now may run.
  a1.release!();
  await settle();
  t.ok(a3.release, 'A below its share: its waiter runs, before C who came later');
  t.notOk(c1.done);
  a2.release!();
  await settle();
  t.ok(c1.release, 'then C');
  for (const x of [a3, b2, c1]) x.release!();
  t.same(slots.stats, { running: 0, queued: 0, maxRunning: 3 });
});

t.test('maxQueued: past it, LimitExceededError at once', async (t) => {
  const slots = new SnapshotSlots({ maxConcurrent: 1, maxPerOwner: 1, maxQueued: 2 });
  const run = track(slots.acquire({}));
  const w1 = track(slots.acquire({}));
  const w2 = track(slots.acquire({}));
  const over = track(slots.acquire({}));
  await settle();
  t.ok(run.release);
  t.notOk(w1.done);
  t.notOk(w2.done);
  t.type(over.error, LimitExceededError, 'the third waiter is refused');
  t.equal((over.error as LimitExceededError).code, 'limit_exceeded');
  t.match((over.error as Error).message, /more than 2 snapshots are waiting/);
  t.same(slots.stats, { running: 1, queued: 2, maxRunning: 1 }, 'the refused one holds no place');
  // One that may run at once is never refused, however many wait.
  const free = new SnapshotSlots({ maxConcurrent: 2, maxPerOwner: 1, maxQueued: 1 });
  const X = {};
  const x1 = track(free.acquire(X));
  const x2 = track(free.acquire(X)); // waits (X at its share): the queue is full
  const y = track(free.acquire({})); // may run
  await settle();
  t.ok(x1.release && y.release, 'runs though the queue is full');
  t.notOk(x2.done);
  // A place freed (a waiter started) takes another.
  run.release!();
  await settle();
  t.ok(w1.release);
  const w3 = track(slots.acquire({}));
  await settle();
  t.notOk(w3.done, 'queued: a place was free again');
  t.same(slots.stats, { running: 1, queued: 2, maxRunning: 1 });
});

t.test('abort while waiting: rejects with the reason and frees the place', async (t) => {
  const slots = new SnapshotSlots({ maxConcurrent: 1, maxPerOwner: 1, maxQueued: 1 });
  const run = track(slots.acquire({}));
  const ctl = new AbortController();
  const w = track(slots.acquire({}, ctl.signal));
  await settle();
  t.notOk(w.done);
  const full = track(slots.acquire({}));
  await settle();
  t.type(full.error, LimitExceededError, 'the queue is full');
  const reason = new Error('unsubscribed');
  ctl.abort(reason);
  await settle();
  t.equal(w.error, reason, 'rejected with the signal\'s reason');
  t.same(slots.stats, { running: 1, queued: 0, maxRunning: 1 }, 'its place is free');
  const next = track(slots.acquire({}));
  await settle();
  t.notOk(next.done, 'another may wait in its place');
  run.release!();
  await settle();
  t.ok(next.release, 'the aborted waiter is skipped: the next one runs');
  t.same(slots.stats, { running: 1, queued: 0, maxRunning: 1 });
  next.release!();

  // Aborted before asking: rejected at once, no place taken.
  const pre = new AbortController();
  pre.abort('gone');
  const r = track(slots.acquire({}, pre.signal));
  await settle();
  t.equal(r.error, 'gone');
  t.same(slots.stats, { running: 0, queued: 0, maxRunning: 1 });

  // Aborted after it got its turn: nothing happens; the turn is the caller's to release.
  const late = new AbortController();
  const got = track(slots.acquire({}, late.signal));
  await settle();
  late.abort(new Error('late'));
  await settle();
  t.ok(got.release);
  t.equal(got.error, null);
  t.same(slots.stats, { running: 1, queued: 0, maxRunning: 1 });
  got.release!();
});

t.test('aborted waiters do not pile up while every turn stays taken', async (t) => {
  const slots = new SnapshotSlots({ maxConcurrent: 1, maxPerOwner: 1, maxQueued: 5 });
  const run = track(slots.acquire({}));
  for (let i = 0; i < 10_000; i++) {
    const ctl = new AbortController();
    const w = slots.acquire({}, ctl.signal);
    w.catch(() => {});
    ctl.abort(new Error('unsubscribed'));
  }
  await settle();
  t.same(slots.stats, { running: 1, queued: 0, maxRunning: 1 });
  // Their entries are gone, not kept until a release (a subscribe/unsubscribe loop must not grow memory).
  t.equal((slots as unknown as { waiting: unknown[] }).waiting.length, 0, 'no entry left of the aborted waiters');
  run.release!();
});

t.test('release twice is harmless', async (t) => {
  const slots = new SnapshotSlots({ maxConcurrent: 1, maxPerOwner: 1, maxQueued: 10 });
  const O = {};
  const a = track(slots.acquire(O));
  const b = track(slots.acquire(O));
  const c = track(slots.acquire({}));
  await settle();
  a.release!();
  a.release!();
  a.release!();
  await settle();
  t.ok(b.release, 'one release, one turn');
  t.notOk(c.done, 'the repeats gave no extra turn');
  t.same(slots.stats, { running: 1, queued: 1, maxRunning: 1 });
  b.release!();
  await settle();
  t.ok(c.release);
  c.release!();
  c.release!();
  b.release!();
  t.same(slots.stats, { running: 0, queued: 0, maxRunning: 1 }, 'never below zero');
  // The owner's count is right too: it may run again, once.
  const d = track(slots.acquire(O));
  const e = track(slots.acquire(O));
  await settle();
  t.ok(d.release);
  t.notOk(e.done);
  d.release!();
  await settle();
  t.ok(e.release);
  e.release!();
});

t.test('maxRunning: the most that ever ran at once', async (t) => {
  const slots = new SnapshotSlots({ maxConcurrent: 4, maxPerOwner: 4, maxQueued: 10 });
  t.equal(slots.maxRunning, 0);
  const a = [track(slots.acquire({})), track(slots.acquire({})), track(slots.acquire({}))];
  await settle();
  t.equal(slots.maxRunning, 3);
  for (const x of a) x.release!();
  t.equal(slots.maxRunning, 3, 'kept after they end');
  t.equal(slots.stats.running, 0);
  const b = track(slots.acquire({}));
  await settle();
  t.equal(slots.maxRunning, 3, 'not raised by fewer');
  b.release!();
});
