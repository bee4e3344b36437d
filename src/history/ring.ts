// The history ring: recent committed transactions, bounded by bytes and age. It is the resume
// window: a position at or after `floor` can be honoured, everything after it being either in
// the ring or still to come; anything older gets `resync`.
//
// Besides transactions it holds marks: "the stream had reached WAL position W at this time, with
// nothing for us". Marks let an idle window keep moving (so `progress` positions handed to idle
// clients stay resumable, also across a daemon restart), at the cost of a few bytes each.
import { compareWalPositions, MAX_POSITION_INDEX, type Position } from '../protocol/position.js';
import type { Transaction } from '../capture/types.js';

/** Index used in positions that stand for "everything up to this LSN" (marks, floors). */
export const LAST_INDEX = MAX_POSITION_INDEX;

/** A Buffer's own object and its slot in `bodies`, beyond its bytes. */
const BODY_OVERHEAD = 96;

export interface RingEntry {
  /** Stable sequence number: survives evictions, so catch-up cursors stay valid. */
  readonly seq: number;
  /** What acknowledging keeps: a transaction's commit LSN, or a mark's WAL position. */
  readonly lsn: bigint;
  /** The last position this entry covers. */
  readonly last: Position;
  readonly tx: Transaction | null;
  /** Estimated bytes held (grows as wire bodies are added). */
  bytes: number;
  /** Milliseconds since the epoch: commit time of a transaction, arrival of a mark. */
  readonly time: number;
  /** Encoded wire bodies per change index (from `,"pos":` on), filled by the hub on first delivery. */
  bodies: (Buffer | undefined)[] | null;
}

/** A transaction's entry (also for history read from elsewhere than the ring: seq is then the caller's). */
export function transactionEntry(seq: number, tx: Transaction, bytes: number): RingEntry {
  let lastIndex = tx.changes.length > 0 ? tx.changes[tx.changes.length - 1].index : 0;
  // An oversized transaction (src/hub/oversize.ts) is a marker covering its change indexes; it
  // holds no WAL on the slot, since replaying it would bring back no change.
  if (tx.oversize) lastIndex = Math.max(0, tx.oversize.changes - 1);
  const lsn = tx.oversize ? tx.endLsn : tx.lsn;
  return { seq, lsn, last: { lsn: tx.lsn, index: lastIndex }, tx, bytes, time: Date.parse(tx.commitTime), bodies: null };
}

/** A mark's entry: everything before WAL position `walEnd` is done. */
export function markEntry(seq: number, walEnd: bigint, time: number): RingEntry {
  return { seq, lsn: walEnd, last: { lsn: walEnd - 1n, index: LAST_INDEX }, tx: null, bytes: 64, time, bodies: null };
}

export interface RingOptions {
  maxBytes: number;
  maxAgeMs: number;
  now?: () => number;
}

export interface RingStats {
  entries: number;
  transactions: number;
  bytes: number;
  oldestTime: number | null;
  floor: Position;
  head: Position;
}

export class HistoryRing {
  private entries: RingEntry[] = [];
  private start = 0; // entries before `start` are evicted, kept until compaction
  private nextSeq = 0;
  private bytes = 0;
  private txCount = 0;
  private floorPos: Position = { lsn: 0n, index: 0 };
  private headPos: Position = { lsn: 0n, index: 0 };
  private readonly now: () => number;

  constructor(private readonly opts: RingOptions) {
    this.now = opts.now ?? Date.now;
  }

  /** Everything after this position is in the ring or still to come. */
  get floor(): Position {
    return this.floorPos;
  }

  /** The last position covered: everything up to it has been appended. */
  get head(): Position {
    return this.headPos;
  }

  get startSeq(): number {
    return this.nextSeq - (this.entries.length - this.start);
  }

  get endSeq(): number {
    return this.nextSeq;
  }

  /** Start afresh: nothing at or before `floor` can be honoured (daemon start, slot recreated). */
  reset(floor: Position): void {
    this.entries = [];
    this.start = 0;
    this.bytes = 0;
    this.txCount = 0;
    this.floorPos = floor;
    if (compareWalPositions(floor, this.headPos) > 0) this.headPos = floor;
  }

  appendTransaction(tx: Transaction, bytes: number): RingEntry {
    const entry = transactionEntry(this.nextSeq++, tx, bytes);
    this.push(entry);
    this.txCount++;
    return entry;
  }

  /** The stream is past WAL position `walEnd` with nothing more for us. */
  appendMark(walEnd: bigint): RingEntry | null {
    const entry = markEntry(this.nextSeq, walEnd, this.now());
    if (compareWalPositions(entry.last, this.headPos) <= 0) return null;
    this.nextSeq++;
    this.push(entry);
    return entry;
  }

  /**
   * Keeps a change's encoded wire body with its entry (for catch-ups) and counts it against the
   * byte bound: bodies are about as big as the rows they render.
   */
  addBody(entry: RingEntry, index: number, body: Buffer): Buffer {
    (entry.bodies ??= [])[index] = body;
    const n = body.length + BODY_OVERHEAD;
    entry.bytes += n;
    if (entry.seq >= this.startSeq) this.bytes += n;
    return body;
  }

  get(seq: number): RingEntry | undefined {
    const i = seq - this.startSeq;
    return i >= 0 && seq < this.nextSeq ? this.entries[this.start + i] : undefined;
  }

  /** Sequence number of the first entry that may hold changes after `pos`. */
  seqAfter(pos: Position): number {
    let lo = this.start;
    let hi = this.entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (compareWalPositions(this.entries[mid].last, pos) <= 0) lo = mid + 1;
      else hi = mid;
    }
    return this.startSeq + (lo - this.start);
  }

  /** Whether resuming after `pos` is possible: nothing after it has been evicted. */
  covers(pos: Position): boolean {
    return compareWalPositions(pos, this.floorPos) >= 0;
  }

  /** Oldest LSN still needed: what the slot may be acknowledged up to, null when empty. */
  oldestLsn(): bigint | null {
    return this.start < this.entries.length ? this.entries[this.start].lsn : null;
  }

  /**
   * Drops entries past the age or byte bound, and those holding WAL before `minLsn` (the slot
   * lag guard rail); the newest entry always stays. Returns how many were dropped.
   */
  evict(minLsn = 0n): number {
    const cutoff = this.now() - this.opts.maxAgeMs;
    let dropped = 0;
    while (this.entries.length - this.start > 1) {
      const e = this.entries[this.start];
      if (e.time >= cutoff && this.bytes <= this.opts.maxBytes && e.lsn >= minLsn) break;
      this.drop(e);
      dropped++;
    }
    if (this.start > 1024 && this.start * 2 > this.entries.length) {
      this.entries = this.entries.slice(this.start);
      this.start = 0;
    }
    return dropped;
  }

  stats(): RingStats {
    const oldest = this.entries[this.start];
    return {
      entries: this.entries.length - this.start,
      transactions: this.txCount,
      bytes: this.bytes,
      oldestTime: oldest ? oldest.time : null,
      floor: this.floorPos,
      head: this.headPos,
    };
  }

  private push(entry: RingEntry): void {
    this.entries.push(entry);
    this.bytes += entry.bytes;
    if (compareWalPositions(entry.last, this.headPos) > 0) this.headPos = entry.last;
    this.evict();
  }

  private drop(e: RingEntry): void {
    this.entries[this.start] = undefined as unknown as RingEntry; // release for GC
    this.start++;
    this.bytes -= e.bytes;
    if (e.tx) this.txCount--;
    if (compareWalPositions(e.last, this.floorPos) > 0) this.floorPos = e.last;
  }
}
