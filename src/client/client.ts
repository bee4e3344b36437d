// The walcast client: one WebSocket connection that comes back by itself. It authenticates with
// `?token=` on every connect (asking the token function each time), refreshes the token in-band
// before it expires, reconnects with full-jitter exponential backoff after any drop, resumes
// every table subscription from its last position and rejoins every channel.
//
// Runs in browsers and Node 20 alike: plain ES modules, relative imports, no Node built-ins.

import { Backoff } from './backoff.js';
import { LiveCollection, type CollectionHost, type CollectionOptions } from './collection.js';
import { Channel, type ChannelHost, type ChannelReplyKind } from './channel.js';
import { Emitter } from './emitter.js';
import { Keepalive } from './keepalive.js';
import { isPosition } from './position.js';
import { TokenRefresher } from './refresher.js';
import { Subscription, type SubscribeOptions, type SubscriptionHandlers, type SubscriptionHost } from './subscription.js';
import { OPEN, WalcastError, type Change, type Ref, type Row, type ServerMessage, type WebSocketConstructor, type WebSocketLike } from './types.js';
import type { ClientEvents, ClientOptions, ClosedInfo, ConnectionState, TokenSource } from './options.js';

export type { ClientEvents, ClientOptions, ClosedInfo, ConnectionState, DisconnectInfo, TokenSource } from './options.js';

const DEFAULTS = { pingIntervalMs: 20_000, connectTimeoutMs: 10_000, refreshLeadMs: 30_000, maxAuthFailures: 3 } as const;
const CLOSE_AUTH = 4001;
const MAX_UNANSWERED = 256;

type Timer = ReturnType<typeof setTimeout>;

type Pending =
  | { kind: 'subscribe'; sub: Subscription<never>; id: string; resumed: boolean }
  | { kind: 'unsubscribe'; done: () => void }
  | { kind: ChannelReplyKind; channel: Channel }
  | { kind: 'auth'; token: string }
  | { kind: 'ping' };

export class WalcastClient extends Emitter<ClientEvents> {
  private readonly opts: Required<Omit<ClientOptions, 'token' | 'WebSocket' | 'backoff'>> & { token: TokenSource | undefined };
  private readonly Ctor: WebSocketConstructor;
  private readonly backoff: Backoff;
  private _state: ConnectionState = 'connecting';
  private _session: string | null = null;
  private socket: WebSocketLike | null = null;
  /** Bumped for every connection attempt: callbacks of older ones are ignored. */
  private conn = 0;
  private everOpened = false;
  private authFailures = 0;
  private token: string | null = null;
  private refSeq = 0;
  private idSeq = 0;
  private pending = new Map<Ref, Pending>();
  /**
   * Broadcasts and presence updates get no reply unless they fail, so their refs are kept in
   * a bounded list (the most recent ones) to route a late `error` to the channel.
   */
  private unanswered = new Map<Ref, Pending>();
  private readonly subs = new Map<string, Subscription<never>>();
  private readonly channels = new Map<string, Channel>();
  private retryTimer: Timer | null = null;
  private connectTimer: Timer | null = null;
  private readonly keepalive: Keepalive;
  private closing: Promise<void> | null = null;
  private readonly subHost: SubscriptionHost;
  private readonly channelHost: ChannelHost;
  private readonly refresher: TokenRefresher;

