// Which committed transactions a snapshot already contains. A snapshot is read in a REPEATABLE
// READ transaction whose `pg_current_snapshot()` is recorded; a transaction that later comes
// through the slot is skipped for that subscriber exactly when the snapshot saw it.
// Text form "xmin:xmax:xip,xip,..." of pg_snapshot (64-bit xids, with epoch):
// https://www.postgresql.org/docs/15/functions-info.html#FUNCTIONS-PG-SNAPSHOT-PARTS
// A committed transaction is visible in it when its xid < xmin, or < xmax and not in xip.
// pgoutput's Begin carries the 32-bit xid: it is placed in the epoch that puts it nearest xmax
// (a transaction of interest is within 2^31 xids of the snapshot, or wraparound would have
// stopped the database long before).
import { PositionError } from '../errors.js';

const U32 = 1n << 32n;
const HALF = 1n << 31n;

export class SnapshotVisibility {
  private readonly xip: ReadonlySet<bigint>;

  constructor(
    readonly xmin: bigint,
    readonly xmax: bigint,
    xip: Iterable<bigint>,
  ) {
    this.xip = new Set(xip);
  }

  /** From pg_current_snapshot()::text. */
  static parse(text: string): SnapshotVisibility {
    const m = /^(\d{1,20}):(\d{1,20}):((?:\d{1,20}(?:,\d{1,20})*)?)$/.exec(text);
    if (!m) throw new PositionError(`not a pg_snapshot: ${JSON.stringify(text.slice(0, 80))}`);
    const xmin = BigInt(m[1]);
    const xmax = BigInt(m[2]);
    const xip = m[3] ? m[3].split(',').map((x) => BigInt(x)) : [];
    if (xmin > xmax) throw new PositionError(`not a pg_snapshot (xmin after xmax): ${text}`);
    return new SnapshotVisibility(xmin, xmax, xip);
  }

  /** The transactions in progress when it was taken, as 32-bit xids (what pgoutput's Begin carries). */
  inProgress(): Set<number> {
    const out = new Set<number>();
    for (const x of this.xip) out.add(Number(x % U32));
    return out;
  }

  /** Whether the committed transaction with this (32-bit) xid is contained in the snapshot. */
  contains = (xid: number): boolean => {
    const full = this.widen(xid);
    if (full < this.xmin) return true;
    if (full >= this.xmax) return false;
    return !this.xip.has(full);
  };

  /** The 64-bit xid nearest xmax whose low 32 bits are `xid`. */
  widen(xid: number): bigint {
    let full = (this.xmax & ~(U32 - 1n)) | BigInt(xid >>> 0);
    if (full > this.xmax + HALF) full -= U32;
    else if (full < this.xmax - HALF) full += U32;
    return full;
  }
}
