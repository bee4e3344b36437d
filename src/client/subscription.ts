// One table subscription as the application holds it: it outlives connections. The client
// re-sends it on every reconnect with `since` = its last position, and hands the application
// each change once, in position order (a change at or before the last position is dropped).

import { Emitter } from './emitter.js';
import { comparePositions, maxPosition, tryParsePosition } from './position.js';
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
}

export interface SubscribedInfo {
  /** Every change up to this position has been delivered; later ones follow live. */
  position: string;
  /** True when the subscribe carried `since` (a resume), false for "from now". */
  resumed: boolean;
}

export interface SubscriptionHandlers<R extends Row = Row> {
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
    this.table = opts.table;
    this.filter = opts.filter || undefined;
    this.events = opts.events && opts.events.length > 0 ? [...opts.events] : undefined;
    this._position = opts.since ?? null;
    this._id = host.nextId();
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
   * `progress`. Store it to resume in a later session (`since`).
   */
  get position(): string | null {
    return this._position;
  }

  /** Ends the subscription; no change is handed on after this call. */
  unsubscribe(): Promise<void> {
    if (this._state === 'ended') return Promise.resolve();
    this._state = 'ended';
    return this.host.stop(this as unknown as Subscription<never>);
  }

  /**
   * Subscribes again after a resync or an error (or replaces a live subscription): from now by
   * default, or after `since`. The handlers stay; the id changes.
   */
  resubscribe(opts: { since?: string | null } = {}): void {
    if (opts.since != null && !tryParsePosition(opts.since)) throw new TypeError(`resubscribe: since is not a position: ${JSON.stringify(opts.since)}`);
    if (this._state !== 'ended') void this.host.stop(this as unknown as Subscription<never>);
    this._id = this.host.nextId();
    this._position = opts.since ?? null;
    this._state = 'subscribing';
    this.liveOn = -1;
    this.host.start(this as unknown as Subscription<never>);
  }

  /** The subscribe message for a (re)connect: `since` is the last position. @internal */
  subscribeMessage(): Record<string, unknown> {
    const msg: Record<string, unknown> = { type: 'subscribe', id: this._id, table: this.table };
    if (this.filter !== undefined) msg.filter = this.filter;
    if (this.events !== undefined) msg.events = this.events;
    if (this._position !== null) msg.since = this._position;
    return msg;
  }

  /** @internal */
  handleChange(change: Change<R>): void {
    if (this._state === 'ended') return;
    const pos = tryParsePosition(change.pos);
    if (!pos) {
      this.fail(new WalcastError('protocol', `change with an invalid position ${JSON.stringify(change.pos)}`, { id: this._id }), false);
      return;
    }
    if (this._position !== null && comparePositions(pos, this._position) <= 0) {
      this.duplicatesDropped++;
      return;
    }
    this._position = change.pos;
    this.emit('change', change);
  }

  /** @internal */
  handleSubscribed(position: unknown, resumed: boolean, conn: number): void {
    if (this._state === 'ended' || !tryParsePosition(position)) return;
    this._position = maxPosition(this._position, position as string);
    this._state = 'live';
    this.liveOn = conn;
    this.emit('subscribed', { position: position as string, resumed });
  }

  /** A `progress` on the connection this subscription went live on. @internal */
  handleProgress(pos: string): void {
    if (this._state === 'live') this._position = maxPosition(this._position, pos);
  }

  /** @internal */
  handleResync(reason: ResyncReason): void {
    if (this._state === 'ended') return;
    this._state = 'ended';
    if (this.listenerCount('resync') === 0) {
      this.host.unhandled(new WalcastError('resync', `subscription ${this._id} (${this.table}) needs a resync: ${reason}`, { id: this._id }));
    }
    this.emit('resync', reason);
  }

  /** An error about this subscription: it has ended unless `ends` is false. @internal */
  fail(err: WalcastError, ends = true): void {
    if (this._state === 'ended') return;
    if (ends) this._state = 'ended';
    if (this.listenerCount('error') === 0) this.host.unhandled(err);
    else this.emit('error', err);
  }

  /** The client closed: nothing more will come. @internal */
  close(): void {
    this._state = 'ended';
  }

  /** The connection dropped: live again only after the next `subscribed`. @internal */
  disconnected(): void {
    if (this._state === 'live') this._state = 'subscribing';
    this.liveOn = -1;
  }
}
