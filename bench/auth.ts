// Authorization at scale (issue #4): row-level Casbin authorization through a relation table,
// 10,000 subscribers over 1,000 rooms, beside the same subscribers under --no-auth.
//
// Scenario. Users u0…u9999, each a member of exactly one room (user n in room n % 1000: 10
// members per room), written to public.room_members before the daemon starts and mirrored by it
// as g2 links (--relation "public.room_members {user_id} room:{room_id}"). One policy:
//   p, *, table, public.bench_auth, read, g2(r.sub.id, "room:" + r.obj.row.room_id)
// Every user holds one connection (?token=<HS256 JWT, sub u<n>>) and one UNFILTERED subscription
// to public.bench_auth: authorization alone decides that a row reaches its room's 10 members.
//
// Runs, each with every subscriber connected and subscribed first:
//   auth        walcast serve --jwt-secret … --relation …: the scenario above.
//   filtered    --no-auth, each subscriber filtered room_id=eq.<its room>: the same 10
//               deliveries per row, without authorization (the cost of authorization itself).
//   unfiltered  --no-auth, the same unfiltered subscriptions: every row reaches all 10,000
//               subscribers (the issue's "same run with --no-auth"; 1,000x the deliveries).
// Each run has two phases:
//   paced      single-row insert transactions at --rate/s (random room) for --seconds, after a
//              1 s warm-up; each row carries sent_at_ms (the writer's clock just before the
//              INSERT), so every delivery is a commit-to-client latency sample. The unfiltered
//              run is paced at --unfiltered-rate, 5/s (1,000 tx/s would be 10M deliveries/s).
//   capacity   the delivery rate the daemon can sustain: the daemon is paused (SIGSTOP), a
//              backlog of --capacity-rows single-row transactions is committed (random rooms),
//              then it is resumed (SIGCONT) and deliveries/s are taken at the clients from the
//              release to the last delivery. Its figure does not depend on the writer's speed.
// Every delivery is checked per connection: rows of its own room are counted (and their ids
// summed) against what the database holds; a row of another room is a leak (auth run).
//
// Processes: this one (orchestrator and SQL writer), the daemon (`node bin/walcast.js serve`,
// preloaded with bench/lib/stall-hook.ts, which reports its event-loop blocks and GC pauses of
// 20 ms or more, to say where the latency tail comes from), load clients
// (bench/lib/auth-clients.ts, two processes by default).
// Prints one JSON line, then readable tables and the targets, each marked met or MISSED. Exits 0
// whatever the figures; non-zero only when the benchmark itself failed.
// Run: npm run bench:auth   (options: see usage() and bench/README.md)
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { startThrowawayPostgres, type ThrowawayPostgres } from '../src/pg/throwaway.js';
import { migrate } from '../src/sql/migrate.js';
import type { AuthClientDetail, AuthClientStats, AuthConnectArgs, AuthResetArgs, LeakSample } from './lib/auth-clients.js';
import { roomOf } from './lib/auth-scenario.js';
import { cpuMsOf, Helper, nowMs, rssOf } from './lib/rpc.js';
import { fmtInt, percentile, round, Stopwatch, table } from './lib/stats.js';

const TARGETS = { p99Ms: 50, vsNoAuth: 0.5 };
const HOST = '127.0.0.1';
const TABLE = 'bench_auth';
const QTABLE = `public.${TABLE}`;
const RELATION = 'public.room_members {user_id} room:{room_id}';
const POLICY_COND = 'g2(r.sub.id, "room:" + r.obj.row.room_id)';
const here = path.dirname(fileURLToPath(import.meta.url)); // dist/bench
const ROOT = path.resolve(here, '../..');

const { values: args } = parseArgs({
  options: {
    subscribers: { type: 'string', default: '10000' },
    rooms: { type: 'string', default: '1000' },
    rate: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '10' },
    'capacity-rows': { type: 'string', default: '20000' },
    'unfiltered-rate': { type: 'string', default: '5' },
    'unfiltered-seconds': { type: 'string', default: '5' },
    'unfiltered-capacity-rows': { type: 'string', default: '200' },
    'client-procs': { type: 'string', default: '2' },
    runs: { type: 'string', default: 'auth,filtered,unfiltered' },
    'profile-daemon': { type: 'string' },
    'daemon-arg': { type: 'string', multiple: true, default: [] },
    help: { type: 'boolean', default: false },
  },
});
if (args.help) usage('');
const SUBS = positive(args.subscribers, 'subscribers');
const ROOMS = positive(args.rooms, 'rooms');
const RATE = positive(args.rate, 'rate');
const SECONDS = positive(args.seconds, 'seconds');
const CAP_ROWS = positive(args['capacity-rows'], 'capacity-rows');
const UNF_RATE = positive(args['unfiltered-rate'], 'unfiltered-rate');
const UNF_SECONDS = positive(args['unfiltered-seconds'], 'unfiltered-seconds');
const UNF_CAP_ROWS = positive(args['unfiltered-capacity-rows'], 'unfiltered-capacity-rows');
const CLIENT_PROCS = positive(args['client-procs'], 'client-procs');
type RunName = 'auth' | 'filtered' | 'unfiltered';
const ALL_RUNS: RunName[] = ['auth', 'filtered', 'unfiltered'];
const RUNS = new Set((args.runs ?? '').split(',').map((s) => s.trim()) as RunName[]);
if (RUNS.size === 0 || [...RUNS].some((r) => !ALL_RUNS.includes(r))) usage(`--runs takes auth,filtered,unfiltered, got ${JSON.stringify(args.runs)}`);
const PROFILE_DIR = args['profile-daemon'] ? path.resolve(args['profile-daemon']) : null;
/** Extra `walcast serve` arguments for both daemons (diagnostics: --daemon-arg=--progress-interval=10m). */
const DAEMON_ARGS: string[] = args['daemon-arg'] ?? [];
const WARMUP_MS = 1_000;
const IDLE_MS = 2_000;

const log = (msg: string): void => {
  process.stderr.write(`[bench] ${msg}\n`);
};
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ── open files ────────────────────────────────────────────────────────────────────────────
// The daemon holds one socket per subscriber, each client process its share. Node raises its
// soft limit to the hard one at start, and the daemon and clients inherit it: only the hard
// limit can be too low, and then only the shell (or root) can raise it.

