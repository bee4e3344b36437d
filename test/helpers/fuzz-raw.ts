// The protocol fuzz's raw TCP fuzzers (test/integration/fuzz.test.ts), on node:net: a real
// upgrade, then hand-built frames (raw-frames.ts, RFC 6455 §5.2,
// https://www.rfc-editor.org/rfc/rfc6455#section-5.2): reserved bits, unknown opcodes, unmasked
// frames, control frames over 125 bytes or fragmented, continuations out of place, bogus 64-bit
// lengths, truncated frames, close frames with invalid codes, frames written a byte at a time;
// and broken upgrade requests.

import { WS_PATH } from '../../src/constants.js';
import { sleep } from './capture.js';
import { Conn, pause, type FuzzContext } from './fuzz-conn.js';
import { badUtf8, mutateObject, STRICT_UTF8, toJson, validMessage, type GenContext, type Rng } from './fuzz-gen.js';
import { hex } from './fuzz-tally.js';
import { closePayload, encodeFrame, OP, RawWsConnection, type ServerFrame } from './raw-frames.js';

type RawAction =
  | 'text' | 'fragmented' | 'byte-by-byte' | 'ping' | 'pong' | 'binary' | 'rsv' | 'opcode' | 'unmasked'
  | 'big-control' | 'fragmented-control' | 'continuation-first' | 'data-during-fragment' | 'bogus-length'
  | 'non-minimal-length' | 'truncated' | 'close-frame' | 'bad-utf8' | 'random-bytes' | 'zero-mask' | 'burst';

const RAW_ACTIONS: ReadonlyArray<readonly [number, RawAction]> = [
  [20, 'text'],
  [8, 'fragmented'],
  [2, 'byte-by-byte'],
  [4, 'ping'],
  [2, 'pong'],
  [3, 'binary'],
  [3, 'rsv'],
  [3, 'opcode'],
  [2, 'unmasked'],
  [3, 'big-control'],
  [3, 'fragmented-control'],
  [2, 'continuation-first'],
  [2, 'data-during-fragment'],
  [3, 'bogus-length'],
  [2, 'non-minimal-length'],
  [3, 'truncated'],
  [3, 'close-frame'],
  [2, 'bad-utf8'],
  [2, 'random-bytes'],
  [1, 'zero-mask'],
  [1, 'burst'],
];

/** Raw actions a conforming server must accept (and answer, where there is something to answer). */
const BENIGN = new Set<RawAction>(['text', 'fragmented', 'byte-by-byte', 'ping', 'pong', 'binary', 'non-minimal-length', 'zero-mask', 'burst']);

/** Upgrade requests that are not quite right; the daemon must survive them, whatever it answers. */
function brokenHandshake(rng: Rng): [string, Buffer] {
  const key = 'dGhlIHNhbXBsZSBub25jZQ==';
  const std = (path: string, extra = '') => `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`;
  const variants: Array<[string, string | Buffer]> = [
    ['no key', 'GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n'],
    ['version 99', std('/ws').replace('Version: 13', 'Version: 99')],
    ['garbage', Buffer.concat([rng.bytes(rng.int(1, 300)), Buffer.from('\r\n\r\n')])],
    ['POST', 'POST /ws HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello'],
    ['huge header', std('/ws', `X-Fuzz: ${'a'.repeat(rng.int(5_000, 40_000))}\r\n`)],
    ['bad percent-encoding in the token', std('/ws?token=%ZZ%')],
    ['a 10 KB token', std(`/ws?token=${'a'.repeat(10_000)}`)],
    ['two tokens', std('/ws?token=&token=abc')],
    ['another path', std('/wss')],
    ['HTTP/1.0', std('/ws').replace('HTTP/1.1', 'HTTP/1.0')],
    ['no Upgrade header', std('/ws').replace('Upgrade: websocket\r\n', '')],
    ['a subprotocol and an extension', std('/ws', 'Sec-WebSocket-Protocol: walcast, x\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n')],
  ];
  const [name, req] = rng.pick(variants);
  return [name, Buffer.isBuffer(req) ? req : Buffer.from(req)];
}

