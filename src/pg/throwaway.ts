// A disposable PostgreSQL cluster in a temp dir, for tests and `walcast dev`. Tuned for speed
// over durability (fsync off) but keeps synchronous_commit on so committed data survives an
// immediate (crash-like) restart.

import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { findPostgresBinaries, killFromPidFile, postgresRunAs, runTool, runToolSync, type Runner } from './binaries.js';
import { PostgresStartError } from '../errors.js';
import { freePort } from '../util/free-port.js';

export { findPostgresBinaries } from './binaries.js';

export interface ThrowawayOptions {
  /** extra postgresql.conf settings, e.g. { max_slot_wal_keep_size: '64MB' } */
  settings?: Record<string, string | number>;
  /** log to stderr? default false; the server log is kept at `${dataDir}/postgres.log` */
  verbose?: boolean;
}

export interface ThrowawayPostgres {
  readonly url: string;
  readonly port: number;
  readonly host: string;
  readonly dataDir: string;
  /** the server log, `${dataDir}/postgres.log` */
  readonly logFile: string;
  /** connection URL for another database / user on the same cluster */
  urlFor(opts: { database?: string; user?: string; password?: string }): string;
  /** restart on the same port; mode 'fast' (default) or 'immediate' (crash-like) */
  restart(mode?: 'fast' | 'immediate' | 'smart'): Promise<void>;
  /** stops the server, keeps the dir */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  /** starts again after stop() */
  start(): Promise<void>;
  /** stops (immediate) and removes the directory; idempotent; never throws */
  destroy(): Promise<void>;
  /** last N lines of the server log, for test failure messages */
  logTail(lines?: number): string;
}

const HOST = '127.0.0.1';
const START_ATTEMPTS = 3;
const BASE_SETTINGS: Record<string, string | number> = {
  wal_level: 'logical',
  max_replication_slots: 20,
  max_wal_senders: 20,
  listen_addresses: HOST,
  fsync: 'off',
  full_page_writes: 'off',
  shared_buffers: '64MB',
  max_connections: 200,
  wal_sender_timeout: '60s',
};

const tail = (text: string, lines = 20): string => text.trimEnd().split('\n').slice(-lines).join('\n');

class Cluster implements ThrowawayPostgres {
  readonly host = HOST;
  readonly dataDir: string;
  readonly logFile: string;
  port = 0;
  private running = false;
  private destroying: Promise<void> | undefined;
  private baseConf = '';
  private echo: NodeJS.Timeout | undefined;

  constructor(
    private readonly runner: Runner,
    private readonly settings: Record<string, string | number>,
  ) {
    this.dataDir = runner.dataDir;
    this.logFile = path.join(this.dataDir, 'postgres.log');
  }

  get url(): string {
    return this.urlFor({});
  }

  urlFor(opts: { database?: string; user?: string; password?: string }): string {
    const user = encodeURIComponent(opts.user ?? 'postgres');
    const pass = opts.password === undefined ? '' : `:${encodeURIComponent(opts.password)}`;
    return `postgres://${user}${pass}@${HOST}:${this.port}/${encodeURIComponent(opts.database ?? 'postgres')}`;
  }

  async initdb(): Promise<void> {
    const args = ['-D', this.dataDir, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--no-sync'];
    let r = await runTool(this.runner, 'initdb', [...args, '--locale=C.UTF-8']);
    if (r.code !== 0 && /locale/i.test(r.output)) {
      // initdb empties the dir it failed in, but be sure before the second attempt.
      for (const f of await fsp.readdir(this.dataDir)) await fsp.rm(path.join(this.dataDir, f), { recursive: true });
      r = await runTool(this.runner, 'initdb', [...args, '--no-locale']);
    }
    if (r.code !== 0) throw new PostgresStartError(`initdb failed (exit ${r.code}):\n${tail(r.output)}`);
    this.baseConf = await fsp.readFile(path.join(this.dataDir, 'postgresql.conf'), 'utf8');
  }

  /** Rewrites postgresql.conf (not .auto.conf, so a test's ALTER SYSTEM RESET ALL keeps them). */
  async writeConf(): Promise<void> {
    const all = { ...BASE_SETTINGS, port: this.port, unix_socket_directories: this.dataDir, ...this.settings };
    const lines = Object.entries(all).map(([k, v]) => {
      if (!/^[a-z_][a-z0-9_.]*$/i.test(k)) throw new Error(`bad setting name: ${JSON.stringify(k)}`);
      return typeof v === 'number' ? `${k} = ${v}` : `${k} = '${v.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
    });
    // Rewriting in place (even as root) keeps the file's owner, so the postgres user can read it.
    await fsp.writeFile(path.join(this.dataDir, 'postgresql.conf'), `${this.baseConf}\n# walcast throwaway\n${lines.join('\n')}\n`);
  }

  /** First start: picks a free port, and another one if it was taken before the server bound it. */
  async firstStart(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      this.port = await freePort();
      await this.writeConf();
      const from = fs.statSync(this.logFile, { throwIfNoEntry: false })?.size ?? 0;
      try {
        return await this.start();
      } catch (err) {
        const log = this.readLog().subarray(from).toString();
        if (attempt >= START_ATTEMPTS || !/already in use|could not bind|could not create any TCP/i.test(log)) throw err;
      }
    }
  }

  async start(): Promise<void> {
    if (this.running) return;
    const r = await runTool(this.runner, 'pg_ctl', ['-D', this.dataDir, '-l', this.logFile, '-w', '-t', '60', 'start']);
    if (r.code !== 0) {
      throw new PostgresStartError(`pg_ctl start failed (exit ${r.code}):\n${tail(r.output)}\n--- server log ---\n${this.logTail(20)}`);
    }
    this.running = true;
    await this.waitReady();
  }

  /** pg_ctl -w trusts postmaster.pid; we want proof that TCP connections really work. */
  async waitReady(): Promise<void> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const client = new pg.Client({ host: HOST, port: this.port, user: 'postgres', database: 'postgres', ssl: false });
      client.on('error', () => {});
      try {
        await client.connect();
        await client.query('select 1');
        return;
      } catch (err) {
        if (Date.now() > deadline) {
          const msg = `server on port ${this.port} never accepted connections: ${String(err)}\n${this.logTail(20)}`;
          throw new Error(msg, { cause: err });
        }
        await new Promise((r) => setTimeout(r, 50));
      } finally {
        await client.end().catch(() => {});
      }
    }
  }

