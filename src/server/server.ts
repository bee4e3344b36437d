// The HTTP/WebSocket front (uWebSockets.js): /ws for clients, /healthz, /metrics, /status; the
// last two on a listener of their own when --metrics-port is given.
import uWS from 'uWebSockets.js';
import { CLOSE, SERVER_DEFAULTS, WS_PATH } from '../constants.js';
import type { Hub } from '../hub/hub.js';
import type { Logger } from '../log.js';
import { Admission, refusalText } from './admission.js';
import type { Handlers } from './handlers.js';
import { listenOn } from './listen.js';
import { Session, type SessionData } from './session.js';

/** uWS's own backpressure ceiling (1 GiB): a frame is only dropped past it. */
const UWS_BACKPRESSURE_CEILING = 1024 * 1024 * 1024;

export interface ServerOptions {
  host: string;
  port: number;
  /** Share the port(s) with other processes that also pass it (SO_REUSEPORT); else exclusive. */
  reusePort?: boolean;
  /** A second listener for /metrics and /status (and /healthz); they then leave the main port. */
  metricsHost?: string;
  metricsPort?: number | null;
  /** WebSockets open at once, and those of them without an accepted token (see Admission). */
  maxConnections?: number;
  maxPendingAuth?: number;
  /** False under --no-auth. */
  authRequired?: boolean;
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
  /**
   * WebSocket endpoints of other protocols on the same port (the Supabase endpoint,
   * src/supabase/route.ts): their sockets are counted, bounded and closed with the others.
   */
  sockets?: readonly SocketEndpoint[];
  /** More HTTP routes on the same port (the `walcast dev` demo page), before the 404. */
  routes?: (app: uWS.TemplatedApp) => void;
}

/** uWS's `message` and `drain` for a session's socket, whichever endpoint it came in by. */
export function sessionEvents<T extends { session: Session | null }>(
  hub: Hub,
  handlers: Handlers,
): Pick<uWS.WebSocketBehavior<T>, 'message' | 'drain'> {
  return {
    message: (ws, data, isBinary) => {
      const session = ws.getUserData().session;
      if (session && !session.closed) handlers.message(session, data, isBinary);
    },
    drain: (ws) => {
      const session = ws.getUserData().session;
      if (session && !session.closed) {
        session.drained();
        hub.drained(session);
      }
    },
  };
}

/** What the server lends an endpoint of another protocol (ServerOptions.sockets). */
export interface SocketHost {
  readonly admission: Admission;
  /** uWS's own backpressure ceiling (sessions close themselves far below it). */
  readonly backpressureCeiling: number;
  opened(session: Session): void;
  /** Its socket closed: counted, disposed, and everything it held in the handlers and the hub let go. */
  closed(session: Session): void;
  /** A session closed for being too slow (counted in the metrics). */
  slow(): void;
}

export interface SocketEndpoint {
  /** Its path, named in the 404 text. */
  readonly path: string;
  readonly name: string;
  attach(app: uWS.TemplatedApp, host: SocketHost): void;
}

export class Server {
  private readonly listenSockets: uWS.us_listen_socket[] = [];
  private readonly sessions = new Set<Session>();
  readonly admission: Admission;
  slowCloses = 0;
  port = 0;
  /** The metrics listener's port; null without --metrics-port. */
  metricsPort: number | null = null;

  constructor(private readonly o: ServerOptions) {
    this.admission = new Admission({
      maxConnections: o.maxConnections ?? SERVER_DEFAULTS.maxConnections,
      maxPendingAuth: o.maxPendingAuth ?? SERVER_DEFAULTS.maxPendingAuth,
      authRequired: o.authRequired ?? false,
    });
  }

  get clients(): number {
    return this.sessions.size;
  }

