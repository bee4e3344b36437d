// One catch-up's read of the cluster's stream (docs/dev/cluster-plan.md §8): a resume position
// older than the node's history window is served from the stream, which is the cluster's resume
// window. The segment finds the first message after the position (binary search on positions,
// stream-positions.ts), reads on from there through an ordered consumer in pulls, regroups the
// messages into transactions exactly as the follower does, and keeps a bounded buffer of them
// ahead of the client (hub/catchup.ts reads it, then moves on to the ring: hub/older-history.ts).
//
//   locating ──► reading ⇄ full (buffer at its bound: no pull until the client took some)
//       │           │
//       └───────────┴──► failed (position older than the stream, a reset after it, messages
//                         evicted before they were read) | closed
//
// The read is the whole stream, not the subscription's table alone: control messages (marks,
// resets, oversized transactions) are part of what a catch-up must see, and 2.9 consumers take
// one subject filter. Its cost is bounded by the gap and by CLUSTER_CATCHUP.maxSegments.
import { DeliverPolicy, type ConsumerMessages, type JetStreamClient, type JsMsg } from '@nats-io/jetstream';
import type { Relation } from '../capture/pgoutput.types.js';
import type { Transaction } from '../capture/types.js';
import { CLUSTER_CATCHUP } from '../constants.js';
import { ClusterMessageError } from '../errors.js';
import { markEntry, transactionEntry, type RingEntry } from '../history/ring.js';
import type { OlderSegment, SegmentStart } from '../hub/older-history.js';
import { estimateBytes } from '../hub/render.js';
import { forWindow } from '../hub/sql-broadcast.js';
import type { Logger } from '../log.js';
import { compareWalPositions, type Position } from '../protocol/position.js';
import type { ResyncReason } from '../protocol/types.js';
import { RetryBackoff } from '../util/backoff.js';
import { CLUSTER_HEADERS, readPositionHeader, type CtlMessage } from './ctl.js';
import { Regrouper } from './regroup.js';
import { readStreamMessage } from './stream-message.js';
import type { StreamPositions } from './stream-positions.js';

export interface StreamSegmentOptions {
  js: JetStreamClient;
  positions: StreamPositions;
  relationOf: (ref: string) => Promise<Relation>;
  /** The stream's first and last sequence now. */
  bounds: () => Promise<{ first: number; last: number; messages: number }>;
  ns: string;
  stream: string;
  since: Position;
  /** How `since` is taken (hub/older-history.ts). */
  start: SegmentStart;
  /** It has more to give (or failed). */
  wake: () => void;
  /** Closed: called once. */
  onClose: () => void;
  log: Logger;
}

/** Segment entries are not in the ring: their sequence numbers are never looked up. */
const NOT_IN_RING = -1;

export class StreamSegment implements OlderSegment {
  private buf: RingEntry[] = [];
  private head = 0;
  private bytes = 0;
  private pos: Position;
  private fail: ResyncReason | null = null;
  private closed = false;
  private seq = 0;
  private messages: ConsumerMessages | null = null;
  private room: (() => void) | null = null;
  private readonly regroup: Regrouper;
  private readonly backoff = new RetryBackoff(CLUSTER_CATCHUP.retryBaseMs, CLUSTER_CATCHUP.retryCapMs);
  /** The last position buffered: marks behind it add nothing. */
  private buffered: Position;

  constructor(private readonly o: StreamSegmentOptions) {
    this.pos = o.since;
    this.buffered = o.since;
    this.regroup = new Regrouper((tx) => this.push(tx));
    this.regroup.resetTo(o.since); // what is at or before `since` the client has
    void this.run();
  }

  get position(): Position {
    return this.pos;
  }

  get failure(): ResyncReason | null {
    return this.fail;
  }

  /** Entries buffered and not yet taken. */
  get size(): number {
    return this.buf.length - this.head;
  }

  peek(): RingEntry | undefined {
    return this.buf[this.head];
  }

