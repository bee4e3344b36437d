// One protocol-fuzz connection's bookkeeping (test/integration/fuzz.test.ts): what it sent, and
// checks on every server message it got, whichever fuzzer (ws library or raw TCP) drives it.

import { randomInt } from 'node:crypto';
import { CLOSE } from '../../src/constants.js';
import { sleep } from './capture.js';
import { NEVER_REF, SERVER_TYPES, type Documented } from './fuzz-docs.js';
import { readSent, refKey, toJson, type Rng } from './fuzz-gen.js';
import { hex, type FuzzLog } from './fuzz-tally.js';
import { comparePos } from './ws.js';

/** What every fuzzer and connection shares: the daemon, the tallies, what the docs allow. */
export interface FuzzContext {
  /** ws://…/ws of the daemon. */
  wsUrl: string;
  /** Its port, for raw TCP. */
  port: number;
  daemonGone: () => boolean;
  log: FuzzLog;
  docs: Documented;
  /** Every `sub` a token of this test names: broadcasts come `from` one of these. */
  knownUsers: ReadonlySet<string>;
  /** Another user's token (valid, not the fuzzer's own). */
  otherUser: string;
  /** Tokens the daemon must refuse. */
  badTokens: readonly string[];
  /** Positions seen by any fuzzer, for `since`. */
  positions: string[];
}

/** A fuzzer's user: its `sub` and a valid token for it. */
export interface FuzzUser {
  sub: string;
  token: string;
}

/** A connection still open at its end must answer a ping within this long (a hang otherwise). */
export const PROBE_MS = 8_000;
/** The daemon's message limit (its default): larger frames are answered too_large, not parsed. */
const MAX_MESSAGE_BYTES = 64 * 1024;

/**
 * A regression this fuzz found (fixed): presence_state was built on a plain object, so the user
 * id "__proto__" set its prototype instead of a key and that user was left out; members later
 * got a presence_diff leave of a meta they were never told about.
 */
export const PROTO_PRESENCE_BUG = 'presence_state leaves out a user whose id is "__proto__"';

export const pause = (rng: Rng): Promise<void> => (rng.chance(0.6) ? new Promise((r) => setImmediate(r)) : sleep(rng.int(1, 5)));

/** One fuzz connection's bookkeeping: what it sent (refs, last frames) and checks on what it got. */
export class Conn {
  readonly sentRefs = new Set<string>();
  readonly pongRefs = new Set<string>();
  /** Refs of the well-formed pings sent (each must be answered while the connection lives). */
  readonly pings = new Set<string>();
  readonly recent: string[] = [];
  /** Presence per joined channel as this connection was told it: key → sessions (presence_state, then diffs). */
  readonly presence = new Map<string, Map<string, Set<string>>>();
  /** Last change position per subscription id, while that subscription lasts. */
  readonly lastPos = new Map<string, string>();
  messages = 0;
  sawUnauthorized = false;
  /** We closed it (close frame, FIN, RST, terminate). */
  selfClosed = false;
  closed = false;
  /** How it ended: "server 4001 token expired", "client-initiated 1000", ... */
  closeSeen: string | null = null;

  constructor(
    readonly ctx: FuzzContext,
    readonly name: string,
  ) {}

  /** Records a problem seen on this connection (with the frames it sent last). */
  problem(category: string, detail: string): void {
    this.ctx.log.problem(category, this, detail);
  }

  /** Records a frame sent; a text payload's `ref` (as the server would read it) may come back. */
  noteSent(kind: string, bytes: Buffer | string, textPayload: Buffer | string | null = null): void {
    this.ctx.log.sentFrames.add(kind);
    this.ctx.log.bytesSent += typeof bytes === 'string' ? Buffer.byteLength(bytes) : bytes.length;
    this.recent.push(`${kind} ${hex(bytes)}`);
    if (this.recent.length > 6) this.recent.shift();
    if (textPayload !== null) this.noteRef(textPayload);
  }