function ensureOpenFiles(): void {
  const need = SUBS + 1_024;
  let soft: number;
  let hard: number;
  try {
    const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    const num = (v: string | undefined): number => (v === 'unlimited' ? Infinity : Number(v));
    soft = num(m?.[1]);
    hard = num(m?.[2]);
  } catch {
    return; // not Linux: the connects will tell
  }
  if (!(soft < need)) return;
  process.stderr.write(
    `bench: ${fmtInt(SUBS)} connections need ${need} open files per process, and the limit is ${soft} (hard limit ${hard}).\n` +
      `Raise it (\`ulimit -n ${need}\`, as root if the hard limit is lower) or run smaller (--subscribers).\n`,
  );
  process.exit(2);
}

// ── database ──────────────────────────────────────────────────────────────────────────────

const author = (id: number): string => `u${id % SUBS}`;
const body = (id: number): string => 'lorem ipsum '.repeat(1 + (id % 8)) + id;
const INSERT = `insert into ${TABLE} (id, room_id, sent_at_ms, author, body) values ($1, $2, $3, $4, $5)`;

async function setup(db: pg.Client): Promise<void> {
  await db.query(`create table ${TABLE} (
    id bigint primary key, room_id int not null, sent_at_ms float8 not null, author text not null, body text not null)`);
  await db.query(`create table room_members (user_id text not null, room_id int not null, primary key (user_id, room_id))`);
  await db.query(`select walcast.enable('${QTABLE}')`);
  await db.query(`select walcast.enable('public.room_members')`);
  // User n is member of room n % rooms (bench/lib/auth-scenario.ts).
  await db.query(`insert into room_members (user_id, room_id) select 'u' || n, n % $2 from generate_series(0, $1 - 1) n`, [SUBS, ROOMS]);
  await db.query(`insert into walcast.casbin_rule (ptype, v0, v1, v2, v3, v4) values ('p', '*', 'table', $1, 'read', $2)`, [QTABLE, POLICY_COND]);
  // A backlog of single-row transactions as fast as one backend commits them, random rooms.
  await db.query(`create procedure bench_auth_burst(first bigint, n int, rooms int) language plpgsql as $$
    begin
      for i in first .. first + n - 1 loop
        insert into ${TABLE} (id, room_id, sent_at_ms, author, body)
          values (i, floor(random() * rooms)::int, extract(epoch from clock_timestamp()) * 1000, 'u' || (i % ${SUBS}), repeat('lorem ipsum ', (1 + i % 8)::int) || i);
        commit;
      end loop;
    end $$`);
  await db.query('analyze room_members');
}

/** Rows per room of ids [lo, hi), with the sum of their ids. */
interface RoomRows {
  rows: number;
  count: Float64Array;
  idSum: Float64Array;
}

async function roomRows(db: pg.Client, lo: number, hi: number): Promise<RoomRows> {
  const { rows } = await db.query<{ room_id: number; n: number; s: number }>(
    `select room_id, count(*)::int as n, sum(id)::float8 as s from ${TABLE} where id >= $1 and id < $2 group by room_id`,
    [lo, hi],
  );
  const count = new Float64Array(ROOMS);
  const idSum = new Float64Array(ROOMS);
  let total = 0;
  for (const r of rows) {
    count[r.room_id] = r.n;
    idSum[r.room_id] = r.s;
    total += r.n;
  }
  return { rows: total, count, idSum };
}

/** Deliveries a run owes for these rows: a row reaches its room's members, or everyone. */
function expectedDeliveries(r: RoomRows, run: RunName): number {
  if (run === 'unfiltered') return r.rows * SUBS;
  let n = 0;
  for (let room = 0; room < ROOMS; room++) n += r.count[room] * membersOf(room);
  return n;
}

function membersOf(room: number): number {
  return room >= ROOMS ? 0 : Math.floor(SUBS / ROOMS) + (room < SUBS % ROOMS ? 1 : 0);
}

let nextId = 1;

/** A deterministic generator (mulberry32), so that runs write the same rooms. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface PacedResult {
  transactions: number;
  firstId: number;
  /** Writer-side round trip of each INSERT (its commit), ms. */
  commitMs: Float64Array;
  /** How far the writer fell behind its schedule at worst, ms. */
  maxLagMs: number;
  writeMs: number;
}

/** `rate` single-row transactions/s for `ms`, random rooms, over the given connections. */
async function paced(conns: pg.Client[], rate: number, ms: number, random: () => number): Promise<PacedResult> {
  const total = Math.max(1, Math.round((rate * ms) / 1000));
  const commitMs = new Float64Array(total);
  const inflight: Array<Promise<unknown>> = [];
  const firstId = nextId;
  const t0 = performance.now();
  let maxLagMs = 0;
  let i = 0;
  while (i < total) {
    const now = performance.now() - t0;
    const due = Math.min(total, Math.floor((now * rate) / 1000) + 1);
    if (due > i) maxLagMs = Math.max(maxLagMs, now - (i * 1000) / rate);
    for (; i < due; i++) {
      const id = nextId++;
      const k = i;
      const room = Math.floor(random() * ROOMS);
      const sent = nowMs();
      inflight.push(
        conns[i % conns.length].query({ name: 'bench_insert', text: INSERT, values: [id, room, sent, author(id), body(id)] }).then(() => {
          commitMs[k] = nowMs() - sent;
        }),
      );
    }
    await sleep(1);
  }
  await Promise.all(inflight);
  return { transactions: total, firstId, commitMs, maxLagMs, writeMs: performance.now() - t0 };
}

// ── load clients ──────────────────────────────────────────────────────────────────────────

interface PoolStats extends Omit<AuthClientStats, 'elu'> {
  elu: number[];
}

class ClientPool {
  private constructor(readonly procs: Helper[]) {}

  static start(n: number): ClientPool {
    const script = path.join(here, 'lib', 'auth-clients.js');
    return new ClientPool(Array.from({ length: n }, (_, i) => Helper.fork(`client-${i}`, script)));
  }

