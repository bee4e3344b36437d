// Connection settings and the translation of connection failures into errors that name the
// cause and the fix. Every command that touches Postgres goes through here.
import pg from 'pg';
import { BadUrlError, DbAuthError, DbUnreachableError, WalcastError } from '../errors.js';

const CONNECT_TIMEOUT_MS = 5_000;

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

export function clientConfig(url: string, extra: pg.ClientConfig = {}): pg.ClientConfig {
  checkDatabaseUrl(url);
  return { connectionString: url, connectionTimeoutMillis: CONNECT_TIMEOUT_MS, ...extra };
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

/** Passwords never reach logs or error lines. */
export function redact(url: string): string {
  return url.replace(/(\/\/[^:/@]+:)[^@]*@/, '$1***@');
}

export function explainConnectError(err: unknown, url: string): Error {
  if (err instanceof WalcastError) return err;
  const e = err as { code?: string; message?: string };
  let where = redact(url);
  try {
    const u = new URL(url);
    where = `${u.hostname || 'localhost'}:${u.port || 5432}`;
  } catch {
    /* keep the redacted URL */
  }
  const msg = e?.message ?? String(err);
  switch (e?.code) {
    case 'ECONNREFUSED':
    case 'ENOTFOUND':
    case 'EHOSTUNREACH':
    case 'ETIMEDOUT':
    case 'EAI_AGAIN':
      return new DbUnreachableError(`cannot reach Postgres at ${where} (${e.code})`, 'is the server running and listening there? check --db / DATABASE_URL', { cause: err });
    case '28P01':
    case '28000':
      return new DbAuthError(`Postgres refused the login at ${where}: ${msg}`, 'check the user and password in the URL, and pg_hba.conf', { cause: err });
    case '3D000':
      return new DbUnreachableError(`${msg} (at ${where})`, 'create the database or fix its name in the URL', { cause: err });
    case '57P03':
      return new DbUnreachableError(`Postgres at ${where} is starting up or shutting down`, 'try again in a moment', { cause: err });
  }
  if (/timeout/i.test(msg)) {
    return new DbUnreachableError(`timed out connecting to Postgres at ${where}`, 'is the host reachable and the port right?', { cause: err });
  }
  return err instanceof Error ? err : new Error(msg);
}
