// One WebSocket client: the hub's Peer. Frames are queued and sent corked at flush(); a socket
// past its backpressure limit is closed with 4008 (the client resumes from its last position),
// never silently skipped. A closed socket is never touched again (uWS would throw).
import { randomUUID } from 'node:crypto';
import type { WebSocket } from 'uWebSockets.js';
import type { Position } from '../protocol/position.js';
import { CLOSE } from '../constants.js';
import type { Peer } from '../hub/types.js';
import type { Identity } from '../auth/jwt.js';
import type { TurnQueue } from './turns.js';

export interface SessionData {
  session: Session | null;
  /** The `?token=` of the upgrade request (copied there: uWS requests live only that long). */
  token: string | null;
}

/** Timers fire at most this far ahead (setTimeout's limit); later deadlines re-arm. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** RFC 6455: a close reason is at most 123 bytes of UTF-8. */
const MAX_REASON_BYTES = 123;

/**
 * Replies deferred while a batch is open (Turns drains waiting messages): each session is then
 * flushed once at the end of the drain rather than once per reply. See Session.reply.
 */
export class ReplyBatch {
  open = false;
  readonly sessions = new Set<Session>();

  /** Runs `fn` with replies deferred, then flushes every session that replied. */
  run(fn: () => void): void {
    this.open = true;
    try {
      fn();
    } finally {
      this.open = false;
      for (const s of this.sessions) s.flush();
      this.sessions.clear();
    }
  }
}

