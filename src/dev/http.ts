// Small helpers for the dev routes on uWebSockets.js: one reply per request, written corked,
// never after the client went away; request bodies read with a size bound.
import type { HttpResponse } from 'uWebSockets.js';

export interface Reply {
  status: number;
  body: string | Buffer;
  type: string;
}

const STATUS: Record<number, string> = {
  200: '200 OK',
  201: '201 Created',
  400: '400 Bad Request',
  401: '401 Unauthorized',
  403: '403 Forbidden',
  404: '404 Not Found',
  405: '405 Method Not Allowed',
  413: '413 Content Too Large',
  415: '415 Unsupported Media Type',
  500: '500 Internal Server Error',
};

export const json = (status: number, value: unknown): Reply => ({ status, body: JSON.stringify(value), type: 'application/json' });
export const problem = (status: number, error: string): Reply => json(status, { error });

/**
 * One response: `onAborted` is attached at once (uWS requires it before any asynchronous step),
 * and `send` writes only once and only while the connection is still there.
 */
export class Responder {
  private finished = false;

  constructor(private readonly res: HttpResponse) {
    res.onAborted(() => (this.finished = true));
  }

  get open(): boolean {
    return !this.finished;
  }

  send(r: Reply, closeConnection = false): void {
    if (this.finished) return;
    this.finished = true;
    this.res.cork(() => {
      this.res
        .writeStatus(STATUS[r.status] ?? `${r.status} Status`)
        .writeHeader('Content-Type', r.type)
        .writeHeader('Cache-Control', 'no-store')
        .writeHeader('X-Content-Type-Options', 'nosniff')
        .end(r.body, closeConnection);
    });
  }

  /** Replies with what `work` resolves to, 500 (logged by `onError`) when it throws. */
  reply(work: Promise<Reply>, onError: (err: unknown) => void): void {
    work.then(
      (r) => this.send(r),
      (err: unknown) => {
        onError(err);
        this.send(problem(500, 'internal error'));
      },
    );
  }

  /**
   * Reads the whole request body, at most `limit` bytes: past it the request is answered 413
   * (and the connection closed, since the rest of the body is not read) and `onBody` never runs.
   */
  readBody(limit: number, onBody: (body: Buffer) => void): void {
    const chunks: Buffer[] = [];
    let size = 0;
    this.res.onData((chunk, isLast) => {
      if (this.finished) return;
      size += chunk.byteLength;
      if (size > limit) {
        this.send(problem(413, `the request body is at most ${limit} bytes`), true);
        return;
      }
      // uWS reuses the chunk's memory after this call: copy it.
      chunks.push(Buffer.from(new Uint8Array(chunk)));
      if (isLast) onBody(Buffer.concat(chunks));
    });
  }
}
