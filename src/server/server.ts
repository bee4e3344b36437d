// The HTTP/WebSocket front (uWebSockets.js): /ws for clients, /healthz, /metrics.
import uWS from 'uWebSockets.js';
import { CLOSE, WS_PATH } from '../constants.js';
import { ListenError } from '../errors.js';
import type { Hub } from '../hub/hub.js';
import type { Logger } from '../log.js';
import type { Handlers } from './handlers.js';
import { Session, type SessionData } from './session.js';

/** uWS's own backpressure ceiling (1 GiB): a frame is only dropped past it. */
const UWS_BACKPRESSURE_CEILING = 1024 * 1024 * 1024;

export interface ServerOptions {
  host: string;
  port: number;
  maxBackpressure: number;
  maxFrameBytes: number;
  idleTimeoutSec: number;
  hub: Hub;
  handlers: Handlers;
  log: Logger;
  healthy: () => boolean;
  metrics: () => Promise<{ contentType: string; body: string }>;
  /** What `GET /status` answers (walcast status): clients, subscriptions, window. */
  status?: () => unknown;
  /** More HTTP routes on the same port (the `walcast dev` demo page), before the 404. */
  routes?: (app: uWS.TemplatedApp) => void;
}

export class Server {
  private listenSocket: uWS.us_listen_socket | null = null;
  private readonly sessions = new Set<Session>();
  slowCloses = 0;
  port = 0;

  constructor(private readonly o: ServerOptions) {}

  get clients(): number {
    return this.sessions.size;
  }

  listen(): Promise<number> {
    const o = this.o;
    const app = uWS.App();
    app.ws<SessionData>(WS_PATH, {
      maxPayloadLength: o.maxFrameBytes,
      // Our own limit (checked before every send) closes a slow socket with 4008; uWS's limit is
      // set far above it so uWS never drops a frame or the connection on its own. Should it
      // drop one anyway (send() === 2), the session closes with 4008 too.
      maxBackpressure: UWS_BACKPRESSURE_CEILING,
      closeOnBackpressureLimit: 0,
      idleTimeout: o.idleTimeoutSec,
      sendPingsAutomatically: true,
      upgrade: (res, req, context) => {
        // The request is only valid during this call: the token is copied into a JS string now.
        const token = req.getQuery('token');
        res.upgrade<SessionData>(
          { session: null, token: token ? String(token) : null },
          req.getHeader('sec-websocket-key'),
          req.getHeader('sec-websocket-protocol'),
          req.getHeader('sec-websocket-extensions'),
          context,
        );
      },
      open: (ws) => {
        const data = ws.getUserData();
        const session = new Session(ws, o.maxBackpressure, () => this.slowCloses++);
        data.session = session;
        const token = data.token;
        data.token = null;
        this.sessions.add(session);
        o.handlers.open(session, token);
      },
      message: (ws, data, isBinary) => {
        const session = ws.getUserData().session;
        if (session && !session.closed) o.handlers.message(session, data, isBinary);
      },
      drain: (ws) => {
        const session = ws.getUserData().session;
        if (session && !session.closed) o.hub.drained(session);
      },
      close: (ws) => {
        const session = ws.getUserData().session;
        if (!session) return;
        session.dispose();
        this.sessions.delete(session);
        o.hub.removePeer(session);
      },
    });
    app.get('/healthz', (res) => {
      const ok = o.healthy();
      res.cork(() => res.writeStatus(ok ? '200 OK' : '503 Service Unavailable').end(ok ? 'ok\n' : 'replication is not streaming\n'));
    });
    app.get('/metrics', (res) => {
      let aborted = false;
      res.onAborted(() => (aborted = true));
      o.metrics().then(
        (m) => !aborted && res.cork(() => res.writeHeader('Content-Type', m.contentType).end(m.body)),
        () => !aborted && res.cork(() => res.writeStatus('500 Internal Server Error').end()),
      );
    });
    app.get('/status', (res) => {
      const body = JSON.stringify(o.status?.() ?? {});
      res.cork(() => res.writeHeader('Content-Type', 'application/json').end(body));
    });
    o.routes?.(app);
    app.any('/*', (res) => {
      res.cork(() => res.writeStatus('404 Not Found').end('walcast: WebSocket at /ws, GET /healthz, GET /metrics, GET /status\n'));
    });
    return new Promise((resolve, reject) => {
      app.listen(o.host, o.port, (token) => {
        if (!token) {
          reject(new ListenError(`cannot listen on ${o.host}:${o.port}`, 'is another program using that port? pick another with --port (0 picks a free one)'));
          return;
        }
        this.listenSocket = token;
        this.port = uWS.us_socket_local_port(token);
        resolve(this.port);
      });
    });
  }

  /** Stops accepting, closes every client with 1001 (they resume elsewhere or later). */
  close(): void {
    if (this.listenSocket) uWS.us_listen_socket_close(this.listenSocket);
    this.listenSocket = null;
    for (const s of [...this.sessions]) s.end(CLOSE.goingAway, 'server shutting down');
    this.sessions.clear();
  }
}
