// Per-node chains (docs/dev/cluster-plan.md §6): capture stamps each stream message with, for every
// incarnation (`inc`, one per edge process) it concerns, the seq of the previous message concerning
// that inc in this epoch (chain-stamper.ts, chain-codec.ts); an edge receiving only its messages over core NATS, which
// may drop, duplicate and reorder them, uses that to process exactly the messages concerning it, in
// seq order, each once, fetching what is missing from the stream. Pure: the caller does the I/O.
import { CLUSTER_CHAIN } from '../constants.js';
import { safeUint } from './chain-codec.js';

/** A stream message as an edge got it (from core NATS, a fetch or a scan). */
export interface ChainMessage<T> {
  seq: number;
  epoch: number;
  /** This edge's prevSeq from the message's chain header (prevFor); undefined: the header does not name it, or there is none. */
  prev: number | undefined;
  /** An epoch marker (ctl `epoch`): concerns every node, starts every chain of its epoch. Set it on a fetched or scanned marker too (it names nobody: unflagged, a fetched one would break the chain). */
  marker?: boolean;
  payload: T;
}

/**
 * Why a reset: `missing` a fetched seq is no longer in the stream (or came back not naming this
 * edge); `overflow` too much held ahead of a hole; `restart` capture started this edge's chain
 * again (prevSeq 0) without expectStart (it forgot the edge for a while); `gap` a new epoch's scan
 * would be longer than CLUSTER_CHAIN.maxScanSeqs.
 */
export type ChainResetReason = 'missing' | 'overflow' | 'restart' | 'gap';

export type ChainOutcome<T> =
  /** Hand the message on: in seq order, each once. */
  | { tag: 'process'; seq: number; epoch: number; marker: boolean; payload: T }
  /** Get this seq from the stream; offer() it back, or missing(seq) when the stream has it no more. */
  | { tag: 'fetch'; seq: number }
  /** Read the stream's headers over [from, to]: offer every message naming this edge and every epoch marker, then scanned(to) (in parts: scanned(x) as it goes); a range starting below the stream's first seq: missing(first - 1) first. */
  | { tag: 'scan'; from: number; to: number }
  /** Messages concerning this edge with seq in [from, to] may never be processed: resync what they cover (the follower goes on after `to`). */
  | { tag: 'reset'; reason: ChainResetReason; from: number; to: number };

/** Capture's heartbeat, as it concerns this edge. */
export interface ChainHeartbeat {
  epoch: number;
  markerSeq: number;
  /** The last seq concerning this edge (undefined: capture does not route to it). */
  last: number | undefined;
}

export interface ChainFollowerOptions<T> {
  inc: string;
  /** Every message concerning this edge with seq ≤ head is processed (or not wanted): at boot, the stream's last seq. */
  head: number;
  /** The epoch of head. */
  epoch: number;
  quietMs?: number;
  maxPending?: number;
  maxPendingBytes?: number;
  maxScanSeqs?: number;
  /** A held payload's bytes, for the pending bound (default: a Uint8Array's or string's length, else 0). */
  sizeOf?: (payload: T) => number;
}

export interface ChainStats {
  processed: number;
  duplicates: number;
  notMine: number;
  fetchesRequested: number;
  resets: number;
  pending: number;
  pendingBytes: number;
}

interface Held<T> {
  seq: number;
  epoch: number;
  prev: number | undefined;
  marker: boolean;
  payload: T;
  bytes: number;
}

function defaultSize(p: unknown): number {
  return p instanceof Uint8Array || typeof p === 'string' ? p.length : 0;
}

/**
 * An edge's side, one per edge process: a reducer, each call returns what the caller must do, in
 * order. Messages wait in `pending` (sorted, all past head) until the lowest is processable:
 *
 *   following ──message of a newer epoch──► held; its prev fetched, back to the marker
 *       ▲        (the marker, or a heartbeat, tells the new epoch E and its marker seq M)
 *       │                  │ learn(E, M): target
 *       │                  ▼
 *       │        scanning (head, M): outcome `scan`; what the caller offers in range is held,
 *       │                  │ then processed in seq order at scanned(x), unchecked (the scan is
 *       │                  │ authoritative: the old epoch's chain cannot lead past its tail)
 *       │                  ▼
 *       └──────── marker M processed (held, or fetched): epoch E, chains go on from M
 *
 * In following, the lowest held message is processable iff its prev ≤ head (prev 0: a chain
 * start, taken as a `restart` reset unless expectStart() was called); a prev past head is
 * fetched once. Resets skip head forward and drop what is held up to there.
 */
