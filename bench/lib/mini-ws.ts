// A minimal RFC 6455 client over net.Socket, for load clients only: thousands of connections
// in one process, each counting frames at as little CPU as possible (no per-message events,
// objects or UTF-8 validation), so that the server under test, not the client, sets the pace
// on a small machine. Text frames are handed over as (buffer, start, end); nothing is copied
// unless a frame spans two reads. Pings are answered, a close frame is answered and ends the
// socket. Fragmented messages are not supported (neither uWS nor ws fragments what it sends):
// they end the connection with an error.
import { createHash, randomBytes, randomFillSync } from 'node:crypto';
import net from 'node:net';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const HEADER_END = Buffer.from('\r\n\r\n');
/**
 * One read buffer for every connection of the process (net's `onread`): reads land here and are
 * parsed at once, without a stream, a 'data' event or a Buffer per read. Bytes of a frame that
 * is not complete yet are copied out before the next read.
 */
const READ_BUFFER = Buffer.allocUnsafe(256 * 1024);

export interface MiniWsHandlers {
  /** The upgrade succeeded (101). */
  open(ws: MiniWs): void;
  /** One text frame, `buf[start, end)`. Valid until the handler returns. */
  text(ws: MiniWs, buf: Buffer, start: number, end: number): void;
  /** The connection is gone: `code` from the server's close frame, or 0 (socket error or end). */
  close(ws: MiniWs, code: number, reason: string): void;
}

export class MiniWs {
  private readonly socket: net.Socket;
  private readonly key = randomBytes(16).toString('base64');
  private pending: Buffer | null = null;
  private fragments: Buffer[] | null = null;
  private upgraded = false;
  private done = false;
  /** close() sent our close frame: the server's answer is not echoed. */
  private closing = false;

  constructor(
    host: string,
    port: number,
    path: string,
    private readonly h: MiniWsHandlers,
    /** Caller's number for this connection. */
    readonly index: number,
  ) {
    this.socket = net.connect({
      host,
      port,
      onread: {
        buffer: READ_BUFFER,
        callback: (n: number, buf: Uint8Array) => {
          this.onData(Buffer.from(buf.buffer, buf.byteOffset, n));
          return true;
        },
      },
    });
    this.socket.setNoDelay(true);
    this.socket.on('connect', () => {
      this.socket.write(
        `GET ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${this.key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
    });
    this.socket.on('error', (err) => this.finish(0, err.message));
    this.socket.on('close', () => this.finish(0, this.upgraded ? 'socket closed' : 'socket closed before the upgrade'));
  }

  get closed(): boolean {
    return this.done;
  }

  /** Sends one text frame (masked, as a client must). */
  sendText(text: string): void {
    if (!this.done) this.socket.write(frame(0x1, Buffer.from(text, 'utf8')));
  }

  /**
   * Starts the closing handshake: sends a close frame (`code`, `reason`); `close` is reported
   * when the server answers with its own close frame, or when the socket ends.
   */
  close(code = 1000, reason = ''): void {
    if (this.done || this.closing) return;
    this.closing = true;
    const r = Buffer.from(reason, 'utf8');
    const payload = Buffer.allocUnsafe(2 + r.length);
    payload.writeUInt16BE(code, 0);
    r.copy(payload, 2);
    this.socket.write(frame(0x8, payload));
  }

  /** Drops the connection without a closing handshake (the server sees the socket close). */
  destroy(): void {
    if (this.done) return;
    this.done = true;
    this.socket.destroy();
  }

  private finish(code: number, reason: string): void {
    if (this.done) return;
    this.done = true;
    this.socket.destroy();
    this.h.close(this, code, reason);
  }

  /** `chunk` may be a view on the shared read buffer: nothing of it may be kept as it is. */
  private onData(chunk: Buffer): void {
    if (this.done) return;
    const buf = this.pending ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = null;
    let off = 0;
    if (!this.upgraded) {
      const end = buf.indexOf(HEADER_END);
      if (end < 0) {
        if (buf.length > 16 * 1024) this.finish(0, 'upgrade response too long');
        else this.pending = Buffer.from(buf);
        return;
      }
      const head = buf.toString('latin1', 0, end);
      const accept = createHash('sha1').update(this.key + GUID).digest('base64');
      if (!/^HTTP\/1\.1 101 /.test(head) || !new RegExp(`^sec-websocket-accept:\\s*${escape(accept)}\\s*$`, 'im').test(head)) {
        this.finish(0, `upgrade refused: ${head.split('\r\n')[0]}`);
        return;
      }
      this.upgraded = true;
      this.h.open(this);
      if (this.done) return;
      off = end + HEADER_END.length;
    }
    const len = buf.length;
    while (off + 2 <= len) {
      const b0 = buf[off];
      const b1 = buf[off + 1];
      let size = b1 & 0x7f;
      let hdr = 2;
      if (size === 126) {
        if (off + 4 > len) break;
        size = buf.readUInt16BE(off + 2);
        hdr = 4;
      } else if (size === 127) {
        if (off + 10 > len) break;
        size = buf.readUInt32BE(off + 2) * 2 ** 32 + buf.readUInt32BE(off + 6);
        hdr = 10;
      }
      if (b1 & 0x80) hdr += 4; // a masked frame from a server is wrong, but skip the key
      if (off + hdr + size > len) break;
      const start = off + hdr;
      const end = start + size;
      off = end;
      const opcode = b0 & 0x0f;
      const fin = (b0 & 0x80) !== 0;
      if (opcode === 0x0 || ((opcode === 0x1 || opcode === 0x2) && !fin)) {
        // A fragmented message (walcast sends a change as prefix + shared body): collect copies.
        if (opcode !== 0x0) this.fragments = [];
        if (!this.fragments) {
          this.finish(0, 'continuation frame without a first fragment');
          return;
        }
        this.fragments.push(Buffer.from(buf.subarray(start, end)));
        if (fin) {
          const whole = Buffer.concat(this.fragments);
          this.fragments = null;
          this.h.text(this, whole, 0, whole.length);
          if (this.done) return;
        }
      } else if (opcode === 0x1 || opcode === 0x2) {
        this.h.text(this, buf, start, end);
        if (this.done) return;
      } else if (opcode === 0x9) {
        this.socket.write(frame(0xa, buf.subarray(start, end)));
      } else if (opcode === 0x8) {
        const code = size >= 2 ? buf.readUInt16BE(start) : 1005;
        const reason = size > 2 ? buf.toString('utf8', start + 2, end) : '';
        if (!this.done && !this.closing) this.socket.end(frame(0x8, buf.subarray(start, Math.min(end, start + 2))));
        this.finish(code, reason);
        return;
      }
      // 0xa (pong) and anything else: ignored
    }
    if (off < len) this.pending = Buffer.from(buf.subarray(off)); // a copy: the read buffer is reused
  }
}

function frame(opcode: number, payload: Buffer): Buffer {
  const n = payload.length;
  const hdr = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const out = Buffer.allocUnsafe(hdr + 4 + n);
  out[0] = 0x80 | opcode;
  if (hdr === 2) out[1] = 0x80 | n;
  else if (hdr === 4) {
    out[1] = 0x80 | 126;
    out.writeUInt16BE(n, 2);
  } else {
    out[1] = 0x80 | 127;
    out.writeUInt32BE(Math.floor(n / 2 ** 32), 2);
    out.writeUInt32BE(n >>> 0, 6);
  }
  const mask = out.subarray(hdr, hdr + 4);
  randomFillSync(mask);
  for (let i = 0; i < n; i++) out[hdr + 4 + i] = payload[i] ^ mask[i & 3];
  return out;
}

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}