  /** `total` connections split over the client processes; resolves when all are subscribed. */
  async connect(port: number, total: number, o: { secret?: string; filtered: boolean }): Promise<{ ms: number; tokenMs: number }> {
    const w = new Stopwatch();
    const per = Math.ceil(total / this.procs.length);
    const res = await Promise.all(
      this.procs.map((p, i) => {
        const count = Math.max(0, Math.min(per, total - i * per));
        const a: AuthConnectArgs = { host: HOST, port, count, offset: i * per, rooms: ROOMS, table: QTABLE, secret: o.secret, filtered: o.filtered, timeoutMs: 120_000 };
        return p.call<{ ms: number; tokenMs: number }>('connect', a, 130_000);
      }),
    );
    return { ms: w.elapsedMs(), tokenMs: Math.max(...res.map((r) => r.tokenMs)) };
  }

  reset(a: AuthResetArgs): Promise<unknown> {
    return Promise.all(this.procs.map((p) => p.call('reset', a)));
  }

  async stats(): Promise<PoolStats> {
    const all = await Promise.all(this.procs.map((p) => p.call<AuthClientStats>('stats')));
    const firsts = all.filter((s) => s.deliveries > 0).map((s) => s.firstAt);
    const closeCodes: Record<string, number> = {};
    for (const s of all) for (const [k, v] of Object.entries(s.closeCodes)) closeCodes[k] = (closeCodes[k] ?? 0) + v;
    return {
      open: sum(all.map((s) => s.open)),
      deliveries: sum(all.map((s) => s.deliveries)),
      foreign: sum(all.map((s) => s.foreign)),
      stale: sum(all.map((s) => s.stale)),
      bytes: sum(all.map((s) => s.bytes)),
      other: sum(all.map((s) => s.other)),
      firstAt: firsts.length ? Math.min(...firsts) : 0,
      lastAt: Math.max(...all.map((s) => s.lastAt)),
      unexpectedCloses: sum(all.map((s) => s.unexpectedCloses)),
      closeCodes,
      cpuMs: sum(all.map((s) => s.cpuMs)),
      elu: all.map((s) => round(s.elu, 2)),
    };
  }

  /**
   * Polls until `expected` deliveries arrived, nothing arrived for `idleMs`, or `timeoutMs`
   * passed. `at` is when the last poll saw the figure (before any settling).
   */
  async waitFor(expected: number, idleMs: number, timeoutMs: number): Promise<PoolStats & { at: number; timedOut: boolean }> {
    const w = new Stopwatch();
    let last = -1;
    let lastChange = performance.now();
    for (;;) {
      const s = await this.stats();
      const at = nowMs();
      if (s.deliveries >= expected) return { ...s, at, timedOut: false };
      if (s.deliveries !== last) {
        last = s.deliveries;
        lastChange = performance.now();
      }
      if (performance.now() - lastChange > idleMs || w.elapsedMs() > timeoutMs) {
        log(`  incomplete: ${fmtInt(s.deliveries)} of ${fmtInt(expected)} deliveries`);
        return { ...s, at, timedOut: true };
      }
      await sleep(50);
    }
  }

  details(): Promise<AuthClientDetail[]> {
    return Promise.all(this.procs.map((p) => p.call<AuthClientDetail>('detail')));
  }

  async latencies(): Promise<Float64Array> {
    const parts = await Promise.all(this.procs.map((p) => p.call<Float64Array>('latencies')));
    const out = new Float64Array(sum(parts.map((p) => p.length)));
    let o = 0;
    for (const p of parts) {
      out.set(p, o);
      o += p.length;
    }
    return out.sort();
  }

  /**
   * Where the tail is: samples above `overMs`, grouped in windows of `windowMs` by the time
   * their row was written (ms after `t0`), busiest first.
   */
  async slowWindows(overMs: number, t0: number, windowMs = 100): Promise<SlowWindow[]> {
    const parts = await Promise.all(this.procs.map((p) => p.call<Float64Array>('slowSamples', { overMs })));
    const w = new Map<number, SlowWindow>();
    for (const p of parts) {
      for (let i = 0; i < p.length; i += 2) {
        const at = Math.floor((p[i] - t0) / windowMs) * windowMs;
        let e = w.get(at);
        if (!e) w.set(at, (e = { atMs: at, samples: 0, maxMs: 0 }));
        e.samples++;
        e.maxMs = Math.max(e.maxMs, round(p[i + 1], 1));
      }
    }
    return [...w.values()].sort((a, b) => a.atMs - b.atMs);
  }

  async closeAll(): Promise<void> {
    await Promise.all(this.procs.map((p) => p.call('closeAll')));
    await sleep(500); // let the server see the closes
  }

  async stop(): Promise<void> {
    await Promise.all(this.procs.map((p) => p.stop()));
  }
}

interface StallSummary {
  blocks: number;
  blockMaxMs: number;
  blockTotalMs: number;
  gcPauses: number;
  gcMaxMs: number;
  /** The longest ones, in time order: {atMs after the start of the writes, ms, kind}. */
  longest: Array<{ atMs: number; ms: number; kind: string }>;
}

function summarizeStalls(all: readonly Stall[], from: number, to: number): StallSummary {
  const xs = all.filter((x) => x.at >= from && x.at <= to);
  const blocks = xs.filter((x) => x.kind === 'block');
  const gcs = xs.filter((x) => x.kind === 'gc');
  const longest = [...xs]
    .sort((a, b) => b.ms - a.ms)
    .slice(0, 12)
    .sort((a, b) => a.at - b.at)
    .map((x) => ({ atMs: round(x.at - from), ms: round(x.ms, 1), kind: x.kind }));
  return {
    blocks: blocks.length,
    blockMaxMs: round(Math.max(0, ...blocks.map((x) => x.ms)), 1),
    blockTotalMs: round(sum(blocks.map((x) => x.ms))),
    gcPauses: gcs.length,
    gcMaxMs: round(Math.max(0, ...gcs.map((x) => x.ms)), 1),
    longest,
  };
}

interface SlowWindow {
  /** Start of the window, ms after the start of the writes (by the rows' sent_at_ms). */
  atMs: number;
  samples: number;
  maxMs: number;
}

