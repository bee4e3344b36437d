// One table subscription as the application holds it: it outlives connections. The client
// re-sends it on every reconnect with `since` = its last position, and hands the application
// each change once, in position order (a change at or before the last position is dropped).
//
// With a snapshot, the subscription has no position until its first `subscribed`: the changes
// that follow the snapshot frames are not resume points (docs/PROTOCOL.md), so a reconnect before
// `subscribed` asks for a new snapshot instead of resuming, and the application gets the new
// snapshot (onSnapshot), which replaces the old one.

import { Emitter } from './emitter.js';
import { comparePositions, maxPosition, tryParsePosition } from './position.js';
import { normalizeSnapshot, snapshotWire, type SnapshotOption, type SnapshotOptions } from './snapshot.js';
import { WalcastError, type Change, type ChangeEvent, type ResyncReason, type Row } from './types.js';

export interface SubscribeOptions {
  /** "schema.table", or "table" for "public.table". */
  table: string;
  /** PostgREST-style filter: "status=eq.open&owner=eq.42". */
  filter?: string;
  /** Which operations (default all three; `update`/`delete` also bring `leave`, `delete` brings `truncate`). */
  events?: ChangeEvent[];
  /** Resume after this position (from an earlier session); absent or null: from now. */
  since?: string | null;
  /**
   * Start with the rows the subscriber may see now (onSnapshot), then the changes after them:
   * `true` for all rows, `{order: "col.desc", limit: 50}` for the first rows in an order. Not
   * together with `since`.
   */
  snapshot?: SnapshotOption | false | null;
}

export interface SubscribedInfo {
  /** Every change up to this position has been delivered; later ones follow live. */
  position: string;
  /** True when the subscribe carried `since` (a resume), false for "from now" or a snapshot. */
  resumed: boolean;
  /** True when this `subscribed` completes a snapshot: the application now holds the table. */
  snapshot: boolean;
}

export interface SubscriptionHandlers<R extends Row = Row> {
  /**
   * The whole snapshot, in its order, before the changes that follow it. Called again when a
   * snapshot is taken anew (a reconnect before `subscribed`, or resubscribe()): each call
   * replaces what the earlier ones gave.
   */
  onSnapshot?(rows: R[]): void;
  onChange?(change: Change<R>): void;
  /** The subscription is live (again after every reconnect). */
  onSubscribed?(info: SubscribedInfo): void;
  /** The position could not be honoured: the subscription has ended. Refetch, then resubscribe. */
  onResync?(reason: ResyncReason): void;
  /** The server refused the subscription (or ended it: `forbidden` after a token refresh). */
  onError?(err: WalcastError): void;
}

export type SubscriptionState = 'subscribing' | 'live' | 'ended';

export interface SubscriptionEvents<R extends Row = Row> {
  snapshot: [R[]];
  change: [Change<R>];
  subscribed: [SubscribedInfo];
  resync: [ResyncReason];
  error: [WalcastError];
}

/** What a subscription needs from its client. @internal */
export interface SubscriptionHost {
  /** Registers `sub` under its id and sends it when the connection is open. */
  start(sub: Subscription<never>): void;
  /** Forgets `sub` and tells the server; resolves once the server confirmed (or at once offline). */
  stop(sub: Subscription<never>): Promise<void>;
  /** Reports an error nobody listens to. */
  unhandled(err: WalcastError): void;
  nextId(): string;
}

export class Subscription<R extends Row = Row> extends Emitter<SubscriptionEvents<R>> {
  readonly table: string;
  readonly filter: string | undefined;
  readonly events: readonly ChangeEvent[] | undefined;
  private _id: string;
  private _state: SubscriptionState = 'subscribing';
  private _position: string | null;
  /** The snapshot option: of subscribe(), or of the last resubscribe() that gave one. */
  private _snapshot: Readonly<SnapshotOptions> | null;
  /** The current attempt asks for a snapshot and has had no `subscribed` yet. */
  private snapshotting: boolean;
  /** The current attempt's snapshot rows, until handed on (at its first change or `subscribed`). */
  private snapRows: R[] | null = null;
  /** The last change handed on in a snapshot attempt: orders its changes, not a resume point. */
  private attemptPos: string | null = null;
  /** The connection (client-side number) on which `subscribed` arrived; progress counts then. @internal */
  liveOn = -1;
  /** Changes dropped because their position was not after the last one (should stay 0). */
  duplicatesDropped = 0;

