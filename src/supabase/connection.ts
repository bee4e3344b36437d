// The Supabase Realtime protocol of one connection (docs/SUPABASE.md), on top of walcast's: each
// Phoenix push becomes walcast client messages, run by the same handlers (same authentication,
// limits, policies and ordering), and walcast's replies and frames become Phoenix messages.
//
// walcast replies to the messages made here carry refs of our own ("sb1", "sb2"...), so they are
// told apart from everything else and routed to the part of the Phoenix exchange that waits for
// them. Messages walcast answers only on failure (broadcast, presence) are followed by a `ping`:
// its `pong` comes after any error, and means success otherwise.
import { AuthError, BadRequestError, WireError } from '../errors.js';
import type { Catalog } from '../hub/catalog.js';
import type { Logger } from '../log.js';
import { validateClientMessage } from '../protocol/parse.js';
import type { ClientMessage } from '../protocol/types.js';
import type { Handlers, LabelledPresence, RenderedSubscribe } from '../server/handlers.js';
import { CLOSE, SUPABASE } from '../constants.js';
import { bindingId, echo, readBindings, type BindingRequest } from './bindings.js';
import { encodeFrame, decodeFrame, PhoenixDecodeError } from './phoenix.js';
import type { DecodedFrame, Vsn } from './phoenix.types.js';
import { diffToPhoenix, toPhoenix, type WalcastPresence } from './presence.js';
import { BindingRender, type SupabaseChanges } from './render.js';
import type { PhoenixSession } from './session.js';
import { Topic, type Binding, type TopicConfig } from './topic.js';

export interface ConnectionDeps {
  handlers: Handlers;
  catalog: Catalog;
  changes: SupabaseChanges;
  log: Logger;
  maxMessageBytes: number;
  maxSubscriptions: number;
  /** Bytes of frames held for joining topics, all together (a socket's backpressure bound). */
  maxHeldBytes: number;
}

/** A walcast frame, parsed. */
type Native = { type: string; [field: string]: unknown };
type Waiter = (f: Native) => void;

const E = SUPABASE.events;
const REF_PREFIX = 'sb';

/**
 * The last walcast frame translated, and its Phoenix forms: one broadcast or presence frame is
 * the same string for every member of a channel, so it is parsed and written once, not per member.
 */
const last = { frame: '', parsed: null as Native | null, out: new Map<string, string>() };

export class SupabaseConnection {
  private readonly topics = new Map<string, Topic>();
  private readonly byChannel = new Map<string, Topic>();
  private readonly bySub = new Map<number, Topic>();
  private readonly waiting = new Map<string, Waiter>();
  private nextRef = 0;
  private nextSub = 0;
  /** Bytes held by the topics being joined (each topic copies its changes: one frame per topic). */
  private heldBytes = 0;
  /** The last access token accepted (the same one again is not verified again). */
  private token: string | null = null;
  /**
   * While a token is verified, the frames after the one that sent it wait here, in order, and
   * are read once it is decided: a client that joins many channels at once sends the same token
   * with each, and it is verified once. Bounded (SUPABASE.maxDeferredFrames, maxDeferredBytes).
   */
  private verifying = false;
  private readonly deferred: { m: DecodedFrame; bytes: number }[] = [];
  private deferredBytes = 0;
  /**
   * Subscribes not answered yet, by walcast id → the ref their answer carries: a subscription
   * ended before it went live (a cluster catch-up cut short) is answered by a resync or error
   * naming its id, without the ref.
   */
  private readonly unanswered = new Map<number, string>();

  constructor(
    private readonly session: PhoenixSession,
    readonly vsn: Vsn,
    private readonly d: ConnectionDeps,
  ) {
    session.translate = (frame) => this.fromWalcast(frame);
    session.frames = (data, isBinary) => this.onFrame(data, isBinary);
  }

  /** Topics joined or joining. */
  get size(): number {
    return this.topics.size;
  }

  // ── Phoenix pushes in ───────────────────────────────────────────────────────────────────

