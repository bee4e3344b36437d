// The load-client processes' way of opening many WebSocket connections (bench/lib/clients.ts,
// auth-clients.ts, channel-clients.ts): at most `concurrency` handshakes in flight, each
// connection ready when the protocol says so, the first failure (or the timeout) failing all;
// and what they share besides (reading numbers out of a frame, close counts, tokens, CPU load).
import { SignJWT } from 'jose';

export interface Opening {
  ready?: boolean;
}

/**
 * Opens `count` connections; `open(i, ready, fail)` starts the i-th (0-based) and calls
 * ready(ws) when it is usable or fail(msg) when it cannot be. Resolves with how many are ready.
 */
export function connectMany(
  count: number,
  concurrency: number,
  timeoutMs: number,
  open: (i: number, ready: (ws: Opening) => void, fail: (msg: string) => void) => void,
): Promise<number> {
  return new Promise((resolve, reject) => {
    let started = 0;
    let ready = 0;
    let failed = false;
    const timer = setTimeout(() => fail(`connect: only ${ready} of ${count} ready after ${timeoutMs} ms`), timeoutMs);
    const fail = (msg: string): void => {
      if (failed) return;
      failed = true;
      clearTimeout(timer);
      reject(new Error(msg));
    };
    const onReady = (ws: Opening): void => {
      ws.ready = true;
      ready++;
      if (ready === count) {
        clearTimeout(timer);
        resolve(ready);
      } else startMore();
    };
    const startMore = (): void => {
      while (!failed && started < count && started - ready < concurrency) open(started++, onReady, fail);
    };
    if (count <= 0) {
      clearTimeout(timer);
      resolve(0);
      return;
    }
    startMore();
  });
}

/** A text frame before ready as JSON, or fail(…) naming `who` and undefined. */
export function parseBeforeReady<T>(buf: Buffer, start: number, end: number, who: string, fail: (msg: string) => void): T | undefined {
  try {
    return JSON.parse(buf.toString('utf8', start, end)) as T;
  } catch {
    fail(`${who}: not JSON before ready: ${buf.toString('utf8', start, Math.min(end, start + 200))}`);
    return undefined;
  }
}

/** The integer written at buf[i…] (JSON number without fraction), NaN when there is none. */
export function intAt(buf: Buffer, i: number, end: number): number {
  let neg = false;
  if (i < end && buf[i] === 0x2d) {
    neg = true;
    i++;
  }
  let v = 0;
  let digits = 0;
  for (; i < end; i++) {
    const c = buf[i] - 0x30;
    if (c < 0 || c > 9) break;
    v = v * 10 + c;
    digits++;
  }
  return digits === 0 ? Number.NaN : neg ? -v : v;
}

/** Where the value after `key` starts in buf[from…end), -1 when the key is not there. */
export function valueAfter(buf: Buffer, key: Buffer, from: number, end: number): number {
  const i = buf.indexOf(key, from);
  return i >= 0 && i < end ? i + key.length : -1;
}

/** Counts a close by "code reason"; returns that key. */
export function countClose(closeCodes: Record<string, number>, code: number, reason: string): string {
  const k = `${code} ${reason}`.trim();
  closeCodes[k] = (closeCodes[k] ?? 0) + 1;
  return k;
}

/** HS256 tokens (2 h) for these subjects, in order. */
export async function signTokens(secret: string, subjects: readonly string[]): Promise<string[]> {
  const key = new TextEncoder().encode(secret);
  const tokens: string[] = [];
  for (const sub of subjects) tokens.push(await new SignJWT({}).setSubject(sub).setProtectedHeader({ alg: 'HS256' }).setIssuedAt().setExpirationTime('2h').sign(key));
  return tokens;
}

/** CPU time (user + system) and event-loop utilisation of this process since start() or reset(). */
export class ProcessLoad {
  private cpu0 = process.cpuUsage();
  private elu0 = performance.eventLoopUtilization();

  reset(): void {
    this.cpu0 = process.cpuUsage();
    this.elu0 = performance.eventLoopUtilization();
  }

  since(): { cpuMs: number; elu: number } {
    const c = process.cpuUsage(this.cpu0);
    return { cpuMs: (c.user + c.system) / 1000, elu: performance.eventLoopUtilization(this.elu0).utilization };
  }
}
