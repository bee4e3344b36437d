// What the server does with each client message, and the authentication of each connection.
// Validation errors become `error` replies with their code; the connection stays open. A token
// that cannot be accepted closes it with 4001 (docs/PROTOCOL.md §5 `auth`).
import { subscriptionRoutes } from '../cluster/route.js';
import type { TokenVerifier, VerifiedToken } from '../auth/jwt.js';
import { CLOSE, SERVER_DEFAULTS } from '../constants.js';
import {
  WireError,
  UnknownTableError,
  DuplicateIdError,
  LimitExceededError,
  UnknownSubscriptionError,
  BadRequestError,
  AuthError,
  ForbiddenError,
} from '../errors.js';
import type { Catalog } from '../hub/catalog.js';
import type { Channels } from '../hub/channels.js';
import { compileFilter, eqIndexable, parseFilter } from '../hub/filter.js';
import { key, type Hub } from '../hub/hub.js';
import type { ChangeRender } from '../hub/types.js';
import type { Logger } from '../log.js';
import { authenticated, pong, unsubscribed, welcome } from '../protocol/frames.js';
import { parseClientMessage } from '../protocol/parse.js';
import { errorMsgFrom, withContext } from '../protocol/wire-errors.js';
import type { ClientMessage, PresenceMessage, Ref, SubscribeMessage } from '../protocol/types.js';
import { ReplyBatch, type Session } from './session.js';
import { Turns } from './turns.js';
import type { Snapshots } from '../snapshot/snapshots.js';

export interface HandlerDeps {
  hub: Hub;
  catalog: Catalog;
  log: Logger;
  maxMessageBytes: number;
  maxSubscriptions: number;
  /** Verifies client tokens; null under --no-auth (every client is let in, identity null). */
  verify?: TokenVerifier | null;
  /** How long a connection without `?token=` has to send a valid `auth` (default 10 s). */
  authTimeoutMs?: number;
  /** Messages held while a token is verified before the socket is closed with 4400. */
  maxHeldMessages?: number;
  /** Message handling per turn of the event loop and its per-connection queue (Turns). */
  turns?: Partial<TurnLimits>;
  /** Reads `snapshot` subscriptions' rows (src/snapshot/); without it they are refused. */
  snapshots?: Snapshots | null;
}

export interface TurnLimits {
  budgetMs: number;
  maxQueuedMessages: number;
  maxQueuedBytes: number;
}

/**
 * How a token reached us: in the upgrade URL (welcome follows it), in an `auth` message, or from
 * another protocol's handler (the Supabase endpoint), which is told the outcome instead.
 */
type TokenOrigin = { via: 'query' } | { via: 'message'; ref: Ref | undefined } | { via: 'callback'; done: (err: AuthError | null) => void };

/** A presence from the Supabase endpoint: the key its client chose, as a label (Meta.label). */
export type LabelledPresence = PresenceMessage & { readonly label?: string };

/** A subscribe from another protocol's handler: its change frames in that protocol's format. */
export type RenderedSubscribe = SubscribeMessage & { readonly render?: ChangeRender | null };

export class Handlers {
  private readonly verify: TokenVerifier | null;
  private readonly authTimeoutMs: number;
  private readonly maxHeld: number;
  private readonly turns: Turns;
  private readonly replies = new ReplyBatch();

  constructor(private readonly d: HandlerDeps) {
    this.verify = d.verify ?? null;
    this.authTimeoutMs = d.authTimeoutMs ?? SERVER_DEFAULTS.authTimeoutMs;
    this.maxHeld = d.maxHeldMessages ?? SERVER_DEFAULTS.maxHeldMessages;
    const maxQueuedMessages = d.turns?.maxQueuedMessages ?? SERVER_DEFAULTS.maxQueuedMessages;
    const maxQueuedBytes = d.turns?.maxQueuedBytes ?? SERVER_DEFAULTS.maxQueuedBytes;
    this.turns = new Turns({
      around: (drain) => this.replies.run(drain),
      budgetMs: d.turns?.budgetMs ?? SERVER_DEFAULTS.turnBudgetMs,
      maxQueuedMessages,
      maxQueuedBytes,
      onOverflow: (owner, why) =>
        (owner as Session).end(
          CLOSE.tryAgainLater,
          why === 'messages'
            ? `more than ${maxQueuedMessages} messages waiting to be handled; slow down, reconnect and resume`
            : `more than ${maxQueuedBytes} bytes of messages waiting to be handled; slow down, reconnect and resume`,
        ),
    });
  }