  onFrame(data: ArrayBuffer, isBinary: boolean): void {
    let m: DecodedFrame;
    try {
      m = decodeFrame(this.vsn, data, isBinary, this.d.maxMessageBytes);
    } catch (err) {
      if (!(err instanceof PhoenixDecodeError)) throw err;
      // Answered when the push can be named; Phoenix has no reply for a frame that cannot.
      if (err.topic !== null) this.reply(err.topic, err.joinRef, err.ref, 'error', { reason: err.reason });
      this.session.flushSoon();
      return;
    }
    if (this.verifying) {
      this.deferredBytes += data.byteLength;
      if (this.deferred.length >= SUPABASE.maxDeferredFrames || this.deferredBytes > SUPABASE.maxDeferredBytes) {
        this.session.end(CLOSE.protocolViolation, `more than ${SUPABASE.maxDeferredFrames} messages (or ${SUPABASE.maxDeferredBytes} bytes) sent while a token was being verified`);
        return;
      }
      this.deferred.push({ m, bytes: data.byteLength });
      return;
    }
    this.handle(m);
    this.session.flushSoon();
  }

  private handle(m: DecodedFrame): void {
    if (m.topic === SUPABASE.phoenixTopic) {
      if (m.event === E.heartbeat) this.reply(m.topic, null, m.ref, 'ok', {});
      else this.reply(m.topic, m.joinRef, m.ref, 'error', { reason: `unknown event ${JSON.stringify(m.event)} on topic phoenix` });
    } else if (m.event === E.join) this.join(m);
    else {
      const topic = this.topics.get(m.topic);
      if (!topic) this.reply(m.topic, m.joinRef, m.ref, 'error', { reason: 'unmatched topic' });
      else if (m.event === E.leave) this.leave(topic, m);
      else if (m.event === E.accessToken) this.accessToken(topic, m);
      else if (m.event === E.broadcast) this.broadcast(topic, m);
      else if (m.event === E.presence) this.presence(topic, m);
      else this.reply(m.topic, m.joinRef, m.ref, 'error', { reason: `unknown event ${JSON.stringify(m.event)}` });
    }
  }

  /** Verifies a token for this connection; `then` runs first, then the frames that waited. */
  private verify(token: string, then: (err: AuthError | null) => void): void {
    this.verifying = true;
    this.d.handlers.authenticateWith(this.session, token, (err) => {
      this.verifying = false;
      if (!err) this.token = token;
      then(err);
      while (!this.verifying && this.deferred.length > 0 && !this.session.closed) {
        const d = this.deferred.shift() as { m: DecodedFrame; bytes: number };
        this.deferredBytes -= d.bytes;
        this.handle(d.m);
      }
      this.session.flushSoon();
    });
  }

  private join(m: DecodedFrame): void {
    const payload = m.payload as Record<string, unknown>;
    let topic: Topic;
    let bindings: BindingRequest[];
    try {
      if (!m.topic.startsWith(SUPABASE.topicPrefix)) throw new BadRequestError(`topics are "${SUPABASE.topicPrefix}<channel>", not ${JSON.stringify(m.topic)}`);
      const channel = m.topic.slice(SUPABASE.topicPrefix.length);
      validateClientMessage({ type: 'join', channel }); // walcast's rules for channel names
      const config = object(payload.config, 'config');
      bindings = readBindings(config.postgres_changes, this.d.maxSubscriptions);
      const old = this.topics.get(m.topic);
      // Joined again (the client lost the reply, or rejoins): the old join goes, silently.
      if (old) this.drop(old);
      if (this.topics.size >= SUPABASE.maxTopics) throw new BadRequestError(`at most ${SUPABASE.maxTopics} channels per connection`);
      topic = new Topic(m.topic, channel, m.joinRef, m.ref, topicConfig(config));
    } catch (err) {
      this.reply(m.topic, m.joinRef, m.ref, 'error', { reason: reasonOf(err) });
      return;
    }
    this.topics.set(topic.name, topic);
    this.byChannel.set(topic.channel, topic);
    topic.timer = setTimeout(() => this.fail(topic, `the join was not answered within ${SUPABASE.joinTimeoutMs / 1000} s; retry`), SUPABASE.joinTimeoutMs);
    topic.timer.unref();
    const token = payload.access_token;
    if (typeof token !== 'string' || token === '' || token === this.token) {
      this.parts(topic, bindings);
      return;
    }
    topic.waiting++;
    this.verify(token, (err) => {
      topic.waiting--;
      if (err) {
        topic.failure ??= err.message;
        this.settle(topic);
      } else if (topic.state === 'joining') this.parts(topic, bindings);
    });
  }

