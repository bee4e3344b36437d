// A live collection: the rows of a table the subscriber may see, as a Map kept up to date. It
// is a snapshot subscription whose rows are applied by key. A snapshot builds a new map, and
// the changes that follow it apply to that map; at the snapshot's `subscribed` the new map
// replaces the old one in one step, so the application never sees a half-built state (a
// reconnect before `subscribed` or a resync only means a newer map is built meanwhile). After
// `subscribed` changes apply to the shown map as they come, also across resumes.

import { Backoff, type BackoffOptions } from './backoff.js';
import { Emitter } from './emitter.js';
import { normalizeSnapshot, type SnapshotOption } from './snapshot.js';
import type { SubscribeOptions, Subscription, SubscriptionHandlers } from './subscription.js';
import { WalcastError, type Change, type ChangeEvent, type Row } from './types.js';

export interface CollectionOptions {
  /** "schema.table", or "table" for "public.table". */
  table: string;
  /** PostgREST-style filter, as for subscribe(). */
  filter?: string;
  /** Which operations to apply (default all). */
  events?: ChangeEvent[];
  /**
   * The column, or columns, identifying a row (default "id"): the primary key, or columns as
   * unique and present in `old` of deletes.
   */
  key?: string | string[];
  /** Which rows to start with: `true` (default) for all, or `{order, limit}`. */
  snapshot?: SnapshotOption;
  /** Delays before trying again after `snapshot_failed`, `limit_exceeded` or repeated resyncs (default 500 ms / 30 s). */
  backoff?: BackoffOptions;
}

/** `loading` until the first snapshot is in; `ready` from then on (also while reconnecting); `ended`. */
export type CollectionState = 'loading' | 'ready' | 'ended';

export interface CollectionEvents<R extends Row = Row> {
  /** The rows changed: a new snapshot swapped in (change null), or one change applied. */
  change: [LiveCollection<R>, Change<R> | null];
  /** A failure: the collection tries again (`snapshot_failed`, `limit_exceeded`) or has ended. */
  error: [WalcastError];
}

/** What a collection needs from its client. @internal */
export interface CollectionHost<R extends Row> {
  subscribe(opts: SubscribeOptions, handlers: SubscriptionHandlers<R>): Subscription<R>;
  unhandled(err: WalcastError): void;
  /** Calls `fn` once when the client stops; returns a function that forgets it. */
  onClosed(fn: () => void): () => void;
}

/** Failures worth another try: the server was busy, or the database failed the snapshot. */
const RETRIED = new Set(['snapshot_failed', 'limit_exceeded']);

export class LiveCollection<R extends Row = Row> extends Emitter<CollectionEvents<R>> {
  /** Resolves when the first snapshot is in; rejects if the collection ends before. */
  readonly ready: Promise<void>;
  /** Rows that could not be keyed (a key column missing), and deletes or leaves without `old`: not applied. */
  skipped = 0;
  private readonly key: readonly string[];
  private readonly sub: Subscription<R>;
  private _rows = new Map<string, R>();
  /** The map a snapshot is building, shown at its `subscribed`. */
  private building: Map<string, R> | null = null;
  private _state: CollectionState = 'loading';
  private settle: { resolve: () => void; reject: (err: WalcastError) => void } | null = null;
  private readonly backoff: Backoff;
  /** Restarts since the last `subscribed`: the first is immediate, later ones back off. */
  private restarts = 0;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private readonly offClosed: () => void;

  /** @internal use client.collection() */
  constructor(
    private readonly host: CollectionHost<R>,
    opts: CollectionOptions,
  ) {
    super();
    this.key = keyColumns(opts.key);
    const snapshot = normalizeSnapshot(opts.snapshot ?? true, 'collection');
    if (!snapshot) throw new TypeError('collection: snapshot must be true or {order?, limit?}: a collection starts from a snapshot');
    this.backoff = new Backoff(opts.backoff);
    this.ready = new Promise<void>((resolve, reject) => (this.settle = { resolve, reject }));
    this.ready.catch(() => {}); // not awaiting it is fine: the error also goes to `error`
    this.sub = host.subscribe(
      { table: opts.table, filter: opts.filter, events: opts.events, snapshot },
      {
        onSnapshot: (rows) => this.onSnapshot(rows),
        onChange: (change) => this.onChange(change),
        onSubscribed: (info) => this.onSubscribed(info.snapshot),
        onResync: () => this.restart(false),
        onError: (err) => this.onError(err),
      },
    );
    this.offClosed = host.onClosed(() => this.end(null, new WalcastError('client_closed', 'the client is closed')));
  }

