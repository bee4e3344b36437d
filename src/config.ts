// Configuration resolved in one place: command-line flag, then environment variable, then
// default, each value validated into a typed error that says what to pass instead.
import { DEFAULTS } from './constants.js';
import { ConfigError } from './errors.js';
import { checkDatabaseUrl } from './pg/connect.js';
import { parsePosition, type Position } from './capture/position.js';

export type Env = Record<string, string | undefined>;

export interface Config {
  db: string;
  slot: string;
  since: Position | null;
  verbose: boolean;
  logLevel: string;
}

export interface Flags {
  db?: string;
  slot?: string;
  since?: string;
  verbose?: boolean;
  logLevel?: string;
}

const SLOT_RE = /^[a-z0-9_]{1,63}$/;

export function resolveConfig(flags: Flags, env: Env = process.env): Config {
  const verbose = flags.verbose ?? truthy(env.WALCAST_VERBOSE);
  const since = flags.since ?? env.WALCAST_SINCE;
  return {
    db: resolveDb(flags.db, env),
    slot: resolveSlot(flags.slot ?? env.WALCAST_SLOT ?? DEFAULTS.slot),
    since: since ? parsePosition(since) : null,
    verbose,
    logLevel: flags.logLevel ?? env.WALCAST_LOG_LEVEL ?? (verbose ? 'debug' : 'info'),
  };
}

export function resolveDb(flag: string | undefined, env: Env = process.env): string {
  const url = flag ?? env.WALCAST_DB ?? env.DATABASE_URL;
  if (!url) throw new ConfigError('no database given', 'pass --db postgres://USER:PASSWORD@HOST:PORT/DATABASE or set DATABASE_URL');
  checkDatabaseUrl(url);
  return url;
}

export function resolveSlot(name: string): string {
  if (!SLOT_RE.test(name)) {
    throw new ConfigError(`bad slot name ${JSON.stringify(name)}`, 'slot names are 1-63 lower-case letters, digits and underscores');
  }
  return name;
}

function truthy(v: string | undefined): boolean {
  return v === '1' || v === 'true' || v === 'yes';
}