  /** @internal use client.subscribe() */
  constructor(
    private readonly host: SubscriptionHost,
    opts: SubscribeOptions,
    handlers: SubscriptionHandlers<R> = {},
  ) {
    super();
    if (typeof opts.table !== 'string' || opts.table === '') throw new TypeError('subscribe: table must be a non-empty string');
    if (opts.since != null && !tryParsePosition(opts.since)) throw new TypeError(`subscribe: since is not a position: ${JSON.stringify(opts.since)}`);
    this._snapshot = normalizeSnapshot(opts.snapshot, 'subscribe');
    if (this._snapshot && opts.since != null) throw new TypeError('subscribe: snapshot and since exclude each other (a snapshot is the state now; since resumes)');
    this.snapshotting = this._snapshot !== null;
    this.table = opts.table;
    this.filter = opts.filter || undefined;
    this.events = opts.events && opts.events.length > 0 ? [...opts.events] : undefined;
    this._position = opts.since ?? null;
    this._id = host.nextId();
    if (handlers.onSnapshot) this.on('snapshot', handlers.onSnapshot.bind(handlers));
    if (handlers.onChange) this.on('change', handlers.onChange.bind(handlers));
    if (handlers.onSubscribed) this.on('subscribed', handlers.onSubscribed.bind(handlers));
    if (handlers.onResync) this.on('resync', handlers.onResync.bind(handlers));
    if (handlers.onError) this.on('error', handlers.onError.bind(handlers));
  }

  /** The id on the wire (a new one after resubscribe()). */
  get id(): string {
    return this._id;
  }

  get state(): SubscriptionState {
    return this._state;
  }

  /**
   * The last position seen: of the last change handed on, or of a later `subscribed` or
   * `progress`. Store it to resume in a later session (`since`). Null while a snapshot
   * subscription waits for its first `subscribed`.
   */
  get position(): string | null {
    return this._position;
  }

  /** The snapshot option resubscribe() uses by default (null: none). */
  get snapshot(): Readonly<SnapshotOptions> | null {
    return this._snapshot;
  }

  /** Ends the subscription; no change is handed on after this call. */
  unsubscribe(): Promise<void> {
    if (this._state === 'ended') return Promise.resolve();
    this._state = 'ended';
    return this.host.stop(this as unknown as Subscription<never>);
  }

  /**
   * Subscribes again after a resync or an error (or replaces a live subscription): after
   * `since` when given; otherwise with a new snapshot when the subscription has a snapshot
   * option (`snapshot` replaces it; `snapshot: false` drops it), else from now. The handlers
   * stay; the id changes.
   */
  resubscribe(opts: { since?: string | null; snapshot?: SnapshotOption | false | null } = {}): void {
    if (opts.since != null && !tryParsePosition(opts.since)) throw new TypeError(`resubscribe: since is not a position: ${JSON.stringify(opts.since)}`);
    if (opts.snapshot !== undefined) {
      const snapshot = normalizeSnapshot(opts.snapshot, 'resubscribe');
      if (snapshot && opts.since != null) throw new TypeError('resubscribe: snapshot and since exclude each other (a snapshot is the state now; since resumes)');
      this._snapshot = snapshot;
    }
    if (this._state !== 'ended') void this.host.stop(this as unknown as Subscription<never>);
    this._id = this.host.nextId();
    this._position = opts.since ?? null;
    this.snapshotting = opts.since == null && this._snapshot !== null;
    this.snapRows = this.attemptPos = null;
    this._state = 'subscribing';
    this.liveOn = -1;
    this.host.start(this as unknown as Subscription<never>);
  }