  shift(): void {
    const e = this.buf[this.head];
    if (!e) return;
    this.buf[this.head++] = undefined as unknown as RingEntry; // release for GC
    this.bytes -= e.bytes;
    if (compareWalPositions(e.last, this.pos) > 0) this.pos = e.last;
    if (this.head > 64 && this.head * 2 > this.buf.length) {
      this.buf = this.buf.slice(this.head);
      this.head = 0;
    }
    if (this.room && !this.full()) {
      const r = this.room;
      this.room = null;
      r();
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.messages?.stop();
    this.room?.();
    this.room = null;
    this.buf = [];
    this.head = 0;
    this.o.onClose();
  }

  private full(): boolean {
    return this.size >= CLUSTER_CATCHUP.bufferEntries || this.bytes >= CLUSTER_CATCHUP.bufferBytes;
  }

  private failWith(reason: ResyncReason, why: string): void {
    if (this.closed || this.fail) return;
    this.fail = reason;
    this.o.log.info({ since: this.o.since, why }, 'a catch-up from the cluster stream cannot go on: resync');
    this.messages?.stop();
    this.o.wake();
  }

  private async run(): Promise<void> {
    let from: number | null = null;
    while (!this.closed && !this.fail) {
      try {
        if (from === null) from = await this.locate();
        if (from === null) return; // failed
        await this.read(from);
      } catch (err) {
        if (this.closed || this.fail) return;
        this.o.log.warn({ err: (err as Error).message, seq: this.seq }, 'reading the cluster stream for a catch-up failed; retrying');
        await new Promise((r) => setTimeout(r, this.backoff.next()));
      }
      // Read on after the last message handled (a retry, or a pull that ended).
      if (from !== null && this.seq > 0) from = this.seq + 1;
    }
  }

  /** The first sequence to read, or null (failed) when the stream no longer holds the position. */
  private async locate(): Promise<number | null> {
    const { positions, since } = this.o;
    const b = await this.o.bounds();
    const first = b.messages > 0 ? await positions.positioned(b.first, b.last, 1) : null;
    if (this.o.start === 'now') return this.fromEnd(b.first, b.last);
    // Nothing in the stream: what comes next is all there is to read (a table just followed).
    if (!first && this.o.start !== 'strict') {
      this.seq = b.last;
      return b.last + 1;
    }
    const floor = first ? positions.floorOf(first) : null;
    if (!first || !floor || compareWalPositions(since, floor) < 0) {
      this.failWith('position_outside_window', 'the position is older than the stream');
      return null;
    }
    const from = await positions.firstAfter(since, first.seq, b.last);
    this.seq = from - 1;
    return from;
  }

  /** "From now": after the stream's last message (the node's own head may lag it for this table). */
  private async fromEnd(first: number, last: number): Promise<number> {
    const m = last >= first && last > 0 ? await this.o.positions.positioned(last, first, -1) : null;
    const end = readPositionHeader(m?.header?.get(CLUSTER_HEADERS.position));
    if (end && compareWalPositions(end, this.pos) > 0) {
      this.pos = end;
      this.buffered = end;
      this.regroup.resetTo(end);
    }
    this.seq = last;
    return last + 1;
  }

  /** Pulls from `from` on while there is room; returns when a pull ends (the caller reads on). */
  private async read(from: number): Promise<void> {
    const consumer = await this.o.js.consumers.get(this.o.stream, { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: from });
    while (!this.closed && !this.fail) {
      if (this.full()) await new Promise<void>((r) => (this.room = r));
      if (this.closed || this.fail) return;
      // A pull is counted in messages (a byte-counted one refuses a message larger than it).
      this.messages = await consumer.fetch({ max_messages: CLUSTER_CATCHUP.batch, expires: CLUSTER_CATCHUP.fetchExpiresMs });
      for await (const m of this.messages) {
        if (this.closed || this.fail) return;
        await this.handle(m);
        if (this.full()) await new Promise<void>((r) => (this.room = r));
      }
      this.messages = null;
      this.backoff.reset();
    }
  }

  private async handle(m: JsMsg): Promise<void> {
    if (m.seq <= this.seq) return; // read again after a retry
    // Messages between were evicted before this catch-up read them: it cannot be honoured.
    if (m.seq !== this.seq + 1) return this.failWith('position_outside_window', `stream messages ${this.seq + 1}..${m.seq - 1} are gone`);
    try {
      const item = await readStreamMessage(this.o.ns, m, this.o.relationOf);
      if (item.tag === 'ctl') {
        this.regroup.flush();
        this.control(item.ctl);
      } else {
        this.regroup.change(item.head, item.change, item.last);
      }
    } catch (err) {
      if (!(err instanceof ClusterMessageError)) throw err;
      // Malformed: the follower skipped it too (and logged it).
    }
    this.seq = m.seq;
  }

  private control(c: CtlMessage): void {
    switch (c.type) {
      case 'mark': {
        const e = markEntry(NOT_IN_RING, c.wal, Date.now());
        if (compareWalPositions(e.last, this.buffered) > 0) this.append(e);
        return;
      }
      case 'reset':
        // The stream lost messages after the position, or the slot was recreated: as on the node.
        if (compareWalPositions(this.o.since, c.floor) < 0) this.failWith(c.reason, 'a reset after the position');
        return;
      case 'oversize':
        this.regroup.oversize(c);
        return;
      case 'epoch':
        return;
    }
  }

  private push(tx: Transaction): void {
    // Broadcast rows are never replayed (hub/sql-broadcast.ts).
    const kept = forWindow(tx);
    this.append(transactionEntry(NOT_IN_RING, kept, estimateBytes(kept)));
  }

  private append(e: RingEntry): void {
    if (this.closed) return;
    this.buf.push(e);
    this.bytes += e.bytes;
    if (compareWalPositions(e.last, this.buffered) > 0) this.buffered = e.last;
    this.o.wake(); // one turn of the catch-up per event-loop turn, however many entries came
  }
}
