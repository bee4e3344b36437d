// Bounds the work done on client messages per turn of the event loop. uWebSockets.js hands us
// every socket's reads in one turn, so a flood of messages would otherwise run back to back and
// hold up everything else (deliveries, pings, timers). A message is handled at once while the
// turn's budget lasts and its connection has nothing waiting; past the budget it waits in its
// connection's queue, and the queues are drained on later turns (setImmediate), one message per
// connection in turn (round-robin), so that one flooding connection cannot starve the others.
// A connection's messages are always handled in arrival order. A queue is bounded (messages and
// bytes): past either bound the connection is closed (onOverflow).

/** A connection as seen by Turns: its waiting messages live on it (null when none). */
export interface TurnOwner {
  readonly closed: boolean;
  queued: TurnQueue | null;
}

export interface TurnQueue {
  tasks: (() => void)[];
  /** The bytes each task keeps alive. */
  sizes: number[];
  /** Index of the next task to run (tasks before it have run). */
  head: number;
  bytes: number;
}

export interface TurnsOptions {
  /** Milliseconds of message handling per turn, across connections. */
  budgetMs: number;
  maxQueuedMessages: number;
  maxQueuedBytes: number;
  /** A connection's queue is past a bound: close it (its queue is dropped). */
  onOverflow: (owner: TurnOwner, why: 'messages' | 'bytes') => void;
  /** Milliseconds, monotonic (performance.now by default; a fake clock in unit tests). */
  now?: () => number;
  /** Wraps each drain of waiting messages (replies then flushed once per connection). */
  around?: (drain: () => void) => void;
  /** Runs `fn` on a later turn (setImmediate by default). */
  defer?: (fn: () => void) => void;
}

export class Turns {
  private readonly now: () => number;
  private readonly defer: (fn: () => void) => void;
  /** When the current turn's budget started; meaningful while `armed`. */
  private turnStart = 0;
  /** A drain is scheduled: the turn's budget is being counted. */
  private armed = false;
  /** Connections with waiting messages, in round-robin order (from `readyHead`). */
  private ready: TurnOwner[] = [];
  private readyHead = 0;

  constructor(private readonly o: TurnsOptions) {
    this.now = o.now ?? (() => performance.now());
    this.defer = o.defer ?? ((fn) => void setImmediate(fn));
  }

  /** Connections with waiting messages (closed ones not yet skipped included). */
  get waiting(): number {
    return this.ready.length - this.readyHead;
  }

  /**
   * Whether a message of `owner` may be handled now (the caller then handles it at once): its
   * connection has nothing waiting and the turn's budget lasts. False: queue it with queue().
   */
  admit(owner: TurnOwner): boolean {
    if (owner.queued) return false;
    const t = this.now();
    if (!this.armed) {
      this.armed = true;
      this.turnStart = t;
      this.defer(this.tick);
      return true;
    }
    return t - this.turnStart < this.o.budgetMs;
  }

  /**
   * Queues `task` behind `owner`'s waiting messages; `bytes` is what it keeps alive while it
   * waits (a copy of the message). False when `owner` is closed or its queue is full (then
   * onOverflow has been called and the queue dropped).
   */
  queue(owner: TurnOwner, task: () => void, bytes: number): boolean {
    if (owner.closed) return false;
    let q = owner.queued;
    if (q === null) {
      q = { tasks: [], sizes: [], head: 0, bytes: 0 };
      owner.queued = q;
      this.ready.push(owner);
      if (!this.armed) {
        this.armed = true;
        this.turnStart = this.now();
        this.defer(this.tick);
      }
    }
    const n = q.tasks.length - q.head;
    if (n >= this.o.maxQueuedMessages || q.bytes + bytes > this.o.maxQueuedBytes) {
      owner.queued = null;
      this.o.onOverflow(owner, n >= this.o.maxQueuedMessages ? 'messages' : 'bytes');
      return false;
    }
    q.tasks.push(task);
    q.sizes.push(bytes);
    q.bytes += bytes;
    return true;
  }

  /** A later turn: waiting messages run, one per connection in turn, while the budget lasts. */
  private readonly tick = (): void => {
    this.armed = false;
    if (this.waiting === 0) {
      this.ready = [];
      this.readyHead = 0;
      return;
    }
    // This drain and the messages that arrive before the next one share a budget.
    this.armed = true;
    this.turnStart = this.now();
    this.defer(this.tick);
    if (this.o.around) this.o.around(this.drain);
    else this.drain();
  };

  private readonly drain = (): void => {
    do {
      const owner = this.ready[this.readyHead++];
      const q = owner.queued;
      if (owner.closed || q === null) {
        owner.queued = null;
        continue;
      }
      const task = q.tasks[q.head];
      q.tasks[q.head] = noop; // let it be collected
      q.bytes -= q.sizes[q.head++];
      if (q.head === q.tasks.length) owner.queued = null;
      else if (q.head >= 64 && q.head * 2 >= q.tasks.length) {
        q.tasks = q.tasks.slice(q.head);
        q.sizes = q.sizes.slice(q.head);
        q.head = 0;
      }
      try {
        task();
      } finally {
        if (owner.queued === q && !owner.closed) this.ready.push(owner);
        else if (owner.queued === q) owner.queued = null;
      }
    } while (this.readyHead < this.ready.length && this.now() - this.turnStart < this.o.budgetMs);
    if (this.readyHead >= 1024 && this.readyHead * 2 >= this.ready.length) {
      this.ready = this.ready.slice(this.readyHead);
      this.readyHead = 0;
    }
  };
}

function noop(): void {}
