// A WebSocket upgrade that may be refused: resolves with the open socket, or with the HTTP
// status, headers and body of the refusal (the `ws` client's `unexpected-response`).
import type { IncomingMessage } from 'node:http';
import WebSocket from 'ws';

/** `ws` when it opened; else the refusal's `status`, `Retry-After`, `X-Walcast-Refused` and body. */
export interface Attempt {
  ws?: WebSocket;
  status?: number;
  retryAfter?: string;
  refused?: string;
  body?: string;
}

export function attemptUpgrade(url: string, timeoutMs = 10_000): Promise<Attempt> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`upgrade to ${url}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    ws.once('open', () => {
      clearTimeout(timer);
      resolve({ ws });
    });
    ws.once('unexpected-response', (req, res: IncomingMessage) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => {
        clearTimeout(timer);
        req.destroy();
        const h = (k: string) => (typeof res.headers[k] === 'string' ? (res.headers[k] as string) : undefined);
        resolve({ status: res.statusCode ?? 0, retryAfter: h('retry-after'), refused: h('x-walcast-refused'), body });
      });
    });
    ws.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** Prometheus text → samples by name with labels (`name{a="b"}`). */
export function samples(text: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const line of text.split('\n')) {
    const mm = /^([a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (mm) m.set(mm[1], Number(mm[2]));
  }
  return m;
}