  async stop(mode: 'fast' | 'immediate' | 'smart' = 'fast'): Promise<void> {
    if (!this.running) return;
    const r = await runTool(this.runner, 'pg_ctl', ['-D', this.dataDir, '-m', mode, '-w', '-t', '60', 'stop']);
    if (r.code !== 0) throw new PostgresStartError(`pg_ctl stop -m ${mode} failed (exit ${r.code}):\n${tail(r.output)}`);
    this.running = false;
  }

  async restart(mode: 'fast' | 'immediate' | 'smart' = 'fast'): Promise<void> {
    await this.stop(mode);
    await this.start();
  }

  destroy(): Promise<void> {
    this.destroying ??= (async () => {
      clearInterval(this.echo);
      if (fs.existsSync(path.join(this.dataDir, 'postmaster.pid'))) {
        const stop = ['-D', this.dataDir, '-m', 'immediate', '-w', '-t', '10', 'stop'];
        const r = await runTool(this.runner, 'pg_ctl', stop).catch(() => ({ code: -1 }));
        if (r.code !== 0) killFromPidFile(this.dataDir);
      }
      this.running = false;
      await fsp.rm(this.dataDir, { recursive: true, force: true }).catch(() => {});
      untrack(this);
    })();
    return this.destroying;
  }

  /** For process exit and signals, where nothing asynchronous runs any more. */
  destroySync(): void {
    clearInterval(this.echo);
    try {
      const stop = ['-D', this.dataDir, '-m', 'immediate', '-w', '-t', '10', 'stop'];
      if (fs.existsSync(path.join(this.dataDir, 'postmaster.pid')) && runToolSync(this.runner, 'pg_ctl', stop) !== 0) {
        killFromPidFile(this.dataDir);
      }
      fs.rmSync(this.dataDir, { recursive: true, force: true });
    } catch {
      // best effort: the process is going away
    }
  }

  logTail(lines = 50): string {
    return tail(this.readLog().toString(), lines);
  }

  private readLog(): Buffer {
    try {
      return fs.readFileSync(this.logFile);
    } catch {
      return Buffer.alloc(0); // not written yet
    }
  }

  /** verbose: copy the log to stderr; polling because pg_ctl, not we, owns the log's writer. */
  echoLog(): void {
    let offset = 0;
    this.echo = setInterval(() => {
      const buf = this.readLog();
      if (buf.length > offset) process.stderr.write(buf.subarray(offset));
      offset = buf.length;
    }, 200).unref();
  }
}

// Live clusters, destroyed synchronously if the process exits or is interrupted without
// destroy(). The hooks exist only while a cluster does, so programs with none keep their own
// signal behaviour.
const live = new Set<Cluster>();
const onExit = (): void => {
  for (const c of live) c.destroySync();
};
const onSignal = (signal: NodeJS.Signals): void => {
  onExit();
  live.clear();
  unhook();
  // Alone, re-raise so the process dies of the signal as it would have (exit 130/143). With
  // other listeners exiting is their decision; we ran first (prepended) and are gone now, so
  // signal-exit style handlers, which only re-raise when they are alone, still do.
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
};
function unhook(): void {
  process.off('exit', onExit);
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
}
function track(c: Cluster): void {
  live.add(c);
  if (live.size > 1) return;
  process.on('exit', onExit);
  process.prependListener('SIGINT', onSignal);
  process.prependListener('SIGTERM', onSignal);
}
function untrack(c: Cluster): void {
  if (live.delete(c) && live.size === 0) unhook();
}

export async function startThrowawayPostgres(opts: ThrowawayOptions = {}): Promise<ThrowawayPostgres> {
  const bin = findPostgresBinaries();
  const runAs = postgresRunAs();
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'walcast-pg-'));
  if (runAs) await fsp.chown(dir, runAs.uid, runAs.gid);
  const cluster = new Cluster({ bin, runAs, dataDir: dir }, opts.settings ?? {});
  track(cluster); // before initdb, so an exit mid-start still removes the dir
  try {
    if (opts.verbose) cluster.echoLog();
    await cluster.initdb();
    await cluster.firstStart();
    return cluster;
  } catch (err) {
    await cluster.destroy();
    throw err;
  }
}
