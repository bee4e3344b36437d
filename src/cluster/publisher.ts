// Capture's writer into the cluster's stream (docs/dev/cluster-plan.md §3.1, §3.2): one message
// per change of each committed transaction, message id = its position, each stamped with the
// stream sequence it must follow (`Nats-Expected-Last-Sequence` = predicted seq − 1). Capture is
// the only writer, so the predicted sequences are exactly the stored ones: gap-free, in position
// order. Publishes are pipelined (up to `window` awaiting their PubAck) and the expectation
// makes every one a fence: once anyone else appended, each queued publish of this one fails.
// Not wired into capture yet (3b: takeover, re-fence, marks, chain headers).
import { JetStreamApiError, type JetStreamClient, type PubAck } from '@nats-io/jetstream';
import { TimeoutError } from '@nats-io/transport-node';
import type { Relation } from '../capture/pgoutput.types.js';
import type { CapturedChange, Transaction } from '../capture/types.js';
import { CLUSTER, CLUSTER_TOKENS } from '../constants.js';
import { ClusterFencedError, ClusterPublishError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Position } from '../protocol/position.js';
import { encodeChange, relationRef } from './codec.js';
import { PublishLedger, type LedgerMessage } from './ledger.js';
import { canPublisherMove, type PublisherState } from './publisher-state.js';
import { changeSubject, type ChangeArea } from './subjects.js';

/** JetStream API error: `Nats-Expected-Last-Sequence` did not match the stream's last sequence. */
export const WRONG_LAST_SEQUENCE = 10071;

export interface PublisherOptions {
  js: JetStreamClient;
  /** The cluster namespace (subjects). */
  ns: string;
  /** The stream every PubAck must name (`Nats-Expected-Stream` too). */
  stream: string;
  /** This leader's epoch, for logs and errors (chain headers come with 3b). */
  epoch: string;
  /** The stream sequence the first message gets: the stream's last sequence + 1. */
  nextSeq: number;
  log: Logger;
  /** Messages in flight at most (default CLUSTER.publishWindow). */
  window?: number;
  /** PubAck wait per attempt (default CLUSTER.publishTimeoutMs). */
  timeoutMs?: number;
  /** The route token of a row change (route.ts rowRouteToken on its table's route column); default `=n`. Truncates go to `=t`. */
  routeOf?: (change: CapturedChange) => string;
  /** `a` for the policy and relation tables; default `d`. */
  areaOf?: (change: CapturedChange) => ChangeArea;
  /** Clock for the ledger (ms). */
  now?: () => number;
}

interface TxWaiter {
  pending: number;
  done: boolean;
  resolve: () => void;
  reject: (err: Error) => void;
}

interface Outgoing {
  seq: number;
  subject: string;
  data: Uint8Array;
  msgID: string;
  waiter: TxWaiter;
}

const WRONG_LAST = /wrong last sequence: (\d+)/i;

export class Publisher {
  private state: PublisherState = 'open';
  private error: Error | null = null;
  private seq: number;
  private readonly queue: Outgoing[] = [];
  private head = 0;
  private inFlight = 0;
  private readonly waiters = new Set<TxWaiter>();
  private idle: Array<() => void> = [];
  private readonly ledger = new PublishLedger();
  private readonly refs = new WeakMap<Relation, string>();
  private readonly window: number;
  private readonly timeoutMs: number;
  private readonly routeOf: (change: CapturedChange) => string;
  private readonly areaOf: (change: CapturedChange) => ChangeArea;
  private readonly now: () => number;

  constructor(private readonly opts: PublisherOptions) {
    if (!Number.isSafeInteger(opts.nextSeq) || opts.nextSeq < 1) throw new RangeError(`not a stream sequence: ${opts.nextSeq}`);
    this.seq = opts.nextSeq;
    this.window = opts.window ?? CLUSTER.publishWindow;
    this.timeoutMs = opts.timeoutMs ?? CLUSTER.publishTimeoutMs;
    this.routeOf = opts.routeOf ?? (() => CLUSTER_TOKENS.noRoute);
    this.areaOf = opts.areaOf ?? (() => 'd');
    this.now = opts.now ?? Date.now;
  }

  get currentState(): PublisherState {
    return this.state;
  }

  /** What made it leave `open` (null while open). */
  get failure(): Error | null {
    return this.error;
  }

  /** The sequence the next message will be published to get. */
  get nextSeq(): number {
    return this.seq;
  }

  /** The last position such that it and everything before it are PubAck'ed. */
  acked(): Position | null {
    return this.ledger.acked();
  }

  /** The commit LSN the slot may be acknowledged up to (plan §3.4); null: nothing held. */
  hold(nowMs: number, ackDelayMs: number): bigint | null {
    return this.ledger.hold(nowMs, ackDelayMs);
  }

