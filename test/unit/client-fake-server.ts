// A stand-in walcast server for the client's unit tests (the `ws` package's WebSocketServer):
// it records what clients send, answers the protocol's requests the simple way, and implements
// channels as docs/PROTOCOL.md and issue 5 define them (broadcast to the other members, `self`
// on request; presence keyed by the user, one meta {session, state} per connection, an update
// as leave + join in one diff, a fresh presence_state on join; `from` = the sender). The token is taken as the user
// id unless it looks like a JWT (then its `sub`). Table subscriptions are only acknowledged:
// tests send `change`/`progress` themselves. Real-server behaviour is tested in
// test/integration/client.test.ts.

import type { AddressInfo } from 'node:net';
import type { Test } from 'tap';
import WsClient, { WebSocketServer, type WebSocket } from 'ws';
import { createClient, type ClientOptions, type WalcastClient } from '../../src/client/index.js';
import { Waiters } from '../helpers/waiters.js';

export interface Msg {
  type: string;
  [k: string]: unknown;
}

let sessions = 0;

export class FakeConn {
  readonly received: Msg[] = [];
  readonly session = `sess${++sessions}`;
  closed: { code: number; reason: string } | null = null;

  constructor(
    readonly server: FakeServer,
    readonly ws: WebSocket,
    readonly token: string | null,
  ) {}

  get user(): string {
    const t = this.token ?? 'anon';
    const parts = t.split('.');
    if (parts.length === 3) {
      try {
        return String(JSON.parse(Buffer.from(parts[1], 'base64url').toString()).sub);
      } catch {
        return t;
      }
    }
    return t;
  }

  send(msg: Record<string, unknown>): void {
    if (this.ws.readyState === this.ws.OPEN) this.ws.send(JSON.stringify(msg));
  }

  close(code: number, reason = ''): void {
    this.ws.close(code, reason);
  }

  /** Drops the TCP connection without a close frame (the client sees 1006). */
  terminate(): void {
    this.ws.terminate();
  }

  of(type: string): Msg[] {
    return this.received.filter((m) => m.type === type);
  }

  /** Resolves with the first message (already received or to come) matching `pred` not taken before. */
  next(pred: (m: Msg) => boolean, timeoutMs = 3_000, what = 'a message'): Promise<Msg> {
    return this.server.until(() => {
      const m = this.received.find((x) => !this.taken.has(x) && pred(x));
      if (m) this.taken.add(m);
      return m;
    }, timeoutMs, () => `${what} from ${this.session}; got ${JSON.stringify(this.received).slice(0, 1500)}`);
  }

  private readonly taken = new Set<Msg>();
}

export interface FakeOptions {
  /** Called for every new connection instead of sending `welcome` at once (e.g. to refuse the token). */
  onConnect?: (c: FakeConn) => boolean | void;
  /** Called for every message first; return true when it was handled (no default answer). */
  onMessage?: (c: FakeConn, m: Msg) => boolean | void;
  /** Answer subscribe with `subscribed` (default true). */
  autoSubscribe?: boolean;
  /** Answer ping with pong (default true). */
  pong?: boolean;
}

export class FakeServer {
  readonly conns: FakeConn[] = [];
  /** channel → connection → tracked state (null: joined, not tracking) */
  readonly channels = new Map<string, Map<FakeConn, Record<string, unknown> | null>>();
  private readonly waiters = new Waiters();
  private constructor(
    readonly wss: WebSocketServer,
    readonly opts: FakeOptions,
  ) {}

  static async start(t: Test, opts: FakeOptions = {}, port = 0): Promise<FakeServer> {
    const wss = new WebSocketServer({ host: '127.0.0.1', port });
    await new Promise<void>((resolve, reject) => {
      wss.once('listening', resolve);
      wss.once('error', reject);
    });
    const s = new FakeServer(wss, opts);
    wss.on('connection', (ws, req) => s.accept(ws, new URL(req.url ?? '/', 'http://x').searchParams.get('token')));
    t.teardown(() => s.stop());
    return s;
  }

  get port(): number {
    return (this.wss.address() as AddressInfo).port;
  }

