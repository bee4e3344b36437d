// Runs the built CLI (`node bin/walcast.js ...`, compiled by `npm run build`) as a real child
// process: complete stdout lines as they come, stderr, exit code or signal, with timeouts.

import { spawn, type ChildProcessByStdio } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { Waiters } from './waiters.js';

/** bin/walcast.js of this checkout, found by walking up from this file (works from test/ and dist/test/). */
export const WALCAST_BIN: string = (() => {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = path.join(dir, 'bin', 'walcast.js');
    if (fs.existsSync(candidate) && fs.existsSync(path.join(dir, 'package.json'))) return candidate;
    const up = path.dirname(dir);
    if (up === dir) throw new Error('bin/walcast.js not found above test/helpers');
    dir = up;
  }
})();

export interface CliOptions {
  /** Variables added to (or, when undefined, removed from) the child's environment. */
  env?: Record<string, string | undefined>;
  /** Kill the child with SIGKILL after this long (default 30 s); `timedOut` is then true. */
  timeoutMs?: number;
  /** Options for node itself, before the script (e.g. --max-old-space-size=64). */
  nodeArgs?: string[];
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Complete stdout lines (a trailing unterminated fragment is in `partial`). */
  lines: string[];
  partial: string;
  stderr: string;
  stderrLines: string[];
  timedOut: boolean;
  ms: number;
}

/** The environment a child gets: ours, minus the test runner's loader hooks and any walcast settings. */
export function childEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.NODE_OPTIONS; // tap's TypeScript loader and coverage hooks: the CLI runs compiled JS
  for (const k of Object.keys(env)) if (/^(WALCAST_|TAP|_TAPJS_|TS_NODE_)/.test(k)) delete env[k];
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

/** A running `walcast` process. */
export class CliProcess {
  readonly child: ChildProcessByStdio<null, Readable, Readable>;
  readonly lines: string[] = [];
  partial = '';
  stderr = '';
  timedOut = false;
  /** Resolves once the process has exited and its pipes are closed (all output collected). */
  readonly closed: Promise<CliResult>;
  private readonly started = Date.now();
  private readonly waiters = new Waiters();
  private timer: NodeJS.Timeout | undefined;

  constructor(args: string[], opts: CliOptions = {}) {
    // Under tap, @tapjs/processinfo hooks every spawn and puts its loader back into NODE_OPTIONS
    // (slower start, extra signal handlers). env(1) removes it again and execs node in its place,
    // so the pid is node's own and signals reach it directly.
    const env = childEnv(opts.env);
    const unset = ['NODE_OPTIONS', ...Object.keys(process.env).filter((k) => k.startsWith('_TAPJS_'))].flatMap((k) => ['-u', k]);
    this.child = spawn('env', [...unset, process.execPath, ...(opts.nodeArgs ?? []), WALCAST_BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout.setEncoding('utf8');
    this.child.stderr.setEncoding('utf8');
    this.child.stdout.on('data', (chunk: string) => {
      const parts = (this.partial + chunk).split('\n');
      this.partial = parts.pop() ?? '';
      if (parts.length > 0) {
        this.lines.push(...parts);
        this.wake();
      }
    });
    // A reader that closes stdout early (see closeStdout) must not crash the test on EPIPE-like errors.
    this.child.stdout.on('error', () => {});
    this.child.stderr.on('data', (chunk: string) => {
      this.stderr += chunk;
      this.wake();
    });
    this.timer = setTimeout(() => {
      this.timedOut = true;
      this.child.kill('SIGKILL');
    }, opts.timeoutMs ?? 30_000);
    this.closed = new Promise<CliResult>((resolve, reject) => {
      this.child.once('error', reject);
      this.child.once('close', (code, signal) => {
        clearTimeout(this.timer);
        this.wake();
        resolve({
          code,
          signal,
          lines: [...this.lines],
          partial: this.partial,
          stderr: this.stderr,
          stderrLines: splitLines(this.stderr),
          timedOut: this.timedOut,
          ms: Date.now() - this.started,
        });
      });
    });
    this.closed.catch(() => {});
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get exited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  /** Complete stdout lines parsed as JSON. */
  json<T = Record<string, unknown>>(): T[] {
    return this.lines.map((l) => JSON.parse(l) as T);
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (!this.exited) this.child.kill(signal);
  }

  /** Stops reading: the child's next writes to stdout fail with EPIPE. */
  closeStdout(): void {
    this.child.stdout.destroy();
  }

  /** Resolves once `pred` holds (checked on every output and at exit); rejects after timeoutMs or on exit without it. */
  waitFor(pred: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
    return this.waiters.wait<void>(
      ({ resolve, reject }) => {
        if (pred()) {
          resolve();
          return true;
        }
        if (this.child.exitCode !== null || this.child.signalCode !== null || this.timedOut) {
          // Output may still be in the pipes: decide when they are closed.
          void this.closed.then(() => {
            if (pred()) resolve();
            else reject(new Error(`walcast exited (${this.child.exitCode ?? this.child.signalCode}) before ${what}; stderr:\n${this.stderr}`));
          });
          return true;
        }
        return false;
      },
      timeoutMs,
      () => new Error(`timed out after ${timeoutMs} ms waiting for ${what}; ${this.lines.length} lines so far; stderr:\n${this.stderr}`),
    );
  }

  /** Waits for at least n complete stdout lines. */
  waitForLines(n: number, timeoutMs = 15_000): Promise<void> {
    return this.waitFor(() => this.lines.length >= n, `${n} stdout lines`, timeoutMs);
  }

  /** Waits for the exit (and closed pipes), killing with SIGKILL after timeoutMs. */
  async wait(timeoutMs = 15_000): Promise<CliResult> {
    const timer = setTimeout(() => {
      this.timedOut = true;
      this.child.kill('SIGKILL');
    }, timeoutMs);
    try {
      return await this.closed;
    } finally {
      clearTimeout(timer);
    }
  }

  private wake(): void {
    this.waiters.notify();
  }
}

export function spawnCli(args: string[], opts: CliOptions = {}): CliProcess {
  return new CliProcess(args, opts);
}

/** Runs `walcast ...args` to completion. */
export function runCli(args: string[], opts: CliOptions = {}): Promise<CliResult> {
  return new CliProcess(args, opts).closed;
}

export function splitLines(text: string): string[] {
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/** Parses JSON lines, naming the offending line on failure. */
export function parseJsonLines<T = Record<string, unknown>>(lines: string[]): T[] {
  return lines.map((l, i) => {
    try {
      return JSON.parse(l) as T;
    } catch {
      throw new Error(`line ${i + 1} is not JSON: ${l.slice(0, 200)}`);
    }
  });
}
