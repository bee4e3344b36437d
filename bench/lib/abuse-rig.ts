// bench/abuse.ts's set-up: a throwaway Postgres with walcast migrated and the demo chat of
// `walcast dev` (rooms, room_members, messages and their policies, src/dev/schema.ts), plus
// mallory (the attacker: a member of room 2) and a LOGIN-only role `intruder`; HS256 tokens for
// the users; and one `walcast serve` child with authorization on, on a fixed port (so that a
// restart keeps the good client's address), optionally under --max-old-space-size. When the
// daemon dies, recover() restarts it and tells a crash loop (it dies again while replaying the
// slot) from a recovery; after a crash loop it drops the slot (the only way out) and starts
// afresh.
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import pg from 'pg';
import { DEMO_RELATIONS, setupDemo } from '../../src/dev/schema.js';
import { startThrowawayPostgres, type ThrowawayPostgres } from '../../src/pg/throwaway.js';
import { migrate } from '../../src/sql/migrate.js';
import { dropSlot, log, sleep } from './common.js';
import { signTokens } from './connect-many.js';
import { startProbedDaemon, type ProbedDaemon } from './daemon-probe.js';
import type { Helper } from './rpc.js';
import { nowMs } from './rpc.js';
import { round } from './stats.js';

export const SLOT = 'bench_abuse';
export const USERS = ['alice', 'bob', 'carol', 'dave', 'mallory'] as const;
export type User = (typeof USERS)[number];

export interface RigOptions {
  /** --max-old-space-size for the daemon (MiB), or null for Node's default. */
  heapMiB: number | null;
  daemonArgs: string[];
}

export interface Death {
  /** Exit code, or the signal that ended it. */
  exit: string;
  /** nowMs() when it was seen. */
  at: number;
}

export interface Recovery {
  /** Each restart: how it ended ("died: SIGABRT after 12.3 s", "delivering after 2.1 s", "stuck …"). */
  attempts: string[];
  /** It died again while replaying what the slot held. */
  crashLoop: boolean;
  /** The slot had to be dropped to get a daemon that lives. */
  slotDropped: boolean;
}

export class AbuseRig {
  daemon: ProbedDaemon | null = null;
  /** Set when the current daemon exited. */
  death: Death | null = null;
  /** Resolves when the current daemon exits. */
  exited: Promise<void> = Promise.resolve();
  serverVersion = '';

  private constructor(
    readonly pgServer: ThrowawayPostgres,
    readonly db: pg.Client,
    readonly port: number,
    readonly secret: string,
    readonly tokens: Record<User, string>,
    private readonly o: RigOptions,
  ) {}

  static async start(o: RigOptions): Promise<AbuseRig> {
    log('starting a throwaway Postgres');
    // Room for the slot floods' WAL and decoding spill files; nothing else is tuned.
    const pgServer = await startThrowawayPostgres({ settings: { max_wal_size: '4GB' } });
    const db = new pg.Client({ connectionString: pgServer.url });
    db.on('error', (err) => log(`postgres connection: ${err.message}`));
    try {
      await migrate(pgServer.url);
      await setupDemo(pgServer.url);
      await db.connect();
      await db.query(`insert into public.room_members (user_id, room_id) values ('mallory', 2)`);
      // A role that can log in and nothing else: no grant on schema walcast, no table rights.
      await db.query(`create role intruder login`);
      const { rows } = await db.query<{ v: string }>(`select current_setting('server_version') as v`);
      const secret = randomBytes(48).toString('base64url');
      const signed = await signTokens(secret, USERS);
      const tokens = Object.fromEntries(USERS.map((u, i) => [u, signed[i]])) as Record<User, string>;
      const rig = new AbuseRig(pgServer, db, await freePort(), secret, tokens, o);
      rig.serverVersion = rows[0].v;
      return rig;
    } catch (err) {
      await db.end().catch(() => {});
      await pgServer.destroy();
      throw err;
    }
  }

  get url(): string {
    return this.pgServer.url;
  }

  get pid(): number {
    return this.daemon?.pid ?? 0;
  }

  alive(): boolean {
    return this.daemon !== null && this.death === null;
  }