// ── correctness ───────────────────────────────────────────────────────────────────────────

interface Check {
  expected: number;
  received: number;
  /** Owed deliveries that never came (per connection, own room; and others' rows when unfiltered). */
  missing: number;
  /** Deliveries beyond what was owed (duplicates). */
  extra: number;
  /** Connections whose count was right but whose id sum was not (a duplicate hid a miss). */
  idSumMismatches: number;
  /** Rows of another room than the connection's: with authorization, leaks. */
  foreign: number;
  leakSamples: LeakSample[];
  /** Deliveries of an earlier phase's rows (not counted). */
  stale: number;
  complete: boolean;
}

function check(details: AuthClientDetail[], rr: RoomRows, run: RunName, mode: 'count' | 'check', stale: number): Check {
  let expected = 0;
  let received = 0;
  let missing = 0;
  let extra = 0;
  let idSumMismatches = 0;
  let foreign = 0;
  const leakSamples: LeakSample[] = [];
  for (const d of details) {
    for (let k = 0; k < d.own.length; k++) {
      const room = roomOf(d.offset + k, ROOMS);
      const own = d.own[k];
      const expOwn = mode === 'count' && run === 'unfiltered' ? rr.rows : rr.count[room];
      expected += expOwn;
      received += own;
      missing += Math.max(0, expOwn - own);
      extra += Math.max(0, own - expOwn);
      if (mode === 'check') {
        if (own === expOwn && d.ownIdSum[k] !== rr.idSum[room]) idSumMismatches++;
        const f = d.foreign[k];
        received += f;
        if (run === 'unfiltered') {
          const expForeign = rr.rows - rr.count[room];
          expected += expForeign;
          missing += Math.max(0, expForeign - f);
          extra += Math.max(0, f - expForeign);
        } else foreign += f;
      }
    }
    if (run !== 'unfiltered') leakSamples.push(...d.leakSamples);
  }
  return {
    expected,
    received,
    missing,
    extra,
    idSumMismatches,
    foreign,
    leakSamples: leakSamples.slice(0, 5),
    stale,
    complete: missing === 0 && extra === 0 && idSumMismatches === 0 && foreign === 0,
  };
}

// ── the daemon ────────────────────────────────────────────────────────────────────────────

/** From bench/lib/stall-hook.ts, preloaded into the daemon. */
interface Stall {
  kind: 'block' | 'gc';
  /** ms since the epoch */
  at: number;
  ms: number;
}
const STALL_MARK = '@@bench-stall '; // written by bench/lib/stall-hook.ts

interface Daemon {
  pid: number;
  /** Event-loop blocks and GC pauses of 20 ms or more, as the daemon reported them. */
  stalls: Stall[];
  port: number;
  slot: string;
  pause(): void;
  resume(): void;
  stop(): Promise<void>;
}

/** Daemons running: whatever happens to this process (an error, Ctrl-C), none is left behind, paused or not. */
const live = new Set<ChildProcess>();
function reapDaemons(): void {
  for (const c of live) {
    c.kill('SIGCONT');
    c.kill('SIGKILL');
  }
}
process.on('exit', reapDaemons);
// With a listener of ours, the throwaway cluster's own handler (which runs first and removes the
// cluster) leaves the exit to us.
for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
  process.on(sig, () => {
    reapDaemons();
    process.exit(code);
  });
}

async function startDaemon(url: string, slot: string, secret: string | null): Promise<Daemon> {
  const nodeArgs: string[] = ['--import', new URL('./lib/stall-hook.js', import.meta.url).href];
  if (PROFILE_DIR) nodeArgs.push('--cpu-prof', '--cpu-prof-dir', PROFILE_DIR);
  const argv = [...nodeArgs, path.join(ROOT, 'bin', 'walcast.js'), 'serve', '--db', url, '--port', '0', '--slot', slot, '--log-level', 'warn', ...DAEMON_ARGS];
  if (secret) argv.push('--relation', RELATION);
  else argv.push('--no-auth');
  const env = { ...process.env };
  delete env.WALCAST_NO_AUTH;
  delete env.WALCAST_JWT_SECRET;
  delete env.WALCAST_JWKS;
  delete env.WALCAST_RELATIONS;
  if (secret) env.WALCAST_JWT_SECRET = secret; // not a flag: flags show in ps
  const child: ChildProcess = spawn(process.execPath, argv, { stdio: ['ignore', 'ignore', 'pipe'], env });
  const tail: string[] = [];
  let portFound: (port: number) => void = () => {};
  live.add(child);
  const exited = new Promise<number | null>((resolve) =>
    child.on('exit', (code) => {
      live.delete(child);
      resolve(code);
    }),
  );
  const stalls: Stall[] = [];
  let buf = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.startsWith(STALL_MARK)) {
        stalls.push(JSON.parse(line.slice(STALL_MARK.length)) as Stall);
        continue;
      }
      const p = /serving ws:\/\/[^:]+:(\d+)\//.exec(line);
      if (p) portFound(Number(p[1]));
      tail.push(line);
      if (tail.length > 30) tail.shift();
    }
  });
  const port = await Promise.race([
    new Promise<number>((resolve) => (portFound = resolve)),
    exited.then((code) => Promise.reject(new Error(`walcast exited (${code}) before serving:\n${tail.join('\n')}`))),
    sleep(60_000).then(() => Promise.reject(new Error(`walcast did not start within 60 s:\n${tail.join('\n')}`))),
  ]);
  let paused = false;
  return {
    pid: child.pid ?? 0,
    stalls,
    port,
    slot,
    pause() {
      paused = true;
      child.kill('SIGSTOP');
    },
    resume() {
      paused = false;
      child.kill('SIGCONT');
    },
    async stop() {
      if (paused) child.kill('SIGCONT');
      child.kill('SIGTERM');
      const code = await Promise.race([exited, sleep(20_000).then(() => 'timeout' as const)]);
      if (code === 'timeout') {
        log('walcast did not exit within 20 s of SIGTERM: killed');
        child.kill('SIGKILL');
        await exited;
      } else if (code !== 0) log(`walcast exited with ${code}:\n${tail.join('\n')}`);
    },
  };
}