  /** A whole text message sent (maybe in pieces): its `ref` may come back; a ping's must, unless `answered` is false (a frame the server may drop). */
  noteRef(textPayload: Buffer | string, answered = true): void {
    const { ref, ping } = readSent(textPayload);
    if (!ref) return;
    this.sentRefs.add(ref);
    if (!answered) return;
    const bytes = typeof textPayload === 'string' ? Buffer.byteLength(textPayload) : textPayload.length;
    if (ping && bytes <= MAX_MESSAGE_BYTES) this.pings.add(ref);
  }

  /** After the probe's pong: every ping sent before it was answered (messages are handled in order). */
  checkPings(): void {
    const missing = [...this.pings].filter((k) => !this.pongRefs.has(k));
    if (missing.length > 0) this.problem('a ping left unanswered on a connection that answered later ones', missing.slice(0, 5).join(', '));
  }

  /** Still open at its end: it must answer a ping (`send` writes the text message), and every ping before it. */
  async probe(label: string, send: (text: string) => void): Promise<void> {
    const ref = `probe-${this.name}`;
    send(toJson({ type: 'ping', ref }));
    const answered = await this.until(() => this.pongRefs.has(`s:${ref}`), PROBE_MS);
    this.ctx.log.probes.add(this.pongRefs.has(`s:${ref}`) ? `${label}: pong` : answered ? `${label}: closed before the pong` : `${label}: no answer`);
    if (this.pongRefs.has(`s:${ref}`)) this.checkPings();
    if (!answered) this.problem('an open connection did not answer a ping', `no pong within ${PROBE_MS} ms`);
  }

  receivedText(text: string): void {
    const { docs, log, positions } = this.ctx;
    let m: unknown;
    try {
      m = JSON.parse(text);
    } catch {
      this.problem('a server text frame is not JSON', text.slice(0, 200));
      return;
    }
    if (typeof m !== 'object' || m === null || Array.isArray(m) || !SERVER_TYPES.has((m as { type: string }).type)) {
      this.problem('a server message of unknown type or shape', text.slice(0, 200));
      return;
    }
    const msg = m as Record<string, unknown> & { type: string };
    if (msg.type === 'resync' && !docs.resyncReasons.has(String(msg.reason))) this.problem('a resync reason not in docs/PROTOCOL.md', text.slice(0, 200));
    if (this.messages++ === 0 && msg.type !== 'welcome') this.problem('the first message is not welcome', text.slice(0, 200));
    if (this.messages > 1 && msg.type === 'welcome') this.problem('welcome twice', text.slice(0, 200));
    log.replies.add(msg.type === 'error' ? `error ${String(msg.code)}` : msg.type);
    if (msg.type === 'error') {
      if (typeof msg.code !== 'string' || !docs.wireCodes.has(msg.code)) this.problem('an error code not in docs/errors.md', text.slice(0, 200));
      if (typeof msg.message !== 'string' || msg.message.length === 0) this.problem('an error without a message', text.slice(0, 200));
      if (/internal error/i.test(String(msg.message))) this.problem('an internal error answered', text.slice(0, 300));
      if (msg.code === 'unauthorized') this.sawUnauthorized = true;
    }
    if (Object.hasOwn(msg, 'ref')) {
      const k = refKey(msg.ref);
      if (NEVER_REF.has(msg.type)) this.problem('a ref on a message that never carries one', text.slice(0, 200));
      else if (!k || !this.sentRefs.has(k)) this.problem('a ref this connection never sent', text.slice(0, 200));
      else if (msg.type === 'pong') this.pongRefs.add(k);
    }
    // Authorization: the policies allow reading public.feed and channels fz:* only.
    if (msg.type === 'change' && msg.table !== 'public.feed') this.problem('a change of a table no policy allows', text.slice(0, 200));
    if ((msg.type === 'joined' || msg.type === 'broadcast' || msg.type.startsWith('presence_')) && !String(msg.channel).startsWith('fz:')) {
      this.problem('a channel no policy allows', text.slice(0, 200));
    }
    if (msg.type === 'broadcast' && msg.from !== undefined && !this.ctx.knownUsers.has(String(msg.from))) this.problem('a broadcast from an unknown user', text.slice(0, 200));
    this.checkPresence(msg, text);
    // Within a subscription, changes in position order; an ended subscription's id may start over.
    const sub = refKey(msg.type === 'change' || msg.type === 'resync' ? msg.sub : msg.id);
    if (msg.type === 'change' && sub && typeof msg.pos === 'string') {
      const last = this.lastPos.get(sub);
      if (last && comparePos(last, msg.pos) >= 0) this.problem('changes of one subscription out of order', `${last} then ${text.slice(0, 200)}`);
      this.lastPos.set(sub, msg.pos);
    } else if (sub && (msg.type === 'unsubscribed' || msg.type === 'resync' || msg.type === 'error')) this.lastPos.delete(sub);
    const pos = msg.type === 'change' || msg.type === 'progress' ? msg.pos : msg.type === 'subscribed' ? msg.position : undefined;
    if (typeof pos === 'string') {
      if (positions.length < 64) positions.push(pos);
      else positions[randomInt(64)] = pos;
    }
  }