  /**
   * A new connection. With a `?token=`, `welcome` is sent once the token is verified (a bad one
   * closes 4001 without it); without one, `welcome` is sent at once and an `auth` must follow
   * within the auth timeout.
   */
  open(session: Session, queryToken: string | null): void {
    this.adopt(session);
    if (!this.verify) {
      session.reply(welcome(session.id));
      return;
    }
    const seconds = Math.round(this.authTimeoutMs / 1000);
    session.armAuthTimeout(this.authTimeoutMs, () =>
      session.end(CLOSE.authFailed, `no valid token within ${seconds} s: connect with ?token=JWT or send {"type":"auth","token":JWT}`),
    );
    if (queryToken !== null) this.authenticate(session, queryToken, { via: 'query' });
    else session.reply(welcome(session.id));
  }

  /** A connection these handlers serve (another protocol's too): its replies join the batches of Turns. */
  adopt(session: Session): void {
    session.replies = this.replies;
  }

  /**
   * A client message, as uWS hands it (`data` is only valid during the call). Handled at once
   * unless the turn's budget is spent or earlier messages of the connection wait (Turns): then
   * it is copied and waits its turn.
   */
  message(session: Session, data: ArrayBuffer, isBinary: boolean): void {
    if (this.turns.admit(session)) {
      this.handle(session, data, isBinary);
      return;
    }
    if (session.frames === null && (isBinary || data.byteLength > this.d.maxMessageBytes)) {
      // Refused unread (binary, too_large; parseClientMessage throws before reading it): the
      // error waits, not a copy.
      let err: unknown;
      try {
        parseClientMessage(data, isBinary, this.d.maxMessageBytes);
        err = new BadRequestError('internal error handling this message');
      } catch (e) {
        err = e;
      }
      this.turns.queue(session, () => this.refuse(session, err), 64);
      return;
    }
    const copy = data.slice(0);
    this.turns.queue(session, () => this.handle(session, copy, isBinary), copy.byteLength + 64);
  }

  private handle(session: Session, data: ArrayBuffer, isBinary: boolean): void {
    if (session.closed) return;
    if (session.frames !== null) {
      // Another protocol (the Supabase endpoint) reads its own frames and calls run() et al.
      session.frames(data, isBinary);
      return;
    }
    let msg: ClientMessage;
    try {
      msg = parseClientMessage(data, isBinary, this.d.maxMessageBytes);
    } catch (err) {
      this.refuse(session, err);
      return;
    }
    if (!this.hold(session, () => this.dispatch(session, msg))) this.dispatch(session, msg);
  }

  /**
   * Handles a message another protocol's handler made of its frame (the Supabase endpoint), in
   * order with the connection's others: held while a token is verified, like parsed ones.
   */
  run(session: Session, msg: ClientMessage | RenderedSubscribe): void {
    if (session.closed) return;
    if (!this.hold(session, () => this.dispatch(session, msg))) this.dispatch(session, msg);
  }

  /**
   * Verifies a token for another protocol's handler: `done(null)` once it is the connection's
   * identity, `done(err)` when refused (the connection stays open, its identity unchanged). The
   * connection's next messages wait for the outcome, and those `done` runs go first.
   */
  authenticateWith(session: Session, token: string, done: (err: AuthError | null) => void): void {
    if (session.closed) return;
    const run = () => this.authenticate(session, token, { via: 'callback', done });
    if (!this.hold(session, run)) run();
  }

  /** A message that could not be parsed: its error, in its turn. */
  private refuse(session: Session, err: unknown): void {
    if (session.closed) return;
    if (!this.hold(session, () => this.fail(session, err))) this.fail(session, err);
  }

  /**
   * While a token is being verified, later messages wait for the outcome so that they are
   * handled in order and with the identity the client meant (an `auth` then a `subscribe` sent
   * together work). False when nothing is being verified.
   */
  private hold(session: Session, run: () => void): boolean {
    if (!session.held) return false;
    if (session.held.length < this.maxHeld) session.held.push(run);
    else if (session.heldForPolicies) session.end(CLOSE.tryAgainLater, `more than ${this.maxHeld} messages sent while the policies were being read; reconnect and resume`);
    else session.end(CLOSE.protocolViolation, `more than ${this.maxHeld} messages sent while a token was being verified`);
    return true;
  }

