// The snapshots' database connections: their own pool (as many connections as snapshots may
// read at once), so that snapshots can neither take the connections the catalog and policies
// need nor touch the replication connection; and one connection for writing marks, which every
// snapshot waits on while its own connection sits in its transaction.
import pg from 'pg';
import { SNAPSHOT_DEFAULTS } from '../constants.js';
import type { Hub } from '../hub/hub.js';
import type { Logger } from '../log.js';
import { SnapshotMarks } from './marks.js';
import { Snapshots, type SnapshotLimits } from './snapshots.js';

export interface SnapshotSetup {
  marks: SnapshotMarks;
  /** Once the hub exists (it needs `marks`). */
  start(hub: Hub): Snapshots;
  close(): Promise<void>;
}

export function snapshotSetup(db: pg.ClientConfig, log: Logger, limits: Partial<SnapshotLimits> & { markTimeoutMs?: number } = {}): SnapshotSetup {
  const max = limits.maxConcurrent ?? SNAPSHOT_DEFAULTS.maxConcurrent;
  const pool = new pg.Pool({ ...db, max, idleTimeoutMillis: 30_000, connectionTimeoutMillis: 10_000 });
  // A mark's commit is flushed locally (so the walsender sends it at once, whatever the server's
  // synchronous_commit), and never waits for a synchronous standby: replication to us does not.
  const options = [db.options, '-c synchronous_commit=local'].filter(Boolean).join(' ');
  const markPool = new pg.Pool({ ...db, options, max: 1, idleTimeoutMillis: 30_000, connectionTimeoutMillis: 10_000 });
  // Idle clients losing the server: the next query reconnects.
  pool.on('error', () => {});
  markPool.on('error', () => {});
  const marks = new SnapshotMarks(markPool, limits.markTimeoutMs ?? SNAPSHOT_DEFAULTS.markTimeoutMs);
  return {
    marks,
    start: (hub) => new Snapshots(pool, marks, hub, log, limits),
    async close() {
      marks.close();
      await Promise.all([pool.end().catch(() => {}), markPool.end().catch(() => {})]);
    },
  };
}
