// The checkpoint marks of one slot (docs/OPERATIONS.md §4). The slot's confirmed_flush_lsn is set to
//   min(end of the last transaction fully processed downstream, hold())
// where hold() is the commit LSN of the oldest transaction downstream still needs (the start of
// its history window). Postgres sends again every transaction whose commit record starts at or
// after confirmed_flush_lsn, so acknowledging a commit LSN keeps that transaction, and
// acknowledging a commit's end LSN lets it go. The acknowledged mark only moves forward.

export class Checkpoint {
  /** End of the last transaction handed on and finished downstream (or skipped as a replay). */
  private processed = 0n;
  /** What the server was last told (or what the slot said at start). */
  private acked = 0n;
  /** Furthest WAL position seen on the stream. */
  private received = 0n;

  constructor(private readonly hold?: () => bigint | null) {}

  /** The slot's confirmed_flush_lsn at start: nothing before it can be sent again. */
  resumeFrom(lsn: bigint): void {
    this.acked = lsn;
    if (lsn > this.processed) this.processed = lsn;
  }

  /** A recreated slot starts afresh: forget marks of the old one. */
  reset(lsn: bigint): void {
    this.acked = lsn;
    this.processed = lsn;
    this.received = lsn;
  }

  markReceived(lsn: bigint): void {
    if (lsn > this.received) this.received = lsn;
  }

  markProcessed(lsn: bigint): void {
    if (lsn > this.processed) this.processed = lsn;
  }

  /** The flush position to report now: never past what is processed or held, never backwards. */
  target(): bigint {
    const held = this.hold?.();
    let t = held != null && held < this.processed ? held : this.processed;
    if (t < this.acked) t = this.acked;
    return t;
  }

  get ackedLsn(): bigint {
    return this.acked;
  }

  get receivedLsn(): bigint {
    return this.received;
  }

  get processedLsn(): bigint {
    return this.processed;
  }

  /** Write position for the status update: at least the flush position. */
  receivedFor(flush: bigint): bigint {
    return this.received > flush ? this.received : flush;
  }

  confirm(lsn: bigint): void {
    if (lsn > this.acked) this.acked = lsn;
  }
}