  async listen(): Promise<number> {
    const o = this.o;
    const separate = o.metricsPort !== undefined && o.metricsPort !== null;
    const app = uWS.App();
    this.webSockets(app);
    app.get('/healthz', (res) => this.healthz(res));
    if (!separate) this.operatorRoutes(app);
    o.routes?.(app);
    app.any('/*', (res) => {
      const more = separate ? '' : ', GET /metrics, GET /status';
      const others = (o.sockets ?? []).map((e) => `, ${e.name} at ${e.path}`).join('');
      res.cork(() => res.writeStatus('404 Not Found').end(`walcast: WebSocket at /ws${others}, GET /healthz${more}\n`));
    });
    const reuse = o.reusePort ?? false;
    const main = await listenOn(app, o.host, o.port, reuse, '--port');
    this.listenSockets.push(main.socket);
    this.port = main.port;
    if (separate) {
      const ops = uWS.App();
      ops.get('/healthz', (res) => this.healthz(res));
      this.operatorRoutes(ops);
      ops.any('/*', (res) => {
        res.cork(() => res.writeStatus('404 Not Found').end('walcast metrics listener: GET /metrics, GET /status, GET /healthz\n'));
      });
      try {
        const m = await listenOn(ops, o.metricsHost ?? o.host, o.metricsPort as number, reuse, '--metrics-port');
        this.listenSockets.push(m.socket);
        this.metricsPort = m.port;
      } catch (err) {
        this.close();
        throw err;
      }
    }
    return this.port;
  }

  /** Stops accepting, closes every client with 1001 (they resume elsewhere or later). */
  close(): void {
    for (const s of this.listenSockets.splice(0)) uWS.us_listen_socket_close(s);
    for (const s of [...this.sessions]) s.end(CLOSE.goingAway, 'server shutting down');
    this.sessions.clear();
  }

  private webSockets(app: uWS.TemplatedApp): void {
    const o = this.o;
    const host: SocketHost = {
      admission: this.admission,
      backpressureCeiling: UWS_BACKPRESSURE_CEILING,
      opened: (session) => this.sessions.add(session),
      closed: (session) => this.closed(session),
      slow: () => this.slowCloses++,
    };
    for (const endpoint of o.sockets ?? []) endpoint.attach(app, host);
    const admission = this.admission;
    const retryAfter = String(SERVER_DEFAULTS.refusalRetryAfterSec);
    app.ws<SessionData>(WS_PATH, {
      maxPayloadLength: o.maxFrameBytes,
      // Our own limit (checked before every send) closes a slow socket with 4008; uWS's limit is
      // set far above it so uWS never drops a frame or the connection on its own. Should it
      // drop one anyway (send() === 2), the session closes with 4008 too.
      maxBackpressure: UWS_BACKPRESSURE_CEILING,
      closeOnBackpressureLimit: 0,
      idleTimeout: o.idleTimeoutSec, // 0: never (no pings either); else 8 to 960 s, checked in src/config.ts
      sendPingsAutomatically: true,
      upgrade: (res, req, context) => {
        // The request is only valid during this call: the token is copied into a JS string now.
        const token = req.getQuery('token');
        // Past a cap: a plain 503 and the connection closed, so its descriptor is free at once.
        const refused = admission.check(!!token);
        if (refused) {
          res.cork(() =>
            res
              .writeStatus('503 Service Unavailable')
              .writeHeader('Retry-After', retryAfter)
              .writeHeader('Content-Type', 'text/plain; charset=utf-8')
              .writeHeader('X-Walcast-Refused', refused)
              .end(refusalText(refused, admission.limits), true),
          );
          return;
        }
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
        const session = new Session(ws, o.maxBackpressure, () => this.slowCloses++, () => admission.authenticated());
        const token = data.token;
        session.awaitingAuth = admission.opened(token !== null);
        data.session = session;
        data.token = null;
        this.sessions.add(session);
        o.handlers.open(session, token);
      },
      ...sessionEvents<SessionData>(o.hub, o.handlers),
      close: (ws) => {
        const session = ws.getUserData().session;
        if (session) this.closed(session);
      },
    });
  }

  /** A session's socket closed (uWS `close`), whichever endpoint it came in by: all it held goes. */
  private closed(session: Session): void {
    this.admission.closed(session.awaitingAuth);
    session.awaitingAuth = false;
    session.dispose();
    this.o.handlers.closed(session);
    this.sessions.delete(session);
    this.o.hub.removePeer(session);
  }

  private healthz(res: uWS.HttpResponse): void {
    const ok = this.o.healthy();
    res.cork(() => res.writeStatus(ok ? '200 OK' : '503 Service Unavailable').end(ok ? 'ok\n' : 'replication is not streaming\n'));
  }

  private operatorRoutes(app: uWS.TemplatedApp): void {
    const o = this.o;
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
  }
}
