// Snapshots (docs/PROTOCOL.md §7): a subscribe with `snapshot` first receives the
// rows there are, authorized and filtered exactly like changes, then the changes the snapshot
// does not hold, then `subscribed`; nothing missed, nothing twice, under any concurrent writes.
//
//   waiting (SnapshotSlots) ─► reading: begin, snapshot taken, head noted
//       ─► mark seen (the hub holds every transaction the snapshot holds)
//       ─► rows: fetch, decode, filter, authorize, send (under the socket's backpressure)
//       ─► commit ─► hub.subscribe(since: start, skip: contained in the snapshot)
//       ─► catching up (changes after `start` the snapshot lacks) ─► subscribed ─► live
//   Any state ─► cancelled (unsubscribe, connection closed) | failed (`snapshot_failed`).
//
// `start` is the hub's head before the snapshot was taken (or earlier: Hub.snapshotStart), so
// every transaction the snapshot lacks comes after it; the catch-up skips those it holds. The
// rows are judged once the mark is seen, by policies and relations at least as recent as the
// snapshot, so a grant or a membership the snapshot's rows depend on is known.
import type pg from 'pg';
import { SNAPSHOT_DEFAULTS, CLOSE } from '../constants.js';
import { SnapshotFailedError, WireError } from '../errors.js';
import type { Hub } from '../hub/hub.js';
import type { TableInfo } from '../hub/catalog.js';
import type { FilterTerm, RowPredicate } from '../hub/filter.js';
import type { Position } from '../protocol/position.js';
import { snapshotFrame } from '../protocol/frames.js';
import type { SnapshotRequest, SubscriptionId } from '../protocol/types.js';
import type { Peer } from '../hub/types.js';
import type { Logger } from '../log.js';
import { decodeRow, rowJsonWriter, SnapshotTypes } from './decode.js';
import type { SnapshotMarks } from './marks.js';
import { snapshotQuery } from './query.js';
import { SnapshotReader } from './reader.js';
import { SnapshotSlots } from './slots.js';

/** What a snapshot needs of the connection: a Peer that can wait for its socket to drain. */
export interface SnapshotPeer extends Peer {
  whenDrained(): Promise<void>;
  end(code: number, reason: string): void;
}

export interface SnapshotJob {
  peer: SnapshotPeer;
  id: SubscriptionId;
  table: TableInfo;
  request: SnapshotRequest;
  terms: readonly FilterTerm[];
  predicate: RowPredicate;
  /** Registers the subscription once the rows are sent: catch-up after `since`, skipping what the snapshot holds. */
  subscribe(since: Position, skip: (xid: number) => boolean): void;
}

export interface SnapshotLimits {
  maxConcurrent: number;
  maxPerConnection: number;
  maxQueued: number;
  fetchRows: number;
  fetchBytes: number;
  frameBytes: number;
  highWater: number;
  drainTimeoutMs: number;
  statementTimeoutMs: number;
  startScan: number;
}

export interface SnapshotStats {
  running: number;
  queued: number;
  maxRunning: number;
  done: number;
  failed: number;
  cancelled: number;
  rows: number;
}

class Cancelled extends Error {}

export class Snapshots {
  private readonly slots: SnapshotSlots;
  private readonly types = new SnapshotTypes();
  private readonly limits: SnapshotLimits;
  /** Running and waiting snapshots per connection, by subscription key: what unsubscribe and close cancel. */
  private readonly active = new Map<Peer, Map<string, AbortController>>();
  private readonly counts = { done: 0, failed: 0, cancelled: 0, rows: 0 };

  constructor(
    private readonly pool: pg.Pool,
    private readonly marks: SnapshotMarks,
    private readonly hub: Hub,
    private readonly log: Logger,
    limits: Partial<SnapshotLimits> = {},
  ) {
    this.limits = { ...SNAPSHOT_DEFAULTS, ...limits };
    this.slots = new SnapshotSlots({ maxConcurrent: this.limits.maxConcurrent, maxPerOwner: this.limits.maxPerConnection, maxQueued: this.limits.maxQueued });
  }

  get stats(): SnapshotStats {
    return { ...this.slots.stats, ...this.counts };
  }

  /** Whether a snapshot of this subscription key is running or waiting on this connection. */
  has(peer: Peer, key: string): boolean {
    return this.active.get(peer)?.has(key) ?? false;
  }

  /** Cancels one (unsubscribe): true when there was one. */
  cancel(peer: Peer, key: string): boolean {
    const c = this.active.get(peer)?.get(key);
    if (!c) return false;
    c.abort(new Cancelled('unsubscribed'));
    return true;
  }

  /** The connection closed: every snapshot of it stops. */
  cancelAll(peer: Peer): void {
    const m = this.active.get(peer);
    if (!m) return;
    for (const c of m.values()) c.abort(new Cancelled('closed'));
  }

