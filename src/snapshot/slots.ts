// Turns for snapshots: at most `maxConcurrent` read at once (the size of their pool), at most
// `maxPerOwner` of them for one connection, the rest wait in arrival order (a connection past its
// share is passed over, not the ones behind it). At most `maxQueued` wait in all: past that a
// snapshot is refused (`limit_exceeded`) rather than queued without bound.
import { LimitExceededError } from '../errors.js';

interface Waiter {
  owner: object;
  resolve: (release: () => void) => void;
  reject: (err: unknown) => void;
  done: boolean;
}

export interface SlotLimits {
  maxConcurrent: number;
  maxPerOwner: number;
  maxQueued: number;
}

export class SnapshotSlots {
  private running = 0;
  private readonly perOwner = new Map<object, number>();
  private waiting: Waiter[] = [];
  private queued = 0;
  /** Most snapshots that ever ran at once (a bench and test figure). */
  maxRunning = 0;

  constructor(private readonly limits: SlotLimits) {}

  get stats(): { running: number; queued: number; maxRunning: number } {
    return { running: this.running, queued: this.queued, maxRunning: this.maxRunning };
  }

  /**
   * Resolves with a release function once the owner may read a snapshot. Rejects with
   * LimitExceededError when too many wait, or with `signal`'s reason when it aborts first.
   */
  acquire(owner: object, signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.mayRun(owner)) return Promise.resolve(this.start(owner));
    if (this.queued >= this.limits.maxQueued) {
      return Promise.reject(new LimitExceededError(`more than ${this.limits.maxQueued} snapshots are waiting on this server; try again later`));
    }
    return new Promise((resolve, reject) => {
      const w: Waiter = { owner, resolve, reject, done: false };
      this.waiting.push(w);
      this.queued++;
      signal?.addEventListener(
        'abort',
        () => {
          if (w.done) return;
          w.done = true;
          this.queued--;
          // Out of the list now, not at the next release: while every turn stays taken, a
          // subscribe/unsubscribe loop would otherwise grow it past maxQueued without bound.
          const i = this.waiting.indexOf(w);
          if (i >= 0) this.waiting.splice(i, 1);
          reject(signal.reason);
        },
        { once: true },
      );
    });
  }

  private mayRun(owner: object): boolean {
    return this.running < this.limits.maxConcurrent && (this.perOwner.get(owner) ?? 0) < this.limits.maxPerOwner;
  }

  private start(owner: object): () => void {
    this.running++;
    if (this.running > this.maxRunning) this.maxRunning = this.running;
    this.perOwner.set(owner, (this.perOwner.get(owner) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.running--;
      const n = (this.perOwner.get(owner) ?? 1) - 1;
      if (n === 0) this.perOwner.delete(owner);
      else this.perOwner.set(owner, n);
      this.next();
    };
  }

  /** Gives freed turns to the first waiters that may run. */
  private next(): void {
    if (this.running >= this.limits.maxConcurrent) return;
    const keep: Waiter[] = [];
    for (const w of this.waiting) {
      if (w.done) continue;
      if (this.running < this.limits.maxConcurrent && this.mayRun(w.owner)) {
        w.done = true;
        this.queued--;
        w.resolve(this.start(w.owner));
      } else keep.push(w);
    }
    this.waiting = keep;
  }
}
