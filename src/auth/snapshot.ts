// Which streamed transactions a load already saw: Postgres snapshot visibility
// (https://www.postgresql.org/docs/15/functions-info.html#FUNCTIONS-PG-SNAPSHOT-PARTS).
// pgoutput gives 32-bit xids; the snapshot's are 64-bit with an epoch, so both are compared
// modulo 2^32, as Postgres compares xids.
import { parseLsn } from '../protocol/lsn.js';

export interface Snapshot {
  /** The WAL position read in the same snapshot: a commit at or after it was not seen. */
  readonly after: bigint;
  contains(xid: number, commitLsn: bigint): boolean;
}

const low32 = (x: string) => Number(BigInt(x) & 0xffffffffn);
/** a precedes b in the circular xid space. */
const precedes = (a: number, b: number) => ((a - b) | 0) < 0;

/** `xmin:xmax:xip,...` (pg_current_snapshot()::text) and pg_current_wal_insert_lsn()::text, read together. */
export function parseSnapshot(text: string, lsn: string): Snapshot {
  const [xmin, xmax, xip = ''] = text.split(':');
  if (xmin === undefined || xmax === undefined) throw new Error(`not a snapshot: ${text}`);
  const max = low32(xmax);
  const inProgress = new Set(xip === '' ? [] : xip.split(',').map(low32));
  const after = parseLsn(lsn);
  return {
    after,
    // Committed before the snapshot: below xmax and not in progress at the time.
    contains: (xid, commitLsn) => commitLsn < after && precedes(xid >>> 0, max) && !inProgress.has(xid >>> 0),
  };
}