  /**
   * The subscribe message for a (re)connect: `since` is the last position, or, before the first
   * `subscribed` of a snapshot subscription, a new snapshot (an earlier attempt's is void). @internal
   */
  subscribeMessage(): Record<string, unknown> {
    const msg: Record<string, unknown> = { type: 'subscribe', id: this._id, table: this.table };
    if (this.filter !== undefined) msg.filter = this.filter;
    if (this.events !== undefined) msg.events = this.events;
    if (this.snapshotting && this._snapshot) {
      msg.snapshot = snapshotWire(this._snapshot);
      this.snapRows = [];
      this.attemptPos = null;
    } else if (this._position !== null) msg.since = this._position;
    return msg;
  }

  /** A `snapshot` frame: its rows are kept until the snapshot is complete. @internal */
  handleSnapshot(rows: unknown): void {
    if (this._state === 'ended') return;
    const bad = !this.snapshotting ? 'for a subscription that asked for none' : this.snapRows === null ? 'after its changes' : !Array.isArray(rows) ? 'without a rows array' : '';
    if (bad) {
      this.fail(new WalcastError('protocol', `a snapshot frame ${bad} (dropped)`, { id: this._id }), false);
      return;
    }
    for (const row of rows as R[]) this.snapRows!.push(row);
  }

  /**
   * Hands on the snapshot, once complete: the first change or the `subscribed` after the frames.
   * False when a listener ended or restarted the subscription meanwhile.
   */
  private deliverSnapshot(): boolean {
    const rows = this.snapRows;
    if (rows === null) return true;
    const id = this._id;
    this.snapRows = null;
    this.emit('snapshot', rows);
    return this._id === id && this._state !== 'ended';
  }

  /** @internal */
  handleChange(change: Change<R>): void {
    if (this._state === 'ended') return;
    const pos = tryParsePosition(change.pos);
    if (!pos) {
      this.fail(new WalcastError('protocol', `change with an invalid position ${JSON.stringify(change.pos)}`, { id: this._id }), false);
      return;
    }
    if (this.snapshotting) {
      if (!this.deliverSnapshot()) return;
      if (this.attemptPos !== null && comparePositions(pos, this.attemptPos) <= 0) {
        this.duplicatesDropped++;
        return;
      }
      this.attemptPos = change.pos;
    } else {
      if (this._position !== null && comparePositions(pos, this._position) <= 0) {
        this.duplicatesDropped++;
        return;
      }
      this._position = change.pos;
    }
    this.emit('change', change);
  }

  /** @internal */
  handleSubscribed(position: unknown, resumed: boolean, conn: number): void {
    if (this._state === 'ended' || !tryParsePosition(position)) return;
    const snapshot = this.snapshotting;
    if (snapshot) {
      if (!this.deliverSnapshot()) return;
      // From here positions are resume points: the changes before were delivered too.
      this.snapshotting = false;
      this._position = maxPosition(this.attemptPos, position as string);
      this.attemptPos = null;
    } else this._position = maxPosition(this._position, position as string);
    this._state = 'live';
    this.liveOn = conn;
    this.emit('subscribed', { position: position as string, resumed, snapshot });
  }

  /** A `progress` on the connection this subscription went live on. @internal */
  handleProgress(pos: string): void {
    if (this._state === 'live') this._position = maxPosition(this._position, pos);
  }

  /** @internal */
  handleResync(reason: ResyncReason): void {
    if (this._state === 'ended') return;
    this._state = 'ended';
    this.snapRows = null;
    if (this.listenerCount('resync') === 0) {
      this.host.unhandled(new WalcastError('resync', `subscription ${this._id} (${this.table}) needs a resync: ${reason}`, { id: this._id }));
    }
    this.emit('resync', reason);
  }

  /** An error about this subscription: it has ended unless `ends` is false. @internal */
  fail(err: WalcastError, ends = true): void {
    if (this._state === 'ended') return;
    if (ends) {
      this._state = 'ended';
      this.snapRows = null;
    }
    if (this.listenerCount('error') === 0) this.host.unhandled(err);
    else this.emit('error', err);
  }

  /** The client closed: nothing more will come. @internal */
  close(): void {
    this._state = 'ended';
    this.snapRows = null;
  }

  /** The connection dropped: live again only after the next `subscribed`. @internal */
  disconnected(): void {
    if (this._state === 'live') this._state = 'subscribing';
    this.liveOn = -1;
    this.snapRows = null; // void: the next attempt takes a new snapshot
  }
}