  /**
   * Sends the snapshot, then registers the subscription. Rejects with a WireError to answer
   * (`snapshot_failed`, `limit_exceeded`); resolves when done or cancelled.
   */
  async run(job: SnapshotJob, key: string): Promise<void> {
    const ctl = new AbortController();
    let mine = this.active.get(job.peer);
    if (!mine) this.active.set(job.peer, (mine = new Map()));
    mine.set(key, ctl);
    try {
      const release = await this.slots.acquire(job.peer, ctl.signal);
      try {
        await this.read(job, ctl.signal);
        this.counts.done++;
      } finally {
        release();
      }
    } catch (err) {
      if (err instanceof Cancelled || ctl.signal.aborted || job.peer.closed) {
        this.counts.cancelled++;
        return;
      }
      this.counts.failed++;
      if (err instanceof WireError) throw err;
      this.log.warn({ err: (err as Error)?.message, table: job.table.qualified }, 'snapshot failed');
      throw failure(err);
    } finally {
      mine.delete(key);
      if (mine.size === 0 && this.active.get(job.peer) === mine) this.active.delete(job.peer);
    }
  }

  private async read(job: SnapshotJob, signal: AbortSignal): Promise<void> {
    const client = await this.pool.connect();
    const reader = new SnapshotReader(client, {
      statementTimeoutMs: this.limits.statementTimeoutMs,
      idleTimeoutMs: this.limits.drainTimeoutMs + this.limits.statementTimeoutMs,
      fetchRows: this.limits.fetchRows,
      fetchBytes: this.limits.fetchBytes,
    });
    let healthy = true;
    try {
      const columns = job.table.rowColumns;
      const decoders = await this.types.decoders(columns, client);
      const from = this.hub.head();
      const visibility = await reader.begin();
      // Every transaction the snapshot holds committed before the mark was written.
      await abortable(this.marks.request(), signal);
      // Rows are judged now: not by a deny-everything authorizer while the policies are read anew.
      for (let loading = this.hub.policiesLoading(); loading; loading = this.hub.policiesLoading()) await abortable(loading, signal);
      const start = this.hub.snapshotStart(from, visibility.contains, this.limits.startScan);
      await reader.declare(snapshotQuery({ schema: job.table.schema, name: job.table.name, select: columns, columns: job.table.columns, terms: job.terms, order: job.request.order }));
      const toJson = rowJsonWriter(columns);
      const limit = job.request.limit ?? Infinity;
      const auth = this.hub.auth;
      let sent = 0;
      let frame: string[] = [];
      let frameBytes = 0;
      const send = async (): Promise<void> => {
        if (frame.length === 0) return;
        job.peer.push(snapshotFrame(job.id, frame));
        frame = [];
        frameBytes = 0;
        job.peer.flush();
        await this.drain(job.peer, signal);
      };
      for await (const rows of reader.batches(() => limit - sent)) {
        if (signal.aborted || job.peer.closed) throw new Cancelled('cancelled');
        const identity = job.peer.identity;
        for (const values of rows) {
          const row = decodeRow(columns, decoders, values);
          if (!job.predicate(row)) continue;
          if (auth && (identity === null || !auth.mayRead(identity, job.table.qualified, row, null))) continue;
          const json = toJson(row);
          frame.push(json);
          frameBytes += json.length;
          sent++;
          if (sent >= limit) break;
          if (frameBytes >= this.limits.frameBytes) await send();
        }
        if (sent >= limit) break;
      }
      await send();
      await reader.commit();
      this.counts.rows += sent;
      if (signal.aborted || job.peer.closed) throw new Cancelled('cancelled');
      job.subscribe(start, visibility.contains);
    } catch (err) {
      healthy = await reader.abandon();
      throw err;
    } finally {
      client.release(healthy ? undefined : true);
    }
  }

  /** Waits while the socket holds more than the high-water mark; a client that does not drain in time is closed 4008. */
  private async drain(peer: SnapshotPeer, signal: AbortSignal): Promise<void> {
    const deadline = Date.now() + this.limits.drainTimeoutMs;
    while (!peer.closed && !signal.aborted && peer.backlog() > this.limits.highWater) {
      const left = deadline - Date.now();
      if (left <= 0) {
        peer.end(CLOSE.tooSlow, 'too slow to take its snapshot: reconnect and subscribe again');
        throw new Cancelled('too slow');
      }
      await abortable(Promise.race([peer.whenDrained(), delay(Math.min(left, 1_000))]), signal);
    }
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref?.());
}

function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

/** A database error as the client is told it. */
function failure(err: unknown): SnapshotFailedError {
  const code = (err as { code?: string })?.code;
  const why =
    code === '57014'
      ? 'a statement took longer than the snapshot statement timeout'
      : code === '42501'
        ? "the daemon's database role may not read this table"
        : code === '25P03'
          ? 'the snapshot waited too long for the client (idle in transaction timeout)'
          : 'a database error';
  return new SnapshotFailedError(`the snapshot could not be read: ${why}; subscribe again later`, undefined, { cause: err });
}
