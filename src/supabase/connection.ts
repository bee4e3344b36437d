// The Supabase Realtime protocol of one connection (docs/SUPABASE.md), on top of walcast's: each
// Phoenix push becomes walcast client messages, run by the same handlers (same authentication,
// limits, policies and ordering; requests.ts), and walcast's replies and frames become Phoenix
// messages.
import { AuthError, BadRequestError } from '../errors.js';
import type { Catalog } from '../hub/catalog.js';
import type { Logger } from '../log.js';
import { validateClientMessage } from '../protocol/parse.js';
import type { ClientMessage } from '../protocol/types.js';
import type { Handlers, RenderedSubscribe } from '../server/handlers.js';
import { messageOf, Requests } from './requests.js';
import { broadcastMessage, presenceMessage, reasonOf } from './pushes.js';
import { parsed } from './shared-frames.js';
import { translate, type Outbound } from './outbound.js';
import { CLOSE, SUPABASE } from '../constants.js';
import { bindingId, echo, readBindings, type BindingRequest } from './bindings.js';
import { encodeFrame, decodeFrame, PhoenixDecodeError } from './phoenix.js';
import type { DecodedFrame, Vsn } from './phoenix.types.js';
import { BindingRender, type SupabaseChanges } from './render.js';
import type { PhoenixSession } from './session.js';
import { optionalObject, readTopicConfig, Topic, type Binding, type HeldBudget } from './topic.js';

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

const E = SUPABASE.events;
/** walcast's `progress` frames (frames.ts): nothing for a Supabase client, dropped unparsed. */
const PROGRESS = '{"type":"progress"';

export class SupabaseConnection {
  private readonly topics = new Map<string, Topic>();
  private readonly byChannel = new Map<string, Topic>();
  private readonly bySub = new Map<number, Topic>();
  private readonly requests: Requests;
  private readonly outbound: Outbound;
  private nextSub = 0;
  private readonly held: HeldBudget;
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

