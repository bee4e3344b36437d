// Plumbing shared by the benchmark orchestrators (bench/auth.ts, bench/channels.ts,
// bench/delivery.ts): logging, sleeping, option parsing, open-file limits, slot clean-up and
// the main() wrapper. Nothing here measures anything.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type pg from 'pg';
import { nowMs } from './rpc.js';
import { fmtInt } from './stats.js';

export const log = (msg: string): void => {
  process.stderr.write(`[bench] ${msg}\n`);
};

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Sleeps until the wall clock (nowMs()) reaches `at`, in steps of 50 ms at most. */
export async function sleepUntil(at: number): Promise<void> {
  for (;;) {
    const left = at - nowMs();
    if (left <= 0) return;
    await sleep(Math.min(left, 50));
  }
}

export function sum(xs: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += xs[i];
  return s;
}

/** The parts in one array, sorted ascending (NaN last). */
export function concatSorted(parts: ArrayLike<number>[]): Float64Array {
  const out = new Float64Array(sum(parts.map((p) => p.length)));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out.sort();
}

/** A positive integer option, or usage(…) with what was wrong. */
export function positive(v: string | undefined, name: string, usage: (msg: string) => never): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) usage(`--${name} must be a positive integer, got ${JSON.stringify(v)}`);
  return n;
}

/** A positive (finite) number option, or usage(…) with what was wrong. */
export function positiveNumber(v: string | undefined, name: string, usage: (msg: string) => never): number {
  const n = Number(v);
  if (!(n > 0) || !Number.isFinite(n)) usage(`--${name} must be a positive number, got ${JSON.stringify(v)}`);
  return n;
}

/** A number option of 0 or more, or usage(…) with what was wrong. */
export function nonNegative(v: string | undefined, name: string, usage: (msg: string) => never): number {
  const n = Number(v);
  if (!(n >= 0) || !Number.isFinite(n)) usage(`--${name} must be 0 or more, got ${JSON.stringify(v)}`);
  return n;
}

/** A percentage option (0-100), or usage(…) with what was wrong. */
export function pct(v: string | undefined, name: string, usage: (msg: string) => never): number {
  const n = nonNegative(v, name, usage);
  if (n > 100) usage(`--${name} is a percentage (0-100), got ${JSON.stringify(v)}`);
  return n;
}

/** The option parsers above, each bound to one orchestrator's usage(). */
export function optionParsers(usage: (msg: string) => never): Record<'positive' | 'positiveNumber' | 'nonNegative' | 'pct', (v: string | undefined, name: string) => number> {
  return {
    positive: (v, name) => positive(v, name, usage),
    positiveNumber: (v, name) => positiveNumber(v, name, usage),
    nonNegative: (v, name) => nonNegative(v, name, usage),
    pct: (v, name) => pct(v, name, usage),
  };
}

/** Runs main(): exit 0 when it resolves, 1 (with the stack) when it throws. */
export function runMain(main: () => Promise<void>): void {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}

// ── open files ────────────────────────────────────────────────────────────────────────────
// The daemon holds one socket per connection, each client process its share; they inherit this
// process's limit.

export function openFilesLimit(): { soft: number; hard: number } {
  const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  const num = (s: string | undefined): number => (s === undefined ? Number.NaN : s === 'unlimited' ? Infinity : Number(s));
  return { soft: num(m?.[1]), hard: num(m?.[2]) };
}

/**
 * Exits (2) saying what to do when `connections` sockets would not fit under the open-file
 * limit. With `reexec`, when only the soft limit is too low, this process first runs itself
 * again under `ulimit -S -n` (once). `smaller` names the options that make a run smaller.
 */
export function ensureOpenFiles(connections: number, smaller: string, reexec: boolean): void {
  const need = connections + 1_024;
  let lim: { soft: number; hard: number };
  try {
    lim = openFilesLimit();
  } catch {
    return; // not Linux: let the connects tell
  }
  if (!(lim.soft < need)) return;
  if (reexec && lim.hard >= need && !process.env.WALCAST_BENCH_ULIMIT_RAISED) {
    log(`ulimit -n is ${lim.soft}; ${fmtInt(connections)} connections need ${need}: running again under ulimit -S -n ${need}`);
    const r = spawnSync('/bin/sh', ['-c', 'ulimit -S -n "$1" && shift && exec "$@"', 'sh', String(need), process.execPath, ...process.execArgv, ...process.argv.slice(1)], {
      stdio: 'inherit',
      env: { ...process.env, WALCAST_BENCH_ULIMIT_RAISED: '1' },
    });
    process.exit(r.status ?? 1);
  }
  process.stderr.write(
    `bench: ${fmtInt(connections)} connections need ${need} open files per process, and ulimit -n is ${lim.soft} (hard limit ${lim.hard}).\n` +
      `Raise it (e.g. \`ulimit -n ${need}\`, as root if the hard limit is lower) or run smaller (${smaller}).\n`,
  );
  process.exit(2);
}

// ── database ──────────────────────────────────────────────────────────────────────────────

/** Drops a daemon's slot once its walsender has let go (logs, does not throw, when it cannot). */
export async function dropSlot(db: pg.Client, slot: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const { rows } = await db.query<{ active: boolean }>(`select active from pg_replication_slots where slot_name = $1`, [slot]);
    if (rows.length === 0) return;
    if (!rows[0].active || Date.now() > deadline) break;
    await sleep(50);
  }
  await db.query(`select pg_drop_replication_slot($1)`, [slot]).catch((err: Error) => log(`could not drop the slot: ${err.message}`));
}