/** Fuzzer `idx`: connection after connection with `ownToken` (or a bad one, or none) until `until`. */
export async function rawFuzzer(fuzz: FuzzContext, idx: number, ownToken: string, rng: Rng, until: number): Promise<void> {
  const { log, otherUser, badTokens } = fuzz;
  const authTokens = [ownToken, ownToken, otherUser, ...badTokens];
  for (let n = 1; Date.now() < until && !fuzz.daemonGone(); n++) {
    const conn = new Conn(fuzz, `raw${idx}.${n}`);
    let r: RawWsConnection;
    try {
      r = await RawWsConnection.connect(fuzz.port);
    } catch (err) {
      conn.problem('a TCP connection was refused', (err as Error).message);
      await sleep(50);
      continue;
    }
    // State of this connection, for what may be checked.
    let desynced = false; // the server may now read our bytes differently from how we framed them
    let sentClose = false;
    let closedByUs = false; // our close frame went out before any from the server
    let fragmentOpen = false;
    const pings = new Set<string>();
    const onFrame = (f: ServerFrame) => {
      if (f.masked) conn.problem('a masked frame from the server', hex(f.payload));
      if (f.rsv !== 0) conn.problem('a server frame with RSV bits', `rsv ${f.rsv}`);
      switch (f.opcode) {
        case OP.text: {
          let text: string;
          try {
            text = STRICT_UTF8.decode(f.payload);
          } catch {
            conn.problem('a server text frame that is not UTF-8', hex(f.payload));
            return;
          }
          conn.receivedText(text);
          return;
        }
        case OP.binary:
          conn.problem('a binary frame from the server', hex(f.payload));
          return;
        case OP.close:
          return;
        case OP.ping:
          if (!sentClose) r.write(encodeFrame({ opcode: OP.pong, payload: f.payload }));
          return;
        case OP.pong:
          log.replies.add('(raw) pong frame');
          if (!desynced && !pings.has(f.payload.toString('hex'))) conn.problem('a pong for a ping never sent', hex(f.payload));
          return;
        default:
          conn.problem('an unknown opcode from the server', `opcode ${f.opcode}`);
      }
    };

    if (rng.chance(0.12)) {
      const [name, req] = brokenHandshake(rng);
      log.connections.add('raw broken upgrade');
      const up = await r.upgrade({ rawRequest: req, timeoutMs: 1_500 }, onFrame);
      log.handshakes.add(`${name}: ${up.status?.replace(/^HTTP\/1\.1 /, '') ?? (up.timedOut ? 'no answer within 1.5 s' : 'closed')}`);
      if (up.upgraded) await Promise.race([r.closed, sleep(300)]);
      conn.selfClosed = true;
      r.destroy();
      await r.closed;
      continue;
    }

    const mode = rng.weighted<string>([
      [55, 'query-token'],
      [15, 'auth-message'],
      [15, 'none'],
      [15, 'query-bad'],
    ]);
    log.connections.add(`raw ${mode}`);
    const path = mode === 'query-token' ? `${WS_PATH}?token=${ownToken}` : mode === 'query-bad' ? `${WS_PATH}?token=${encodeURIComponent(rng.pick(badTokens))}` : WS_PATH;
    const up = await r.upgrade({ path, timeoutMs: 5_000 }, onFrame);
    if (!up.upgraded) {
      conn.problem(up.timedOut ? 'an upgrade was not answered within 5 s' : 'an upgrade was refused', String(up.status));
      r.destroy();
      await r.closed;
      continue;
    }
    log.handshakes.add('well-formed: 101');
    void r.closed.then(() => {
      // An empty close frame (1005) is uWebSockets.js echoing a close it read from us: one we
      // sent, or, once out of step, bytes it took for one.
      if (r.serverClose) conn.onClose(r.serverClose.code, r.serverClose.reason, closedByUs || (desynced && r.serverClose.code === 1005));
      else conn.onClose(1006, '', conn.selfClosed);
    });

    const ctx: GenContext = { rng, refPrefix: `r${idx}.${n}`, positions: fuzz.positions, authTokens, n: 0 };
    const write = (kind: string, bytes: Buffer, textPayload: Buffer | null = null) => {
      if (r.write(bytes)) conn.noteSent(kind, bytes, textPayload);
    };
    // Every message generated may come back with its ref, also from a frame a strict server
    // would refuse: uWebSockets.js is lenient with some violations (a data frame inside an open
    // fragmented message is read as a new message, for one).
    const message = () => {
      const payload = Buffer.from(toJson(rng.chance(0.7) ? validMessage(ctx) : mutateObject(ctx, validMessage(ctx))));
      conn.noteRef(payload, false);
      return payload;
    };
    const textFrame = (kind: string, payload: Buffer) => write(kind, encodeFrame({ opcode: OP.text, payload }), payload);
    const ping = (payload: Buffer): Buffer => {
      pings.add(payload.toString('hex'));
      return encodeFrame({ opcode: OP.ping, payload });
    };
    const endFrom = async (how: 'fin' | 'rst' | 'continue') => {
      if (how === 'continue') return;
      conn.selfClosed = true;
      if (how === 'fin') await r.end(1_000);
      else r.destroy();
    };
    if (mode === 'auth-message') textFrame('auth', Buffer.from(toJson({ type: 'auth', token: ownToken, ref: `${ctx.refPrefix}-auth` })));

    // Half the connections keep to frames a server must accept, so that they end in step and
    // can be asked for a pong; the others take anything.
    const actions = rng.chance(0.5) ? RAW_ACTIONS.filter(([, a]) => BENIGN.has(a)) : RAW_ACTIONS;
    const budget = rng.int(3, 60);
    for (let i = 0; i < budget && r.open && Date.now() < until; i++) {
      const action = rng.weighted(actions);
      // The server should drop the connection now (or may be reading us out of step). Any data
      // frame while a fragmented message is open is a violation.
      let fatal = fragmentOpen;
      switch (action) {
        case 'text':
          textFrame(action, message());
          break;
        case 'fragmented': {
          const payload = message();
          const pieces = rng.int(2, 5);
          const cuts = [0, ...Array.from({ length: pieces - 1 }, () => rng.int(0, payload.length)).sort((a, b) => a - b), payload.length];
          conn.noteRef(payload);
          for (let p = 0; p < pieces; p++) {
            write(p === 0 ? 'fragment' : 'continuation', encodeFrame({ opcode: p === 0 ? OP.text : OP.continuation, fin: p === pieces - 1, payload: payload.subarray(cuts[p], cuts[p + 1]) }));
            if (p < pieces - 1 && rng.chance(0.4)) write('control between fragments', rng.chance(0.7) ? ping(rng.bytes(rng.int(0, 125))) : encodeFrame({ opcode: OP.pong, payload: rng.bytes(rng.int(0, 20)) }));
            if (rng.chance(0.3)) await pause(rng);
          }
          break;
        }
        case 'byte-by-byte': {
          // One frame written in many small pieces: must be read as one.
          const payload = Buffer.from(toJson({ type: 'ping', ref: `${ctx.refPrefix}-${++ctx.n}` }));
          const bytes = encodeFrame({ opcode: OP.text, payload });
          conn.noteRef(payload);
          for (let at = 0; at < bytes.length && r.open; ) {
            const step = rng.int(1, 3);
            r.write(bytes.subarray(at, at + step));
            at += step;
            await new Promise((res) => setImmediate(res));
          }
          conn.noteSent(action, bytes);
          break;
        }
        case 'ping':
          write(action, ping(rng.bytes(rng.int(0, 125))));
          break;
        case 'pong':
          write(action, encodeFrame({ opcode: OP.pong, payload: rng.bytes(rng.int(0, 125)) }));
          break;
        case 'binary':
          write(action, encodeFrame({ opcode: OP.binary, payload: rng.chance(0.5) ? message() : rng.bytes(rng.int(0, 200)) }));
          break;
        case 'rsv':
          write(action, encodeFrame({ opcode: rng.pick([OP.text, OP.binary, OP.ping]), rsv: rng.int(1, 7), payload: message() }));
          fatal = true;
          break;
        case 'opcode':
          write(action, encodeFrame({ opcode: rng.pick([3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf]), payload: rng.bytes(rng.int(0, 40)) }));
          fatal = true;
          break;
        case 'unmasked':
          // RFC 6455 §5.1: a server must close on an unmasked client frame. uWebSockets.js reads
          // the first 4 payload bytes as the key instead, so the stream is out of step from here.
          write(action, encodeFrame({ opcode: OP.text, mask: false, payload: message() }));
          fatal = true;
          desynced = true;
          break;
        case 'big-control':
          write(action, encodeFrame({ opcode: rng.pick([OP.ping, OP.pong, OP.close]), payload: Buffer.concat([closePayload(1000), rng.bytes(rng.int(124, 400))]) }));
          fatal = true;
          break;
        case 'fragmented-control':
          write(action, encodeFrame({ opcode: rng.pick([OP.ping, OP.pong]), fin: false, payload: rng.bytes(rng.int(0, 50)) }));
          if (rng.chance(0.5)) write('continuation', encodeFrame({ opcode: OP.continuation, payload: rng.bytes(rng.int(0, 50)) }));
          fatal = true;
          break;
        case 'continuation-first':
          if (!fragmentOpen) {
            write(action, encodeFrame({ opcode: OP.continuation, fin: rng.chance(0.7), payload: message() }));
            fatal = true;
          }
          break;
        case 'data-during-fragment': {
          const a = message();
          write('fragment', encodeFrame({ opcode: OP.text, fin: false, payload: a.subarray(0, a.length >> 1) }));
          if (rng.chance(0.3)) {
            // Left open: the next data frame of any other action is the violation.
            fragmentOpen = true;
          } else {
            write(action, encodeFrame({ opcode: rng.pick([OP.text, OP.binary]), payload: message() }));
            fatal = true;
          }
          break;
        }
        case 'bogus-length': {
          const payload = message();
          const declared = rng.pick<number | bigint>([0x8000000000000000n, 0xffffffffffffffffn, 2n ** 40n, 2n ** 32n + 5n, 1024 * 1024 + 1, rng.int(payload.length + 1, 900_000)]);
          write(action, encodeFrame({ opcode: OP.text, payload, declaredLength: declared }));
          fatal = true;
          desynced = true;
          break;
        }
        case 'non-minimal-length': {
          const payload = message();
          write(action, encodeFrame({ opcode: OP.text, payload, lengthEncoding: rng.pick(['16', '64'] as const) }), payload);
          break;
        }
        case 'truncated': {
          const bytes = encodeFrame({ opcode: rng.pick([OP.text, OP.ping, OP.close]), payload: message().subarray(0, 120) });
          write(action, bytes.subarray(0, rng.int(1, bytes.length - 1)));
          desynced = true;
          await endFrom(rng.weighted<'fin' | 'rst' | 'continue'>([[5, 'fin'], [3, 'rst'], [2, 'continue']]));
          break;
        }
        case 'close-frame': {
          const payload = rng.weighted<Buffer>([
            [3, closePayload(rng.pick([1000, 1001, 3000, 4999]), rng.ascii(rng.int(0, 60)))],
            [3, closePayload(rng.pick([0, 999, 1004, 1005, 1006, 1015, 2999, 5000, 65535]))],
            [1, Buffer.from([rng.int(0, 255)])],
            [1, Buffer.concat([closePayload(1000), Buffer.from([0xff, 0xfe])])],
            [1, closePayload(1000, 'r'.repeat(123))],
            [1, Buffer.alloc(0)],
          ]);
          sentClose = true;
          closedByUs = !r.serverClose;
          conn.selfClosed = true;
          write(action, encodeFrame({ opcode: OP.close, payload }));
          break;
        }
        case 'bad-utf8':
          write(action, encodeFrame({ opcode: OP.text, payload: badUtf8(rng) }));
          fatal = true;
          break;
        case 'random-bytes':
          write(action, rng.bytes(rng.int(1, 64)));
          fatal = true;
          desynced = true;
          break;
        case 'zero-mask': {
          const payload = message();
          write(action, encodeFrame({ opcode: OP.text, payload, maskKey: Buffer.alloc(4) }), payload);
          break;
        }
        case 'burst': {
          const frames: Buffer[] = [];
          for (let b = rng.int(60, 80); b > 0; b--) {
            const payload = Buffer.from(toJson({ type: 'ping', ref: `${ctx.refPrefix}-${++ctx.n}` }));
            frames.push(encodeFrame({ opcode: OP.text, payload }));
            conn.noteRef(payload);
          }
          write(action, Buffer.concat(frames));
          break;
        }
      }
      if (sentClose) break;
      if (fatal) {
        // Give the server a moment to drop the connection; either way the fuzzing goes on.
        await Promise.race([r.closed, sleep(rng.int(20, 200))]);
        if (!conn.closed) desynced = true;
      }
      await pause(rng);
    }

    // Still open and in step: it must answer a ping. Then close: a close frame, FIN, or RST.
    if (r.open && !desynced && !sentClose && !fragmentOpen) await conn.probe('raw', (payload) => textFrame('probe', Buffer.from(payload)));
    if (r.open) {
      conn.selfClosed = true;
      const how = rng.pick(['close frame', 'fin', 'rst']);
      if (how === 'close frame' && !sentClose) {
        sentClose = true;
        closedByUs = !r.serverClose;
        write('close-frame', encodeFrame({ opcode: OP.close, payload: closePayload(1000) }));
        await Promise.race([r.closed, sleep(2_000)]);
        r.destroy();
      } else if (how === 'fin') await r.end(2_000);
      else r.destroy();
    }
    await r.closed;
  }
}
