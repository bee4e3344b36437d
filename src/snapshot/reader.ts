// The database side of one snapshot, on a connection of the snapshots' own pool:
//
//   BEGIN REPEATABLE READ ─► pg_current_snapshot() ─► (mark: the hub has every transaction the
//   snapshot holds) ─► DECLARE cursor ─► FETCH n … ─► COMMIT
//
// The transaction's snapshot is taken by its first query, which also records which transactions
// it holds (SnapshotVisibility). Rows come as text (as pgoutput sends them) in batches, so the
// daemon holds one batch at a time, never a table. Every statement is bounded by
// statement_timeout; the transaction by idle_in_transaction_session_timeout, should the daemon
// stall between fetches.
import type pg from 'pg';
import { SnapshotVisibility } from './visibility.js';
import type { SnapshotQuery } from './query.js';

const RAW_TEXT = { getTypeParser: () => (v: string) => v } as unknown as pg.CustomTypesConfig;
const CURSOR = 'walcast_snapshot';

export interface ReaderLimits {
  statementTimeoutMs: number;
  /** idle_in_transaction_session_timeout: the longest wait between two fetches (a slow socket). */
  idleTimeoutMs: number;
  fetchRows: number;
}

export class SnapshotReader {
  private open = false;

  constructor(
    private readonly client: pg.PoolClient,
    private readonly limits: ReaderLimits,
  ) {}

  /** Starts the transaction and takes its snapshot. */
  async begin(): Promise<SnapshotVisibility> {
    await this.client.query('begin isolation level repeatable read read only');
    this.open = true;
    // Integers from our own configuration, not client input.
    await this.client.query(`set local statement_timeout = ${Math.max(1, Math.floor(this.limits.statementTimeoutMs))}`);
    await this.client.query(`set local idle_in_transaction_session_timeout = ${Math.max(1, Math.floor(this.limits.idleTimeoutMs))}`);
    const { rows } = await this.client.query<{ s: string }>('select pg_current_snapshot()::text as s');
    return SnapshotVisibility.parse(rows[0].s);
  }

  async declare(q: SnapshotQuery): Promise<void> {
    await this.client.query(`declare ${CURSOR} no scroll cursor for ${q.text}`, q.values);
  }

  /** The next batch of rows (column values as text, null for NULL); empty at the end. */
  async fetch(n = this.limits.fetchRows): Promise<(string | null)[][]> {
    const r = await this.client.query<(string | null)[]>({ text: `fetch ${Math.max(1, Math.floor(n))} from ${CURSOR}`, rowMode: 'array', types: RAW_TEXT });
    return r.rows;
  }

  async commit(): Promise<void> {
    if (!this.open) return;
    this.open = false;
    await this.client.query('commit');
  }

  /** Ends the transaction if it is open; false when the connection should be discarded. */
  async abandon(): Promise<boolean> {
    if (!this.open) return true;
    this.open = false;
    try {
      await this.client.query('rollback');
      return true;
    } catch {
      return false;
    }
  }
}