  constructor(options: ClientOptions) {
    super();
    if (!options || typeof options.url !== 'string' || options.url === '') throw new TypeError('createClient: url is required ("ws://host:4000/ws")');
    const Ctor = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!Ctor) {
      throw new TypeError('createClient: there is no global WebSocket here; pass one: `import WebSocket from "ws"; createClient({ url, WebSocket })` (npm i ws)');
    }
    this.Ctor = Ctor;
    this.opts = {
      url: options.url,
      token: options.token,
      pingIntervalMs: options.pingIntervalMs ?? DEFAULTS.pingIntervalMs,
      connectTimeoutMs: options.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs,
      refreshLeadMs: options.refreshLeadMs ?? DEFAULTS.refreshLeadMs,
      maxAuthFailures: options.maxAuthFailures ?? DEFAULTS.maxAuthFailures,
    };
    this.backoff = new Backoff(options.backoff);
    this.subHost = {
      start: (sub) => this.startSub(sub),
      stop: (sub) => this.stopSub(sub),
      unhandled: (err) => this.unhandled(err),
      nextId: () => `s${++this.idSeq}`,
    };
    this.channelHost = {
      request: (msg, kind, channel) => this.send(msg, { kind, channel }),
      unhandled: (err) => this.unhandled(err),
      isClosed: () => this.isClosed,
    };
    this.keepalive = new Keepalive(this.opts.pingIntervalMs);
    this.refresher = new TokenRefresher({
      source: this.opts.token,
      leadMs: this.opts.refreshLeadMs,
      isCurrent: (conn) => conn === this.conn,
      sendAuth: (token) => this.send({ type: 'auth', token }, { kind: 'auth', token }),
      unhandled: (err) => this.unhandled(err),
    });
    // Connect on the next task, so that listeners added right after createClient() see it all.
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      void this.connect();
    }, 0);
  }

  /** Where the connection stands. */
  get state(): ConnectionState {
    return this._state;
  }

  /** The server's id of the current connection (`welcome.session`; the `session` of presence metas). */
  get session(): string | null {
    return this._session;
  }

  /** Subscribes to changes of a table; resumed by itself after every reconnect. */
  subscribe<R extends Row = Row>(opts: SubscribeOptions, handlers: SubscriptionHandlers<R> = {}): Subscription<R> {
    if (this._state === 'closed') throw new WalcastError('client_closed', 'the client is closed');
    const sub = new Subscription<R>(this.subHost, opts, handlers);
    this.startSub(sub as unknown as Subscription<never>);
    return sub;
  }

  /**
   * The rows of a table as a Map kept up to date: a snapshot subscription applied by key
   * (collection.ts). `ready` resolves when the first snapshot is in.
   */
  collection<R extends Row = Row>(opts: CollectionOptions): LiveCollection<R> {
    if (this._state === 'closed') throw new WalcastError('client_closed', 'the client is closed');
    const host: CollectionHost<R> = {
      subscribe: (o, h) => this.subscribe<R>(o, h),
      unhandled: (err) => this.unhandled(err),
      onClosed: (fn) => this.once('closed', fn),
    };
    return new LiveCollection<R>(host, opts);
  }

  /** The channel of this name (one object per name); join() it to receive. */
  channel(name: string): Channel {
    if (typeof name !== 'string' || name === '') throw new TypeError('channel: name must be a non-empty string');
    let ch = this.channels.get(name);
    if (!ch) this.channels.set(name, (ch = new Channel(name, this.channelHost)));
    return ch;
  }

  /** Stops for good: closes the connection (1000), no reconnect. */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    const socket = this.socket;
    this.finish({ code: 1000, reason: 'client closed', error: null });
    this.closing = new Promise<void>((resolve) => {
      if (!socket || socket.readyState > OPEN) {
        resolve();
        return;
      }
      const timer = setTimeout(done, 2_000);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      socket.onclose = done;
      try {
        socket.close(1000, 'client closed');
      } catch {
        done();
      }
    });
    return this.closing;
  }

  // ── connection ──────────────────────────────────────────────────────────────────────────

  /** Read through a getter: TypeScript would keep a narrowing of `_state` across awaits and emits. */
  private get isClosed(): boolean {
    return this._state === 'closed';
  }

  private setState(s: ConnectionState): void {
    if (this._state === s) return;
    this._state = s;
    this.emit('state', s);
  }

  private async connect(): Promise<void> {
    if (this._state === 'closed') return;
    const conn = ++this.conn;
    this.setState(this.everOpened ? 'reconnecting' : 'connecting');
    let token: string | null = null;
    const source = this.opts.token;
    if (source !== undefined) {
      try {
        token = typeof source === 'function' ? await source() : source;
        if (typeof token !== 'string' || token === '') throw new TypeError(`the token function returned ${JSON.stringify(token)}, not a token`);
      } catch (err) {
        if (conn !== this.conn || this.isClosed) return;
        this.stopWith(new WalcastError('token_failed', `could not get a token: ${(err as Error)?.message ?? String(err)}`, { cause: err }));
        return;
      }
    }
    if (conn !== this.conn || this.isClosed) return;
    this.token = token;
    const url = token === null ? this.opts.url : `${this.opts.url}${this.opts.url.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}`;
    let socket: WebSocketLike;
    try {
      socket = new this.Ctor(url);
    } catch (err) {
      this.stopWith(new WalcastError('bad_request', `cannot open a WebSocket to ${this.opts.url}: ${(err as Error)?.message ?? String(err)}`, { cause: err }));
      return;
    }
    this.socket = socket;
    this.connectTimer = setTimeout(() => this.drop(conn, 1006, `no welcome within ${this.opts.connectTimeoutMs} ms`), this.opts.connectTimeoutMs);
    socket.onopen = () => {};
    socket.onerror = () => {}; // a close follows
    socket.onmessage = (ev: { data?: unknown }) => {
      if (conn === this.conn) this.onMessage(conn, ev?.data);
    };
    socket.onclose = (ev: { code?: number; reason?: string }) => {
      if (conn === this.conn) this.onClose(conn, typeof ev?.code === 'number' ? ev.code : 1006, typeof ev?.reason === 'string' ? ev.reason : '');
    };
  }

  /** Gives up on the current socket (no welcome in time, no pong) as if it had dropped. */
  private drop(conn: number, code: number, reason: string): void {
    if (conn !== this.conn || !this.socket) return;
    const socket = this.socket;
    detach(socket);
    try {
      socket.close(1000, reason.slice(0, 100));
    } catch {
      // already closing
    }
    this.onClose(conn, code, reason);
  }

  private onClose(conn: number, code: number, reason: string): void {
    if (conn !== this.conn || this._state === 'closed') return;
    if (this.socket) detach(this.socket);
    this.socket = null;
    this.conn++; // late events of that socket are ignored from now on
    this.clearConnectionTimers();
    this.resetConnectionState();
    let retryInMs: number | null;
    if (code === CLOSE_AUTH) {
      if (typeof this.opts.token !== 'function') {
        const what = this.opts.token === undefined ? 'no token was given' : 'the token is a fixed string; pass a function to get fresh ones';
        this.emit('disconnect', { code, reason, retryInMs: null });
        this.stopWith(new WalcastError('unauthorized', `the server refused the connection (4001 ${reason}) and ${what}`), code, reason);
        return;
      }
      this.authFailures++;
      if (this.authFailures > this.opts.maxAuthFailures) {
        this.emit('disconnect', { code, reason, retryInMs: null });
        this.stopWith(new WalcastError('unauthorized', `the server refused ${this.authFailures} tokens in a row (last: 4001 ${reason})`), code, reason);
        return;
      }
      retryInMs = this.authFailures === 1 ? 0 : this.backoff.next();
    } else retryInMs = this.backoff.next();
    this.setState('reconnecting');
    this.emit('disconnect', { code, reason, retryInMs });
    if (this.isClosed) return; // a listener closed the client
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      void this.connect();
    }, retryInMs);
  }

  private clearConnectionTimers(): void {
    if (this.connectTimer) clearTimeout(this.connectTimer);
    this.connectTimer = null;
    this.keepalive.stop();
    this.refresher.stop();
  }

  /** What belonged to the connection that is gone. */
  private resetConnectionState(): void {
    const pending = this.pending;
    this.pending = new Map();
    this.unanswered = new Map();
    for (const p of pending.values()) if (p.kind === 'unsubscribe') p.done(); // the server forgot it anyway
    for (const sub of this.subs.values()) sub.disconnected();
    for (const ch of this.channels.values()) ch.disconnected();
    this._session = null;
  }

  /** Stops on a problem the client cannot get past (a token). */
  private stopWith(err: WalcastError, code = 1000, reason = err.message): void {
    if (this._state === 'closed') return;
    const socket = this.socket;
    this.finish({ code, reason, error: err }, err);
    if (socket && socket.readyState <= OPEN) {
      try {
        socket.close(1000, 'client stopped');
      } catch {
        // closing anyway
      }
    }
  }

  private finish(info: ClosedInfo, err?: WalcastError): void {
    if (this._state === 'closed') return;
    this.conn++;
    if (this.socket) detach(this.socket);
    this.socket = null;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.clearConnectionTimers();
    this.resetConnectionState();
    const closed = new WalcastError('client_closed', 'the client is closed');
    for (const sub of this.subs.values()) sub.close();
    this.subs.clear();
    for (const ch of this.channels.values()) ch.close(closed);
    this._state = 'closed';
    if (err) this.emit('error', err);
    this.emit('state', 'closed');
    this.emit('closed', info);
  }

  // ── messages ────────────────────────────────────────────────────────────────────────────

  /** Sends one message with a fresh ref; false when the connection is not open. */
  private send(msg: Record<string, unknown>, pending: Pending | null): boolean {
    const socket = this.socket;
    if (!socket || this._state !== 'open' || socket.readyState !== OPEN) return false;
    const ref = ++this.refSeq;
    const out = { ...msg, ref };
    try {
      socket.send(JSON.stringify(out));
    } catch {
      return false;
    }
    if (pending?.kind === 'broadcast' || pending?.kind === 'presence') {
      this.unanswered.set(ref, pending);
      if (this.unanswered.size > MAX_UNANSWERED) this.unanswered.delete(this.unanswered.keys().next().value as Ref);
    } else if (pending) this.pending.set(ref, pending);
    return true;
  }

  private onMessage(conn: number, data: unknown): void {
    this.keepalive.heard();
    if (typeof data !== 'string') return; // the server sends text only
    let m: ServerMessage;
    try {
      m = JSON.parse(data) as ServerMessage;
    } catch {
      return;
    }
    if (!m || typeof m !== 'object' || typeof m.type !== 'string') return;
    let p: Pending | undefined;
    if (m.ref !== undefined && m.ref !== null) {
      p = this.pending.get(m.ref) ?? this.unanswered.get(m.ref);
      this.pending.delete(m.ref);
      this.unanswered.delete(m.ref);
    }
    switch (m.type) {
      case 'welcome':
        this.onWelcome(conn, m);
        return;
      case 'change':
      case 'snapshot': {
        const sub = typeof m.sub === 'string' ? this.subs.get(m.sub) : undefined;
        if (sub && m.type === 'change') sub.handleChange(m as unknown as Change<never>);
        else if (sub) sub.handleSnapshot(m.rows);
        return;
      }
      case 'subscribed': {
        const sub = typeof m.id === 'string' ? this.subs.get(m.id) : undefined;
        if (sub) sub.handleSubscribed(m.position, p?.kind === 'subscribe' ? p.resumed : false, conn);
        else if (typeof m.id === 'string' || typeof m.id === 'number') {
          // Unsubscribed here before the server had it (its unsubscribe came too early): end it there too.
          this.send({ type: 'unsubscribe', id: m.id }, { kind: 'unsubscribe', done: () => {} });
        }
        return;
      }
      case 'progress':
        if (!isPosition(m.pos)) return;
        for (const sub of this.subs.values()) if (sub.liveOn === conn) sub.handleProgress(m.pos);
        this.emit('progress', m.pos);
        return;
      case 'resync': {
        const sub = typeof m.sub === 'string' ? this.subs.get(m.sub) : undefined;
        if (sub) {
          this.subs.delete(sub.id);
          sub.handleResync(typeof m.reason === 'string' ? m.reason : 'unknown');
        }
        return;
      }
      case 'unsubscribed':
        if (p?.kind === 'unsubscribe') p.done();
        return;
      case 'authenticated':
        if (p?.kind === 'auth') {
          this.tokenAccepted(p.token);
          this.emit('authenticated', { expiresAt: typeof m.expires_at === 'string' ? m.expires_at : null });
        }
        return;
      case 'joined':
      case 'left':
      case 'broadcast':
      case 'presence_state':
      case 'presence_diff': {
        const ch = typeof m.channel === 'string' ? this.channels.get(m.channel) : undefined;
        if (!ch) return;
        if (m.type === 'joined') ch.handleJoined();
        else if (m.type === 'left') ch.handleLeft(p === undefined);
        else if (m.type === 'broadcast') ch.handleBroadcast(typeof m.event === 'string' ? m.event : '', m.payload ?? null, m.from);
        else if (m.type === 'presence_state') ch.handlePresenceState(m.state);
        else ch.handlePresenceDiff(m.joins, m.leaves);
        return;
      }
      case 'error':
        this.onError(m, p);
        return;
      default:
        return; // pong, and types this client does not know
    }
  }

  private onWelcome(conn: number, m: ServerMessage): void {
    if (this._state === 'open') return;
    if (this.connectTimer) clearTimeout(this.connectTimer);
    this.connectTimer = null;
    this._session = typeof m.session === 'string' ? m.session : null;
    this.backoff.reset();
    this.authFailures = 0;
    this.setState('open');
    if (this.token !== null) this.tokenAccepted(this.token);
    this.keepalive.start(
      () => conn === this.conn && this.send({ type: 'ping' }, { kind: 'ping' }),
      (reason) => this.drop(conn, 1006, reason),
    );
    for (const sub of this.subs.values()) this.sendSubscribe(sub);
    for (const ch of this.channels.values()) ch.sendJoin();
    const reconnect = this.everOpened;
    this.everOpened = true;
    this.emit('open', { session: this._session ?? '', reconnect });
  }

  /** Routes an `error`: to the request it answers (ref), else to the subscription (id), else to the client. */
  private onError(m: ServerMessage, p: Pending | undefined): void {
    const code = typeof m.code === 'string' ? m.code : 'unknown';
    const text = typeof m.message === 'string' ? m.message : code;
    const id = typeof m.id === 'string' || typeof m.id === 'number' ? m.id : undefined;
    const err = new WalcastError(code, text, { ref: m.ref ?? undefined, id });
    if (p) {
      switch (p.kind) {
        case 'subscribe':
          // Unless the subscription moved on since (unsubscribed, resubscribed under another id).
          if (p.sub.id === p.id && this.subs.get(p.id) === p.sub) {
            this.subs.delete(p.id);
            p.sub.fail(err);
          }
          return;
        case 'unsubscribe':
          p.done();
          return;
        case 'join':
        case 'leave':
        case 'broadcast':
        case 'presence':
          p.channel.handleError(p.kind, err);
          return;
        default:
          this.unhandled(err); // auth: the close 4001 follows
          return;
      }
    }
    const sub = typeof id === 'string' ? this.subs.get(id) : undefined;
    if (sub) {
      this.subs.delete(sub.id);
      sub.fail(err); // e.g. forbidden after a token refresh: it has ended
      return;
    }
    this.unhandled(err);
  }

  private unhandled(err: WalcastError): void {
    this.emit('error', err);
  }

  // ── subscriptions ───────────────────────────────────────────────────────────────────────

  private startSub(sub: Subscription<never>): void {
    if (this._state === 'closed') {
      sub.close();
      return;
    }
    this.subs.set(sub.id, sub);
    if (this._state === 'open') this.sendSubscribe(sub);
  }

  private sendSubscribe(sub: Subscription<never>): void {
    const msg = sub.subscribeMessage();
    this.send(msg, { kind: 'subscribe', sub, id: sub.id, resumed: msg.since !== undefined });
  }

  private stopSub(sub: Subscription<never>): Promise<void> {
    if (this.subs.get(sub.id) !== sub) return Promise.resolve();
    this.subs.delete(sub.id);
    return new Promise<void>((resolve) => {
      if (!this.send({ type: 'unsubscribe', id: sub.id }, { kind: 'unsubscribe', done: resolve })) resolve();
    });
  }

  // ── tokens ──────────────────────────────────────────────────────────────────────────────

  /** The server holds `token` now: plan its refresh. */
  private tokenAccepted(token: string): void {
    this.token = token;
    this.refresher.accepted(token, this.conn);
  }
}

/** Handlers of a socket we are done with: no-ops (an unhandled `error` would throw in `ws`). */
function detach(socket: WebSocketLike): void {
  const noop = (): void => {};
  socket.onopen = noop;
  socket.onmessage = noop;
  socket.onerror = noop;
  socket.onclose = noop;
}

/** A client that connects at once (on the next task) and reconnects until close(). */
export function createClient(options: ClientOptions): WalcastClient {
  return new WalcastClient(options);
}
