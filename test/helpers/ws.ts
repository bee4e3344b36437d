// A WebSocket test client (the `ws` package) for the walcast wire protocol: connect, send JSON
// (or raw frames), collect every server message in arrival order, wait for messages matching a
// predicate, and wait for the close with its code.

import net from 'node:net';
import type { Test } from 'tap';
import WebSocket from 'ws';
import { compareWalPositions as comparePositions, parseWalPosition as parsePosition } from '../../src/protocol/position.js';
import { Waiters } from './waiters.js';

/** A server message as received (parsed JSON object). */
export interface Msg {
  type: string;
  [k: string]: unknown;
}

/** A `change` message. */
export interface ChangeMsg extends Msg {
  type: 'change';
  sub: string | number;
  pos: string;
  commit_time: string;
  op: 'insert' | 'update' | 'delete' | 'leave' | 'truncate';
  table: string;
  new?: Record<string, unknown>;
  old?: Record<string, unknown>;
  changed?: string[];
}

export interface CloseInfo {
  code: number;
  reason: string;
}

export interface ConnectOptions {
  /** Wait for the `welcome` message (default true). */
  welcome?: boolean;
  timeoutMs?: number;
  /** Passed to the `ws` constructor (e.g. maxPayload). */
  ws?: WebSocket.ClientOptions;
}

let refSeq = 0;

export class WsClient {
  readonly messages: Msg[] = [];
  /** Frames that were not JSON objects (should stay empty). */
  readonly garbage: string[] = [];
  closeInfo: CloseInfo | null = null;
  readonly closed: Promise<CloseInfo>;
  /** Set when the socket reported an error (e.g. ECONNRESET). */
  error: Error | null = null;
  private readonly taken = new Set<Msg>();
  private readonly waiters = new Waiters();
  private readonly listeners: Array<(m: Msg) => void> = [];