export class ChainFollower<T> {
  readonly inc: string;
  private headSeq: number;
  private epochNo: number;
  private starting = false;
  /** An epoch change under way: its marker seq; the scan covers (head, marker). */
  private target: { epoch: number; marker: number } | null = null;
  private scanTo = 0;
  private readonly pending: Array<Held<T>> = [];
  private pendingBytes = 0;
  private readonly requested = new Set<number>();
  /** A heartbeat's last seq past head, and since when: fetched after quietMs. */
  private tail: { seq: number; since: number } | null = null;
  private readonly counts = { processed: 0, duplicates: 0, notMine: 0, fetchesRequested: 0, resets: 0 };
  private readonly quietMs: number;
  private readonly maxPending: number;
  private readonly maxPendingBytes: number;
  private readonly maxScanSeqs: number;
  private readonly sizeOf: (payload: T) => number;

  constructor(o: ChainFollowerOptions<T>) {
    if (!CLUSTER_CHAIN.incPattern.test(o.inc)) throw new RangeError(`chain: bad inc ${JSON.stringify(o.inc)}`);
    if (!safeUint(o.head) || !safeUint(o.epoch)) throw new RangeError('chain: head and epoch are non-negative integers');
    this.inc = o.inc;
    this.headSeq = o.head;
    this.epochNo = o.epoch;
    this.quietMs = o.quietMs ?? CLUSTER_CHAIN.quietMs;
    this.maxPending = o.maxPending ?? CLUSTER_CHAIN.maxPending;
    this.maxPendingBytes = o.maxPendingBytes ?? CLUSTER_CHAIN.maxPendingBytes;
    this.maxScanSeqs = o.maxScanSeqs ?? CLUSTER_CHAIN.maxScanSeqs;
    this.sizeOf = o.sizeOf ?? defaultSize;
  }

  get head(): number {
    return this.headSeq;
  }

  get epoch(): number {
    return this.epochNo;
  }

  get stats(): ChainStats {
    return { ...this.counts, pending: this.pending.length, pendingBytes: this.pendingBytes };
  }

  /** The next chain start (prevSeq 0) is expected: this edge's interest was just applied (boot, a resync). */
  expectStart(): void {
    this.starting = true;
  }

  /** A message from core NATS, or a fetch's or a scan's answer. */
  offer(m: ChainMessage<T>): Array<ChainOutcome<T>> {
    const out: Array<ChainOutcome<T>> = [];
    const asked = this.requested.delete(m.seq);
    const marker = m.marker === true;
    if (m.prev === undefined && !marker) {
      this.counts.notMine++;
      // Fetched seqs are a prev, a heartbeat's last or a marker: one not naming me breaks the chain.
      if (asked && m.seq > this.headSeq) {
        this.jump(m.seq, 'missing', out);
        this.drain(out);
      }
      return out;
    }
    if (m.seq <= this.headSeq || this.find(m.seq) >= 0) {
      this.counts.duplicates++;
      return out;
    }
    if (marker && m.epoch > this.knownEpoch()) this.learn(m.epoch, m.seq, out);
    const bytes = this.sizeOf(m.payload);
    this.insert({ seq: m.seq, epoch: m.epoch, prev: m.prev, marker, payload: m.payload, bytes });
    if (this.pending.length > this.maxPending || this.pendingBytes > this.maxPendingBytes) {
      this.jump(this.pending[this.pending.length - 1].seq, 'overflow', out);
      this.drain(out);
      return out;
    }
    // Within a scan's range the scan decides; past it (or without one) the chain does.
    if (!marker && (m.prev as number) > this.headSeq && !(this.target && m.seq <= this.scanTo)) this.request(m.prev as number, out);
    this.drain(out);
    return out;
  }

  /** The caller offered every message naming this edge (and every marker) of the scan up to `toSeq`. */
  scanned(toSeq: number): Array<ChainOutcome<T>> {
    const out: Array<ChainOutcome<T>> = [];
    if (!this.target || toSeq <= this.headSeq) return out;
    const to = Math.min(toSeq, this.scanTo);
    while (this.pending.length > 0 && this.pending[0].seq <= to) this.take(out);
    this.advance(to);
    this.drain(out);
    return out;
  }

  /** Capture's heartbeat, received at nowMs. */
  heartbeat(hb: ChainHeartbeat, nowMs: number): Array<ChainOutcome<T>> {
    const out: Array<ChainOutcome<T>> = [];
    if (hb.epoch > this.knownEpoch() && safeUint(hb.markerSeq)) {
      this.learn(hb.epoch, hb.markerSeq, out);
      this.drain(out);
    }
    const last = hb.last;
    if (last !== undefined && last > this.headSeq) {
      if (!this.tail) this.tail = { seq: last, since: nowMs };
      else if (last > this.tail.seq) this.tail.seq = last;
    }
    return out;
  }

  /** Time passes: a heartbeat's last seq still not here after quietMs is fetched (its chain leads back). */
  tick(nowMs: number): Array<ChainOutcome<T>> {
    const out: Array<ChainOutcome<T>> = [];
    const t = this.tail;
    if (t && nowMs - t.since >= this.quietMs) {
      this.tail = null;
      this.request(t.seq, out);
    }
    return out;
  }