  /** The walcast side of a join: the channel, and a subscription per binding and table. */
  private parts(topic: Topic, bindings: BindingRequest[]): void {
    // Parts may be answered at once (as they are made): the join is settled once all are made.
    topic.waiting++;
    topic.waiting++;
    this.request({ type: 'join', channel: topic.channel }, (f) => {
      topic.waiting--;
      if (f.type === 'joined') {
        // Joined for a topic gone meanwhile: left, unless a newer topic holds the channel now.
        if (topic.state !== 'gone') topic.member = true;
        else if (!this.byChannel.has(topic.channel)) this.request({ type: 'leave', channel: topic.channel });
      } else if (bindings.length === 0) {
        // A channel for broadcast and presence only: not being a member is the join's refusal. With
        // postgres_changes, the join stands for them (and broadcast, presence are refused later).
        topic.failure ??= messageOf(f);
      }
      this.settle(topic);
    });
    const ids = new Set<number>();
    for (const request of bindings) {
      const id = bindingId(request, ids);
      ids.add(id);
      const binding: Binding = { id, request, subs: [] };
      topic.bindings.push(binding);
      if (request.table !== null) {
        this.subscribe(topic, binding, request.schema, request.table, false);
        continue;
      }
      topic.waiting++;
      this.d.catalog.tablesIn(request.schema).then(
        (tables) => {
          topic.waiting--;
          if (topic.state === 'joining') for (const t of tables) this.subscribe(topic, binding, t.schema, t.name, true);
          this.settle(topic);
        },
        (err: unknown) => {
          topic.waiting--;
          this.d.log.warn({ err: (err as Error)?.message }, 'could not list the tables of a schema for a Supabase binding');
          topic.failure ??= `could not list the tables of schema ${JSON.stringify(request.schema)}; retry`;
          this.settle(topic);
        },
      );
    }
    topic.waiting--;
    this.settle(topic);
  }

  private subscribe(topic: Topic, binding: Binding, schema: string, table: string, schemaWide: boolean): void {
    const id = ++this.nextSub;
    const r = binding.request;
    const head = this.d.changes.acquire(this.vsn, topic.name, binding.id);
    topic.heads.push(binding.id);
    const render = new BindingRender(this.d.changes, head, topic, (frame) => this.holdFrame(topic, frame));
    const msg: RenderedSubscribe = {
      type: 'subscribe',
      id,
      table: { schema, name: table, qualified: `${schema}.${table}` },
      ...(r.events ? { events: r.events } : {}),
      ...(r.walcastFilter !== '' ? { filter: r.walcastFilter } : {}),
      render,
    };
    topic.waiting++;
    const ref = this.request(msg, (f) => {
      this.unanswered.delete(id);
      topic.waiting--;
      if (f.type === 'subscribed') {
        if (topic.state === 'gone') this.request({ type: 'unsubscribe', id });
        else {
          binding.subs.push(id);
          this.bySub.set(id, topic);
        }
      } else if (!(schemaWide && f.code === 'forbidden')) {
        // A table of a whole schema the user may not read is left out; anything else fails the join.
        topic.failure ??= messageOf(f);
      }
      this.settle(topic);
    });
    if (this.waiting.has(ref)) this.unanswered.set(id, ref);
  }

  /** A resync or error naming a subscription whose subscribe is unanswered: its answer. */
  private answerOf(id: unknown, f: Native): boolean {
    const ref = typeof id === 'number' ? this.unanswered.get(id) : undefined;
    const waiter = ref === undefined ? undefined : this.waiting.get(ref);
    if (ref === undefined || !waiter) return false;
    this.waiting.delete(ref);
    waiter(f);
    return true;
  }

  /** Every part answered: the join's reply, then what was held for the topic meanwhile. */
  private settle(topic: Topic): void {
    if (topic.state !== 'joining' || topic.waiting > 0) return;
    if (topic.failure !== null) {
      this.fail(topic, topic.failure);
      return;
    }
    if (topic.timer) clearTimeout(topic.timer);
    topic.timer = null;
    topic.state = 'joined';
    const bindings = topic.bindings.map((b) => echo(b.request, b.id));
    this.reply(topic.name, topic.joinRef, topic.joinPushRef, 'ok', { postgres_changes: bindings });
    if (bindings.length > 0) {
      this.system(topic, 'ok', 'Subscribed to PostgreSQL', E.postgresChanges);
    }
    const held = this.unhold(topic);
    for (const f of held) {
      if (typeof f === 'string') this.session.out(f);
      else this.session.pushFrame(f);
    }
    this.session.flushSoon();
  }

