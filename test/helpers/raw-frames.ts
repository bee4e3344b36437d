// Hand-built WebSocket frames over a plain TCP socket (node:net), for fuzzing what a WebSocket
// library would never send: reserved bits, unknown opcodes, unmasked client frames, oversized or
// fragmented control frames, bogus lengths, truncated frames. Also a reader of the server's
// frames, and the upgrade handshake (with the Sec-WebSocket-Accept check).
//
// Frame layout: RFC 6455 §5.2, https://www.rfc-editor.org/rfc/rfc6455#section-5.2
//
//    0                   1                   2                   3
//    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//   +-+-+-+-+-------+-+-------------+-------------------------------+
//   |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//   |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//   |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//   | |1|2|3|       |K|             |                               |
//   +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//   |     Extended payload length continued, if payload len == 127  |
//   + - - - - - - - - - - - - - - - +-------------------------------+
//   |                               |Masking-key, if MASK set to 1  |
//   +-------------------------------+-------------------------------+
//   | Masking-key (continued)       |          Payload Data         |
//   +-------------------------------- - - - - - - - - - - - - - - - +

import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';

export const OP = {
  continuation: 0x0,
  text: 0x1,
  binary: 0x2,
  close: 0x8,
  ping: 0x9,
  pong: 0xa,
} as const;

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

export interface FrameSpec {
  /** FIN bit (default true). */
  fin?: boolean;
  /** RSV1..RSV3 as a 3-bit number (default 0). */
  rsv?: number;
  /** 4-bit opcode. */
  opcode: number;
  payload?: Buffer;
  /** Mask the payload (default true: a client must, RFC 6455 §5.3). */
  mask?: boolean;
  /** A fixed masking key (default random). */
  maskKey?: Buffer;
  /**
   * Write this length in the header instead of the payload's real one (a bogus length): as a
   * 7-bit length if < 126, else 16-bit if < 65536, else 64-bit. A bigint allows the top bit.
   */
  declaredLength?: number | bigint;
  /** Force the length encoding ('7', '16', '64'), also when it is not the minimal one. */
  lengthEncoding?: '7' | '16' | '64';
}

/** One frame, as bytes (RFC 6455 §5.2). */
export function encodeFrame(spec: FrameSpec): Buffer {
  const payload = spec.payload ?? Buffer.alloc(0);
  const mask = spec.mask ?? true;
  const len = spec.declaredLength ?? payload.length;
  const big = BigInt(len);
  const enc = spec.lengthEncoding ?? (big < 126n ? '7' : big < 65536n ? '16' : '64');
  const b0 = ((spec.fin ?? true) ? 0x80 : 0) | (((spec.rsv ?? 0) & 0x7) << 4) | (spec.opcode & 0xf);
  let header: Buffer;
  if (enc === '7') {
    header = Buffer.from([b0, (mask ? 0x80 : 0) | Number(big & 0x7fn)]);
  } else if (enc === '16') {
    header = Buffer.alloc(4);
    header[0] = b0;
    header[1] = (mask ? 0x80 : 0) | 126;
    header.writeUInt16BE(Number(big & 0xffffn), 2);
  } else {
    header = Buffer.alloc(10);
    header[0] = b0;
    header[1] = (mask ? 0x80 : 0) | 127;
    header.writeBigUInt64BE(big & 0xffffffffffffffffn, 2);
  }
  if (!mask) return Buffer.concat([header, payload]);
  const key = spec.maskKey ?? randomBytes(4);
  const masked = Buffer.alloc(payload.length);
  for (let i = 0; i < payload.length; i++) masked[i] = payload[i] ^ key[i & 3];
  return Buffer.concat([header, key.subarray(0, 4), masked]);
}

/** A close frame's payload: a 2-byte code and a reason. */
export function closePayload(code: number, reason = ''): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(code & 0xffff, 0);
  return Buffer.concat([b, Buffer.from(reason)]);
}

/** A frame from the server. */
export interface ServerFrame {
  fin: boolean;
  rsv: number;
  opcode: number;
  masked: boolean;
  payload: Buffer;
}

/** Splits the server's byte stream into frames; `push` returns the complete ones. */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): ServerFrame[] {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const out: ServerFrame[] = [];
    for (;;) {
      const b = this.buf;
      if (b.length < 2) break;
      const masked = (b[1] & 0x80) !== 0;
      let len = b[1] & 0x7f;
      let off = 2;
      if (len === 126) {
        if (b.length < 4) break;
        len = b.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (b.length < 10) break;
        const l = b.readBigUInt64BE(2);
        if (l > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`server frame declares ${l} bytes`);
        len = Number(l);
        off = 10;
      }
      const keyOff = off;
      if (masked) off += 4;
      if (b.length < off + len) break;
      let payload = b.subarray(off, off + len);
      if (masked) {
        const key = b.subarray(keyOff, keyOff + 4);
        payload = Buffer.from(payload.map((x, i) => x ^ key[i & 3]));
      }
      out.push({ fin: (b[0] & 0x80) !== 0, rsv: (b[0] >> 4) & 7, opcode: b[0] & 0xf, masked, payload: Buffer.from(payload) });
      this.buf = b.subarray(off + len);
    }
    return out;
  }

  /** Bytes of an incomplete frame left at the end. */
  get pending(): number {
    return this.buf.length;
  }
}

