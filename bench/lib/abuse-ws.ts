// The attackers' WebSocket connections in bench/abuse.ts: bench/lib/mini-ws.ts (cheap enough for
// hundreds of connections receiving hundreds of MB in the orchestrator) with a promise for the
// welcome, counters by message type, and the close noted. A frame's type is read from its first
// bytes (walcast writes "type" first) without parsing it; only error frames are parsed.
import { MiniWs } from './mini-ws.js';

const TYPE_PREFIX = Buffer.from('{"type":"');

/** The message type of a frame, "?" when it does not start with {"type":"…". */
export function typeOf(buf: Buffer, start: number, end: number): string {
  if (end - start < TYPE_PREFIX.length + 1 || buf.compare(TYPE_PREFIX, 0, TYPE_PREFIX.length, start, start + TYPE_PREFIX.length) !== 0) return '?';
  const s = start + TYPE_PREFIX.length;
  const q = buf.indexOf(0x22, s);
  return q < 0 || q > end ? '?' : buf.toString('latin1', s, q);
}

export interface ErrorFrame {
  code?: string;
  message?: string;
  ref?: unknown;
}

export interface ConnHandlers {
  /** Every text frame after the welcome, with its type. */
  frame?(c: AttackConn, type: string, buf: Buffer, start: number, end: number): void;
  /** Error frames, parsed. */
  error?(c: AttackConn, e: ErrorFrame): void;
  close?(c: AttackConn): void;
}

export class AttackConn {
  readonly ws: MiniWs;
  /** Frames and bytes received after the welcome. */
  frames = 0;
  bytes = 0;
  readonly types: Record<string, number> = {};
  readonly errors: Record<string, number> = {};
  /** Set when the connection ended: "code reason" ("0 upgrade refused: HTTP/1.1 503 …", …). */
  closed: string | null = null;
  readonly welcome: Promise<void>;
  private welcomed = false;

  constructor(port: number, token: string | null, h: ConnHandlers = {}, index = 0) {
    let ok: () => void = () => {};
    let fail: (e: Error) => void = () => {};
    this.welcome = new Promise<void>((resolve, reject) => {
      ok = resolve;
      fail = reject;
    });
    this.welcome.catch(() => {}); // callers that never await it
    const path = token ? `/ws?token=${token}` : '/ws';
    this.ws = new MiniWs(
      '127.0.0.1',
      port,
      path,
      {
        open: () => {},
        text: (_ws, buf, start, end) => {
          if (!this.welcomed) {
            this.welcomed = true;
            ok();
            return;
          }
          this.frames++;
          this.bytes += end - start;
          const type = typeOf(buf, start, end);
          this.types[type] = (this.types[type] ?? 0) + 1;
          if (type === 'error') {
            let e: ErrorFrame = {};
            try {
              e = JSON.parse(buf.toString('utf8', start, end)) as ErrorFrame;
            } catch {
              // counted as an error of unknown code
            }
            const code = e.code ?? '?';
            this.errors[code] = (this.errors[code] ?? 0) + 1;
            h.error?.(this, e);
          }
          h.frame?.(this, type, buf, start, end);
        },
        close: (_ws, code, reason) => {
          this.closed = `${code} ${reason}`.trim();
          if (!this.welcomed) fail(new Error(this.closed));
          h.close?.(this);
        },
      },
      index,
    );
  }

  send(msg: unknown): void {
    this.ws.sendText(typeof msg === 'string' ? msg : JSON.stringify(msg));
  }

  destroy(): void {
    this.ws.destroy();
  }
}

/** Opens `count` connections, at most `concurrency` handshakes at a time; those that fail are null. */
export async function openMany(count: number, concurrency: number, make: (i: number) => AttackConn): Promise<Array<AttackConn | null>> {
  const out: Array<AttackConn | null> = new Array<AttackConn | null>(count).fill(null);
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      const c = make(i);
      try {
        await c.welcome;
        out[i] = c;
      } catch {
        out[i] = null;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, lane));
  return out;
}

/** "3× 4008 too slow, 1× 1006" from a list of close strings. */
export function tally(xs: ReadonlyArray<string | null>): Record<string, number> {
  const t: Record<string, number> = {};
  for (const x of xs) if (x !== null) t[x] = (t[x] ?? 0) + 1;
  return t;
}

/** Adds b's counts into a. */
export function addCounts(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  for (const [k, v] of Object.entries(b)) a[k] = (a[k] ?? 0) + v;
  return a;
}

export function fmtCounts(t: Record<string, number>): string {
  const e = Object.entries(t);
  return e.length ? e.map(([k, v]) => `${v}× ${k}`).join(', ') : 'none';
}