  constructor(readonly ws: WebSocket) {
    ws.on('message', (data, isBinary) => {
      const text = isBinary ? '' : data.toString();
      let m: unknown;
      try {
        m = JSON.parse(text);
      } catch {
        m = undefined;
      }
      if (m && typeof m === 'object' && !Array.isArray(m) && typeof (m as Msg).type === 'string') {
        this.messages.push(m as Msg);
        for (const l of this.listeners) l(m as Msg);
      } else this.garbage.push(isBinary ? `<binary ${(data as Buffer).length} bytes>` : text);
      this.wake();
    });
    ws.on('error', (err) => {
      this.error = err;
      this.wake();
    });
    this.closed = new Promise<CloseInfo>((resolve) => {
      ws.on('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        this.wake();
        resolve(this.closeInfo);
      });
    });
  }

  /** Opens a connection; by default waits for `welcome`. */
  static async connect(url: string, opts: ConnectOptions = {}): Promise<WsClient> {
    const ws = new WebSocket(url, opts.ws);
    const c = new WsClient(ws);
    const timeoutMs = opts.timeoutMs ?? 5_000;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        ws.terminate();
        reject(new Error(`connect ${url}: timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      ws.once('open', () => {
        clearTimeout(timer);
        resolve();
      });
      ws.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
    if (opts.welcome ?? true) await c.next((m) => m.type === 'welcome', timeoutMs);
    return c;
  }

  get isOpen(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  /** Calls `fn` for every message from now on, as it arrives. */
  onMessage(fn: (m: Msg) => void): void {
    this.listeners.push(fn);
  }

  /** Sends one message as JSON text. */
  send(msg: unknown): void {
    this.ws.send(JSON.stringify(msg));
  }

  /** Sends a raw frame: a string as text, a Buffer as binary unless `binary: false`. */
  sendRaw(data: string | Buffer, opts: { binary?: boolean } = {}): void {
    this.ws.send(data, { binary: opts.binary ?? typeof data !== 'string' });
  }

  /** A fresh ref, unique in this process. */
  static ref(prefix = 'r'): string {
    return `${prefix}${++refSeq}`;
  }

  /**
   * Resolves with the first message (in arrival order, including those already received) that
   * satisfies `pred` and was not returned by an earlier next(); rejects after timeoutMs, or when
   * the connection closes without one.
   */
  next<T extends Msg = Msg>(pred: (m: Msg) => boolean, timeoutMs = 5_000, what = 'a matching message'): Promise<T> {
    let from = 0;
    return this.until<T>(() => {
      for (; from < this.messages.length; from++) {
        const m = this.messages[from];
        if (!this.taken.has(m) && pred(m)) {
          this.taken.add(m);
          return m as T;
        }
      }
      return undefined;
    }, timeoutMs, what);
  }

  /** Resolves once `cond()` holds (checked on every message and at close); rejects after timeoutMs. */
  async waitFor(cond: () => boolean, timeoutMs = 5_000, what = 'condition'): Promise<void> {
    await this.until(() => (cond() ? true : undefined), timeoutMs, what);
  }

  /** Re-runs `probe` on every message and at close until it yields a value. */
  private until<T>(probe: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    return this.waiters.wait<T>(
      ({ resolve, reject }) => {
        const found = probe();
        if (found !== undefined) {
          resolve(found);
          return true;
        }
        if (this.closeInfo) {
          reject(new Error(`connection closed (${this.closeInfo.code} ${this.closeInfo.reason}) before ${what}; last: ${this.tail()}`));
          return true;
        }
        return false;
      },
      timeoutMs,
      () => new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last: ${this.tail()}`),
    );
  }

  /** Sends `msg` with a fresh ref and resolves with the first message echoing that ref. */
  async request<T extends Msg = Msg>(msg: Record<string, unknown>, timeoutMs = 5_000): Promise<T> {
    const ref = WsClient.ref();
    this.send({ ...msg, ref });
    return this.next<T>((m) => m.ref === ref, timeoutMs, `the reply to ${JSON.stringify(msg).slice(0, 200)}`);
  }

  /**
   * Subscribes and waits for the reply (`subscribed`, `resync` or `error`, by ref). Throws unless
   * it is `subscribed`, unless `allowFailure`.
   */
  async subscribe(msg: { id: string | number; table: string; filter?: string; events?: string[]; since?: string | null }, opts: { timeoutMs?: number; allowFailure?: boolean } = {}): Promise<Msg> {
    const reply = await this.request({ type: 'subscribe', ...msg }, opts.timeoutMs ?? 10_000);
    if (reply.type !== 'subscribed' && !opts.allowFailure) throw new Error(`subscribe ${JSON.stringify(msg)}: ${JSON.stringify(reply)}`);
    return reply;
  }

  /** `change` messages of one subscription so far (all of them without `sub`). */
  changes(sub?: string | number): ChangeMsg[] {
    return this.messages.filter((m): m is ChangeMsg => m.type === 'change' && (sub === undefined || m.sub === sub));
  }

  /** Waits until subscription `sub` has at least n changes; returns them. */
  async waitChanges(sub: string | number, n: number, timeoutMs = 10_000): Promise<ChangeMsg[]> {
    await this.waitFor(() => this.changes(sub).length >= n, timeoutMs, `${n} changes for ${JSON.stringify(sub)} (have ${this.changes(sub).length})`);
    return this.changes(sub);
  }

  /** Messages of a type. */
  ofType(type: string): Msg[] {
    return this.messages.filter((m) => m.type === type);
  }

  /** Resolves with the close code and reason; rejects after timeoutMs. */
  waitClose(timeoutMs = 5_000): Promise<CloseInfo> {
    if (this.closeInfo) return Promise.resolve(this.closeInfo);
    return new Promise<CloseInfo>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for the close; last: ${this.tail()}`)), timeoutMs);
      void this.closed.then((info) => {
        clearTimeout(timer);
        resolve(info);
      });
    });
  }

  /** Stops reading from the TCP socket (the server's sends pile up). */
  pause(): void {
    this.rawSocket().pause();
  }

  resume(): void {
    this.rawSocket().resume();
  }

  /** Closes (code 1000) and waits for the close handshake, terminating after 2 s. */
  async close(): Promise<void> {
    if (this.closeInfo) return;
    if (this.ws.readyState === WebSocket.CONNECTING || this.ws.readyState === WebSocket.OPEN) this.ws.close(1000);
    const timer = setTimeout(() => this.ws.terminate(), 2_000);
    await this.closed;
    clearTimeout(timer);
  }

  /** Drops the TCP connection without a close frame. */
  terminate(): void {
    this.ws.terminate();
  }

  /** The last few messages, for failure messages. */
  tail(n = 5): string {
    return JSON.stringify(this.messages.slice(-n)).slice(0, 1500);
  }

  private rawSocket(): net.Socket {
    const s = (this.ws as unknown as { _socket?: net.Socket })._socket;
    if (!s) throw new Error('the ws client has no underlying socket');
    return s;
  }

  private wake(): void {
    this.waiters.notify();
  }
}

/** Connects a client closed at the test's teardown. */
export async function connectWs(t: Test, url: string, opts?: ConnectOptions): Promise<WsClient> {
  const c = await WsClient.connect(url, opts);
  t.teardown(() => c.close());
  return c;
}

/** Compares two position strings: <0, 0, >0. */
export function comparePos(a: string, b: string): number {
  return comparePositions(parsePosition(a), parsePosition(b));
}

/** Places in `positions` where the order is not strictly increasing (the first few). */
export function orderViolations(positions: readonly string[]): string[] {
  const bad: string[] = [];
  for (let i = 1; i < positions.length && bad.length < 5; i++) {
    if (comparePos(positions[i - 1], positions[i]) >= 0) bad.push(`#${i - 1} ${positions[i - 1]} then #${i} ${positions[i]}`);
  }
  return bad;
}

/** Values that occur more than once (the first few). */
export function duplicates<T>(values: readonly T[]): T[] {
  const seen = new Set<T>();
  const dup = new Set<T>();
  for (const v of values) (seen.has(v) ? dup : seen).add(v);
  return [...dup].slice(0, 10);
}

/** A TCP port that was free a moment ago (for processes that need a fixed port). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/** `walcast: serving ws://HOST:PORT/ws` from a serve process's stderr. */
export function servedPort(stderr: string): number | null {
  const m = /walcast: serving ws:\/\/[^\s:]+:(\d+)\/ws/.exec(stderr);
  return m ? Number(m[1]) : null;
}