async function walsenderPid(db: pg.Client, slot: string): Promise<number | null> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const { rows } = await db.query<{ pid: number | null }>(`select active_pid as pid from pg_replication_slots where slot_name = $1`, [slot]);
    if (rows[0]?.pid) return rows[0].pid;
    await sleep(100);
  }
  return null;
}

/** CPU ms of a process, 0 when it cannot be read (gone, or not on Linux). */
function cpuOf(pid: number | null): number {
  if (!pid) return 0;
  try {
    return cpuMsOf(pid);
  } catch {
    return 0;
  }
}

/** Drops a daemon's slot once its walsender has let go. */
async function dropSlot(db: pg.Client, slot: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const { rows } = await db.query<{ active: boolean }>(`select active from pg_replication_slots where slot_name = $1`, [slot]);
    if (rows.length === 0) return;
    if (!rows[0].active || Date.now() > deadline) break;
    await sleep(50);
  }
  await db.query(`select pg_drop_replication_slot($1)`, [slot]).catch((err: Error) => log(`could not drop the slot: ${err.message}`));
}

// ── phases ────────────────────────────────────────────────────────────────────────────────

interface PacedPhase {
  txPerSec: number;
  seconds: number;
  transactions: number;
  /** Deliveries at the clients / (last delivery − start of the writes), s. */
  deliveriesPerSec: number;
  /** What the run owes per second: expected deliveries / the writer's duration. */
  offeredPerSec: number;
  check: Check;
  samples: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
  commitP50: number;
  commitP99: number;
  writerMaxLagMs: number;
  /** Deliveries slower than the p99 target, by 100 ms window of their rows' writing. */
  slowWindows: SlowWindow[];
  /** The daemon's event-loop blocks and GC pauses ≥ 20 ms during the run (ms after its start). */
  daemonStalls: StallSummary;
  /** Daemon CPU ms per second of wall time (1,000 = one core). */
  daemonCpuMsPerSec: number;
  walsenderCpuMsPerSec: number;
  /** Daemon CPU µs per row written and per delivery. */
  daemonUsPerRow: number;
  daemonUsPerDelivery: number;
  clientCores: number;
  clientElu: number[];
  unexpectedCloses: number;
  closeCodes: Record<string, number>;
}

interface CapacityPhase {
  rows: number;
  deliveries: number;
  /** Deliveries / (last delivery − release of the paused daemon), at the clients. */
  deliveriesPerSec: number;
  /** Rows / the same interval. */
  rowsPerSec: number;
  releaseToLastMs: number;
  firstToLastMs: number;
  /** Committing the backlog while the daemon was paused. */
  writeMs: number;
  check: Check;
  daemonCores: number;
  daemonUsPerRow: number;
  daemonUsPerDelivery: number;
  /**
   * Walsender CPU from the pause to the last delivery, ms: it decodes much of the backlog into
   * the socket buffers while the daemon is paused, so this is not a rate.
   */
  walsenderCpuMs: number;
  clientCores: number;
  clientElu: number[];
  unexpectedCloses: number;
  closeCodes: Record<string, number>;
}

interface RunResult {
  name: RunName;
  auth: boolean;
  filter: string;
  subscribers: number;
  connectMs: number;
  tokenMs: number;
  daemonRssMiB: number;
  /** Daemon CPU ms per second with every subscriber connected and nothing written. */
  idleCpuMsPerSec: number;
  paced: PacedPhase;
  capacity: CapacityPhase;
}

