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
  /** 32-bit forms, for the fast path of contains() (xmax - xmin < 2^31, i.e. always in practice). */
  private readonly xmin32: number;
  private readonly span: number;
  private readonly xip32: ReadonlySet<number>;

  constructor(
    readonly xmin: bigint,
    readonly xmax: bigint,
    xip: Iterable<bigint>,
  ) {
    this.xip = new Set(xip);
    this.xmin32 = Number(xmin % U32);
    this.span = xmax - xmin < HALF ? Number(xmax - xmin) : -1;
    this.xip32 = this.inProgress();
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
    if (this.span >= 0) {
      // Distance from xmin, modulo 2^32: past half the xid space means before xmin.
      const d = ((xid >>> 0) - this.xmin32 + 0x1_0000_0000) % 0x1_0000_0000;
      if (d >= 0x8000_0000) return true;
      if (d >= this.span) return false;
      return !this.xip32.has(xid >>> 0);
    }
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
