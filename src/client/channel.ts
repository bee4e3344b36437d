// A channel as the application holds it: broadcast (ephemeral messages between the members)
// and presence (who is here, one meta per connection). It outlives connections: the client
// rejoins every joined channel on reconnect and re-tracks the last tracked state; the server's
// fresh `presence_state` then replaces the view, and the difference is reported as usual.

import { Emitter, type Listener } from './emitter.js';
import { applyPresenceDiff, emptyPresence, isEmptyChange, replacePresenceState, type PresenceChange, type PresenceMeta, type PresenceState } from './presence.js';
import { WalcastError } from './types.js';

/** A broadcast as received. */
export interface BroadcastMessage<P = unknown> {
  channel: string;
  event: string;
  payload: P;
  /** The sender's user id (JWT `sub`; its session id under --no-auth), set by the server; absent from SQL. */
  from?: string;
}

export interface ChannelEvents {
  /** The whole presence view after every change, with the change (metas and keys). */
  presence: [PresenceState, PresenceChange];
  /** A key (user id) appeared: its metas now, and those that just arrived. */
  join: [string, PresenceMeta[], PresenceMeta[]];
  /** A key's last meta went: the metas that left. */
  leave: [string, PresenceMeta[]];
  /** The server confirmed the join (again after every reconnect). */
  joined: [];
  /**
   * A refused join (`forbidden`, `limit_exceeded`), broadcast or presence update
   * (`too_large`, `limit_exceeded`...), or the server removing this connection from the
   * channel (`forbidden`: its right to join was taken away; the channel is left).
   */
  error: [WalcastError];
}

/** What a channel needs from its client. @internal */
export interface ChannelHost {
  /** Sends a request now; false when the connection is not open. */
  request(msg: Record<string, unknown>, onReply: ChannelReplyKind, channel: Channel): boolean;
  unhandled(err: WalcastError): void;
  /** The client was closed: nothing can be joined any more. */
  isClosed(): boolean;
}

/** Which reply a channel request waits for. @internal */
export type ChannelReplyKind = 'join' | 'leave' | 'broadcast' | 'presence';

interface Waiter {
  resolve(): void;
  reject(err: WalcastError): void;
}

export class Channel extends Emitter<ChannelEvents> {
  /** True from join() until leave() (the application's wish, across reconnects). */
  private wanted = false;
  /** True once the server confirmed the join on the current connection. */
  private joinedNow = false;
  /** A join request is in flight on the current connection. */
  private joining = false;
  private tracked: Record<string, unknown> | null = null;
  private view: PresenceState = emptyPresence();
  private joinWaiters: Waiter[] = [];
  private leaveWaiters: Waiter[] = [];
  private readonly broadcastListeners = new Map<string, Set<Listener<[unknown, BroadcastMessage]>>>();

  /** @internal use client.channel(name) */
  constructor(
    readonly name: string,
    private readonly host: ChannelHost,
  ) {
    super();
  }

  /** Joined on the server right now. */
  get joined(): boolean {
    return this.joinedNow;
  }

  /** The state this connection tracks (re-tracked after reconnects), or null. */
  get trackedState(): Record<string, unknown> | null {
    return this.tracked;
  }

  /** The merged presence view: key (user id) → metas (`{session, state}`), one per connection. */
  presenceState(): PresenceState {
    return this.view;
  }

  /**
   * Joins (and stays joined across reconnects until leave()). Resolves once the server
   * confirmed; rejects with the server's error (`forbidden`), or when leave() or the client's
   * close() comes first.
   */
  join(): Promise<void> {
    if (this.host.isClosed()) return Promise.reject(new WalcastError('client_closed', 'the client is closed'));
    if (this.wanted && this.joinedNow) return Promise.resolve();
    this.wanted = true;
    const p = new Promise<void>((resolve, reject) => this.joinWaiters.push({ resolve, reject }));
    this.sendJoin();
    return p;
  }

