// Which streamed transactions a load already saw: the snapshot's visibility of xids
// (src/pg/snapshot-visibility.ts, shared with subscription snapshots), and the WAL position read in
// the same snapshot, past which no commit was seen.
import { parseLsn } from '../protocol/lsn.js';
import { SnapshotVisibility } from '../pg/snapshot-visibility.js';

export interface Snapshot {
  /** The WAL position read in the same snapshot: a commit at or after it was not seen. */
  readonly after: bigint;
  contains(xid: number, commitLsn: bigint): boolean;
}

/** `xmin:xmax:xip,...` (pg_current_snapshot()::text) and pg_current_wal_insert_lsn()::text, read together. */
export function parseSnapshot(text: string, lsn: string): Snapshot {
  const visibility = SnapshotVisibility.parse(text);
  const after = parseLsn(lsn);
  return { after, contains: (xid, commitLsn) => commitLsn < after && visibility.contains(xid) };
}
