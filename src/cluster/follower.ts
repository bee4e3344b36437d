// Every cluster node's input (docs/dev/cluster-plan.md §6, first form: the whole stream): the
// cluster's stream read in sequence order through an ordered consumer, which JetStream keeps
// gap-free (it recreates itself from the last sequence it delivered when one is missing), turned
// back into the transactions capture made and handed to the hub exactly as a single node's
// capture hands them. The capture node follows its own stream the same way: every node's
// clients see one order.
//
//   start ──► reading ──(iterator ended, NATS lost)──► retry (backoff) ──► reading
//                │
//                └── stop() ──► stopped
//
// Interest routing (a node reading only what its clients want) replaces the whole-stream read in
// a later increment (plan §5, §12 #6).
import { DeliverPolicy, type ConsumerMessages, type JetStreamClient, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';
import type { Relation } from '../capture/pgoutput.types.js';
import type { Transaction } from '../capture/types.js';
import { CLUSTER_FOLLOWER } from '../constants.js';
import { ClusterMessageError, ClusterMessageVersionError } from '../errors.js';
import type { Logger } from '../log.js';
import type { ResyncReason } from '../protocol/types.js';
import { formatWalPosition, type Position } from '../protocol/position.js';
import { RetryBackoff } from '../util/backoff.js';
import { readStreamMessage } from './stream-message.js';
import { readStartBounds } from './stream-bounds.js';
import type { RelationCache } from './relations.js';
import type { StreamPositions } from './stream-positions.js';
import { Regrouper } from './regroup.js';
import { CLUSTER_HEADERS, type CtlMessage } from './ctl.js';

/** Where a follower's input goes: the hub, as capture's would on a single node. */
export interface FollowerSink {
  /** Positions before `floor` cannot be honoured (start: reason null). */
  reset(floor: Position, reason: ResyncReason | null): void;
  /** What committed before `pos` is history, not news (start). */
  liveFrom(pos: Position): void;
  transaction(tx: Transaction): void;
  /** An idle mark: everything before `walEnd` is done. */
  progress(walEnd: bigint): void;
  /** A table's shape (as capture's 'relation' event): first seen, or changed. */
  relation(rel: Relation): void;
  /** The slot was recreated: changes may have been missed by the policies. */
  reloadPolicies(): void;
}

export interface FollowerOptions {
  js: JetStreamClient;
  jsm: JetStreamManager;
  /** Table shapes, from the cluster bucket. */
  relations: RelationCache;
  /** Positions of stored messages, by sequence. */
  positions: StreamPositions;
  ns: string;
  stream: string;
  sink: FollowerSink;
  /** The window's floor when the stream holds nothing yet (the slot's position). */
  emptyFloor: () => Promise<Position>;
  /** The node's --history-age: older messages are not read at start (they would be evicted at once). */
  historyAgeMs?: number;
  log: Logger;
}

export interface FollowerStats {
  /** The last stream sequence handled. */
  seq: number;
  /** The last position handed on. */
  position: string | null;
  epoch: number | null;
  /** Sequences the stream no longer had when they were due (a window reset each). */
  gaps: number;
  /** Messages skipped: malformed, or at or before a position already handed on. */
  skipped: number;
  /** Times the consumer was opened again (a failure, or the watchdog found it stalled). */
  reopens: number;
}

export class Follower {
  private seq = 0;
  private readonly regroup: Regrouper;
  /** The current shape reference per table OID: a new one means the table changed. */
  private readonly shapes = new Map<number, string>();
  private messages: ConsumerMessages | null = null;
  private stopped = false;
  private running: Promise<void> | null = null;
  private readonly backoff = new RetryBackoff(CLUSTER_FOLLOWER.retryBaseMs, CLUSTER_FOLLOWER.retryCapMs);
  private epoch: number | null = null;
  private gaps = 0;
  private skipped = 0;
  private fatal: ((err: Error) => void) | null = null;
  private lastHandledAt = Date.now();
  private watchdog: NodeJS.Timeout | null = null;
  private reopens = 0;
  /** Resolves with an error the follower cannot go on after (a message of a newer format). */
  readonly failed: Promise<Error>;

  constructor(private readonly o: FollowerOptions) {
    this.failed = new Promise((resolve) => (this.fatal = resolve));
    this.regroup = new Regrouper((tx) => o.sink.transaction(tx));
  }

  get stats(): FollowerStats {
    const last = this.regroup.last;
    return { seq: this.seq, position: last ? formatWalPosition(last.lsn, last.index) : null, epoch: this.epoch, gaps: this.gaps, skipped: this.skipped + this.regroup.skipped, reopens: this.reopens };
  }

  /** Whether it is reading (or about to, after a retry). */
  get reading(): boolean {
    return this.messages !== null;
  }

  /** Sets the window from what the stream holds, then reads from its first message on. */
  async start(): Promise<void> {
    const first = await this.bounds();
    await this.open_(first);
    this.seq = first - 1;
    this.running = this.loop();
    this.watchdog = setInterval(() => void this.checkStalled(), CLUSTER_FOLLOWER.stallCheckMs);
  }

  /**
   * The consumer delivers nothing while the stream has more: it is reopened. The ordered
   * consumer recovers from most losses itself, but a stream leader killed mid-pull has been seen
   * to leave it waiting for good; a stream read is one request every few seconds when idle.
   */
  private async checkStalled(): Promise<void> {
    if (this.stopped || !this.messages || Date.now() - this.lastHandledAt < CLUSTER_FOLLOWER.stallAfterMs) return;
    try {
      const info = await this.o.jsm.streams.info(this.o.stream);
      if (info.state.last_seq > this.seq && Date.now() - this.lastHandledAt >= CLUSTER_FOLLOWER.stallAfterMs && !this.stopped) {
        this.o.log.warn({ seq: this.seq, streamLast: info.state.last_seq }, 'cluster stream reading stalled; reopening');
        this.messages?.stop(); // the loop reopens after the last handled sequence
      }
    } catch {
      // NATS unreachable: the consumer's own recovery and the loop handle it
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.watchdog) clearInterval(this.watchdog);
    this.messages?.stop();
    await this.running?.catch(() => {});
  }

  /** Sets the window from what the stream holds; returns the sequence to read from. */
  private async bounds(): Promise<number> {
    const b = await readStartBounds(this.o);
    this.o.sink.reset(b.floor, null);
    this.o.sink.liveFrom(b.news);
    return b.from;
  }

  private async open_(fromSeq: number): Promise<void> {
    const consumer = await this.o.js.consumers.get(this.o.stream, { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: fromSeq });
    this.messages = await consumer.consume({ max_messages: CLUSTER_FOLLOWER.batch });
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      const messages = this.messages;
      try {
        if (messages) {
          for await (const m of messages) {
            await this.handle(m);
            this.lastHandledAt = Date.now();
            this.backoff.reset();
          }
        }
      } catch (err) {
        if (this.stopped) return;
        if (err instanceof ClusterMessageVersionError) {
          this.o.log.error({ err: err.message }, 'cluster stream written by a newer walcast: this node stops following');
          this.fatal?.(err);
          return;
        }
        this.o.log.warn({ err: (err as Error).message, seq: this.seq }, 'reading the cluster stream failed; retrying');
      }
      if (this.stopped) return;
      this.messages = null;
      await new Promise((r) => setTimeout(r, this.backoff.next()));
      try {
        this.reopens++;
        this.lastHandledAt = Date.now();
        await this.open_(this.seq + 1);
      } catch (err) {
        this.o.log.warn({ err: (err as Error).message }, 'reopening the cluster stream failed');
      }
    }
  }

  /**
   * One message, in sequence. `seq` moves only once it is handled (or skipped as malformed): a
   * failure that is not the message's fault (a KV read timing out) reopens the stream at it.
   */
  private async handle(m: JsMsg): Promise<void> {
    const seq = m.seq;
    if (seq <= this.seq) return; // read again after a reopen
    if (seq !== this.seq + 1) this.gap(m);
    try {
      const item = await readStreamMessage(this.o.ns, m, (ref) => this.relationOf(ref));
      if (item.tag === 'ctl') {
        this.regroup.flush();
        this.control(item.ctl, m);
      } else {
        this.regroup.change(item.head, item.change, item.last);
      }
    } catch (err) {
      if (!(err instanceof ClusterMessageError)) throw err;
      this.skipped++;
      this.o.log.error({ err: err.message, seq }, 'malformed message in the cluster stream skipped');
    }
    this.seq = seq;
  }

  /** Sequences between the last one and this one are gone (the stream evicted them under us). */
  private gap(m: JsMsg): void {
    this.gaps++;
    this.regroup.drop(); // the open transaction's missing part is gone too
    const floor = this.o.positions.floorBefore({ subject: m.subject, data: m.data, header: m.headers?.get(CLUSTER_HEADERS.position) }) ?? this.regroup.last;
    this.o.log.warn({ from: this.seq + 1, to: m.seq - 1 }, 'messages of the cluster stream were gone before this node read them: subscriptions resync');
    if (floor) this.o.sink.reset(floor, 'position_outside_window');
  }

  private control(c: CtlMessage, m: JsMsg): void {
    const sink = this.o.sink;
    switch (c.type) {
      case 'epoch':
        this.epoch = c.epoch;
        this.o.log.info({ epoch: c.epoch, node: c.node, seq: m.seq }, 'capture epoch');
        return;
      case 'mark':
        sink.progress(c.wal);
        return;
      case 'reset':
        sink.reset(c.floor, c.reason);
        if (c.reason === 'slot_recreated') sink.reloadPolicies();
        this.regroup.resetTo(c.floor);
        return;
      case 'oversize':
        this.regroup.oversize(c);
        return;
    }
  }

  private async relationOf(ref: string): Promise<Relation> {
    const rel = await this.o.relations.get(ref);
    if (this.shapes.get(rel.oid) !== ref) {
      this.shapes.set(rel.oid, ref);
      this.o.sink.relation(rel);
    }
    return rel;
  }
}