  /** Leaves: untracks, clears the presence view, stops rejoining. */
  leave(): Promise<void> {
    const wasOnServer = this.joinedNow || this.joining;
    this.wanted = false;
    this.tracked = null;
    this.joinedNow = false;
    this.joining = false;
    this.settle(this.joinWaiters.splice(0), new WalcastError('left', `left channel ${this.name} before the join completed`));
    this.showPresence(replacePresenceState(this.view, {}));
    if (!wasOnServer) return Promise.resolve();
    const p = new Promise<void>((resolve, reject) => this.leaveWaiters.push({ resolve, reject }));
    if (!this.host.request({ type: 'leave', channel: this.name }, 'leave', this)) this.settle(this.leaveWaiters.splice(0), null);
    return p;
  }

  /**
   * Broadcasts to the channel's other members (to this connection too with `self: true`).
   * Fire and forget, not stored: false when not joined right now (before join() resolved, or
   * while reconnecting); a refusal arrives as an `error` event.
   */
  send(event: string, payload: unknown = null, opts: { self?: boolean } = {}): boolean {
    if (!this.joinedNow) return false;
    const msg: Record<string, unknown> = { type: 'broadcast', channel: this.name, event, payload };
    if (opts.self) msg.self = true;
    return this.host.request(msg, 'broadcast', this);
  }

  /**
   * Listens to broadcasts of one event (`"*"`: every event). The listener gets the payload and
   * the whole message. Returns a function that removes it.
   */
  override on<K extends keyof ChannelEvents>(event: K, fn: Listener<ChannelEvents[K]>): () => void;
  override on<P = unknown>(event: string, fn: (payload: P, message: BroadcastMessage<P>) => void): () => void;
  override on(event: string, fn: (...args: never[]) => void): () => void {
    if (CHANNEL_EVENTS.has(event)) return super.on(event as keyof ChannelEvents, fn as unknown as Listener<ChannelEvents[keyof ChannelEvents]>);
    let set = this.broadcastListeners.get(event);
    if (!set) this.broadcastListeners.set(event, (set = new Set()));
    const l = fn as unknown as Listener<[unknown, BroadcastMessage]>;
    set.add(l);
    return () => set.delete(l);
  }

  /** Listens to broadcasts of one event, even one named like a channel event ("join", "error"...). */
  onBroadcast<P = unknown>(event: string, fn: (payload: P, message: BroadcastMessage<P>) => void): () => void {
    let set = this.broadcastListeners.get(event);
    if (!set) this.broadcastListeners.set(event, (set = new Set()));
    const l = fn as unknown as Listener<[unknown, BroadcastMessage]>;
    set.add(l);
    return () => set.delete(l);
  }

  /** The presence view after every change. */
  onPresence(fn: Listener<ChannelEvents['presence']>): () => void {
    return super.on('presence', fn);
  }

  /** A key (user id) appeared. */
  onJoin(fn: Listener<ChannelEvents['join']>): () => void {
    return super.on('join', fn);
  }

  /** A key's last meta went. */
  onLeave(fn: Listener<ChannelEvents['leave']>): () => void {
    return super.on('leave', fn);
  }

  onError(fn: Listener<ChannelEvents['error']>): () => void {
    return super.on('error', fn);
  }

  /** Tracks a state for this connection (replacing the previous one); kept across reconnects. */
  track(state: Record<string, unknown>): void {
    if (!state || typeof state !== 'object' || Array.isArray(state)) throw new TypeError('track: state must be an object');
    this.tracked = state;
    if (this.joinedNow) this.host.request({ type: 'presence', channel: this.name, state }, 'presence', this);
  }

  /** Stops tracking. */
  untrack(): void {
    const was = this.tracked;
    this.tracked = null;
    if (was !== null && this.joinedNow) this.host.request({ type: 'presence', channel: this.name, state: null }, 'presence', this);
  }

