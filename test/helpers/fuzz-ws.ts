// The protocol fuzz's WebSocket fuzzers (test/integration/fuzz.test.ts), on the `ws` package:
// well-formed messages of every type, the same with fields dropped, added or retyped, unknown
// types, byte flips and truncation, invalid UTF-8 in text frames, deep nesting, numbers beyond
// doubles, binary frames, fragmented messages, oversize frames, bursts, closes. With a valid
// token, none, or a bad one.

import WebSocket from 'ws';
import { sleep } from './capture.js';
import { Conn, pause, type FuzzContext, type FuzzUser } from './fuzz-conn.js';
import {
  badUtf8,
  deepFrame,
  mutateObject,
  mutateText,
  oversizeBytes,
  paddedPing,
  toJson,
  validMessage,
  type GenContext,
  type Rng,
} from './fuzz-gen.js';
import { hex } from './fuzz-tally.js';
import { hsToken, inSeconds } from './tokens.js';

type WsAction =
  | 'valid' | 'mutated' | 'mutated-text' | 'huge-number' | 'deep' | 'oversize' | 'binary' | 'fragmented'
  | 'bad-utf8' | 'random' | 'ws-ping' | 'ws-pong' | 'burst' | 'close' | 'terminate';

const WS_ACTIONS: ReadonlyArray<readonly [number, WsAction]> = [
  [28, 'valid'],
  [22, 'mutated'],
  [8, 'mutated-text'],
  [4, 'huge-number'],
  [5, 'deep'],
  [3, 'oversize'],
  [5, 'binary'],
  [9, 'fragmented'],
  [2, 'bad-utf8'],
  [3, 'random'],
  [3, 'ws-ping'],
  [1, 'ws-pong'],
  [1, 'burst'],
  [1, 'close'],
  [1, 'terminate'],
];

function hugeNumberMessage(ctx: GenContext): string {
  const rng = ctx.rng;
  const n = rng.pick(['1e400', '-1e400', '18446744073709551616', '-0', '1' + '0'.repeat(rng.int(20, 600)), '9007199254740993', '1e-400', '0.1e1']);
  const r = JSON.stringify(`${ctx.refPrefix}-${++ctx.n}`);
  return rng.pick([
    `{"type":"ping","ref":${n}}`,
    `{"type":"subscribe","id":${n},"table":"feed","ref":${r}}`,
    `{"type":"unsubscribe","id":${n},"ref":${r}}`,
    `{"type":"broadcast","channel":"fz:1","event":"e","payload":${n},"self":${n},"ref":${r}}`,
    `{"type":"presence","channel":"fz:1","state":{"n":${n}},"ref":${r}}`,
    `{"type":"subscribe","id":1,"table":"feed","since":${n},"events":[${n}],"ref":${r}}`,
    `{"type":${n},"ref":${r}}`,
  ]);
}

export interface WsConn {
  ws: WebSocket;
  /** Resolves once the close is recorded. */
  closed: Promise<void>;
  isOpen: () => boolean;
  /** Sends a text frame (any bytes) and records it. */
  text: (kind: string, payload: string | Buffer) => void;
  /** Closes from our side (recorded as client-initiated). */
  clientClose: (how: () => void) => void;
}

/** A `ws` connection whose every frame and close is checked by `conn`; null if it did not open. */
export async function openWs(fuzz: FuzzContext, conn: Conn, token: string | null): Promise<WsConn | null> {
  const { wsUrl, log } = fuzz;
  const ws = new WebSocket(token === null ? wsUrl : `${wsUrl}?token=${encodeURIComponent(token)}`, { perMessageDeflate: false, handshakeTimeout: 5_000, maxPayload: 64 * 1024 * 1024 });
  let clientStarted = false;
  ws.on('message', (raw: WebSocket.RawData, isBinary: boolean) => {
    const data = Buffer.isBuffer(raw) ? raw : Array.isArray(raw) ? Buffer.concat(raw) : Buffer.from(raw);
    if (isBinary) conn.problem('a binary frame from the server', hex(data));
    else conn.receivedText(data.toString('utf8'));
  });
  ws.on('error', (err: Error) => {
    log.clientErrors.add(err.message.replace(/\d+/g, 'N').slice(0, 80));
    if (/Invalid WebSocket frame|Unexpected server response|Invalid Sec-WebSocket|handshake has timed out/i.test(err.message)) conn.problem('the ws client refused what the server sent', err.message);
  });
  const closed = new Promise<void>((resolve) =>
    ws.on('close', (code: number, reason: Buffer) => {
      conn.onClose(code, reason.toString(), clientStarted);
      resolve();
    }),
  );
  const opened = await new Promise<boolean>((resolve) => {
    ws.once('open', () => resolve(true));
    ws.once('close', () => resolve(false));
  });
  if (!opened) {
    conn.problem('a WebSocket connection could not be opened', token === null ? 'without a token' : 'with ?token=');
    return null;
  }
  const isOpen = () => ws.readyState === WebSocket.OPEN;
  return {
    ws,
    closed,
    isOpen,
    text: (kind, payload) => {
      if (!isOpen()) return;
      ws.send(payload, { binary: false });
      conn.noteSent(kind, payload, payload);
    },
    clientClose: (how) => {
      clientStarted = true;
      conn.selfClosed = true;
      how();
    },
  };
}