  /**
   * presence_state, then presence_diffs applied in order (leaves, then joins), must agree: a diff
   * only takes away metas the connection was told about, and adds none twice.
   */
  private checkPresence(msg: Record<string, unknown> & { type: string }, text: string): void {
    const channel = String(msg.channel);
    if (msg.type === 'left') this.presence.delete(channel);
    if (msg.type === 'presence_state') {
      const model = new Map<string, Set<string>>();
      for (const [key, metas] of Object.entries((msg.state ?? {}) as Record<string, Array<{ session: string }>>)) model.set(key, new Set(metas.map((m) => m.session)));
      this.presence.set(channel, model);
    }
    if (msg.type !== 'presence_diff') return;
    const model = this.presence.get(channel);
    if (!model) {
      this.problem('a presence_diff for a channel without presence_state', text.slice(0, 200));
      return;
    }
    for (const [key, metas] of Object.entries((msg.leaves ?? {}) as Record<string, Array<{ session: string }>>)) {
      for (const m of metas) {
        if (!model.get(key)?.delete(m.session)) {
          this.problem(key === '__proto__' ? PROTO_PRESENCE_BUG : 'a presence_diff leave of a meta the connection was never told about', `key ${JSON.stringify(key)}: ${text.slice(0, 200)}`);
        }
      }
      if (model.get(key)?.size === 0) model.delete(key);
    }
    for (const [key, metas] of Object.entries((msg.joins ?? {}) as Record<string, Array<{ session: string }>>)) {
      const sessions = model.get(key) ?? new Set<string>();
      model.set(key, sessions);
      for (const m of metas) {
        if (sessions.has(m.session)) this.problem('a presence_diff join of a meta already there', `key ${JSON.stringify(key)}: ${text.slice(0, 200)}`);
        sessions.add(m.session);
      }
    }
  }

  /** The connection is gone: its close code (1006 without a close frame), who started it. */
  onClose(code: number, reason: string, clientStarted: boolean): void {
    const log = this.ctx.log;
    this.closed = true;
    this.closeSeen = `${clientStarted ? 'client-initiated' : 'server'} ${code} ${reason}`.trim();
    if (clientStarted) {
      log.closes.add(`client-initiated ${code}`);
      return;
    }
    log.closes.add(`server ${code}`);
    if (reason) log.closeReasons.add(`${code} ${reason.replace(/\d+/g, 'N').slice(0, 60)}`);
    if (!this.ctx.docs.allowedClose.has(code)) this.problem('an undocumented close code', `${code} ${reason}`);
    if (code === CLOSE.goingAway) this.problem('1001 (shutting down) while the daemon was not', reason);
    if (this.sawUnauthorized && code !== CLOSE.authFailed) this.problem('error unauthorized not followed by close 4001', `${code} ${reason}`);
  }

  /** Polls until `cond` holds or the connection closed; false on timeout. */
  async until(cond: () => boolean, ms: number): Promise<boolean> {
    const end = Date.now() + ms;
    while (!cond() && !this.closed) {
      if (Date.now() > end) return false;
      await sleep(10);
    }
    return true;
  }
}
