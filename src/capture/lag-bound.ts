import type pg from 'pg';
import { CAPTURE } from '../constants.js';

// The slot lag guard rail (docs/OPERATIONS.md §4): how much WAL the resume window may hold back on the slot.
// Postgres invalidates a slot whose restart_lsn falls more than max_slot_wal_keep_size behind
// (https://www.postgresql.org/docs/15/runtime-config-replication.html#GUC-MAX-SLOT-WAL-KEEP-SIZE);
// an invalidated slot means `resync` for every client, so the window gives way well before.

export interface LagBound {
  bytes: number;
  /** The configured bound was lowered to fit under max_slot_wal_keep_size. */
  clamped: boolean;
}

/** `keepSizeMb`: the server's max_slot_wal_keep_size in MB, -1 or null when unlimited. */
export function effectiveLagBound(configured: number, keepSizeMb: number | null): LagBound {
  if (keepSizeMb === null || keepSizeMb < 0) return { bytes: configured, clamped: false };
  const cap = Math.floor(keepSizeMb * 1024 * 1024 * CAPTURE.keepSizeShare);
  return cap < configured ? { bytes: cap, clamped: true } : { bytes: configured, clamped: false };
}

/** max_slot_wal_keep_size in MB (pg_settings reports it in MB), null when unlimited (-1). */
export async function readWalKeepSize(db: pg.Pool | pg.Client): Promise<number | null> {
  const { rows } = await db.query<{ mb: string | null }>("select setting as mb from pg_settings where name = 'max_slot_wal_keep_size'");
  const mb = rows[0]?.mb == null ? -1 : Number(rows[0].mb);
  return Number.isFinite(mb) && mb >= 0 ? mb : null;
}