  /** The join fails: what it did is undone, and it is answered with the reason. */
  private fail(topic: Topic, reason: string): void {
    if (topic.state !== 'joining') return;
    this.drop(topic);
    this.reply(topic.name, topic.joinRef, topic.joinPushRef, 'error', { reason });
    this.session.flushSoon();
  }

  private leave(topic: Topic, m: DecodedFrame): void {
    this.drop(topic);
    this.reply(topic.name, m.joinRef, m.ref, 'ok', {});
    this.send(topic.name, topic.joinRef, null, E.close, {});
  }

  /**
   * A joined topic can no longer go on as it was (a resync, rights lost): it ends with a system
   * message and phx_error, and realtime-js joins it again, judged anew, from now.
   */
  private errored(topic: Topic, message: string): void {
    if (topic.state === 'joining') {
      topic.failure ??= message;
      return;
    }
    if (topic.state === 'gone') return;
    this.system(topic, 'error', message, 'system');
    this.drop(topic);
    this.send(topic.name, topic.joinRef, topic.joinRef, E.error, {});
    this.session.flushSoon();
  }

  /** Undoes a topic's walcast side: its subscriptions, its channel membership, its frame heads. */
  private drop(topic: Topic): void {
    if (topic.state === 'gone') return;
    topic.state = 'gone';
    this.unhold(topic);
    if (topic.timer) clearTimeout(topic.timer);
    topic.timer = null;
    for (const b of topic.bindings) {
      for (const id of b.subs) {
        this.bySub.delete(id);
        this.request({ type: 'unsubscribe', id });
      }
      b.subs.length = 0;
    }
    if (topic.member) this.request({ type: 'leave', channel: topic.channel });
    topic.member = false;
    // (A join of this topic's channel still unanswered is left when answered: see parts().)
    for (const id of topic.heads) this.d.changes.release(this.vsn, topic.name, id);
    topic.heads.length = 0;
    if (this.topics.get(topic.name) === topic) this.topics.delete(topic.name);
    if (this.byChannel.get(topic.channel) === topic) this.byChannel.delete(topic.channel);
  }

  private accessToken(topic: Topic, m: DecodedFrame): void {
    const token = (m.payload as Record<string, unknown>).access_token;
    // realtime-js sends the token to every joined channel: it is verified once.
    if (typeof token !== 'string' || token === '' || token === this.token) return;
    this.verify(token, (err) => {
      if (!err) return;
      // As Supabase does: the channel is closed with a system message saying why.
      if (topic.state === 'gone') return;
      this.system(topic, 'error', err.message, 'system');
      this.drop(topic);
      this.send(topic.name, topic.joinRef, topic.joinRef, E.close, {});
      this.session.flushSoon();
    });
  }

  private broadcast(topic: Topic, m: DecodedFrame): void {
    const p = m.payload as Record<string, unknown>;
    const answer = (err: string | null) => {
      if (err !== null) this.reply(topic.name, m.joinRef, m.ref, 'error', { reason: err });
      else if (topic.config.ack) this.reply(topic.name, m.joinRef, m.ref, 'ok', {});
    };
    let msg: ClientMessage;
    try {
      if (m.binary && m.payload.encoding === 'binary') throw new BadRequestError('binary broadcast payloads are not supported by walcast: send JSON');
      msg = validateClientMessage({ type: 'broadcast', channel: topic.channel, event: p.event, payload: p.payload ?? null, self: topic.config.self });
    } catch (err) {
      answer(reasonOf(err));
      return;
    }
    this.acknowledged(msg, answer);
  }

