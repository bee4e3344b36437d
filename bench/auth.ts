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
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { startThrowawayPostgres, type ThrowawayPostgres } from '../src/pg/throwaway.js';
import { migrate } from '../src/sql/migrate.js';
import type { AuthClientDetail, AuthClientStats, AuthConnectArgs, AuthResetArgs, LeakSample } from './lib/auth-clients.js';
import { printAuthReport, type CapacityPhase, type Check, type PacedPhase, type RunName, type RunResult, type SlowWindow, type Stall, type StallSummary } from './lib/auth-report.js';
import { roomOf } from './lib/auth-scenario.js';
import { dropSlot, ensureOpenFiles, log, positive as positiveOf, runMain, sleep, sum } from './lib/common.js';
import { reapDaemonsOnExit, startWalcast } from './lib/daemon.js';
import { StatsPool } from './lib/pool.js';
import { pacedInserts, type PacedWrites } from './lib/writer.js';
import { machine, type Target } from './lib/report.js';
import { cpuMsOf, nowMs, rssOf } from './lib/rpc.js';
import { fmtInt, percentile, round, spread, Stopwatch } from './lib/stats.js';

const TARGETS = { p99Ms: 50, vsNoAuth: 0.5 };
const HOST = '127.0.0.1';
const TABLE = 'bench_auth';
const QTABLE = `public.${TABLE}`;
const RELATION = 'public.room_members {user_id} room:{room_id}';
const POLICY_COND = 'g2(r.sub.id, "room:" + r.obj.row.room_id)';

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
const ALL_RUNS: RunName[] = ['auth', 'filtered', 'unfiltered'];
const RUNS = new Set((args.runs ?? '').split(',').map((s) => s.trim()) as RunName[]);
if (RUNS.size === 0 || [...RUNS].some((r) => !ALL_RUNS.includes(r))) usage(`--runs takes auth,filtered,unfiltered, got ${JSON.stringify(args.runs)}`);
const PROFILE_DIR = args['profile-daemon'] ? path.resolve(args['profile-daemon']) : null;
/** Extra `walcast serve` arguments for both daemons (diagnostics: --daemon-arg=--progress-interval=10m). */
const DAEMON_ARGS: string[] = args['daemon-arg'] ?? [];
const WARMUP_MS = 1_000;
const IDLE_MS = 2_000;

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

interface PacedResult extends PacedWrites {
  transactions: number;
  firstId: number;
}

/** `rate` single-row transactions/s for `ms`, random rooms, over the given connections. */
async function paced(conns: pg.Client[], rate: number, ms: number, random: () => number): Promise<PacedResult> {
  const total = Math.max(1, Math.round((rate * ms) / 1000));
  const firstId = nextId;
  const next = (): { id: number; room: number } => ({ id: nextId++, room: Math.floor(random() * ROOMS) });
  const w = await pacedInserts(conns, rate, total, INSERT, next, (id, room, sent) => [id, room, sent, author(id), body(id)]);
  return { transactions: total, firstId, ...w };
}

// ── load clients ──────────────────────────────────────────────────────────────────────────

class ClientPool extends StatsPool<AuthClientStats> {
  protected override extraCounters: Array<keyof AuthClientStats & string> = ['foreign'];

  static start(n: number): ClientPool {
    return new ClientPool(StatsPool.fork(n, 'auth-clients.js'));
  }

  /** `total` connections split over the client processes; resolves when all are subscribed. */
  async connect(port: number, total: number, o: { secret?: string; filtered: boolean }): Promise<{ ms: number; tokenMs: number }> {
    const w = new Stopwatch();
    const res = await Promise.all(
      this.split(total, Math.ceil(total / this.procs.length)).map(({ count, offset }, i) => {
        const a: AuthConnectArgs = { host: HOST, port, count, offset, rooms: ROOMS, table: QTABLE, secret: o.secret, filtered: o.filtered, timeoutMs: 120_000 };
        return this.procs[i].call<{ ms: number; tokenMs: number }>('connect', a, 130_000);
      }),
    );
    return { ms: w.elapsedMs(), tokenMs: Math.max(...res.map((r) => r.tokenMs)) };
  }

  reset(a: AuthResetArgs): Promise<unknown> {
    return this.each('reset', a);
  }

  /** Polls until `expected` deliveries arrived (see StatsPool.waitFor), every 50 ms. */
  wait(expected: number, idleMs: number, timeoutMs: number): ReturnType<StatsPool<AuthClientStats>['waitFor']> {
    return this.waitFor(expected, idleMs, timeoutMs, 50, nowMs);
  }

