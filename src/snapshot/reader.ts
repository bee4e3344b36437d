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
import { SnapshotVisibility } from '../pg/snapshot-visibility.js';
import type { SnapshotQuery } from './query.js';

const RAW_TEXT = { getTypeParser: () => (v: string) => v } as unknown as pg.CustomTypesConfig;
const CURSOR = 'walcast_snapshot';

export interface ReaderLimits {
  statementTimeoutMs: number;
  /** idle_in_transaction_session_timeout: the longest wait between two fetches (a slow socket). */
  idleTimeoutMs: number;
  /** Most rows per FETCH... */
  fetchRows: number;
  /** ...and about this many bytes of values per FETCH (wide rows: fewer rows). */
  fetchBytes: number;
}

type Rows = (string | null)[][];

/** Bytes of a batch's values, roughly (UTF-16 units; a little per row and value). */
function batchBytes(rows: Rows): number {
  let n = 0;
  for (const r of rows) {
    n += 16;
    for (const v of r) n += v === null ? 4 : v.length + 4;
  }
  return n;
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

  /**
   * The rows in batches of about `fetchBytes` (a first small batch measures how wide rows are).
   * Without a limit, the next batch is fetched while the caller handles the current one, so the
   * database and the daemon work at once; at most two batches are held. `wanted()` is how many
   * rows are still wanted (Infinity: all); the cursor's end ends the batches.
   */
  async *batches(wanted: () => number): AsyncGenerator<Rows> {
    let size = Math.min(this.limits.fetchRows, 64);
    // With a limit, twice the rows still wanted (most pass: the filter went to SQL where it could).
    const ask = (): number => {
      const w = wanted();
      return Math.max(1, Math.min(size, Number.isFinite(w) ? w * 2 : size));
    };
    let asked = ask();
    let pending: Promise<Rows> | null = this.fetch(asked);
    try {
      while (pending) {
        const rows: Rows = await pending;
        pending = null;
        if (rows.length === 0) return;
        size = Math.max(1, Math.min(this.limits.fetchRows, Math.floor(this.limits.fetchBytes / (batchBytes(rows) / rows.length))));
        // A short batch is the cursor's end: no more round trips.
        const more = rows.length >= asked;
        if (more && !Number.isFinite(wanted())) {
          asked = ask();
          pending = this.fetch(asked);
          pending.catch(() => {}); // awaited on the next turn, or in finally
        }
        yield rows;
        if (more && !pending && wanted() > 0) {
          asked = ask();
          pending = this.fetch(asked);
        }
      }
    } finally {
      // Stopped early (a limit reached, an error): the fetch in flight ends before the commit.
      if (pending) await pending.catch(() => {});
    }
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