export interface RawHandshake {
  /** Path and query, e.g. `/ws?token=...` (default `/ws`). */
  path?: string;
  /** Header lines replacing the standard ones entirely (for broken handshakes). */
  rawRequest?: Buffer;
  timeoutMs?: number;
}

export interface RawUpgradeResult {
  /** The upgrade was answered 101 with the right Sec-WebSocket-Accept. */
  upgraded: boolean;
  /** The HTTP status line the server answered with (null: none, the socket closed or timed out). */
  status: string | null;
  timedOut: boolean;
}

/**
 * A raw client connection: the HTTP upgrade, then bytes written as they are given, and the
 * server's frames handed to `onFrame` as they arrive. `closed` resolves when the TCP socket is
 * gone (either side).
 */
export class RawWsConnection {
  readonly socket: net.Socket;
  readonly reader = new FrameReader();
  /** Set once the server sent a close frame: its code (1005 when it had no payload). */
  serverClose: { code: number; reason: string } | null = null;
  /** A frame the reader could not parse, or another problem with the server's bytes. */
  readerError: string | null = null;
  readonly closed: Promise<void>;
  private onFrame: ((f: ServerFrame) => void) | null = null;
  private head: Buffer = Buffer.alloc(0);
  private upgradedOk = false;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('error', () => {});
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
  }

  static connect(port: number, host = '127.0.0.1'): Promise<RawWsConnection> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ port, host });
      socket.setNoDelay(true);
      socket.once('connect', () => {
        socket.removeListener('error', reject);
        resolve(new RawWsConnection(socket));
      });
      socket.once('error', reject);
    });
  }

  get open(): boolean {
    return !this.socket.destroyed && this.socket.writable;
  }

  /** Sends the upgrade request (or `rawRequest`) and waits for the answer's head. */
  upgrade(opts: RawHandshake, onFrame: (f: ServerFrame) => void): Promise<RawUpgradeResult> {
    this.onFrame = onFrame;
    const key = randomBytes(16).toString('base64');
    const accept = createHash('sha1').update(key + WS_GUID).digest('base64');
    const req =
      opts.rawRequest ??
      Buffer.from(
        `GET ${opts.path ?? '/ws'} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
    return new Promise<RawUpgradeResult>((resolve) => {
      let done = false;
      const finish = (r: RawUpgradeResult) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve(r);
      };
      const timer = setTimeout(() => finish({ upgraded: false, status: null, timedOut: true }), opts.timeoutMs ?? 5_000);
      this.socket.on('data', (chunk: Buffer) => {
        if (this.upgradedOk) {
          this.feed(chunk);
          return;
        }
        this.head = Buffer.concat([this.head, chunk]);
        const end = this.head.indexOf('\r\n\r\n');
        if (end < 0) {
          if (this.head.length > 64 * 1024) finish({ upgraded: false, status: null, timedOut: false });
          return;
        }
        const text = this.head.subarray(0, end).toString('latin1');
        const status = text.split('\r\n')[0];
        const rest = this.head.subarray(end + 4);
        const acceptOk = new RegExp(`^sec-websocket-accept:\\s*${accept.replace(/[+/=]/g, '\\$&')}\\s*$`, 'im').test(text);
        if (/^HTTP\/1\.1 101/.test(status) && (opts.rawRequest !== undefined || acceptOk)) {
          this.upgradedOk = true;
          finish({ upgraded: true, status, timedOut: false });
          if (rest.length > 0) this.feed(rest);
        } else finish({ upgraded: false, status, timedOut: false });
      });
      this.socket.once('close', () => finish({ upgraded: false, status: null, timedOut: false }));
      this.socket.write(req);
    });
  }

  /** Writes bytes unless the socket is gone; false when it was. */
  write(bytes: Buffer): boolean {
    if (!this.open) return false;
    this.socket.write(bytes);
    return true;
  }

  /** Half-closes (FIN) and destroys after `ms` unless the server closed first. */
  async end(ms = 1_000): Promise<void> {
    if (!this.socket.destroyed) this.socket.end();
    const timer = setTimeout(() => this.socket.destroy(), ms);
    await this.closed;
    clearTimeout(timer);
  }

  destroy(): void {
    this.socket.destroy();
  }

  private feed(chunk: Buffer): void {
    let frames: ServerFrame[];
    try {
      frames = this.reader.push(chunk);
    } catch (err) {
      this.readerError = (err as Error).message;
      this.socket.destroy();
      return;
    }
    for (const f of frames) {
      if (f.opcode === OP.close && !this.serverClose) {
        this.serverClose = f.payload.length >= 2 ? { code: f.payload.readUInt16BE(0), reason: f.payload.subarray(2).toString() } : { code: 1005, reason: '' };
      }
      this.onFrame?.(f);
    }
  }
}
