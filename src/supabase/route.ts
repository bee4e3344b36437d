// The Supabase endpoint's WebSocket route, on the walcast port: GET /realtime/v1/websocket
// ?apikey=JWT&vsn=1.0.0|2.0.0. The apikey is verified before the upgrade (as Supabase does: a
// refused one is an HTTP 401, not a socket); it may be an anon key with only a `role`. The
// socket is then a walcast Session, counted and bounded like those of /ws.
import uWS from 'uWebSockets.js';
import type { TokenVerifier, VerifiedToken } from '../auth/jwt.js';
import { CLOSE, SERVER_DEFAULTS, SUPABASE } from '../constants.js';
import { AuthError } from '../errors.js';
import type { Hub } from '../hub/hub.js';
import { refusalText } from '../server/admission.js';
import { sessionEvents, type SocketEndpoint, type SocketHost } from '../server/server.js';
import type { Handlers } from '../server/handlers.js';
import type { SessionData } from '../server/session.js';
import { SupabaseConnection, type ConnectionDeps } from './connection.js';
import { parseVsn } from './phoenix.js';
import type { Vsn } from './phoenix.types.js';
import { PhoenixSession } from './session.js';

export interface SupabaseEndpointOptions {
  hub: Hub;
  handlers: Handlers;
  /** Null under --no-auth: the apikey is not read, identities are null. */
  verify: TokenVerifier | null;
  deps: Omit<ConnectionDeps, 'handlers' | 'maxHeldBytes'>;
  maxBackpressure: number;
  maxFrameBytes: number;
  idleTimeoutSec: number;
}

interface SocketData {
  session: PhoenixSession | null;
  conn: SupabaseConnection | null;
  vsn: Vsn;
  verified: VerifiedToken | null;
}

/** What `/status` and the metrics say of the endpoint. */
export interface SupabaseStats {
  /** Connections open on the endpoint (also counted among walcast's clients). */
  connections: number;
  /** Phoenix channels they have joined or are joining. */
  channels: number;
}

/** The endpoint, for ServerOptions.sockets, with its figures. */
export function supabaseEndpoint(o: SupabaseEndpointOptions): SocketEndpoint & { stats(): SupabaseStats } {
  const open = new Set<SupabaseConnection>();
  return {
    path: SUPABASE.wsPath,
    name: 'Supabase Realtime',
    attach: (app, host) => route(app, o, host, open),
    stats: () => {
      let channels = 0;
      for (const c of open) channels += c.size;
      return { connections: open.size, channels };
    },
  };
}

function route(app: uWS.TemplatedApp, o: SupabaseEndpointOptions, host: SocketHost, open: Set<SupabaseConnection>): void {
  const retryAfter = String(SERVER_DEFAULTS.refusalRetryAfterSec);
  app.ws<SocketData>(SUPABASE.wsPath, {
    maxPayloadLength: o.maxFrameBytes,
    maxBackpressure: host.backpressureCeiling,
    closeOnBackpressureLimit: 0,
    idleTimeout: o.idleTimeoutSec,
    sendPingsAutomatically: true,
    upgrade: (res, req, context) => {
      // The request lives only during this call: everything needed is copied now.
      const apikey = req.getQuery('apikey') ?? '';
      const vsn = parseVsn(req.getQuery('vsn'));
      const key = req.getHeader('sec-websocket-key');
      const protocol = req.getHeader('sec-websocket-protocol');
      const extensions = req.getHeader('sec-websocket-extensions');
      if (vsn === null) {
        res.cork(() => res.writeStatus('400 Bad Request').end('walcast: vsn must be 1.0.0 or 2.0.0\n', true));
        return;
      }
      const refused = host.admission.check(true);
      if (refused) {
        res.cork(() =>
          res.writeStatus('503 Service Unavailable').writeHeader('Retry-After', retryAfter).writeHeader('X-Walcast-Refused', refused).end(refusalText(refused, host.admission.limits), true),
        );
        return;
      }
      const upgrade = (verified: VerifiedToken | null) =>
        res.cork(() => res.upgrade<SocketData>({ session: null, conn: null, vsn, verified }, key, protocol, extensions, context));
      if (!o.verify) {
        upgrade(null);
        return;
      }
      if (apikey === '') {
        res.cork(() => res.writeStatus('401 Unauthorized').end('walcast: apikey is required (?apikey=JWT)\n', true));
        return;
      }
      let aborted = false;
      res.onAborted(() => (aborted = true));
      o.verify(apikey, { anonymous: true }).then(
        (v) => {
          if (aborted) return;
          if (v.expiresAt !== null && v.expiresAt <= Date.now()) throw new AuthError('the token has expired');
          upgrade(v);
        },
        (err: unknown) => {
          if (aborted) return;
          const why = err instanceof AuthError ? err.message : 'the token could not be verified';
          res.cork(() => res.writeStatus('401 Unauthorized').writeHeader('Content-Type', 'text/plain; charset=utf-8').end(`walcast: apikey refused: ${why}\n`, true));
        },
      ).catch(() => {
        if (!aborted) res.cork(() => res.writeStatus('401 Unauthorized').end('walcast: apikey refused: the token has expired\n', true));
      });
    },
    open: (ws) => {
      const data = ws.getUserData();
      const session = new PhoenixSession(ws as unknown as uWS.WebSocket<SessionData>, o.maxBackpressure, () => host.slow());
      session.supabaseTokens = true;
      session.awaitingAuth = host.admission.opened(true);
      o.handlers.adopt(session);
      const v = data.verified;
      data.verified = null;
      if (v) {
        session.identity = v.identity;
        session.armExpiry(v.expiresAt, () => session.end(CLOSE.authFailed, 'apikey expired'));
      }
      data.session = session;
      data.conn = new SupabaseConnection(session, data.vsn, { ...o.deps, handlers: o.handlers, maxHeldBytes: o.maxBackpressure });
      open.add(data.conn);
      host.opened(session);
    },
    ...sessionEvents<SocketData>(o.hub, o.handlers),
    close: (ws) => {
      const data = ws.getUserData();
      const session = data.session;
      if (!session) return;
      if (data.conn) {
        data.conn.closed();
        open.delete(data.conn);
      }
      host.closed(session);
    },
  });
}