async function run(name: RunName, daemon: Daemon, clients: ClientPool, db: pg.Client, writers: pg.Client[], secret: string | null): Promise<RunResult> {
  const filtered = name === 'filtered';
  const rate = name === 'unfiltered' ? UNF_RATE : RATE;
  const seconds = name === 'unfiltered' ? UNF_SECONDS : SECONDS;
  const capRows = name === 'unfiltered' ? UNF_CAP_ROWS : CAP_ROWS;
  const random = rng(0x5eed + (name === 'unfiltered' ? 1 : 0));
  const wsPid = await walsenderPid(db, daemon.slot);

  const conn = await clients.connect(daemon.port, SUBS, { secret: secret ?? undefined, filtered });
  await sleep(500);
  const daemonRssMiB = round(rssOf(daemon.pid) / 1024 / 1024, 1);
  // Idle: every subscriber connected, nothing written (progress ticks, pings, timers).
  const idle0 = cpuOf(daemon.pid);
  const idleT0 = nowMs();
  await sleep(IDLE_MS);
  const idleCpuMsPerSec = round(((cpuOf(daemon.pid) - idle0) / (nowMs() - idleT0)) * 1000);
  log(
    `${name}: ${fmtInt(SUBS)} subscribers connected and subscribed in ${fmtInt(conn.ms)} ms${secret ? ` (tokens signed in ${fmtInt(conn.tokenMs)} ms before)` : ''}; ` +
      `daemon RSS ${daemonRssMiB} MiB, idle ${idleCpuMsPerSec} ms CPU/s`,
  );

  // ── paced ──
  log(`${name}: warm-up, ${fmtInt(rate)} tx/s for ${WARMUP_MS / 1000} s`);
  await clients.reset({ mode: 'check', latency: true });
  const warm = await paced(writers, rate, WARMUP_MS, random);
  const warmRows = await roomRows(db, warm.firstId, nextId);
  await clients.waitFor(expectedDeliveries(warmRows, name), 3_000, 60_000);
  await sleep(200);

  log(`${name}: paced, ${fmtInt(rate)} tx/s for ${seconds} s`);
  await clients.reset({ mode: 'check', latency: true, minId: nextId });
  const cpu0 = cpuOf(daemon.pid);
  const ws0 = cpuOf(wsPid);
  const t0 = nowMs();
  const res = await paced(writers, rate, seconds * 1000, random);
  const rr = await roomRows(db, res.firstId, nextId);
  const expected = expectedDeliveries(rr, name);
  const s = await clients.waitFor(expected, 5_000, 120_000);
  const cpuMs = cpuOf(daemon.pid) - cpu0;
  const wsMs = cpuOf(wsPid) - ws0;
  const wallMs = s.at - t0;
  await sleep(500); // anything beyond what was owed (duplicates, leaks) has time to show
  const s2 = await clients.stats();
  const chk = check(await clients.details(), rr, name, 'check', s2.stale);
  const lat = await clients.latencies();
  const slowWindows = await clients.slowWindows(TARGETS.p99Ms, t0);
  const commits = res.commitMs.slice().sort();
  const pacedPhase: PacedPhase = {
    txPerSec: rate,
    seconds,
    transactions: res.transactions,
    deliveriesPerSec: round(s.deliveries / ((s.lastAt - t0) / 1000)),
    offeredPerSec: round(expected / (res.writeMs / 1000)),
    check: chk,
    samples: lat.length,
    p50: round(percentile(lat, 50), 2),
    p90: round(percentile(lat, 90), 2),
    p99: round(percentile(lat, 99), 2),
    p999: round(percentile(lat, 99.9), 2),
    max: round(lat.length ? lat[lat.length - 1] : Number.NaN, 2),
    mean: round(lat.reduce((a, b) => a + b, 0) / Math.max(1, lat.length), 2),
    commitP50: round(percentile(commits, 50), 2),
    commitP99: round(percentile(commits, 99), 2),
    writerMaxLagMs: round(res.maxLagMs, 1),
    slowWindows,
    daemonStalls: summarizeStalls(daemon.stalls, t0, s.at),
    daemonCpuMsPerSec: round((cpuMs / wallMs) * 1000),
    walsenderCpuMsPerSec: round((wsMs / wallMs) * 1000),
    daemonUsPerRow: round((cpuMs * 1000) / res.transactions, 1),
    daemonUsPerDelivery: round((cpuMs * 1000) / Math.max(1, s.deliveries), 2),
    clientCores: round(s.cpuMs / wallMs, 2),
    clientElu: s.elu,
    unexpectedCloses: s2.unexpectedCloses,
    closeCodes: s2.closeCodes,
  };
  log(
    `${name}: paced: ${fmtInt(chk.received)}/${fmtInt(chk.expected)} deliveries, ${fmtInt(pacedPhase.deliveriesPerSec)}/s; p50 ${pacedPhase.p50} ms, p99 ${pacedPhase.p99} ms, max ${pacedPhase.max} ms; ` +
      `daemon ${fmtInt(pacedPhase.daemonCpuMsPerSec)} ms CPU/s; foreign ${chk.foreign}, missing ${chk.missing}, extra ${chk.extra}`,
  );

  // ── capacity: a backlog released at once ──
  const mode = name === 'unfiltered' ? 'count' : 'check';
  log(`${name}: capacity, ${fmtInt(capRows)} rows committed while the daemon is paused, then released`);
  await clients.reset({ mode, latency: false, minId: nextId });
  const firstId = nextId;
  const wsA = cpuOf(wsPid);
  daemon.pause();
  let writeMs: number;
  let cpuA: number;
  let tRelease: number;
  try {
    const w = new Stopwatch();
    await db.query('call bench_auth_burst($1, $2, $3)', [firstId, capRows, ROOMS]);
    writeMs = w.elapsedMs();
    nextId += capRows;
  } finally {
    cpuA = cpuOf(daemon.pid);
    tRelease = nowMs();
    daemon.resume();
  }
  const cr = await roomRows(db, firstId, nextId);
  const capExpected = expectedDeliveries(cr, name);
  const c = await clients.waitFor(capExpected, 10_000, 300_000);
  const capCpu = cpuOf(daemon.pid) - cpuA;
  const capWs = cpuOf(wsPid) - wsA;
  const capWall = c.at - tRelease;
  await sleep(500);
  const c2 = await clients.stats();
  const capChk = check(await clients.details(), cr, name, mode, c2.stale);
  const releaseToLast = c.lastAt - tRelease;
  const capacity: CapacityPhase = {
    rows: cr.rows,
    deliveries: c.deliveries,
    deliveriesPerSec: round(c.deliveries / (releaseToLast / 1000)),
    rowsPerSec: round(cr.rows / (releaseToLast / 1000)),
    releaseToLastMs: round(releaseToLast, 1),
    firstToLastMs: round(c.lastAt - c.firstAt, 1),
    writeMs: round(writeMs),
    check: capChk,
    daemonCores: round(capCpu / capWall, 2),
    daemonUsPerRow: round((capCpu * 1000) / Math.max(1, cr.rows), 1),
    daemonUsPerDelivery: round((capCpu * 1000) / Math.max(1, c.deliveries), 2),
    walsenderCpuMs: round(capWs),
    clientCores: round(c.cpuMs / capWall, 2),
    clientElu: c.elu,
    unexpectedCloses: c2.unexpectedCloses,
    closeCodes: c2.closeCodes,
  };
  log(
    `${name}: capacity: ${fmtInt(capChk.received)}/${fmtInt(capChk.expected)} deliveries in ${fmtInt(releaseToLast)} ms = ${fmtInt(capacity.deliveriesPerSec)}/s ` +
      `(${fmtInt(capacity.rowsPerSec)} rows/s; daemon ${capacity.daemonCores} cores, walsender ${fmtInt(capacity.walsenderCpuMs)} ms CPU, clients ELU ${capacity.clientElu.join('/')})`,
  );
  await clients.closeAll();
  return {
    name,
    auth: !!secret,
    filter: filtered ? 'room_id=eq.<own room>' : 'none',
    subscribers: SUBS,
    connectMs: round(conn.ms),
    tokenMs: conn.tokenMs,
    daemonRssMiB,
    idleCpuMsPerSec,
    paced: pacedPhase,
    capacity,
  };
}

// ── main ──────────────────────────────────────────────────────────────────────────────────