  get url(): string {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  /** The newest connection. */
  get last(): FakeConn {
    return this.conns[this.conns.length - 1];
  }

  /** Open connections. */
  get open(): FakeConn[] {
    return this.conns.filter((c) => !c.closed);
  }

  async stop(): Promise<void> {
    for (const c of this.conns) c.ws.terminate();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
  }

  /** Resolves once there are n connections (counting closed ones). */
  async connections(n: number, timeoutMs = 5_000): Promise<FakeConn> {
    await this.until(() => (this.conns.length >= n ? true : undefined), timeoutMs, () => `${n} connections (have ${this.conns.length})`);
    return this.conns[n - 1];
  }

  until<T>(probe: () => T | undefined, timeoutMs: number, what: () => string): Promise<T> {
    return this.waiters.wait<T>(
      ({ resolve }) => {
        const v = probe();
        if (v === undefined) return false;
        resolve(v);
        return true;
      },
      timeoutMs,
      () => new Error(`timed out after ${timeoutMs} ms waiting for ${what()}`),
    );
  }

  notify(): void {
    this.waiters.notify();
  }

  private accept(ws: WebSocket, token: string | null): void {
    const c = new FakeConn(this, ws, token);
    this.conns.push(c);
    ws.on('message', (data) => {
      let m: Msg;
      try {
        m = JSON.parse(data.toString()) as Msg;
      } catch {
        return;
      }
      c.received.push(m);
      if (!this.opts.onMessage?.(c, m)) this.answer(c, m);
      this.notify();
    });
    ws.on('close', (code, reason) => {
      c.closed = { code, reason: reason.toString() };
      this.dropFromChannels(c);
      this.notify();
    });
    ws.on('error', () => {});
    if (!this.opts.onConnect?.(c)) c.send({ type: 'welcome', protocol: 1, session: c.session });
    this.notify();
  }

  private answer(c: FakeConn, m: Msg): void {
    const ref = m.ref;
    switch (m.type) {
      case 'subscribe':
        if (this.opts.autoSubscribe ?? true) c.send({ type: 'subscribed', id: m.id, position: (m.since as string) ?? '0/100:2147483647', ref });
        return;
      case 'unsubscribe':
        c.send({ type: 'unsubscribed', id: m.id, ref });
        return;
      case 'ping':
        if (this.opts.pong ?? true) c.send({ type: 'pong', ref });
        return;
      case 'auth':
        c.send({ type: 'authenticated', ref });
        return;
      case 'join': {
        const ch = String(m.channel);
        if (!this.channels.has(ch)) this.channels.set(ch, new Map());
        this.channels.get(ch)!.set(c, null);
        c.send({ type: 'joined', channel: ch, ref });
        c.send({ type: 'presence_state', channel: ch, state: this.presenceOf(ch) });
        return;
      }
      case 'leave': {
        const ch = String(m.channel);
        this.leaveChannel(ch, c);
        c.send({ type: 'left', channel: ch, ref });
        return;
      }
      case 'broadcast': {
        const members = this.channels.get(String(m.channel));
        if (!members?.has(c)) {
          c.send({ type: 'error', code: 'bad_request', message: `join ${String(m.channel)} first`, ref });
          return;
        }
        for (const other of members.keys()) {
          if (other !== c || m.self === true) other.send({ type: 'broadcast', channel: m.channel, event: m.event, payload: m.payload ?? null, from: c.user });
        }
        return;
      }
      case 'presence': {
        const ch = String(m.channel);
        const members = this.channels.get(ch);
        if (!members?.has(c)) {
          c.send({ type: 'error', code: 'bad_request', message: `join ${ch} first`, ref });
          return;
        }
        const old = members.get(c) ?? null;
        const state = (m.state as Record<string, unknown> | null) ?? null;
        members.set(c, state);
        const joins = state ? { [c.user]: [{ session: c.session, state }] } : {};
        const leaves = old ? { [c.user]: [{ session: c.session, state: old }] } : {};
        for (const other of members.keys()) other.send({ type: 'presence_diff', channel: ch, joins, leaves });
        return;
      }
      default:
        return;
    }
  }

  /** Removes a member as the server does when its right to join was taken away. */
  evict(c: FakeConn, ch: string): void {
    this.leaveChannel(ch, c);
    c.send({ type: 'error', code: 'forbidden', message: `"${c.user}" may no longer join ${ch}` });
    c.send({ type: 'left', channel: ch });
  }

  presenceOf(ch: string): Record<string, unknown[]> {
    const out: Record<string, unknown[]> = {};
    for (const [conn, state] of this.channels.get(ch) ?? []) if (state) (out[conn.user] ??= []).push({ session: conn.session, state });
    return out;
  }

  private leaveChannel(ch: string, c: FakeConn): void {
    const members = this.channels.get(ch);
    if (!members?.has(c)) return;
    const old = members.get(c) ?? null;
    members.delete(c);
    if (old) for (const other of members.keys()) other.send({ type: 'presence_diff', channel: ch, joins: {}, leaves: { [c.user]: [{ session: c.session, state: old }] } });
  }

  private dropFromChannels(c: FakeConn): void {
    for (const ch of this.channels.keys()) this.leaveChannel(ch, c);
  }
}

// ── shared by the client's unit tests ──

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/** Quick reconnects. */
export const FAST = { baseMs: 20, capMs: 100 };

/** A client with quick reconnects and no pings, closed when the test ends. */
export function testClient(t: Test, opts: Partial<ClientOptions> & { url: string }): WalcastClient {
  const c = createClient({ WebSocket: WsClient, backoff: FAST, pingIntervalMs: 0, ...opts });
  t.teardown(() => c.close());
  return c;
}

/** Resolves when `fn` returns a value (polled every 10 ms). */
export async function until<T>(fn: () => T | undefined | null | false, timeoutMs = 3_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** A server that answers nothing to subscribe: the test plays the subscription's replies. */
export const manualServer = (t: Test) => FakeServer.start(t, { onMessage: (_c, m) => m.type === 'subscribe' });