  private presence(topic: Topic, m: DecodedFrame): void {
    const p = m.payload as Record<string, unknown>;
    const answer = (err: string | null) => this.reply(topic.name, m.joinRef, m.ref, err === null ? 'ok' : 'error', err === null ? {} : { reason: err });
    let msg: LabelledPresence;
    try {
      if (p.event !== 'track' && p.event !== 'untrack') throw new BadRequestError('presence.event must be "track" or "untrack"');
      const state = p.event === 'track' ? (p.payload ?? {}) : null;
      msg = { ...(validateClientMessage({ type: 'presence', channel: topic.channel, state }) as LabelledPresence), label: topic.config.presenceKey };
    } catch (err) {
      answer(reasonOf(err));
      return;
    }
    if (msg.state !== null) topic.presence = true; // it tracks: it wants to see presence too
    this.acknowledged(msg, answer);
  }

  // ── walcast frames out ──────────────────────────────────────────────────────────────────

  /** A walcast frame for this connection: a reply we wait for, or something to translate. */
  private fromWalcast(frame: string): void {
    let f: Native | null;
    if (frame === last.frame) f = last.parsed;
    else {
      try {
        f = JSON.parse(frame) as Native;
      } catch {
        f = null;
      }
      last.frame = frame;
      last.parsed = f;
      last.out.clear();
    }
    if (f === null || typeof f !== 'object') return;
    const ref = f.ref;
    if (typeof ref === 'string' && ref.startsWith(REF_PREFIX)) {
      const waiter = this.waiting.get(ref);
      if (waiter) {
        this.waiting.delete(ref);
        waiter(f);
        return;
      }
    }
    switch (f.type) {
      case 'broadcast': {
        const topic = this.byChannel.get(f.channel as string);
        if (topic?.member) this.emit(topic, this.shared(frame, topic, E.broadcast, () => ({ type: 'broadcast', event: f.event, payload: f.payload })));
        return;
      }
      case 'presence_state': {
        const topic = this.byChannel.get(f.channel as string);
        if (topic?.member && topic.presence) this.emit(topic, this.shared(frame, topic, E.presenceState, () => toPhoenix(f.state as WalcastPresence)));
        return;
      }
      case 'presence_diff': {
        const topic = this.byChannel.get(f.channel as string);
        if (!topic?.member || !topic.presence) return;
        const diff = diffToPhoenix(f.joins as WalcastPresence, f.leaves as WalcastPresence);
        if (Object.keys(diff.joins).length + Object.keys(diff.leaves).length > 0) this.emit(topic, this.shared(frame, topic, E.presenceDiff, () => diff));
        return;
      }
      case 'left': {
        // Not ours: the channel's policies no longer let this user in.
        const topic = this.byChannel.get(f.channel as string);
        if (!topic?.member) return;
        topic.member = false;
        this.errored(topic, `no longer a member of ${topic.channel}`);
        return;
      }
      case 'resync': {
        if (this.answerOf(f.sub, f)) return;
        const topic = this.bySub.get(f.sub as number);
        if (topic) this.errored(topic, `changes can no longer be delivered in order (${String(f.reason)}); rejoining`);
        return;
      }
      case 'error': {
        // A subscription ended by walcast (a refreshed token may not read its table).
        if (this.answerOf(f.id, f)) return;
        const topic = typeof f.id === 'number' ? this.bySub.get(f.id) : undefined;
        if (topic) this.errored(topic, String(f.message));
        return;
      }
      default:
      // welcome, progress, pong, authenticated...: nothing for a Supabase client.
    }
  }

  /** A Phoenix frame for a topic, held while its join is being answered. */
  private emit(topic: Topic, text: string): void {
    if (topic.state === 'gone') return;
    if (topic.held === null) this.session.out(text);
    else this.holdFrame(topic, text);
  }

  /** Holds a frame for a joining topic (true); false when the topic is joined. */
  private holdFrame(topic: Topic, frame: string | Buffer): boolean {
    if (topic.state === 'gone') return true; // its subscriptions are being ended: nothing more for it
    if (topic.held === null) return false;
    if (topic.failure === null && topic.held.length < SUPABASE.maxHeldPerJoin && this.heldBytes + frame.length <= this.d.maxHeldBytes) {
      topic.held.push(frame);
      topic.heldBytes += frame.length;
      this.heldBytes += frame.length;
      return true;
    }
    // The join fails (realtime-js retries): what it held goes now, not when it is answered.
    topic.failure ??= 'too many messages for the channel while it was being joined; retry';
    this.unhold(topic);
    topic.held = [];
    return true;
  }