/** Fuzzer `idx`: connection after connection as `user` (or with another or a bad token, or none) until `until`. */
export async function wsFuzzer(fuzz: FuzzContext, idx: number, user: FuzzUser, rng: Rng, until: number): Promise<void> {
  const { log, positions, otherUser, badTokens } = fuzz;
  const ownToken = user.token;
  const authTokens = [ownToken, ownToken, ownToken, otherUser, ...badTokens];
  let big = 0; // frames over 64 KiB, bounded per fuzzer
  for (let n = 1; Date.now() < until && !fuzz.daemonGone(); n++) {
    const conn = new Conn(fuzz, `ws${idx}.${n}`);
    const mode = rng.weighted<string>([
      [45, 'query-token'],
      [5, 'query-short-lived'],
      [18, 'auth-message'],
      [12, 'none'],
      [10, 'query-bad'],
      [10, 'auth-bad'],
    ]);
    log.connections.add(`ws ${mode}`);
    let token: string | null = null;
    if (mode === 'query-token') token = ownToken;
    else if (mode === 'query-short-lived') token = await hsToken({ sub: user.sub }, { exp: inSeconds(rng.int(1, 3)) });
    else if (mode === 'query-bad') token = rng.pick(badTokens);
    const c = await openWs(fuzz, conn, token);
    if (!c) {
      await sleep(50);
      continue;
    }
    const { ws, closed, isOpen, text, clientClose } = c;
    const ctx: GenContext = { rng, refPrefix: `w${idx}.${n}`, positions, authTokens, n: 0 };
    if (mode === 'auth-message') text('auth', toJson({ type: 'auth', token: ownToken, ref: `${ctx.refPrefix}-auth` }));
    if (mode === 'auth-bad') text('auth-bad', toJson({ type: 'auth', token: rng.pick([...badTokens, otherUser]), ref: `${ctx.refPrefix}-auth` }));

    const budget = rng.int(5, 150);
    for (let i = 0; i < budget && isOpen() && Date.now() < until; i++) {
      const action = rng.weighted(WS_ACTIONS);
      switch (action) {
        case 'valid':
          text(action, toJson(validMessage(ctx)));
          break;
        case 'mutated':
          text(action, toJson(mutateObject(ctx, validMessage(ctx))));
          break;
        case 'mutated-text':
          text(action, mutateText(rng, toJson(validMessage(ctx))));
          break;
        case 'huge-number':
          text(action, hugeNumberMessage(ctx));
          break;
        case 'deep':
          text(action, deepFrame(ctx));
          break;
        case 'oversize': {
          const size = oversizeBytes(rng);
          if (big++ > 25 || (size > 1024 * 1024 && big > 6)) text('valid', toJson(validMessage(ctx)));
          else text(size > 1024 * 1024 ? 'oversize >1MiB' : 'oversize', paddedPing(ctx, size, rng.chance(0.3)));
          break;
        }
        case 'binary': {
          const payload = rng.chance(0.6) ? Buffer.from(toJson(validMessage(ctx))) : rng.bytes(rng.int(0, 300));
          ws.send(payload, { binary: true });
          conn.noteSent(action, payload);
          break;
        }
        case 'fragmented': {
          // One message in 2..6 frames (FIN clear, then continuations), maybe with pings and
          // pongs between them; sometimes binary, sometimes over 1 MiB in total, sometimes
          // abandoned halfway (the connection is then closed).
          const binary = rng.chance(0.15);
          const overs = big < 4 && rng.chance(0.04);
          if (overs) big++;
          const payload = overs
            ? Buffer.from(paddedPing(ctx, rng.int(1024 * 1024 + 1, 1400 * 1024)))
            : rng.chance(0.8)
              ? Buffer.from(toJson(rng.chance(0.6) ? validMessage(ctx) : mutateObject(ctx, validMessage(ctx))))
              : rng.chance(0.5)
                ? badUtf8(rng)
                : Buffer.from(deepFrame(ctx));
          const pieces = rng.int(2, 6);
          const cuts = [0, ...Array.from({ length: pieces - 1 }, () => rng.int(0, payload.length)).sort((a, b) => a - b), payload.length];
          const abandonAt = rng.chance(0.08) ? rng.int(1, pieces - 1) : -1;
          if (!binary && abandonAt < 0) conn.noteRef(payload); // before: the reply may come while we pause
          for (let p = 0; p < pieces && isOpen(); p++) {
            if (p === abandonAt) {
              clientClose(() => (rng.chance(0.5) ? ws.terminate() : ws.close(1000)));
              break;
            }
            const piece = payload.subarray(cuts[p], cuts[p + 1]);
            ws.send(piece, { binary, fin: p === pieces - 1 });
            conn.noteSent(p === 0 ? `fragment ${binary ? 'binary' : 'text'}` : 'continuation', piece);
            if (rng.chance(0.3) && isOpen()) {
              const ctl = rng.bytes(rng.int(0, 125));
              if (rng.chance(0.7)) ws.ping(ctl);
              else ws.pong(ctl);
              conn.noteSent('control between fragments', ctl);
            }
            if (rng.chance(0.3)) await pause(rng);
          }
          break;
        }
        case 'bad-utf8':
          text(action, badUtf8(rng));
          break;
        case 'random':
          text(action, rng.chance(0.5) ? rng.bytes(rng.int(0, 200)) : rng.ascii(rng.int(0, 200)));
          break;
        case 'ws-ping':
          ws.ping(rng.bytes(rng.int(0, 125)));
          conn.noteSent(action, Buffer.alloc(0));
          break;
        case 'ws-pong':
          ws.pong(rng.bytes(rng.int(0, 125)));
          conn.noteSent(action, Buffer.alloc(0));
          break;
        case 'burst': {
          if (rng.chance(0.3)) {
            // Presence faster than 20 at once, then 10 a second: limit_exceeded.
            text('burst', toJson({ type: 'join', channel: 'fz:1', ref: `${ctx.refPrefix}-${++ctx.n}` }));
            for (let b = rng.int(20, 40); b > 0; b--) text('burst', toJson({ type: 'presence', channel: 'fz:1', state: { b }, ref: `${ctx.refPrefix}-${++ctx.n}` }));
            break;
          }
          // More than the 64 messages held while a token is verified: 4400 if one is.
          if (rng.chance(0.5)) text('auth', toJson({ type: 'auth', token: ownToken, ref: `${ctx.refPrefix}-burst` }));
          for (let b = rng.int(60, 80); b > 0; b--) text('burst', toJson(rng.chance(0.7) ? { type: 'ping', ref: `${ctx.refPrefix}-${++ctx.n}` } : validMessage(ctx)));
          break;
        }
        case 'close':
          clientClose(() => ws.close(rng.pick([1000, 1001, 1003, 1008, 3000, 4000, 4999]), rng.ascii(rng.int(0, 100))));
          break;
        case 'terminate':
          clientClose(() => ws.terminate());
          break;
      }
      if (ws.bufferedAmount > 256 * 1024) await conn.until(() => ws.bufferedAmount < 64 * 1024, 5_000);
      await pause(rng);
    }

    // Still open: it must answer a ping, then we close it one way or another.
    if (isOpen() && !conn.selfClosed) await conn.probe('ws', (payload) => text('probe', payload));
    if (isOpen()) clientClose(() => (rng.chance(0.6) ? ws.close(1000) : ws.terminate()));
    const timer = setTimeout(() => ws.terminate(), 3_000);
    await closed;
    clearTimeout(timer);
  }
}