  private dispatch(session: Session, msg: ClientMessage | RenderedSubscribe): void {
    if (session.closed) return;
    if (msg.type === 'ping') {
      session.reply(pong(msg.ref));
      return;
    }
    if (msg.type === 'auth') {
      this.authenticate(session, msg.token, { via: 'message', ref: msg.ref });
      return;
    }
    if (this.verify && session.identity === null) {
      session.end(CLOSE.authFailed, 'authenticate first: send {"type":"auth","token":JWT} or connect with ?token=JWT');
      return;
    }
    const loading = msg.type === 'unsubscribe' || msg.type === 'leave' ? null : this.d.hub.policiesLoading();
    if (loading) {
      // The slot was recreated and the policies are being read anew: this message and the
      // next ones wait, in order, rather than be refused by a deny-everything authorizer.
      session.held = [() => this.dispatch(session, msg)];
      session.heldForPolicies = true;
      loading
        .then(() => {
          session.heldForPolicies = false;
          this.release(session);
        })
        .catch((err: unknown) => {
          this.d.log.error({ err: (err as Error)?.message, stack: (err as Error)?.stack }, 'unexpected error running messages held for the policies');
          session.end(CLOSE.protocolViolation, 'internal error');
        });
      return;
    }
    switch (msg.type) {
      case 'subscribe':
        this.subscribe(session, msg).catch((err) => this.fail(session, err, msg));
        return;
      case 'unsubscribe':
        // A subscription still taking its snapshot ends there (it never reaches the hub).
        if (this.d.hub.unsubscribe(session, msg.id) || this.d.snapshots?.cancel(session, key(msg.id))) session.reply(unsubscribed(msg.id, msg.ref));
        else this.fail(session, new UnknownSubscriptionError(`no subscription with id ${JSON.stringify(msg.id)}`), msg);
        return;
      case 'join':
        this.channel(session, msg, (c) => c.join(session, msg.channel, msg.ref));
        return;
      case 'leave':
        this.channel(session, msg, (c) => c.leave(session, msg.channel, msg.ref));
        return;
      case 'broadcast':
        this.channel(session, msg, (c) => c.broadcast(session, msg.channel, msg.event, msg.payloadJson, msg.self));
        return;
      case 'presence':
        this.channel(session, msg, (c) => c.presence(session, msg.channel, msg.state, (msg as LabelledPresence).label));
        return;
    }
  }

  /** The connection closed: its snapshots stop. */
  closed(session: Session): void {
    this.d.snapshots?.cancelAll(session);
  }

  // ── authentication ──────────────────────────────────────────────────────────────────────

  /** Verifies a token (first or refresh); the client's next messages wait for the outcome. */
  private authenticate(session: Session, token: string, source: TokenOrigin): void {
    const verify = this.verify;
    if (!verify) {
      // --no-auth: tokens are accepted unread, so clients can be written one way for both.
      if (source.via === 'callback') source.done(null);
      else session.reply(authenticated(null, source.via === 'message' ? source.ref : undefined));
      return;
    }
    session.held = [];
    verify(token, session.supabaseTokens ? { anonymous: true } : undefined).then(
      (v) => this.accepted(session, v, source),
      (err: unknown) => this.refused(session, err, source),
    ).catch((err: unknown) => {
      this.d.log.error({ err: (err as Error)?.message, stack: (err as Error)?.stack }, 'unexpected error after verifying a token');
      session.end(CLOSE.authFailed, 'internal error while authenticating');
    });
  }

  private accepted(session: Session, v: VerifiedToken, source: TokenOrigin): void {
    if (session.closed) return;
    const previous = session.identity;
    // The Supabase endpoint switches users as Supabase does (an anonymous client signs in).
    if (previous !== null && previous.id !== v.identity.id && !session.supabaseTokens) {
      this.refused(session, new AuthError(`the new token is for another user ("sub" ${JSON.stringify(v.identity.id)}, not ${JSON.stringify(previous.id)}); reconnect to switch users`), source);
      return;
    }
    // jose tolerates a few seconds of clock skew on exp; the session does not outlive exp.
    if (v.expiresAt !== null && v.expiresAt <= Date.now()) {
      this.refused(session, new AuthError('the token has expired'), source);
      return;
    }
    session.identity = v.identity;
    session.clearAuthTimeout();
    session.armExpiry(v.expiresAt, () => session.end(CLOSE.authFailed, 'token expired'));
    if (source.via !== 'callback') session.reply(source.via === 'query' ? welcome(session.id) : authenticated(v.expiresAt, source.ref));
    // Another protocol's handler undoes what the refresh ends (a join's parts) at once: unheld,
    // those are not its client's messages (a switch may end a hundred joins).
    if (source.via === 'callback') this.release(session);
    // A refresh may take rights away: subscriptions the new identity may not read end here.
    if (previous !== null) this.d.hub.reauthorize(session);
    if (source.via === 'callback') this.settled(session, () => source.done(null));
    else this.release(session);
  }

  /**
   * Runs a verification's callback after what was held meanwhile. Another protocol's handler
   * (the Supabase endpoint) keeps its client's later frames itself: what waits here is what it
   * asked during the verification (undoing a join an event ended, say), which came first. Its
   * callback may start another verification: that one's hold is kept.
   */
  private settled(session: Session, done: () => void): void {
    this.release(session);
    if (session.held) (session.held as (() => void)[]).push(done);
    else done();
  }

