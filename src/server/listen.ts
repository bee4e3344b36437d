// Listening with uWebSockets.js, exclusively unless sharing is asked for. uWS sets SO_REUSEPORT
// by default, so a second daemon on a busy port would start "successfully" and the kernel would
// split the connections between the two (issue #11 item 12).
import net from 'node:net';
import uWS from 'uWebSockets.js';
import { ListenError, PortInUseError } from '../errors.js';

/** uSockets' LIBUS_LISTEN_EXCLUSIVE_PORT: no SO_REUSEPORT (the enum is not exported at run time). */
const LIBUS_LISTEN_EXCLUSIVE_PORT = 1;
const LIBUS_LISTEN_DEFAULT = 0;

/** This uWS build takes (host, port, options, cb); its typings only list (port, options, cb). */
type ListenWithOptions = (host: string, port: number, options: number, cb: (s: uWS.us_listen_socket | false) => void) => uWS.TemplatedApp;

export interface Listening {
  socket: uWS.us_listen_socket;
  port: number;
}

/**
 * Listens on host:port; `what` names the listener in errors ("--port", "--metrics-port").
 * A port taken by another process fails with PortInUseError (also when that process shares
 * it, unless both use `reusePort`); anything else with ListenError and the system's reason.
 */
export function listenOn(app: uWS.TemplatedApp, host: string, port: number, reusePort: boolean, what: string): Promise<Listening> {
  return new Promise((resolve, reject) => {
    const listen = app.listen.bind(app) as unknown as ListenWithOptions;
    listen(host, port, reusePort ? LIBUS_LISTEN_DEFAULT : LIBUS_LISTEN_EXCLUSIVE_PORT, (socket) => {
      if (socket) resolve({ socket, port: uWS.us_socket_local_port(socket) });
      else diagnose(host, port, reusePort, what).then(reject, reject);
    });
  });
}

/**
 * Fails now if host:port cannot be listened on (a fixed port only): `walcast dev` asks before it
 * spends seconds starting a database. The port may still be taken before it listens.
 */
export async function checkPortFree(host: string, port: number, what: string): Promise<void> {
  if (port === 0 || (await bindError(host, port)) === null) return;
  throw await diagnose(host, port, false, what);
}

/** The error code of binding host:port exclusively with Node (bound and released), or null. */
function bindError(host: string, port: number): Promise<string | null> {
  return new Promise<string | null>((resolve) => {
    const probe = net.createServer();
    probe.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'unknown'));
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve(null)));
  });
}

/** uWS says only "no": bind once more with Node to learn why. */
async function diagnose(host: string, port: number, reusePort: boolean, what: string): Promise<Error> {
  const code = await bindError(host, port);
  const where = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  if (code === 'EADDRINUSE') {
    return new PortInUseError(
      `port ${where} is already in use`,
      reusePort
        ? `another process listens there without --reuse-port (both must pass it to share the port); or pick another ${what} (0 picks a free one)`
        : `is another walcast (or program) running there? stop it, or pick another ${what} (0 picks a free one); --reuse-port shares a port on purpose between daemons that all pass it`,
    );
  }
  const why = code === 'EADDRNOTAVAIL' ? ': not an address of this machine' : code === 'EACCES' ? ': permission denied (ports below 1024 need privileges)' : code ? ` (${code})` : '';
  return new ListenError(`cannot listen on ${where}${why}`, `check --host and ${what} (0 picks a free port)`);
}
