// Connection settings and the translation of connection failures into errors that name the
// cause and the fix. Every command that touches Postgres goes through here.
import pg from 'pg';
import { PG_CONNECT_TIMEOUT_MS } from '../constants.js';
import { BadUrlError, DbAuthError, DbUnreachableError, DaemonError } from '../errors.js';
import { isAuthFailure, pgCode, SQLSTATE } from './sqlstate.js';

/** Validates a postgres:// URL early, so a typo is not reported as a network failure. */
export function checkDatabaseUrl(url: string): URL {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new BadUrlError(
      `malformed database URL: ${redact(url)}`,
      'pass --db postgres://USER:PASSWORD@HOST:PORT/DATABASE (or set DATABASE_URL)',
    );
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    throw new BadUrlError(
      `database URL must start with postgres:// or postgresql://, got ${parsed.protocol}//`,
      'pass --db postgres://USER:PASSWORD@HOST:PORT/DATABASE (or set DATABASE_URL)',
    );
  }
  return parsed;
}

/**
 * The URL with `application_name` set (unless it names one already): every connection of the
 * daemon, the replication one included, shows under that name in pg_stat_activity and
 * pg_stat_replication (a cluster node's is `walcast <node-id>`).
 */
export function withApplicationName(url: string, name: string): string {
  const parsed = checkDatabaseUrl(url);
  if (parsed.searchParams.has('application_name')) return url;
  parsed.searchParams.set('application_name', name);
  return parsed.toString();
}

export function clientConfig(url: string, extra: pg.ClientConfig = {}): pg.ClientConfig {
  checkDatabaseUrl(url);
  return { connectionString: url, connectionTimeoutMillis: PG_CONNECT_TIMEOUT_MS, ...extra };
}

/** Connects a plain client, translating failures. */
export async function connect(url: string, extra: pg.ClientConfig = {}): Promise<pg.Client> {
  const client = new pg.Client(clientConfig(url, extra));
  // An idle client that loses its server emits 'error'; without a listener that would crash.
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => {});
    throw explainConnectError(err, url);
  }
  return client;
}

/** Query parameters libpq reads a secret from (`?password=`, `?sslpassword=`). */
const SECRET_PARAM = /pass/i;

/**
 * Passwords never reach logs or error lines. Everything between `://` and the last `@` is
 * taken as the user part (an unencoded `@` or `/` in a password moves a parser's boundaries, the
 * last `@` does not); it shows as `USER:***@` only when it is unambiguous, else as `***@`.
 * Password-like query parameters show as `***`. A URL that does not parse shows its scheme only,
 * and a string without a scheme (a key=value DSN, a bare password) is not shown at all.
 */
export function redact(url: string): string {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*:)\/\/(.*)$/s.exec(url);
  if (!m) return '(not shown: it has no postgres:// scheme and may hold a password)';
  const [, scheme, rest] = m;
  try {
    new URL(url);
  } catch {
    return `${scheme}//... (the rest not shown: it does not parse and may hold a password)`;
  }
  const at = rest.lastIndexOf('@');
  let user = '';
  if (at >= 0) {
    const info = rest.slice(0, at);
    user = /[@/?#[\]\s]/.test(info) ? '***@' : `${info.split(':')[0]}${info.includes(':') ? ':***' : ''}@`;
  }
  const tail = rest.slice(at + 1).split('#')[0];
  const q = tail.indexOf('?');
  if (q < 0) return `${scheme}//${user}${tail}`;
  const params = tail
    .slice(q + 1)
    .split('&')
    .map((p) => {
      const eq = p.indexOf('=');
      let text: string;
      try {
        text = decodeURIComponent(p.replace(/\+/g, ' '));
      } catch {
        return '***'; // a parameter that does not decode could be anything
      }
      // `?password=`, and `?options=-c password=...`-like values.
      return SECRET_PARAM.test(text) ? `${eq < 0 ? p : p.slice(0, eq)}=***` : p;
    });
  return `${scheme}//${user}${tail.slice(0, q)}?${params.join('&')}`;
}

export function explainConnectError(err: unknown, url: string): Error {
  if (err instanceof DaemonError) return err;
  const code = pgCode(err);
  let where = redact(url);
  try {
    // The host is what follows the last `@` (see redact): a password with an unencoded `/`
    // would otherwise be read as host and port.
    const m = /^([A-Za-z][A-Za-z0-9+.-]*:)\/\/(.*)$/s.exec(url);
    const u = new URL(m ? `${m[1]}//${m[2].slice(m[2].lastIndexOf('@') + 1)}` : url);
    if (m) where = `${u.hostname || 'localhost'}:${u.port || 5432}`;
  } catch {
    /* keep the redacted URL */
  }
  const msg = (err as { message?: string } | null)?.message ?? String(err);
  if (isAuthFailure(code)) {
    return new DbAuthError(`Postgres refused the login at ${where}: ${msg}`, 'check the user and password in the URL, and pg_hba.conf', { cause: err });
  }
  switch (code) {
    case 'ECONNREFUSED':
    case 'ENOTFOUND':
    case 'EHOSTUNREACH':
    case 'ETIMEDOUT':
    case 'EAI_AGAIN':
      return new DbUnreachableError(`cannot reach Postgres at ${where} (${code})`, 'is the server running and listening there? check --db / DATABASE_URL', { cause: err });
    case SQLSTATE.invalidCatalogName:
      return new DbUnreachableError(`${msg} (at ${where})`, 'create the database or fix its name in the URL', { cause: err });
    case SQLSTATE.cannotConnectNow:
      return new DbUnreachableError(`Postgres at ${where} is starting up or shutting down`, 'try again in a moment', { cause: err });
  }
  if (/timeout/i.test(msg)) {
    return new DbUnreachableError(`timed out connecting to Postgres at ${where}`, 'is the host reachable and the port right?', { cause: err });
  }
  return err instanceof Error ? err : new Error(msg);
}