  private refused(session: Session, err: unknown, source: TokenOrigin): void {
    if (session.closed) return;
    if (!(err instanceof AuthError)) {
      this.d.log.error({ err: (err as Error)?.message, stack: (err as Error)?.stack }, 'unexpected error verifying a token');
      err = new AuthError('the token could not be verified');
    }
    const e = err as AuthError;
    this.d.log.debug({ session: session.id, reason: e.message }, 'token refused');
    if (source.via === 'callback') {
      this.settled(session, () => source.done(e));
      return;
    }
    if (source.via === 'message') session.reply(errorMsgFrom(e, { ref: source.ref }));
    session.end(CLOSE.authFailed, e.message);
  }

  /** Runs the messages held during a verification, in order, until one starts another. */
  private release(session: Session): void {
    const held = session.held ?? [];
    session.held = null;
    for (let i = 0; i < held.length; i++) {
      if (session.closed) return;
      held[i]();
      if (session.held) {
        // That message was an `auth`: the rest wait for it in turn.
        (session.held as (() => void)[]).push(...held.slice(i + 1));
        return;
      }
    }
  }

  private channel(session: Session, msg: { ref?: Ref }, run: (c: Channels) => void): void {
    const channels = this.d.hub.channels;
    if (!channels) {
      this.fail(session, new BadRequestError('channels are not enabled on this server'), msg);
      return;
    }
    try {
      run(channels);
    } catch (err) {
      this.fail(session, err, msg);
    }
  }

  // ── subscriptions ───────────────────────────────────────────────────────────────────────

  private async subscribe(session: Session, msg: RenderedSubscribe): Promise<void> {
    const hub = this.d.hub;
    const k = key(msg.id);
    const subs = hub.subscriptionsOf(session);
    if (subs.has(k) || session.pending?.has(k)) {
      throw new DuplicateIdError(`subscription id ${JSON.stringify(msg.id)} is already in use on this connection`);
    }
    if (subs.size + (session.pending?.size ?? 0) >= this.d.maxSubscriptions) {
      throw new LimitExceededError(`at most ${this.d.maxSubscriptions} subscriptions per connection`);
    }
    (session.pending ??= new Set()).add(k);
    try {
      const filter = parseFilter(msg.filter);
      const table = await this.d.catalog.table(msg.table.qualified);
      if (!table) {
        throw new UnknownTableError(`table ${msg.table.qualified} does not exist or is not enabled (select walcast.enable('${msg.table.qualified}'))`);
      }
      // The policies may have been unloaded while the table was looked up.
      for (let loading = hub.policiesLoading(); loading; loading = hub.policiesLoading()) await loading;
      if (session.closed) return;
      if (!hub.mayEverRead(session.identity, table.qualified, msg.since ?? null)) {
        throw new ForbiddenError(`no policy allows ${session.identity ? JSON.stringify(session.identity.id) : 'this connection'} to read ${table.qualified}`);
      }
      const predicate = compileFilter(filter, table.columns);
      const indexTerm = filter.terms.find((t) => t.op === 'eq' && eqIndexable(table.columns.find((c) => c.name === t.column)?.typeOid ?? 0)) ?? null;
      const init = {
        peer: session,
        id: msg.id,
        ref: msg.ref,
        table: table.qualified,
        events: msg.events ? new Set(msg.events) : null,
        predicate,
        indexTerm,
        // In a cluster, what its node needs to follow of the table.
        routes: subscriptionRoutes(table.routeBy, table.columns, filter.terms),
        routeBy: table.routeBy,
        render: msg.render ?? null,
      };
      const snapshot = msg.snapshot;
      if (!snapshot) {
        hub.subscribe({ ...init, since: msg.since ?? null });
        return;
      }
      const snapshots = this.d.snapshots;
      if (!snapshots) throw new BadRequestError('snapshots are not enabled on this server');
      if (snapshot.order && !table.columns.some((c) => c.name === snapshot.order?.column)) {
        throw new BadRequestError(`subscribe.snapshot.order names ${JSON.stringify(snapshot.order.column)}, which is not a column of ${table.qualified}`);
      }
      await snapshots.run(
        {
          peer: session,
          id: msg.id,
          table,
          request: snapshot,
          terms: filter.terms,
          predicate,
          subscribe: (since, skip) => hub.subscribe({ ...init, since, skip }),
        },
        k,
      );
    } finally {
      session.pending?.delete(k);
    }
  }

  private fail(session: Session, err: unknown, msg?: { ref?: string | number; id?: string | number }): void {
    if (session.closed) return;
    if (!(err instanceof WireError)) {
      this.d.log.error({ err: (err as Error)?.message, stack: (err as Error)?.stack }, 'unexpected error handling a client message');
      err = new BadRequestError('internal error handling this message');
    }
    const e = withContext(err as WireError, { ref: msg?.ref, id: msg && 'id' in msg ? msg.id : undefined });
    session.reply(errorMsgFrom(e));
  }
}