  /** A topic's held frames, no longer held (sent, or dropped). */
  private unhold(topic: Topic): (string | Buffer)[] {
    const held = topic.held ?? [];
    topic.held = null;
    this.heldBytes -= topic.heldBytes;
    topic.heldBytes = 0;
    return held;
  }

  /** The Phoenix text of a frame all members of a channel get, written once per serializer and topic. */
  private shared(frame: string, topic: Topic, event: string, payload: () => unknown): string {
    const key = `${this.vsn}\u0000${topic.name}`;
    let text = last.frame === frame ? last.out.get(key) : undefined;
    if (text === undefined) {
      text = encodeFrame(this.vsn, { joinRef: null, ref: null, topic: topic.name, event, payload: payload() });
      if (last.frame === frame) last.out.set(key, text);
    }
    return text;
  }

  // ── helpers ─────────────────────────────────────────────────────────────────────────────

  /** Runs a walcast message; `then` gets its reply (none: the reply is dropped). */
  private request(msg: ClientMessage | RenderedSubscribe, then?: Waiter): string {
    const ref = `${REF_PREFIX}${++this.nextRef}`;
    this.waiting.set(ref, then ?? noop);
    this.d.handlers.run(this.session, { ...msg, ref } as ClientMessage);
    return ref;
  }

  /** Runs a message walcast answers only on failure; `answer(null)` when it succeeded. */
  private acknowledged(msg: ClientMessage, answer: (err: string | null) => void): void {
    let err: string | null = null;
    const ref = `${REF_PREFIX}${++this.nextRef}`;
    this.waiting.set(ref, (f) => (err = messageOf(f)));
    this.d.handlers.run(this.session, { ...msg, ref } as ClientMessage);
    this.request({ type: 'ping' }, () => {
      this.waiting.delete(ref);
      answer(err);
      this.session.flushSoon();
    });
  }

  private reply(topic: string, joinRef: string | null, ref: string | null, status: 'ok' | 'error', response: unknown): void {
    this.send(topic, joinRef, ref, E.reply, { status, response });
  }

  private system(topic: Topic, status: 'ok' | 'error', message: string, extension: string): void {
    this.send(topic.name, null, null, E.system, { status, message, extension, channel: topic.channel });
  }

  private send(topic: string, joinRef: string | null, ref: string | null, event: string, payload: unknown): void {
    this.session.out(encodeFrame(this.vsn, { joinRef, ref, topic, event, payload }));
  }

  /** The connection closed: timers stop, frame heads are let go (the hub and channels drop the rest). */
  closed(): void {
    for (const topic of [...this.topics.values()]) {
      topic.state = 'gone';
      if (topic.timer) clearTimeout(topic.timer);
      for (const id of topic.heads) this.d.changes.release(this.vsn, topic.name, id);
      topic.heads.length = 0;
    }
    this.topics.clear();
    this.byChannel.clear();
    this.bySub.clear();
    this.waiting.clear();
    this.unanswered.clear();
  }
}

function noop(): void {}

function object(v: unknown, what: string): Record<string, unknown> {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw new BadRequestError(`${what} must be an object`);
  return v as Record<string, unknown>;
}

function topicConfig(config: Record<string, unknown>): TopicConfig {
  const broadcast = object(config.broadcast, 'config.broadcast');
  const presence = object(config.presence, 'config.presence');
  const key = presence.key;
  if (key !== undefined && key !== null && typeof key !== 'string') throw new BadRequestError('config.presence.key must be a string');
  if (typeof key === 'string' && key.length > SUPABASE.maxPresenceKey) throw new BadRequestError(`config.presence.key is at most ${SUPABASE.maxPresenceKey} characters`);
  return {
    self: broadcast.self === true,
    ack: broadcast.ack === true,
    presenceKey: typeof key === 'string' && key !== '' ? key : undefined,
    presenceEnabled: presence.enabled === true,
  };
}

function messageOf(f: Native): string {
  if (typeof f.message === 'string') return f.message;
  if (f.type === 'resync') return `the subscription ended before it went live (${String(f.reason)}); retry`;
  return `unexpected reply ${JSON.stringify(f.type)}`;
}

function reasonOf(err: unknown): string {
  if (err instanceof WireError) return err.message;
  return 'internal error';
}