export class Session implements Peer {
  readonly id = randomUUID();
  closed = false;
  lastPos: Position | null = null;
  /** Counted among the connections waiting to authenticate (Admission) until identity is set. */
  awaitingAuth = false;
  private ident: Identity | null = null;
  /**
   * Subscribe requests between validation and registration, by id key (duplicate check);
   * created on first use: most connections never have two in flight, and idle ones are many.
   */
  pending: Set<string> | null = null;
  /**
   * While a token is being verified: the client's later messages, in arrival order, run once
   * the verification is decided (null otherwise). See Handlers.
   */
  held: (() => void)[] | null = null;
  /**
   * Messages waiting for a later turn of the event loop (Turns: the per-turn budget of message
   * handling was spent, or earlier ones still wait); null when none.
   */
  queued: TurnQueue | null = null;
  /** `held` waits for the policies to be read anew (slot recreated), not for a token. */
  heldForPolicies = false;
  /**
   * Reads the connection's frames when it speaks another protocol (the Supabase endpoint) rather
   * than walcast's; null: walcast's (parsed by the handlers).
   */
  frames: ((data: ArrayBuffer, isBinary: boolean) => void) | null = null;
  /**
   * Supabase's token rules (its endpoint): a token may carry only a `role` (anonymous), and a new
   * one may be another user's. walcast's own protocol refuses both.
   */
  supabaseTokens = false;
  /** Where replies are deferred while a batch is open (set by the handlers); null: never. */
  replies: ReplyBatch | null = null;
  private queue: (string | Buffer)[] = [];
  /** Waiting for the socket to drain (snapshots); woken by the drain handler or the close. */
  private drainWaiters: (() => void)[] | null = null;
  private authTimer: NodeJS.Timeout | null = null;
  private expiryTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly ws: WebSocket<SessionData>,
    private readonly limit: number,
    private readonly onSlow: (s: Session) => void,
    private readonly onAuthenticated?: (s: Session) => void,
  ) {}

  get identity(): Identity | null {
    return this.ident;
  }

  /** Set by the handlers when a token is accepted; the first one ends the wait to authenticate. */
  set identity(v: Identity | null) {
    this.ident = v;
    if (v !== null && this.awaitingAuth) {
      this.awaitingAuth = false;
      this.onAuthenticated?.(this);
    }
  }

  push(frame: string): void {
    if (!this.closed) this.queue.push(frame);
  }

  pushFrame(frame: Buffer): void {
    if (!this.closed) this.queue.push(frame);
  }

  flush(): void {
    if (this.closed || this.queue.length === 0) return;
    const frames = this.queue;
    this.queue = [];
    let slow = false;
    const ws = this.ws;
    const limit = this.limit;
    ws.cork(() => {
      for (let i = 0; i < frames.length; i++) {
        // One flush may carry a large transaction: past our limit the socket is closed with 4008
        // rather than buffered further. Asking uWS costs a native call, so it is asked every
        // few frames and whenever a send reports backpressure (bounded overshoot: 16 frames).
        if ((i & 15) === 0 && ws.getBufferedAmount() > limit) {
          slow = true;
          break;
        }
        const r = ws.send(frames[i], false);
        if (r === 2) slow = true; // dropped by uWS
        const pressed = r !== 1;
        if (slow || (pressed && ws.getBufferedAmount() > limit)) {
          slow = true;
          break;
        }
      }
    });
    if (slow || this.ws.getBufferedAmount() > this.limit) this.closeSlow();
  }

  backlog(): number {
    return this.closed ? 0 : this.ws.getBufferedAmount();
  }

  /**
   * Sends one frame (replies to the client's own messages): now, or at the end of the batch
   * open (ReplyBatch: waiting messages drained), once for all the replies of the drain.
   */
  reply(frame: string): void {
    this.push(frame);
    this.flushSoon();
  }

  /** Flushes now, or at the end of the reply batch open (see reply). */
  flushSoon(): void {
    const batch = this.replies;
    if (batch !== null && batch.open) batch.sessions.add(this);
    else this.flush();
  }

  end(code: number, reason: string): void {
    if (this.closed) return;
    // Replies deferred by a batch go out before the close (an error, then 4001).
    if (this.replies?.sessions.delete(this)) {
      this.flush();
      if (this.closed) return;
    }
    this.queue = [];
    this.ws.end(code, clipReason(reason)); // runs the close handler, which marks us closed
    this.closed = true;
    this.dispose();
  }

  /** Runs `fn` after `ms` unless cleared (clearAuthTimeout) or closed first. */
  armAuthTimeout(ms: number, fn: () => void): void {
    if (this.authTimer) clearTimeout(this.authTimer);
    this.authTimer = setTimeout(() => {
      this.authTimer = null;
      if (!this.closed) fn();
    }, ms);
    this.authTimer.unref();
  }

  clearAuthTimeout(): void {
    if (this.authTimer) clearTimeout(this.authTimer);
    this.authTimer = null;
  }

  /** Runs `fn` at `at` (ms since the epoch), replacing an earlier expiry; null clears it. */
  armExpiry(at: number | null, fn: () => void): void {
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.expiryTimer = null;
    if (at === null || this.closed) return;
    const tick = () => {
      this.expiryTimer = null;
      if (this.closed) return;
      const left = at - Date.now();
      if (left > 0) {
        this.expiryTimer = setTimeout(tick, Math.min(left, MAX_TIMER_MS));
        this.expiryTimer.unref();
      } else fn();
    };
    tick();
  }

  /** Resolves at the socket's next drain, or when it closes. */
  whenDrained(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => (this.drainWaiters ??= []).push(resolve));
  }

  /** The socket drained (uWS `drain`). */
  drained(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = null;
    if (waiters) for (const w of waiters) w();
  }

  /** The socket is gone: timers stopped, held and queued messages dropped. Called by the close handler. */
  dispose(): void {
    this.closed = true;
    this.drained();
    this.queue = [];
    this.held = null;
    this.queued = null;
    this.clearAuthTimeout();
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.expiryTimer = null;
  }

  private closeSlow(): void {
    this.onSlow(this);
    this.end(CLOSE.tooSlow, 'too slow: reconnect and resume from your last position');
  }
}

/** A close reason cut to what a close frame can carry, on a character boundary. */
export function clipReason(reason: string): string {
  if (Buffer.byteLength(reason, 'utf8') <= MAX_REASON_BYTES) return reason;
  let out = '';
  let bytes = 0;
  for (const ch of reason) {
    const n = Buffer.byteLength(ch, 'utf8');
    if (bytes + n > MAX_REASON_BYTES - 3) break;
    out += ch;
    bytes += n;
  }
  return `${out}...`;
}