  details(): Promise<AuthClientDetail[]> {
    return this.each<AuthClientDetail>('detail');
  }

  /**
   * Where the tail is: samples above `overMs`, grouped in windows of `windowMs` by the time
   * their row was written (ms after `t0`), busiest first.
   */
  async slowWindows(overMs: number, t0: number, windowMs = 100): Promise<SlowWindow[]> {
    const parts = await this.each<Float64Array>('slowSamples', { overMs });
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

  override async closeAll(): Promise<void> {
    await super.closeAll(500); // let the server see the closes
  }
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

// ── correctness ───────────────────────────────────────────────────────────────────────────

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

const STALL_MARK = '@@bench-stall '; // written by bench/lib/stall-hook.ts
reapDaemonsOnExit();

async function startDaemon(url: string, slot: string, secret: string | null): Promise<Daemon> {
  const stalls: Stall[] = [];
  const w = await startWalcast({
    nodeArgs: ['--import', new URL('./lib/stall-hook.js', import.meta.url).href],
    profileDir: PROFILE_DIR,
    serveArgs: ['--db', url, '--port', '0', '--slot', slot, '--log-level', 'warn', ...DAEMON_ARGS, ...(secret ? ['--relation', RELATION] : ['--no-auth'])],
    env: secret ? { WALCAST_JWT_SECRET: secret } : {},
    marks: { [STALL_MARK]: (rest) => stalls.push(JSON.parse(rest) as Stall) },
  });
  let paused = false;
  return {
    pid: w.pid,
    stalls,
    port: w.port,
    slot,
    pause() {
      paused = true;
      w.child.kill('SIGSTOP');
    },
    resume() {
      paused = false;
      w.child.kill('SIGCONT');
    },
    async stop() {
      if (paused) w.child.kill('SIGCONT');
      await w.stop();
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

// ── phases ────────────────────────────────────────────────────────────────────────────────

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
  await clients.wait(expectedDeliveries(warmRows, name), 3_000, 60_000);
  await sleep(200);

  log(`${name}: paced, ${fmtInt(rate)} tx/s for ${seconds} s`);
  await clients.reset({ mode: 'check', latency: true, minId: nextId });
  const cpu0 = cpuOf(daemon.pid);
  const ws0 = cpuOf(wsPid);
  const t0 = nowMs();
  const res = await paced(writers, rate, seconds * 1000, random);
  const rr = await roomRows(db, res.firstId, nextId);
  const expected = expectedDeliveries(rr, name);
  const s = await clients.wait(expected, 5_000, 120_000);
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
    ...spread(lat),
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
  const c = await clients.wait(capExpected, 10_000, 300_000);
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
  ensureOpenFiles(SUBS, '--subscribers', false);
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
    const targets: Target[] = [
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
      ...machine(ver[0].v),
      clientProcesses: CLIENT_PROCS,
      runs: results,
      ratios: { capacityAuthVsUnfiltered: capVsUnfiltered, capacityAuthVsFiltered: capVsFiltered, pacedAuthVsFiltered: pacedVsFiltered },
      targets,
      totalSeconds: round(total.elapsedMs() / 1000, 1),
    };
    process.stdout.write(JSON.stringify(out) + '\n');

    printAuthReport(results, targets, out, { subscribers: SUBS, rooms: ROOMS, membersPerRoom: membersOf(0), p99TargetMs: TARGETS.p99Ms, profileDir: PROFILE_DIR });
  } finally {
    await clients.stop().catch(() => {});
    for (const w of writers) await w.end().catch(() => {});
    await db.end().catch(() => {});
    await pgServer.destroy();
  }
}

function positive(v: string | undefined, name: string): number {
  return positiveOf(v, name, usage);
}

function usage(msg: string): never {
  process.stderr.write(
    `${msg ? msg + '\n' : ''}usage: node dist/bench/auth.js [--subscribers 10000] [--rooms 1000] [--rate 1000] [--seconds 10] [--capacity-rows 20000]\n` +
      `  [--unfiltered-rate 5] [--unfiltered-seconds 5] [--unfiltered-capacity-rows 200] [--client-procs 2] [--runs auth,filtered,unfiltered]\n` +
      `  [--profile-daemon DIR] [--daemon-arg=--serve-flag=value …]\n`,
  );
  process.exit(msg ? 2 : 0);
}

runMain(main);
