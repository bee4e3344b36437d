// Marks: how a snapshot learns that the daemon has received every transaction its database
// snapshot contains. Once the snapshot is taken, a mark (sql/006_snapshot_marks.sql: a committed
// row of walcast.snapshot_marks with a random token) is written; the hub sees it come through
// the replication stream (or a cluster's stream) after every transaction that committed before
// it, so after every one the snapshot can see. The mark's transaction commits with a WAL flush,
// so the walsender sends it at once.
//
// Marks are coalesced: requests made while one is being written wait for the next, which is
// written as soon as the current one returns; each mark serves every request made before it
// was written. One connection writes them, never one of the snapshots' (those are all inside
// their REPEATABLE READ transactions).
import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { SnapshotFailedError } from '../errors.js';

interface Batch {
  token: string;
  waiters: { resolve: () => void; reject: (err: unknown) => void }[];
  timer: NodeJS.Timeout | null;
}

export interface MarkWriter {
  query(text: string, values: unknown[]): Promise<unknown>;
}

export class SnapshotMarks {
  private readonly pending = new Map<string, Batch>();
  private next: Batch | null = null;
  private writing = false;
  /** Marks written and seen back (figures for status and tests). */
  written = 0;
  seenCount = 0;

  constructor(
    private readonly db: MarkWriter | pg.Pool,
    private readonly timeoutMs: number,
  ) {}

  /** Resolves once a mark written after this call has come back through the stream. */
  request(): Promise<void> {
    return new Promise((resolve, reject) => {
      const batch = (this.next ??= { token: randomBytes(16).toString('hex'), waiters: [], timer: null });
      batch.waiters.push({ resolve, reject });
      if (!this.writing) this.writeNext();
    });
  }

  /** The hub applied a committed insert into walcast.snapshot_marks. */
  seen(token: unknown): void {
    if (typeof token !== 'string') return;
    const batch = this.pending.get(token);
    if (!batch) return; // another daemon's, or one that timed out
    this.pending.delete(token);
    this.seenCount++;
    if (batch.timer) clearTimeout(batch.timer);
    for (const w of batch.waiters) w.resolve();
  }

  /** Fails every waiting request (the daemon is stopping). */
  close(): void {
    const err = new SnapshotFailedError('the server is stopping');
    for (const b of [...this.pending.values(), ...(this.next ? [this.next] : [])]) {
      if (b.timer) clearTimeout(b.timer);
      for (const w of b.waiters) w.reject(err);
    }
    this.pending.clear();
    this.next = null;
  }

  private writeNext(): void {
    const batch = this.next;
    if (!batch) return;
    this.next = null;
    this.writing = true;
    this.pending.set(batch.token, batch);
    batch.timer = setTimeout(() => this.fail(batch, new SnapshotFailedError(`the snapshot's mark did not come back through replication within ${this.timeoutMs} ms (is replication streaming?); try again`)), this.timeoutMs);
    batch.timer.unref?.();
    this.db
      .query('select walcast.snapshot_mark($1)', [batch.token])
      .then(
        () => this.written++,
        (err: unknown) => {
          const why = (err as { code?: string })?.code === '42883' ? 'walcast.snapshot_mark() does not exist: run walcast migrate' : (err as Error)?.message ?? String(err);
          this.fail(batch, new SnapshotFailedError(`could not write the snapshot's mark: ${why}`, undefined, { cause: err }));
        },
      )
      .finally(() => {
        this.writing = false;
        this.writeNext();
      });
  }

  private fail(batch: Batch, err: SnapshotFailedError): void {
    if (!this.pending.delete(batch.token)) return;
    if (batch.timer) clearTimeout(batch.timer);
    for (const w of batch.waiters) w.reject(err);
  }
}