async function main(): Promise<void> {
  ensureOpenFiles();
  const total = new Stopwatch();
  log('starting a throwaway Postgres');
  const pgServer: ThrowawayPostgres = await startThrowawayPostgres({});
  const url = pgServer.url;
  const db = new pg.Client({ connectionString: url });
  const writers = Array.from({ length: 4 }, () => new pg.Client({ connectionString: url }));
  const clients = ClientPool.start(CLIENT_PROCS);
  const results: RunResult[] = [];
  try {
    await migrate(url);
    await db.connect();
    for (const w of writers) await w.connect();
    await setup(db);
    const { rows: ver } = await db.query<{ v: string }>(`select current_setting('server_version') as v`);

    if (RUNS.has('auth')) {
      const secret = randomBytes(48).toString('base64url');
      log('auth: starting the daemon (--jwt-secret, --relation)');
      const daemon = await startDaemon(url, 'bench_auth_on', secret);
      try {
        results.push(await run('auth', daemon, clients, db, writers, secret));
      } finally {
        await clients.closeAll().catch(() => {});
        await daemon.stop();
        await dropSlot(db, daemon.slot);
      }
    }
    if (RUNS.has('filtered') || RUNS.has('unfiltered')) {
      log('no-auth: starting the daemon (--no-auth)');
      const daemon = await startDaemon(url, 'bench_auth_off', null);
      try {
        for (const name of ['filtered', 'unfiltered'] as const) if (RUNS.has(name)) results.push(await run(name, daemon, clients, db, writers, null));
      } finally {
        await clients.closeAll().catch(() => {});
        await daemon.stop();
        await dropSlot(db, daemon.slot);
      }
    }

    // ── report ──
    const by = (n: RunName): RunResult | undefined => results.find((r) => r.name === n);
    const a = by('auth');
    const f = by('filtered');
    const u = by('unfiltered');
    const ratio = (x: number | undefined, y: number | undefined): number | null => (x === undefined || y === undefined || !(y > 0) ? null : round(x / y, 3));
    const capVsUnfiltered = ratio(a?.capacity.deliveriesPerSec, u?.capacity.deliveriesPerSec);
    const capVsFiltered = ratio(a?.capacity.deliveriesPerSec, f?.capacity.deliveriesPerSec);
    const pacedVsFiltered = ratio(a?.paced.deliveriesPerSec, f?.paced.deliveriesPerSec);
    const authChecks = a ? [a.paced.check, a.capacity.check] : [];
    const leaks = sum(authChecks.map((c) => c.foreign));
    const missing = sum(authChecks.map((c) => c.missing));
    const extra = sum(authChecks.map((c) => c.extra + c.idSumMismatches));
    const targets = [
      {
        name: `auth, ${fmtInt(RATE)} tx/s, ${fmtInt(SUBS)} subscribers: commit-to-client p99 ≤ ${TARGETS.p99Ms} ms`,
        value: a?.paced.p99 ?? null,
        met: a ? a.paced.p99 <= TARGETS.p99Ms && a.paced.check.complete : null,
      },
      {
        name: 'auth: no leak, nothing missing or duplicated (paced and capacity)',
        value: a ? `leaks ${leaks}, missing ${missing}, duplicated ${extra}` : null,
        met: a ? leaks === 0 && missing === 0 && extra === 0 : null,
      },
      {
        name: `auth delivery rate ≥ ${TARGETS.vsNoAuth * 100}% of --no-auth, unfiltered (the issue's baseline: each row to all ${fmtInt(SUBS)}; capacity, deliveries/s)`,
        value: capVsUnfiltered,
        met: capVsUnfiltered === null ? null : capVsUnfiltered >= TARGETS.vsNoAuth,
      },
      {
        name: `auth delivery rate ≥ ${TARGETS.vsNoAuth * 100}% of --no-auth, filtered room_id=eq (same ${membersOf(0)} deliveries per row; capacity, deliveries/s)`,
        value: capVsFiltered,
        met: capVsFiltered === null ? null : capVsFiltered >= TARGETS.vsNoAuth,
      },
      {
        name: `auth delivery rate ≥ ${TARGETS.vsNoAuth * 100}% of --no-auth, filtered (paced at ${fmtInt(RATE)} tx/s, deliveries/s)`,
        value: pacedVsFiltered,
        met: pacedVsFiltered === null ? null : pacedVsFiltered >= TARGETS.vsNoAuth,
      },
    ];
    const out = {
      bench: 'auth',
      scenario: {
        subscribers: SUBS,
        rooms: ROOMS,
        membersPerRoom: SUBS / ROOMS,
        table: QTABLE,
        relation: RELATION,
        policy: `p, *, table, ${QTABLE}, read, ${POLICY_COND}`,
        subscription: 'one per connection, id 1, unfiltered (filtered run: room_id=eq.<own room>)',
        rate: RATE,
        seconds: SECONDS,
        unfilteredRate: UNF_RATE,
        unfilteredSeconds: UNF_SECONDS,
        capacityRows: CAP_ROWS,
        unfilteredCapacityRows: UNF_CAP_ROWS,
      },
      timing:
        'paced: latency = client receive time − sent_at_ms stamped by the writer just before sending the INSERT (commit included); deliveries/s = deliveries / (last delivery − start of the writes). ' +
        'capacity: the daemon is paused (SIGSTOP) while the rows are committed, then resumed; deliveries/s = deliveries / (last delivery − resume). CPU from /proc (all threads).',
      node: process.version,
      postgres: ver[0].v,
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model ?? 'unknown',
      loadAverage: os.loadavg().map((v) => round(v, 2)),
      clientProcesses: CLIENT_PROCS,
      runs: results,
      ratios: { capacityAuthVsUnfiltered: capVsUnfiltered, capacityAuthVsFiltered: capVsFiltered, pacedAuthVsFiltered: pacedVsFiltered },
      targets,
      totalSeconds: round(total.elapsedMs() / 1000, 1),
    };
    process.stdout.write(JSON.stringify(out) + '\n');

    const ms = (v: number): string => (Number.isFinite(v) ? v.toFixed(2) : '?');
    const label = (r: RunResult): string => (r.name === 'auth' ? 'auth' : `no-auth ${r.name}`);
    const correctness = (c: Check): string =>
      c.complete ? 'ok' : [c.foreign && `${fmtInt(c.foreign)} foreign`, c.missing && `${fmtInt(c.missing)} missing`, c.extra && `${fmtInt(c.extra)} extra`, c.idSumMismatches && `${c.idSumMismatches} id-sum`].filter(Boolean).join(', ');
    if (results.length) {
      process.stdout.write(
        `\n${fmtInt(SUBS)} subscribers (one connection, one subscription each), ${fmtInt(ROOMS)} rooms of ${SUBS / ROOMS} members; policy: members of the row's room may read\n`,
      );
      process.stdout.write(`\nPaced: single-row insert transactions, random room (latency ms: writer stamp before INSERT → client receive)\n`);
      process.stdout.write(
        table(
          ['run', 'filter', 'tx/s', 'per row', 'deliveries/s', 'received/expected', 'check', 'p50', 'p90', 'p99', 'max', 'commit p99', 'daemon CPU ms/s', 'µs/row', 'walsender ms/s', 'client ELU'],
          results.map((r) => [
            label(r),
            r.filter,
            fmtInt(r.paced.txPerSec),
            r.name === 'unfiltered' ? fmtInt(SUBS) : String(membersOf(0)),
            fmtInt(r.paced.deliveriesPerSec),
            `${fmtInt(r.paced.check.received)}/${fmtInt(r.paced.check.expected)}`,
            correctness(r.paced.check),
            ms(r.paced.p50),
            ms(r.paced.p90),
            ms(r.paced.p99),
            ms(r.paced.max),
            ms(r.paced.commitP99),
            fmtInt(r.paced.daemonCpuMsPerSec),
            r.paced.daemonUsPerRow.toFixed(1),
            fmtInt(r.paced.walsenderCpuMsPerSec),
            r.paced.clientElu.join('/'),
          ]),
        ) + '\n',
      );
      process.stdout.write(`\nCapacity: a backlog of committed single-row transactions, released to the paused daemon at once (deliveries/s from release to last delivery)\n`);
      process.stdout.write(
        table(
          ['run', 'rows', 'deliveries', 'check', 'deliveries/s', 'rows/s', 'release→last ms', 'daemon cores', 'daemon µs/row', 'µs/delivery', 'walsender CPU ms', 'client ELU'],
          results.map((r) => [
            label(r),
            fmtInt(r.capacity.rows),
            fmtInt(r.capacity.deliveries),
            correctness(r.capacity.check),
            fmtInt(r.capacity.deliveriesPerSec),
            fmtInt(r.capacity.rowsPerSec),
            fmtInt(r.capacity.releaseToLastMs),
            r.capacity.daemonCores.toFixed(2),
            r.capacity.daemonUsPerRow.toFixed(1),
            r.capacity.daemonUsPerDelivery.toFixed(2),
            fmtInt(r.capacity.walsenderCpuMs),
            r.capacity.clientElu.join('/'),
          ]),
        ) + '\n',
      );
      process.stdout.write(
        `\nConnected and subscribed: ${results.map((r) => `${label(r)} in ${fmtInt(r.connectMs)} ms, daemon RSS ${r.daemonRssMiB} MiB, idle ${fmtInt(r.idleCpuMsPerSec)} ms CPU/s`).join('; ')}\n`,
      );
      process.stdout.write(`\nWhere the paced tail is (seconds after the start of the writes)\n`);
      for (const r of results) {
        const sw = r.paced.slowWindows;
        const shown = sw.map((x) => `${(x.atMs / 1000).toFixed(1)}s×${x.samples}`);
        process.stdout.write(
          `  ${label(r)}: deliveries over ${TARGETS.p99Ms} ms by when their row was written (100 ms windows × samples): ${shown.length ? shown.slice(0, 30).join(' ') + (shown.length > 30 ? ' …' : '') : 'none'}\n`,
        );
        const st = r.paced.daemonStalls;
        const longest = st.longest.map((x) => `${(x.atMs / 1000).toFixed(1)}s ${fmtInt(x.ms)}ms${x.kind === 'gc' ? ' (gc)' : ''}`);
        process.stdout.write(
          `  ${' '.repeat(label(r).length)}  daemon event loop blocked ≥ 20 ms ${st.blocks} times (max ${fmtInt(st.blockMaxMs)} ms, ${fmtInt(st.blockTotalMs)} ms in all), GC pauses ≥ 20 ms ${st.gcPauses} (max ${fmtInt(st.gcMaxMs)} ms)${longest.length ? `; longest: ${longest.join(', ')}` : ''}\n`,
        );
      }
      const samples = results.flatMap((r) => [...r.paced.check.leakSamples, ...r.capacity.check.leakSamples].map((l) => ({ run: r.name, ...l })));
      if (samples.length) process.stdout.write(`Foreign deliveries (first ones): ${JSON.stringify(samples.slice(0, 5))}\n`);
    }
    process.stdout.write('\nTargets\n');
    for (const t of targets) {
      const v = t.value === null ? 'not measured' : String(t.value);
      process.stdout.write(`  ${t.met === null ? '-     ' : t.met ? 'met   ' : 'MISSED'}  ${t.name}: ${v}\n`);
    }
    process.stdout.write(`\nnode ${out.node}, Postgres ${out.postgres}, ${out.cpus} cpus (${out.cpuModel}), load ${out.loadAverage.join(' ')}, ${out.totalSeconds} s\n`);
    if (PROFILE_DIR) process.stdout.write(`walcast CPU profiles written to ${PROFILE_DIR}\n`);
  } finally {
    await clients.stop().catch(() => {});
    for (const w of writers) await w.end().catch(() => {});
    await db.end().catch(() => {});
    await pgServer.destroy();
  }
}

function sum(xs: readonly number[]): number {
  let s = 0;
  for (const x of xs) s += x;
  return s;
}

function positive(v: string | undefined, name: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) usage(`--${name} must be a positive integer, got ${JSON.stringify(v)}`);
  return n;
}

function usage(msg: string): never {
  process.stderr.write(
    `${msg ? msg + '\n' : ''}usage: node dist/bench/auth.js [--subscribers 10000] [--rooms 1000] [--rate 1000] [--seconds 10] [--capacity-rows 20000]\n` +
      `  [--unfiltered-rate 5] [--unfiltered-seconds 5] [--unfiltered-capacity-rows 200] [--client-procs 2] [--runs auth,filtered,unfiltered]\n` +
      `  [--profile-daemon DIR] [--daemon-arg=--serve-flag=value …]\n`,
  );
  process.exit(msg ? 2 : 0);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