  /**
   * Queues the transaction's changes and resolves once every one is PubAck'ed (the caller's
   * back-pressure); rejects with ClusterFencedError / ClusterPublishError when the publisher
   * leaves `open` first. Sends happen in call order. An oversized transaction publishes nothing
   * yet (its `=x` markers come with 3b).
   */
  publish(tx: Transaction): Promise<void> {
    if (this.state !== 'open') return Promise.reject(this.error ?? new ClusterPublishError('the cluster publisher is closed'));
    const head = { xid: tx.xid, lsnText: tx.lsnText, endLsn: tx.endLsn, commitTime: tx.commitTime };
    const out: Array<Omit<Outgoing, 'waiter'>> = [];
    const entries: LedgerMessage[] = [];
    let seq = this.seq;
    // Encode everything first: a throw here leaves no sequence taken.
    for (const c of tx.changes) {
      const route = c.tag === 'truncate' ? CLUSTER_TOKENS.truncate : this.routeOf(c);
      const subject = changeSubject(this.opts.ns, this.areaOf(c), c.relation.schema, c.relation.name, route);
      const data = encodeChange(head, c, this.refOf(c.relation));
      out.push({ seq, subject, data, msgID: `${tx.lsnText}:${c.index}` });
      entries.push({ seq, pos: { lsn: tx.lsn, index: c.index } });
      seq++;
    }
    this.seq = seq;
    this.ledger.append(tx.lsn, entries, this.now());
    if (out.length === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const waiter: TxWaiter = { pending: out.length, done: false, resolve, reject };
      this.waiters.add(waiter);
      for (const m of out) this.queue.push({ ...m, waiter });
      this.pump();
    });
  }

  /** Resolves when nothing is in flight (after a failure: every sent publish has settled). */
  settled(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  /** Stops publishing: queued transactions reject; what is in flight still settles. */
  close(): void {
    this.leave('closed', new ClusterPublishError('the cluster publisher is closed'));
  }

  private refOf(r: Relation): string {
    let ref = this.refs.get(r);
    if (ref === undefined) {
      ref = relationRef(r);
      this.refs.set(r, ref);
    }
    return ref;
  }

  private pump(): void {
    while (this.state === 'open' && this.inFlight < this.window && this.head < this.queue.length) {
      const m = this.queue[this.head++];
      this.inFlight++;
      this.send(m, false);
    }
    if (this.head === this.queue.length) {
      this.queue.length = 0;
      this.head = 0;
    }
  }

  private send(m: Outgoing, retry: boolean): void {
    // js.publish puts the message on the wire before its first await: sends keep call order.
    this.opts.js
      .publish(m.subject, m.data, { msgID: m.msgID, expect: { lastSequence: m.seq - 1, streamName: this.opts.stream }, timeout: this.timeoutMs })
      .then(
        (pa) => this.onAck(m, pa),
        (err: unknown) => this.onError(m, err, retry),
      );
  }

  private onAck(m: Outgoing, pa: PubAck): void {
    if (pa.stream !== this.opts.stream || pa.seq !== m.seq) {
      this.settle();
      this.leave('failed', new ClusterPublishError(
        `PubAck for ${m.msgID} names ${pa.stream} seq ${pa.seq}${pa.duplicate ? ' (duplicate)' : ''}, expected ${this.opts.stream} seq ${m.seq} (epoch ${this.opts.epoch})`,
        'something else publishes into the cluster\'s stream, or it was recreated: the capture node must take over again',
      ));
      return;
    }
    this.ledger.ack(m.seq, this.now());
    const w = m.waiter;
    if (--w.pending === 0 && !w.done) {
      w.done = true;
      this.waiters.delete(w);
      w.resolve();
    }
    this.settle();
    this.pump();
  }

  private onError(m: Outgoing, err: unknown, retried: boolean): void {
    if (!retried && this.state === 'open' && isTimeout(err)) {
      // Same message id and expectation: if the first attempt was stored, dedupe answers `duplicate`.
      this.opts.log.warn({ msgID: m.msgID, seq: m.seq, epoch: this.opts.epoch }, 'no PubAck in time: publishing once more');
      this.send(m, true);
      return;
    }
    this.settle();
    if (err instanceof JetStreamApiError && err.code === WRONG_LAST_SEQUENCE) {
      const last = WRONG_LAST.exec(err.message);
      const stored = last ? Number(last[1]) : null;
      if (stored === null || stored >= m.seq) {
        this.leave('fenced', new ClusterFencedError(
          `the cluster's stream ${this.opts.stream} holds sequence ${stored ?? '?'} beyond this publisher's ${m.seq - 1}: another capture appended (epoch ${this.opts.epoch} is stale)`,
          undefined,
          { cause: err },
        ));
        return;
      }
      // The stream is behind: one of our own earlier messages was not stored.
      this.leave('failed', new ClusterPublishError(`${m.msgID} expected sequence ${m.seq - 1} last, the stream is at ${stored}: an earlier publish was lost (epoch ${this.opts.epoch})`, undefined, { cause: err }));
      return;
    }
    const why = err instanceof Error ? err.message : String(err);
    this.leave('failed', new ClusterPublishError(`publishing ${m.msgID} (seq ${m.seq}) into ${this.opts.stream}: ${why}`, 'check the NATS servers and the stream\'s leader', { cause: err }));
  }

  /** One in-flight publish is over. */
  private settle(): void {
    this.inFlight--;
    if (this.inFlight === 0 && this.idle.length > 0) {
      const idle = this.idle;
      this.idle = [];
      for (const r of idle) r();
    }
  }

  private leave(to: PublisherState, err: Error): void {
    if (!canPublisherMove(this.state, to)) return;
    this.state = to;
    this.error = err;
    if (to !== 'closed') this.opts.log.error({ err, epoch: this.opts.epoch, state: to }, 'cluster publisher stopped');
    this.queue.length = 0;
    this.head = 0;
    for (const w of this.waiters) {
      w.done = true;
      w.reject(err);
    }
    this.waiters.clear();
  }
}

function isTimeout(err: unknown): boolean {
  return err instanceof TimeoutError || (err instanceof Error && err.cause instanceof TimeoutError);
}