  // ── from the client ─────────────────────────────────────────────────────────────────────

  /** Sends `join` if wanted and not yet joined or joining. @internal */
  sendJoin(): void {
    if (!this.wanted || this.joinedNow || this.joining) return;
    if (this.host.request({ type: 'join', channel: this.name }, 'join', this)) this.joining = true;
  }

  /** @internal */
  handleJoined(): void {
    this.joining = false;
    if (!this.wanted || this.joinedNow) return;
    this.joinedNow = true;
    if (this.tracked !== null) this.host.request({ type: 'presence', channel: this.name, state: this.tracked }, 'presence', this);
    this.settle(this.joinWaiters.splice(0), null);
    this.emit('joined');
  }

  /**
   * `left`: the reply to leave(), or (`byServer`, without a ref) the server removed this
   * connection because its right to join was taken away. @internal
   */
  handleLeft(byServer: boolean): void {
    this.settle(this.leaveWaiters.splice(0), null);
    if (!byServer || !this.joinedNow) return;
    this.wanted = false;
    this.joinedNow = false;
    this.joining = false;
    this.tracked = null;
    this.showPresence(replacePresenceState(this.view, {}));
    const err = new WalcastError('forbidden', `the server removed this connection from channel ${this.name} (no longer allowed to join it)`);
    if (this.listenerCount('error') === 0) this.host.unhandled(err);
    else this.emit('error', err);
  }

  /** An error reply to one of this channel's requests. @internal */
  handleError(kind: ChannelReplyKind, err: WalcastError): void {
    if (kind === 'leave') {
      this.settle(this.leaveWaiters.splice(0), null); // gone either way
      return;
    }
    if (kind === 'join') {
      this.joining = false;
      this.wanted = false;
      this.tracked = null;
      this.settle(this.joinWaiters.splice(0), err);
    }
    if (this.listenerCount('error') === 0) this.host.unhandled(err);
    else this.emit('error', err);
  }

  /** @internal */
  handleBroadcast(event: string, payload: unknown, from: unknown): void {
    if (!this.wanted) return;
    const msg: BroadcastMessage = { channel: this.name, event, payload };
    if (typeof from === 'string') msg.from = from;
    for (const key of [event, '*']) {
      const set = this.broadcastListeners.get(key);
      if (!set) continue;
      for (const fn of [...set]) {
        try {
          fn(payload, msg);
        } catch (err) {
          setTimeout(() => {
            throw err;
          }, 0);
        }
      }
    }
  }

  /** @internal */
  handlePresenceState(state: unknown): void {
    if (this.wanted) this.showPresence(replacePresenceState(this.view, state));
  }

  /** @internal */
  handlePresenceDiff(joins: unknown, leaves: unknown): void {
    if (this.wanted) this.showPresence(applyPresenceDiff(this.view, joins, leaves));
  }

  /** The connection dropped: the server forgot the join (the view stays until the next state). @internal */
  disconnected(): void {
    this.joinedNow = false;
    this.joining = false;
    this.settle(this.leaveWaiters.splice(0), null);
  }

  /** The client closed. @internal */
  close(err: WalcastError): void {
    this.disconnected();
    this.wanted = false;
    this.settle(this.joinWaiters.splice(0), err);
  }

  private settle(waiters: Waiter[], err: WalcastError | null): void {
    for (const w of waiters) {
      if (err) w.reject(err);
      else w.resolve();
    }
  }

  private showPresence(change: PresenceChange): void {
    this.view = change.state;
    if (isEmptyChange(change)) return;
    for (const key of change.leftKeys) this.emit('leave', key, change.leaves[key] ?? []);
    for (const key of change.joinedKeys) this.emit('join', key, change.state[key], change.joins[key] ?? []);
    this.emit('presence', change.state, change);
  }
}

const CHANNEL_EVENTS = new Set<string>(['presence', 'join', 'leave', 'joined', 'error']);
