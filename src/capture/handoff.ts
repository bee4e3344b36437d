// Hands committed transactions downstream one at a time, in order. Synchronous while the
// consumer returns synchronously; a returned promise holds the next item until it settles.
// Past `high` waiting items, or `highWeight` of their summed weight (bytes), it asks for the
// source to pause, and below half of both (CAPTURE.handoffResumeShare) to resume.
import { CAPTURE } from '../constants.js';

export interface HandoffHooks<T> {
  deliver(item: T): void | Promise<void>;
  /** After `deliver` finished for this item (in order). */
  done(item: T): void;
  failed(err: Error): void;
  pressure(paused: boolean): void;
}

export class Handoff<T> {
  private readonly queue: T[] = [];
  private draining = false;
  private paused = false;
  private broken = false;
  private weight = 0;

  constructor(
    private readonly hooks: HandoffHooks<T>,
    private readonly high: number,
    private readonly weigh: (item: T) => number = () => 0,
    private readonly highWeight = Number.POSITIVE_INFINITY,
  ) {}

  get size(): number {
    return this.queue.length;
  }

  get isPaused(): boolean {
    return this.paused;
  }

  push(item: T): void {
    if (this.broken) return;
    this.queue.push(item);
    this.weight += this.weigh(item);
    if ((this.queue.length >= this.high || this.weight >= this.highWeight) && !this.paused) {
      this.paused = true;
      this.hooks.pressure(true);
    }
    if (!this.draining) this.drain();
  }

  private drain(): void {
    this.draining = true;
    while (this.queue.length > 0) {
      let result: void | Promise<void>;
      try {
        result = this.hooks.deliver(this.queue[0]);
      } catch (err) {
        this.fail(err as Error);
        return;
      }
      if (result && typeof (result as Promise<void>).then === 'function') {
        (result as Promise<void>).then(
          () => {
            this.finishHead();
            this.drain();
          },
          (err: Error) => this.fail(err),
        );
        return;
      }
      this.finishHead();
    }
    this.draining = false;
  }

  private finishHead(): void {
    const item = this.queue.shift() as T;
    this.weight -= this.weigh(item);
    this.hooks.done(item);
    if (this.paused && this.queue.length <= this.high * CAPTURE.handoffResumeShare && this.weight <= this.highWeight * CAPTURE.handoffResumeShare) {
      this.paused = false;
      this.hooks.pressure(false);
    }
  }

  /** A consumer failure is final: nothing after the failed item is delivered or acknowledged. */
  private fail(err: Error): void {
    this.broken = true;
    this.draining = false;
    this.queue.length = 0;
    this.weight = 0;
    this.hooks.failed(err);
  }
}