  /** Key → row: the snapshot's rows in its order, then rows inserted since. Read-only; replaced by each new snapshot. */
  get rows(): ReadonlyMap<string, R> {
    return this._rows;
  }

  get state(): CollectionState {
    return this._state;
  }

  /** The key of a row in `rows` (only its key columns are read); a TypeError when one is missing. */
  keyOf(row: Partial<R>): string {
    const k = rowKey(row, this.key);
    if (k === null) throw new TypeError(`collection: the row has no ${this.key.join(', ')}`);
    return k;
  }

  /** Ends the collection: unsubscribes; `rows` stays as it was. */
  close(): Promise<void> {
    if (this._state === 'ended') return Promise.resolve();
    this.end(null, new WalcastError('client_closed', 'the collection was closed'));
    return this.sub.unsubscribe();
  }

  private onSnapshot(rows: R[]): void {
    const map = new Map<string, R>();
    for (const row of rows) {
      const k = row && typeof row === 'object' ? rowKey(row, this.key) : null;
      if (k === null) this.skipped++;
      else map.set(k, row);
    }
    this.building = map;
  }

  private onChange(change: Change<R>): void {
    if (this.building) {
      this.apply(this.building, change);
      return;
    }
    this.apply(this._rows, change);
    this.emit('change', this, change);
  }

  private onSubscribed(snapshot: boolean): void {
    this.restarts = 0;
    this.backoff.reset();
    if (!snapshot) return; // a resume: the changes already went to the shown map
    this._rows = this.building ?? new Map();
    this.building = null;
    this._state = 'ready';
    this.emit('change', this, null);
    this.settle?.resolve(); // the first time
    this.settle = null;
  }

  private onError(err: WalcastError): void {
    if (this.sub.state !== 'ended') this.report(err); // e.g. a malformed message, dropped
    else if (RETRIED.has(err.code)) {
      this.report(err);
      this.restart(true);
    } else this.end(err, err);
  }

  /**
   * A new snapshot, after a resync (at once the first time) or a failure (after a delay); the
   * shown rows stay until it is in.
   */
  private restart(failed: boolean): void {
    if (this._state === 'ended') return;
    this.building = null;
    const delay = failed || this.restarts > 0 ? this.backoff.next() : 0;
    this.restarts++;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (this._state !== 'ended') this.sub.resubscribe(); // with the snapshot option
    }, delay);
  }

  private apply(target: Map<string, R>, change: Change<R>): void {
    switch (change.op) {
      case 'insert':
      case 'update': {
        const k = change.new ? rowKey(change.new, this.key) : null;
        if (k === null) {
          this.skipped++;
          return;
        }
        // An update that changed the key: the row under its old key goes.
        const was = change.old ? rowKey(change.old, this.key) : null;
        if (was !== null && was !== k) target.delete(was);
        target.set(k, change.new!);
        return;
      }
      case 'delete':
      case 'leave': {
        const k = change.old ? rowKey(change.old, this.key) : null;
        if (k === null) this.skipped++;
        else target.delete(k);
        return;
      }
      case 'truncate':
        target.clear();
        return;
      default:
        return; // an operation this client does not know
    }
  }

  /** Stops for good; `err` is reported (null: the application or the client closed it). */
  private end(report: WalcastError | null, reason: WalcastError): void {
    if (this._state === 'ended') return;
    this._state = 'ended';
    this.building = null;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.offClosed?.();
    this.settle?.reject(reason);
    this.settle = null;
    if (report) this.report(report);
  }

  private report(err: WalcastError): void {
    if (this.listenerCount('error') > 0) this.emit('error', err);
    else this.host.unhandled(err);
  }
}

function keyColumns(key: string | string[] | undefined): readonly string[] {
  const cols = key === undefined ? ['id'] : Array.isArray(key) ? [...key] : [key];
  if (cols.length === 0 || cols.some((c) => typeof c !== 'string' || c === '') || new Set(cols).size !== cols.length) {
    throw new TypeError(`collection: key must be a column name or a list of distinct ones, not ${JSON.stringify(key)}`);
  }
  return Object.freeze(cols);
}

/**
 * A row's key in the map: one column's value as text ("42", "abc"), several columns' values as
 * a JSON array ('[1,"abc"]'); null when a key column is missing.
 */
export function rowKey(row: Partial<Row>, key: readonly string[]): string | null {
  if (key.length === 1) {
    const v = row[key[0]];
    if (v === undefined) return null;
    return typeof v === 'string' ? v : typeof v === 'number' || typeof v === 'boolean' ? String(v) : JSON.stringify(v);
  }
  const values: unknown[] = [];
  for (const k of key) {
    if (row[k] === undefined) return null;
    values.push(row[k]);
  }
  return JSON.stringify(values);
}