  constructor(
    private readonly session: PhoenixSession,
    readonly vsn: Vsn,
    private readonly d: ConnectionDeps,
  ) {
    this.requests = new Requests(d.handlers, session);
    this.outbound = {
      vsn,
      ofChannel: (channel) => this.byChannel.get(channel),
      ofSub: (id) => this.bySub.get(id),
      emit: (topic, text) => this.emit(topic, text),
      errored: (topic, message) => this.errored(topic, message),
    };
    this.held = { bytes: 0, max: d.maxHeldBytes };
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
      const config = optionalObject(payload.config, 'config');
      bindings = readBindings(config.postgres_changes, this.d.maxSubscriptions);
      const old = this.topics.get(m.topic);
      // Joined again (the client lost the reply, or rejoins): the old join goes, silently.
      if (old) this.drop(old);
      if (this.topics.size >= SUPABASE.maxTopics) throw new BadRequestError(`at most ${SUPABASE.maxTopics} channels per connection`);
      topic = new Topic(m.topic, channel, m.joinRef, m.ref, readTopicConfig(config), this.d.changes, this.vsn);
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
    this.requests.run({ type: 'join', channel: topic.channel }, (f) => {
      topic.waiting--;
      if (f.type === 'joined') {
        // Joined for a topic gone meanwhile: left, unless a newer topic holds the channel now.
        if (topic.state !== 'gone') topic.member = true;
        else if (!this.byChannel.has(topic.channel)) this.requests.run({ type: 'leave', channel: topic.channel });
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
    const head = topic.head(binding.id);
    const render = new BindingRender(this.d.changes, head, topic, (frame) => topic.hold(frame, this.held));
    const msg: RenderedSubscribe = {
      type: 'subscribe',
      id,
      table: { schema, name: table, qualified: `${schema}.${table}` },
      ...(r.events ? { events: r.events } : {}),
      ...(r.walcastFilter !== '' ? { filter: r.walcastFilter } : {}),
      render,
    };
    topic.waiting++;
    this.requests.run(msg, (f) => {
      topic.waiting--;
      if (f.type === 'subscribed') {
        if (topic.state === 'gone') this.requests.run({ type: 'unsubscribe', id });
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
    for (const f of topic.unhold(this.held)) {
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
    if (topic.state === 'joining') topic.failure ??= message;
    else this.end(topic, message, E.error);
  }

  /** A joined topic ends on the server's side: a system message says why, then `event` (phx_error or phx_close). */
  private end(topic: Topic, message: string, event: string): void {
    if (topic.state === 'gone') return;
    this.system(topic, 'error', message, 'system');
    this.drop(topic);
    this.send(topic.name, topic.joinRef, topic.joinRef, event, {});
    this.session.flushSoon();
  }

  /** Undoes a topic's walcast side: its subscriptions, its channel membership, its frame heads. */
  private drop(topic: Topic): void {
    if (topic.state === 'gone') return;
    topic.close(this.held);
    for (const b of topic.bindings) {
      for (const id of b.subs) {
        this.bySub.delete(id);
        this.requests.run({ type: 'unsubscribe', id });
      }
      b.subs.length = 0;
    }
    if (topic.member) this.requests.run({ type: 'leave', channel: topic.channel });
    topic.member = false;
    // (A join of this topic's channel still unanswered is left when answered: see parts().)
    if (this.topics.get(topic.name) === topic) this.topics.delete(topic.name);
    if (this.byChannel.get(topic.channel) === topic) this.byChannel.delete(topic.channel);
  }

  private accessToken(topic: Topic, m: DecodedFrame): void {
    const token = (m.payload as Record<string, unknown>).access_token;
    // realtime-js sends the token to every joined channel: it is verified once.
    if (typeof token !== 'string' || token === '' || token === this.token) return;
    // Refused: as Supabase does, the channel is closed with a system message saying why.
    this.verify(token, (err) => err && this.end(topic, err.message, E.close));
  }

  private broadcast(topic: Topic, m: DecodedFrame): void {
    this.acknowledged(() => broadcastMessage(topic, m), (err) => {
      if (err !== null) this.reply(topic.name, m.joinRef, m.ref, 'error', { reason: err });
      else if (topic.config.ack) this.reply(topic.name, m.joinRef, m.ref, 'ok', {});
    });
  }

  private presence(topic: Topic, m: DecodedFrame): void {
    const made = () => {
      const msg = presenceMessage(topic, m);
      if (msg.state !== null) topic.presence = true; // it tracks: it wants to see presence too
      return msg;
    };
    this.acknowledged(made, (err) => this.reply(topic.name, m.joinRef, m.ref, err === null ? 'ok' : 'error', err === null ? {} : { reason: err }));
  }

  /** Runs a message walcast answers only on failure (requests.ts); `answer` gets the refusal, or null. */
  private acknowledged(make: () => ClientMessage, answer: (err: string | null) => void): void {
    let msg: ClientMessage;
    try {
      msg = make();
    } catch (err) {
      answer(reasonOf(err));
      return;
    }
    this.requests.acknowledged(msg, (err) => {
      answer(err);
      this.session.flushSoon();
    });
  }

  // ── walcast frames out ──────────────────────────────────────────────────────────────────

  /** A walcast frame for this connection: a reply we wait for, or something to translate. */
  private fromWalcast(frame: string): void {
    if (frame.startsWith(PROGRESS)) return;
    const f = parsed(frame);
    if (f !== null && !this.requests.answer(f)) translate(f, frame, this.outbound);
  }

  /** A Phoenix frame for a topic, held while its join is being answered. */
  private emit(topic: Topic, text: string): void {
    if (!topic.hold(text, this.held)) this.session.out(text);
  }

  // ── helpers ─────────────────────────────────────────────────────────────────────────────

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
    for (const topic of this.topics.values()) topic.close(this.held);
    this.topics.clear();
    this.byChannel.clear();
    this.bySub.clear();
    this.requests.clear();
  }
}