  async startDaemon(): Promise<ProbedDaemon> {
    const relations = DEMO_RELATIONS.flatMap((r) => ['--relation', r]);
    const env: Record<string, string> = { WALCAST_JWT_SECRET: this.secret };
    if (this.o.heapMiB) env.NODE_OPTIONS = `--max-old-space-size=${this.o.heapMiB}`;
    this.death = null;
    const d = await startProbedDaemon({
      gc: false,
      profileDir: null,
      serveArgs: ['--db', this.url, '--host', '127.0.0.1', '--port', String(this.port), '--slot', SLOT, '--log-level', 'warn', ...relations, ...this.o.daemonArgs],
      env,
    });
    this.daemon = d;
    this.exited = d.walcast.exited.then((code) => {
      if (this.daemon !== d) return;
      const sig = d.walcast.child.signalCode;
      this.death = { exit: sig ?? `code ${code}`, at: nowMs() };
      log(`the daemon (pid ${d.pid}) exited: ${this.death.exit}`);
    });
    return d;
  }

  /** GET /healthz answered 200 within 2 s. */
  async healthy(): Promise<boolean> {
    try {
      const res = await fetch(`http://127.0.0.1:${this.port}/healthz`, { signal: AbortSignal.timeout(2_000) });
      await res.text();
      return res.ok;
    } catch {
      return false;
    }
  }

  /** /status window: transactions and floor (a position). */
  async window(): Promise<{ transactions: number; floor: string }> {
    const res = await fetch(`http://127.0.0.1:${this.port}/status`, { signal: AbortSignal.timeout(10_000) });
    const s = (await res.json()) as { window: { transactions: number; floor: string } };
    return s.window;
  }

  /**
   * After the daemon died: restarts it, up to twice, each time waiting (up to waitMs) until the
   * good client receives a row written after the restart (recovered) or the daemon dies again
   * (a crash loop). After a crash loop, or when it is stuck, stops it, drops the slot, and starts
   * a daemon on a new slot.
   */
  async recover(monitor: Helper, waitMs: number): Promise<Recovery> {
    const r: Recovery = { attempts: [], crashLoop: false, slotDropped: false };
    for (let i = 0; i < 2; i++) {
      const t0 = nowMs();
      const outcome = await this.restartAndWatch(monitor, waitMs);
      const s = round((nowMs() - t0) / 1000, 1);
      r.attempts.push(`${outcome} after ${s} s`);
      log(`restart ${i + 1}: ${outcome} after ${s} s`);
      if (outcome === 'delivering') return r;
      if (outcome.startsWith('died')) r.crashLoop = true;
      else break; // stuck: a third try would not tell more
    }
    await this.stopDaemon();
    await dropSlot(this.db, SLOT);
    r.slotDropped = true;
    const outcome = await this.restartAndWatch(monitor, waitMs);
    r.attempts.push(`slot dropped, then ${outcome}`);
    log(`after dropping the slot: ${outcome}`);
    return r;
  }

  private async restartAndWatch(monitor: Helper, waitMs: number): Promise<string> {
    const t0 = nowMs();
    try {
      const d = await this.startDaemon();
      await monitor.call('setPid', { pid: d.pid });
    } catch (err) {
      return `died before serving (${(err as Error).message.split('\n')[0]})`;
    }
    const died = this.exited.then(() => `died: ${this.death?.exit}`);
    const delivering = monitor.call<boolean>('live', { after: t0, timeoutMs: waitMs }, waitMs + 10_000).then(
      (ok) => (ok ? 'delivering' : 'stuck (no delivery)'),
      (err: Error) => `unknown (${err.message})`,
    );
    return Promise.race([died, delivering]);
  }

  async stopDaemon(): Promise<void> {
    const d = this.daemon;
    if (!d) return;
    this.daemon = null;
    if (this.death === null) await d.stop().catch(() => {});
    await sleep(100);
  }

  async destroy(): Promise<void> {
    await this.stopDaemon();
    await dropSlot(this.db, SLOT).catch(() => {});
    await this.db.end().catch(() => {});
    await this.pgServer.destroy();
  }
}

/** A port nobody listens on right now (the daemon's, fixed across restarts). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}