  /** A fetched seq is no longer in the stream (evicted): everything up to it is given up. */
  missing(seq: number): Array<ChainOutcome<T>> {
    const out: Array<ChainOutcome<T>> = [];
    this.requested.delete(seq);
    if (seq > this.headSeq) {
      this.jump(seq, 'missing', out);
      this.drain(out);
    }
    return out;
  }

  private knownEpoch(): number {
    return this.target ? this.target.epoch : this.epochNo;
  }

  /** A new epoch E whose marker is at `marker`: scan what is left of the old one. */
  private learn(epoch: number, marker: number, out: Array<ChainOutcome<T>>): void {
    if (marker <= this.headSeq) {
      this.epochNo = Math.max(this.epochNo, epoch);
      return;
    }
    const from = (this.target ? this.scanTo : this.headSeq) + 1;
    this.target = { epoch, marker };
    this.scanTo = marker - 1;
    if (this.scanTo < from) return;
    if (this.scanTo - this.headSeq > this.maxScanSeqs) this.jump(this.scanTo, 'gap', out);
    else out.push({ tag: 'scan', from, to: this.scanTo });
  }

  /** Processes what has become processable, in seq order. */
  private drain(out: Array<ChainOutcome<T>>): void {
    for (;;) {
      const first = this.pending[0];
      const t = this.target;
      if (t) {
        if (this.headSeq < this.scanTo) return; // scanned() first
        if (!first || first.seq !== t.marker) {
          this.request(t.marker, out);
          return;
        }
        this.take(out);
        this.epochNo = Math.max(this.epochNo, t.epoch);
        this.target = null;
        continue;
      }
      if (!first) return;
      if (first.marker) {
        this.take(out);
        continue;
      }
      const prev = first.prev as number;
      if (prev === 0) {
        // A newer epoch's chain start: that epoch's marker (told by itself or a heartbeat) first.
        // (A newer epoch's prev in (0, head] is fine: its marker is at or before that prev.)
        if (first.epoch > this.epochNo) return;
        if (!this.starting && first.seq - 1 > this.headSeq) this.jump(first.seq - 1, 'restart', out);
        this.take(out);
        continue;
      }
      if (prev > this.headSeq) return; // fetched (requested when it was held)
      this.take(out);
    }
  }

  /** Hands on the lowest held message. */
  private take(out: Array<ChainOutcome<T>>): void {
    const h = this.pending.shift() as Held<T>;
    this.pendingBytes -= h.bytes;
    this.epochNo = Math.max(this.epochNo, h.epoch);
    if (!h.marker) this.starting = false;
    this.counts.processed++;
    out.push({ tag: 'process', seq: h.seq, epoch: h.epoch, marker: h.marker, payload: h.payload });
    this.advance(h.seq);
  }

  /** head = seq; what is held, asked or awaited up to it is done with. */
  private advance(seq: number): void {
    if (seq <= this.headSeq) return;
    this.headSeq = seq;
    while (this.pending.length > 0 && this.pending[0].seq <= seq) this.pendingBytes -= (this.pending.shift() as Held<T>).bytes;
    if (this.requested.size > 0) for (const s of this.requested) if (s <= seq) this.requested.delete(s);
    if (this.tail && this.tail.seq <= seq) this.tail = null;
    if (this.target && seq >= this.target.marker) {
      this.epochNo = Math.max(this.epochNo, this.target.epoch);
      this.target = null;
    }
  }

  /** A reset: skips head to `to`, dropping what is held up to it. */
  private jump(to: number, reason: ChainResetReason, out: Array<ChainOutcome<T>>): void {
    const from = this.headSeq + 1;
    for (const h of this.pending) {
      if (h.seq > to) break;
      this.epochNo = Math.max(this.epochNo, h.epoch);
    }
    this.advance(to);
    this.counts.resets++;
    out.push({ tag: 'reset', reason, from, to });
  }

  private request(seq: number, out: Array<ChainOutcome<T>>): void {
    if (seq <= this.headSeq || this.requested.has(seq) || this.find(seq) >= 0) return;
    this.requested.add(seq);
    this.counts.fetchesRequested++;
    out.push({ tag: 'fetch', seq });
  }

  /** Index of `seq` in pending, or -1 (binary search: pending is sorted by seq). */
  private find(seq: number): number {
    const p = this.pending;
    let lo = 0;
    let hi = p.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const s = p[mid].seq;
      if (s === seq) return mid;
      if (s < seq) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  private insert(h: Held<T>): void {
    const p = this.pending;
    if (p.length === 0 || p[p.length - 1].seq < h.seq) p.push(h); // the usual case: about in order
    else {
      let lo = 0;
      let hi = p.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (p[mid].seq < h.seq) lo = mid + 1;
        else hi = mid;
      }
      p.splice(lo, 0, h);
    }
    this.pendingBytes += h.bytes;
  }
}
