// Channels (issue #5): broadcast round trip and throughput in many small rooms, and presence
// convergence in one large channel, with authorization on as in production.
//
// Scenario. Users u0…u<clients-1>; user n is a member of room floor(n / room-size) (rows of
// public.room_members, mirrored by the daemon as g2 links with
// --relation "public.room_members {user_id} room:{room_id}"), and users u0…u<presence-clients-1>
// are members of "room:all" (g2 links in walcast.casbin_rule). Policies:
//   p, *, channel, room:*, join|broadcast|presence, g2(r.sub.id, r.obj.name)
// The daemon is `node bin/walcast.js serve` with an HS256 secret (WALCAST_JWT_SECRET, the same as
// --jwt-secret without showing in ps) and that relation; every client connects with
// ?token=<HS256 JWT, sub u<n>>.
//
// Runs:
//   paced     every client is joined to its room ("room:<r>") and sends --rate broadcasts/s
//             ({type:"broadcast", channel, event, payload:{t, id}, self:true}; the process's
//             sends spread evenly over time). With self:true a sender gets its own broadcast
//             back after the room's other members were queued: arrival − t is one round-trip
//             sample. --warmup s, then --seconds s measured.
//   max       the same clients, each sending as fast as its own echoes come back with at most
//             W broadcasts outstanding: deliveries/s and broadcasts/s at the clients over the
//             measured seconds, and the round trips under that load (queueing: about
//             clients × W / broadcasts/s). One run per W of --window (1 and 4 by default).
//   presence  --presence-clients fresh connections; at one instant each joins "room:all" and
//             tracks {name}. Each client applies presence_state, then presence_diff in order, to
//             its own view (keys = user ids). Convergence: from the first join sent until every
//             view holds all the keys. Bytes received per client from its join on.
// Every broadcast run checks, per connection, that it received exactly the broadcasts sent to
// its room (none lost, none twice); the presence run checks every final view (all keys, one meta
// each, the right {name}).
//
// Processes: this one (orchestrator), Postgres (throwaway), the daemon, and load clients
// (bench/lib/channel-clients.ts, two processes by default) so that client work is never counted
// against the daemon. Prints one JSON line, then readable tables. Exits 0 whatever the figures;
// non-zero only when the benchmark itself failed.
// Run: npm run bench:channels   (options: see usage() and bench/README.md)
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { startThrowawayPostgres, type ThrowawayPostgres } from '../src/pg/throwaway.js';
import { migrate } from '../src/sql/migrate.js';
import { addRule, toRule } from '../src/sql/policy.js';
import type { BroadcastRunArgs, BroadcastRunResult, ChannelConnectArgs, MissingResult, PresenceRunArgs, PresenceRunResult } from './lib/channel-clients.js';
import { concatSorted, dropSlot, ensureOpenFiles, log, optionParsers, runMain, sleep, sleepUntil, sum } from './lib/common.js';
import { startWalcast } from './lib/daemon.js';
import { BasePool } from './lib/pool.js';
import { machine, ms2, printMachineLine } from './lib/report.js';
import { cpuMsOf, nowMs, rssOf } from './lib/rpc.js';
import { fmtInt, percentile, round, spread, table, type Spread } from './lib/stats.js';

const HOST = '127.0.0.1';
const SLOT = 'bench_channels';
const RELATION = 'public.room_members {user_id} room:{room_id}';
const POLICY_COND = 'g2(r.sub.id, r.obj.name)';
const PRESENCE_CHANNEL = 'room:all';
/** Lines of bench/lib/channel-daemon-hook.ts (not imported: it would run its timers here too). */
const PAUSE_MARK = '@@bench-pause ';
const PAUSE_SETTLE_MS = 500;

const { positive, positiveNumber } = optionParsers(usage);
const { values: args } = parseArgs({
  options: {
    clients: { type: 'string', default: '2000' },
    'room-size': { type: 'string', default: '10' },
    rate: { type: 'string', default: '1' },
    window: { type: 'string', default: '1,4' },
    seconds: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    'presence-clients': { type: 'string', default: '1000' },
    'client-procs': { type: 'string', default: '2' },
    runs: { type: 'string', default: 'paced,max,presence' },
    'profile-daemon': { type: 'string' },
    'daemon-arg': { type: 'string', multiple: true, default: [] },
    help: { type: 'boolean', default: false },
  },
});
if (args.help) usage('');
const CLIENTS = positive(args.clients, 'clients');
const ROOM_SIZE = positive(args['room-size'], 'room-size');
const RATE = positiveNumber(args.rate, 'rate');
/** One max run per window size. */
const WINDOWS = (args.window ?? '').split(',').map((w) => positive(w.trim(), 'window'));
const SECONDS = positiveNumber(args.seconds, 'seconds');
const WARMUP = Number(args.warmup);
if (!(WARMUP >= 0)) usage(`--warmup must be 0 or more seconds, got ${JSON.stringify(args.warmup)}`);
const P_CLIENTS = positive(args['presence-clients'], 'presence-clients');
const CLIENT_PROCS = positive(args['client-procs'], 'client-procs');
type RunName = 'paced' | 'max' | 'presence';
const ALL_RUNS: RunName[] = ['paced', 'max', 'presence'];
const RUNS = new Set((args.runs ?? '').split(',').map((s) => s.trim()) as RunName[]);
if (RUNS.size === 0 || [...RUNS].some((r) => !ALL_RUNS.includes(r))) usage(`--runs takes paced,max,presence, got ${JSON.stringify(args.runs)}`);
const PROFILE_DIR = args['profile-daemon'] ? path.resolve(args['profile-daemon']) : null;
/** Extra `walcast serve` arguments (diagnostics). */
const DAEMON_ARGS: string[] = args['daemon-arg'] ?? [];
const ROOMS = Math.ceil(CLIENTS / ROOM_SIZE);

// ── the machine ───────────────────────────────────────────────────────────────────────────

/** /proc/stat's first line: all CPUs' time so far, in ticks; `steal` = taken by the hypervisor. */
function machineTicks(): { total: number; steal: number; idle: number } {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0].trim().split(/\s+/).slice(1, 9).map(Number);
    return { total: f.reduce((a, b) => a + b, 0), idle: f[3] + f[4], steal: f[7] ?? 0 };
  } catch {
    return { total: 0, steal: 0, idle: 0 }; // not Linux
  }
}

/**
 * Share of the machine's CPU time between two readings that the hypervisor gave to others
 * (steal) and that was idle, in %. Steal is invisible to `ps`: another VM on the same host.
 */
function machineShare(a: ReturnType<typeof machineTicks>, b: ReturnType<typeof machineTicks>): { stealPct: number; idlePct: number } {
  const total = b.total - a.total;
  if (total <= 0) return { stealPct: Number.NaN, idlePct: Number.NaN };
  return { stealPct: round(((b.steal - a.steal) / total) * 100, 1), idlePct: round(((b.idle - a.idle) / total) * 100, 1) };
}

// ── database ──────────────────────────────────────────────────────────────────────────────

async function setup(db: pg.Client): Promise<void> {
  await db.query('create table room_members (user_id text, room_id int, primary key (user_id, room_id))');
  await db.query(`select walcast.enable('room_members')`);
  await db.query(`insert into room_members (user_id, room_id) select 'u' || g, g / $2 from generate_series(0, $1 - 1) g`, [CLIENTS, ROOM_SIZE]);
  for (const act of ['join', 'broadcast', 'presence']) await addRule(db, toRule('p', ['*', 'channel', 'room:*', act, POLICY_COND]));
  // room:all has no room_id (an int): its members are g2 links in the policy table itself.
  await db.query(
    `insert into walcast.casbin_rule (ptype, v0, v1, v2, v3, v4, v5)
     select 'g2', 'u' || g, $2, '', '', '', '' from generate_series(0, $1 - 1) g`,
    [P_CLIENTS, PRESENCE_CHANNEL],
  );
}

// ── the daemon ────────────────────────────────────────────────────────────────────────────

interface Daemon {
  pid: number;
  port: number;
  /** GC pauses and event-loop blocks, as bench/lib/channel-daemon-hook.ts reports them. */
  pauses: Pause[];
  stop(): Promise<void>;
}

interface Pause {
  kind: 'gc' | 'block';
  /** Wall clock, ms. */
  at: number;
  ms: number;
  /** Blocks: the daemon's CPU time within it (about `ms` when busy, less when descheduled). */
  cpuMs?: number;
}

interface PauseSummary {
  /** GC pause time within the interval, ms, and the longest pause. */
  gcMs: number;
  gcMaxMs: number;
  /** Event-loop blocks of 10 ms or more (GC included): how many, the longest, their total. */
  blocks: number;
  blockMaxMs: number;
  blockMs: number;
  /** The daemon's CPU time within those blocks: near blockMs = busy, much less = descheduled. */
  blockCpuMs: number;
}

function pausesBetween(d: Daemon, from: number, to: number): PauseSummary {
  const r: PauseSummary = { gcMs: 0, gcMaxMs: 0, blocks: 0, blockMaxMs: 0, blockMs: 0, blockCpuMs: 0 };
  for (const p of d.pauses) {
    // A block is reported when it ends: count it when it overlaps the interval.
    if (p.kind === 'gc' ? p.at < from || p.at >= to : p.at + p.ms < from || p.at >= to) continue;
    if (p.kind === 'gc') {
      r.gcMs += p.ms;
      r.gcMaxMs = Math.max(r.gcMaxMs, p.ms);
    } else {
      r.blocks++;
      r.blockMaxMs = Math.max(r.blockMaxMs, p.ms);
      r.blockMs += p.ms;
      r.blockCpuMs += p.cpuMs ?? 0;
    }
  }
  return { gcMs: round(r.gcMs, 1), gcMaxMs: round(r.gcMaxMs, 1), blocks: r.blocks, blockMaxMs: round(r.blockMaxMs, 1), blockMs: round(r.blockMs), blockCpuMs: round(r.blockCpuMs) };
}

async function startDaemon(url: string, secret: string): Promise<Daemon> {
  const pauses: Pause[] = [];
  const w = await startWalcast({
    nodeArgs: ['--import', new URL('./lib/channel-daemon-hook.js', import.meta.url).href],
    profileDir: PROFILE_DIR,
    // Throughput, not abuse: the broadcast budgets (issue 11) lifted, or "max" would measure refusals.
    serveArgs: ['--db', url, '--port', '0', '--slot', SLOT, '--log-level', 'warn', '--relation', RELATION, '--broadcast-rate', '1000000', '--broadcast-bytes-rate', '1GiB', ...DAEMON_ARGS],
    env: { WALCAST_JWT_SECRET: secret }, // = --jwt-secret, without showing in ps
    marks: { [PAUSE_MARK]: (rest) => pauses.push(JSON.parse(rest) as Pause) },
  });
  return { pid: w.pid, port: w.port, pauses, stop: () => w.stop() };
}

// ── load clients ──────────────────────────────────────────────────────────────────────────

class ClientPool extends BasePool {
  static start(n: number): ClientPool {
    return new ClientPool(BasePool.fork(n, 'channel-clients.js'));
  }

  /** `total` connections (users u0…), in contiguous blocks per process; resolves when all are ready. */
  async connect(port: number, secret: string, total: number, roomSize: number | undefined): Promise<number> {
    const t0 = performance.now();
    // Blocks of whole rooms, so that a room's members share a process when they can.
    const per = Math.ceil(total / this.procs.length / (roomSize ?? 1)) * (roomSize ?? 1);
    await Promise.all(
      this.split(total, per).map(({ count, offset }, i) => {
        const a: ChannelConnectArgs = { host: HOST, port, secret, count, offset, roomSize, timeoutMs: 120_000 };
        return this.procs[i].call('connect', a, 130_000);
      }),
    );
    return performance.now() - t0;
  }

  override async closeAll(): Promise<void> {
    await super.closeAll(500, 10_000); // let the daemon see the closes (and drop their channels)
  }
}

// ── broadcast runs ────────────────────────────────────────────────────────────────────────

interface BroadcastResult extends Spread {
  name: 'paced' | 'max';
  how: string;
  /** max: own broadcasts outstanding per client at most. */
  window: number | null;
  clients: number;
  rooms: number;
  roomSize: number;
  seconds: number;
  /** In the measured seconds: broadcasts sent, own echoes back, broadcast frames received. */
  broadcastsPerSec: number;
  echoesPerSec: number;
  deliveriesPerSec: number;
  avgFrameBytes: number;
  rttSamples: number;
  daemonCpuMs: number;
  /** Daemon CPU over the measured seconds (1 = one core). */
  daemonCores: number;
  clientCores: number;
  clientElu: number[];
  /** Client processes' event-loop delay over the measured seconds, worst process (ms). */
  clientLoopDelayP99Ms: number;
  clientLoopDelayMaxMs: number;
  /** The daemon's GC pauses and event-loop blocks over the measured seconds. */
  daemonPauses: PauseSummary;
  /** Over the measured seconds: % of the machine's CPU time stolen by the hypervisor, and idle. */
  machine: { stealPct: number; idlePct: number };
  /** Over the whole run (warm-up and drain included). */
  sent: number;
  received: number;
  missing: number;
  extra: number;
  outstanding: number;
  complete: boolean;
  unexpectedCloses: number;
  closeCodes: Record<string, number>;
  problems: string[];
  otherFrames: number;
  otherSamples: string[];
  senderMaxLagMs: number;
}

async function broadcastRun(daemon: Daemon, clients: ClientPool, name: 'paced' | 'max', window = 1): Promise<BroadcastResult> {
  const startAt = nowMs() + 300;
  const a: BroadcastRunArgs = { mode: name === 'max' ? 'window' : 'paced', rate: RATE, window, startAt, warmupMs: WARMUP * 1000, measureMs: SECONDS * 1000, drainTimeoutMs: 15_000 };
  const how = name === 'max' ? `each client as fast as its echoes return, at most ${window} outstanding` : `each client ${RATE}/s, spread evenly`;
  log(`${name}: ${how}; ${WARMUP} s warm-up, ${SECONDS} s measured`);
  const running = clients.each<BroadcastRunResult>('broadcast', a, 300 + (WARMUP + SECONDS) * 1000 + a.drainTimeoutMs + 30_000);
  // Daemon CPU over the measured seconds, sampled at their start and end.
  await sleepUntil(startAt + a.warmupMs);
  const cpu0 = cpuMsOf(daemon.pid);
  const m0 = machineTicks();
  await sleepUntil(startAt + a.warmupMs + a.measureMs);
  const cpuMs = cpuMsOf(daemon.pid) - cpu0;
  const machine = machineShare(m0, machineTicks());
  const parts = await running;
  const sentByRoom = new Array<number>(ROOMS).fill(0);
  for (const p of parts) p.sentByRoom.forEach((v, r) => (sentByRoom[r] += v));
  // Every member of a room must get every broadcast sent to it (the sender too: self).
  let miss: MissingResult[];
  let lastMissing = -1;
  let lastChange = performance.now();
  for (;;) {
    miss = await clients.each<MissingResult>('missing', { sentByRoom }, 10_000);
    const m = sum(miss.map((x) => x.missing));
    if (m === 0) break;
    if (m !== lastMissing) {
      lastMissing = m;
      lastChange = performance.now();
    } else if (performance.now() - lastChange > 5_000) {
      log(`  incomplete: ${fmtInt(m)} deliveries missing`);
      break;
    }
    await sleep(100);
  }
  // The hook reports a block when it ends and GC entries a little later: let the last lines in.
  await sleep(PAUSE_SETTLE_MS);
  const rtt = concatSorted(parts.map((p) => p.rtt));
  const s = SECONDS;
  const closeCodes: Record<string, number> = {};
  for (const p of parts) for (const [k, v] of Object.entries(p.closeCodes)) closeCodes[k] = (closeCodes[k] ?? 0) + v;
  const missing = sum(miss.map((x) => x.missing));
  const extra = sum(miss.map((x) => x.extra));
  const outstanding = sum(parts.map((p) => p.outstanding));
  const problems = parts.flatMap((p) => p.problems);
  const deliveries = sum(parts.map((p) => p.deliveriesMeasured));
  const r: BroadcastResult = {
    name,
    how,
    window: name === 'max' ? window : null,
    clients: sum(parts.map((p) => p.connections)),
    rooms: ROOMS,
    roomSize: ROOM_SIZE,
    seconds: s,
    broadcastsPerSec: round(sum(parts.map((p) => p.sentMeasured)) / s),
    echoesPerSec: round(sum(parts.map((p) => p.echoesMeasured)) / s),
    deliveriesPerSec: round(deliveries / s),
    avgFrameBytes: round(sum(parts.map((p) => p.bytesMeasured)) / Math.max(1, deliveries), 1),
    rttSamples: rtt.length,
    ...spread(rtt),
    daemonCpuMs: round(cpuMs),
    daemonCores: round(cpuMs / (s * 1000), 2),
    clientCores: round(sum(parts.map((p) => p.cpuMs)) / (s * 1000), 2),
    clientElu: parts.map((p) => round(p.elu, 2)),
    clientLoopDelayP99Ms: round(Math.max(...parts.map((p) => p.loopDelayP99Ms)), 1),
    clientLoopDelayMaxMs: round(Math.max(...parts.map((p) => p.loopDelayMaxMs)), 1),
    daemonPauses: pausesBetween(daemon, startAt + a.warmupMs, startAt + a.warmupMs + a.measureMs),
    machine,
    sent: sum(parts.map((p) => p.sentTotal)),
    received: sum(miss.map((x) => x.received)),
    missing,
    extra,
    outstanding,
    complete: missing === 0 && extra === 0 && outstanding === 0 && problems.length === 0,
    unexpectedCloses: sum(parts.map((p) => p.unexpectedCloses)),
    closeCodes,
    problems,
    otherFrames: sum(parts.map((p) => p.other)),
    otherSamples: parts.flatMap((p) => p.otherSamples),
    senderMaxLagMs: round(Math.max(...parts.map((p) => p.maxLagMs)), 1),
  };
  log(
    `${name}: ${fmtInt(r.broadcastsPerSec)} broadcasts/s, ${fmtInt(r.deliveriesPerSec)} deliveries/s; round trip p50 ${r.p50} ms, p99 ${r.p99} ms ` +
      `(${fmtInt(r.rttSamples)} samples); daemon ${r.daemonCores} cores, clients ${r.clientCores} cores, ELU ${r.clientElu.join('/')}` +
      `${r.complete ? '' : `; INCOMPLETE: ${fmtInt(missing)} missing, ${fmtInt(extra)} extra, ${fmtInt(outstanding)} outstanding${problems.length ? `, ${problems[0]}` : ''}`}`,
  );
  return r;
}

// ── presence ──────────────────────────────────────────────────────────────────────────────

interface PresenceResult {
  clients: number;
  keys: number;
  channel: string;
  /** From the first join sent to the moment the last view held every key. */
  convergenceMs: number;
  /** Per client, from the first join sent to its view holding every key. */
  clientP50Ms: number;
  clientP90Ms: number;
  converged: number;
  /** How long the clients took to send all the joins and tracks. */
  sendMs: number;
  bytesPerClient: number;
  bytesPerClientMin: number;
  bytesPerClientMax: number;
  framesPerClient: number;
  totalBytes: number;
  presenceStates: number;
  presenceDiffs: number;
  daemonCpuMs: number;
  daemonCores: number;
  clientCpuMs: number;
  clientElu: number[];
  /** The daemon's GC pauses and event-loop blocks from the first join to the last view complete. */
  daemonPauses: PauseSummary;
  /** From the first join to the end: % of the machine's CPU time stolen by the hypervisor, and idle. */
  machine: { stealPct: number; idlePct: number };
  badViews: number;
  badMetas: number;
  errors: number;
  errorSamples: string[];
  unexpectedCloses: number;
  complete: boolean;
}

async function presenceRun(daemon: Daemon, clients: ClientPool, secret: string): Promise<PresenceResult> {
  const connectMs = await clients.connect(daemon.port, secret, P_CLIENTS, undefined);
  log(`presence: ${fmtInt(P_CLIENTS)} clients connected in ${fmtInt(connectMs)} ms; all join ${PRESENCE_CHANNEL} and track {name} at once`);
  await sleep(500);
  const startAt = nowMs() + 300;
  const a: PresenceRunArgs = { channel: PRESENCE_CHANNEL, startAt, expectKeys: P_CLIENTS, timeoutMs: 120_000 };
  const running = clients.each<PresenceRunResult>('presence', a, 150_000);
  await sleepUntil(startAt);
  const cpu0 = cpuMsOf(daemon.pid);
  const m0 = machineTicks();
  const parts = await running;
  const cpuMs = cpuMsOf(daemon.pid) - cpu0;
  const machine = machineShare(m0, machineTicks());
  await sleep(PAUSE_SETTLE_MS); // as in broadcastRun
  const first = Math.min(...parts.map((p) => p.firstJoinAt));
  const conv = concatSorted(parts.map((p) => p.convergedAt.map((t) => t - first)));
  const bytes = concatSorted(parts.map((p) => p.bytes));
  const frames = sum(parts.map((p) => sum(p.frames)));
  const convergedN = conv.filter((v) => Number.isFinite(v)).length;
  const n = bytes.length;
  const last = convergedN === n && n > 0 ? conv[n - 1] : Number.NaN;
  const badViews = sum(parts.map((p) => p.badViews));
  const badMetas = sum(parts.map((p) => p.badMetas));
  const errors = sum(parts.map((p) => p.errors));
  const r: PresenceResult = {
    clients: n,
    keys: P_CLIENTS,
    channel: PRESENCE_CHANNEL,
    convergenceMs: round(last, 1),
    clientP50Ms: round(percentile(conv, 50), 1),
    clientP90Ms: round(percentile(conv, 90), 1),
    converged: convergedN,
    sendMs: round(Math.max(...parts.map((p) => p.lastSendAt)) - first, 1),
    bytesPerClient: round(sum(bytes) / Math.max(1, n)),
    bytesPerClientMin: n ? bytes[0] : 0,
    bytesPerClientMax: n ? bytes[n - 1] : 0,
    framesPerClient: round(frames / Math.max(1, n), 1),
    totalBytes: sum(bytes),
    presenceStates: sum(parts.map((p) => p.presenceStates)),
    presenceDiffs: sum(parts.map((p) => p.presenceDiffs)),
    daemonCpuMs: round(cpuMs),
    daemonCores: round(cpuMs / (Number.isFinite(last) ? last : a.timeoutMs), 2),
    clientCpuMs: round(sum(parts.map((p) => p.cpuMs))),
    clientElu: parts.map((p) => round(p.elu, 2)),
    daemonPauses: pausesBetween(daemon, first, Number.isFinite(last) ? first + last : Infinity),
    machine,
    badViews,
    badMetas,
    errors,
    errorSamples: parts.flatMap((p) => p.errorSamples),
    unexpectedCloses: sum(parts.map((p) => p.unexpectedCloses)),
    complete: convergedN === n && badViews === 0 && badMetas === 0 && errors === 0,
  };
  log(
    `presence: ${fmtInt(r.converged)}/${fmtInt(n)} views complete, the last after ${r.convergenceMs} ms (p50 ${r.clientP50Ms} ms); ` +
      `${fmtInt(r.bytesPerClient)} B per client; daemon ${fmtInt(cpuMs)} ms cpu` +
      `${r.complete ? '' : `; INCOMPLETE: ${badViews} bad views, ${badMetas} bad metas, ${errors} errors ${r.errorSamples[0] ?? ''}`}`,
  );
  return r;
}

// ── main ──────────────────────────────────────────────────────────────────────────────────

async function main(): Promise<void> {
  ensureOpenFiles(Math.max(CLIENTS, P_CLIENTS), '--clients, --presence-clients', true);
  const t0 = performance.now();
  log('starting a throwaway Postgres');
  const pgServer: ThrowawayPostgres = await startThrowawayPostgres({});
  const url = pgServer.url;
  const db = new pg.Client({ connectionString: url });
  const clients = ClientPool.start(CLIENT_PROCS);
  const secret = randomBytes(32).toString('base64url');
  let daemon: Daemon | null = null;
  try {
    await migrate(url);
    await db.connect();
    await setup(db);
    const { rows: ver } = await db.query<{ v: string }>(`select current_setting('server_version') as v`);
    log(`walcast: starting the daemon (HS256 tokens, relation ${RELATION})`);
    daemon = await startDaemon(url, secret);
    const runs: BroadcastResult[] = [];
    let presence: PresenceResult | null = null;
    let connectMs = 0;
    if (RUNS.has('paced') || RUNS.has('max')) {
      connectMs = await clients.connect(daemon.port, secret, CLIENTS, ROOM_SIZE);
      log(`${fmtInt(CLIENTS)} clients connected and joined ${fmtInt(ROOMS)} rooms in ${fmtInt(connectMs)} ms`);
      if (RUNS.has('paced')) runs.push(await broadcastRun(daemon, clients, 'paced'));
      if (RUNS.has('max')) for (const w of WINDOWS) runs.push(await broadcastRun(daemon, clients, 'max', w));
      await clients.closeAll();
    }
    if (RUNS.has('presence')) presence = await presenceRun(daemon, clients, secret);
    const daemonRss = rssOf(daemon.pid);
    const out = {
      bench: 'channels',
      timing:
        'round trip = arrival of the sender’s own broadcast (self:true) − payload.t, the sender’s wall clock just before sending (performance.timeOrigin + now, sub-ms); ' +
        'deliveries/s = broadcast frames received by all clients in the measured seconds / seconds; daemon cores = daemon CPU (/proc, all threads) over the measured seconds; ' +
        'presence convergence = last client’s view complete − first join sent',
      ...machine(ver[0].v),
      clientProcesses: CLIENT_PROCS,
      auth: { tokens: 'HS256 ?token=', relation: RELATION, policies: ['join', 'broadcast', 'presence'].map((act) => `p, *, channel, room:*, ${act}, ${POLICY_COND}`) },
      clients: CLIENTS,
      roomSize: ROOM_SIZE,
      rooms: ROOMS,
      connectMs: round(connectMs),
      broadcast: runs,
      presence,
      daemonRssMiB: round(daemonRss / 1024 / 1024, 1),
      totalSeconds: round((performance.now() - t0) / 1000, 1),
    };
    process.stdout.write(JSON.stringify(out) + '\n');

    const ms = ms2;
    if (runs.length) {
      process.stdout.write(`\nBroadcast: ${fmtInt(CLIENTS)} clients in ${fmtInt(ROOMS)} rooms of ${ROOM_SIZE} (self: true; round trip = own echo − send time, ms; ${SECONDS} s measured)\n`);
      process.stdout.write(
        table(
          ['run', 'sending', 'broadcasts/s', 'deliveries/s', 'B/frame', 'samples', 'rtt p50', 'p90', 'p99', 'p99.9', 'max', 'daemon cores', 'daemon gc ms (max)', 'daemon blocks ≥10ms (max; busy/all ms)', 'client cores', 'client ELU', 'steal %', 'complete'],
          runs.map((r) => [
            r.name,
            r.name === 'max' ? `window ${r.window}` : `${RATE}/s each`,
            fmtInt(r.broadcastsPerSec),
            fmtInt(r.deliveriesPerSec),
            fmtInt(r.avgFrameBytes),
            fmtInt(r.rttSamples),
            ms(r.p50),
            ms(r.p90),
            ms(r.p99),
            ms(r.p999),
            ms(r.max),
            r.daemonCores.toFixed(2),
            `${fmtInt(r.daemonPauses.gcMs)} (${r.daemonPauses.gcMaxMs.toFixed(1)})`,
            `${fmtInt(r.daemonPauses.blocks)} (${fmtInt(r.daemonPauses.blockMaxMs)}; ${fmtInt(r.daemonPauses.blockCpuMs)}/${fmtInt(r.daemonPauses.blockMs)})`,
            r.clientCores.toFixed(2),
            r.clientElu.join('/'),
            r.machine.stealPct.toFixed(1),
            r.complete ? 'yes' : `NO (${fmtInt(r.missing)} missing, ${fmtInt(r.extra)} extra)`,
          ]),
        ) + '\n',
      );
    }
    if (presence) {
      const p = presence;
      process.stdout.write(`\nPresence: ${fmtInt(p.clients)} clients join ${p.channel} and track {name} at once (ms from the first join sent)\n`);
      process.stdout.write(
        table(
          ['clients', 'converged', 'all views complete ms', 'client p50 ms', 'client p90 ms', 'joins sent in ms', 'B/client', 'frames/client', 'daemon cpu ms', 'daemon cores', 'daemon gc ms (max)', 'client cpu ms', 'client ELU', 'steal %', 'complete'],
          [
            [
              fmtInt(p.clients),
              fmtInt(p.converged),
              Number.isFinite(p.convergenceMs) ? fmtInt(p.convergenceMs) : '?',
              fmtInt(p.clientP50Ms),
              fmtInt(p.clientP90Ms),
              fmtInt(p.sendMs),
              fmtInt(p.bytesPerClient),
              fmtInt(p.framesPerClient),
              fmtInt(p.daemonCpuMs),
              p.daemonCores.toFixed(2),
              `${fmtInt(p.daemonPauses.gcMs)} (${p.daemonPauses.gcMaxMs.toFixed(1)})`,
              fmtInt(p.clientCpuMs),
              p.clientElu.join('/'),
              p.machine.stealPct.toFixed(1),
              p.complete ? 'yes' : 'NO',
            ],
          ],
        ) + '\n',
      );
    }
    printMachineLine(out);
    if (PROFILE_DIR) process.stdout.write(`walcast CPU profile written to ${PROFILE_DIR}\n`);
  } finally {
    await clients.stop().catch(() => {});
    await daemon?.stop().catch(() => {});
    await dropSlot(db, SLOT).catch(() => {});
    await db.end().catch(() => {});
    await pgServer.destroy();
  }
}

function usage(msg: string): never {
  process.stderr.write(
    `${msg ? msg + '\n' : ''}usage: node dist/bench/channels.js [--clients 2000] [--room-size 10] [--rate 1] [--window 1,4] [--seconds 10] [--warmup 2]\n` +
      `  [--presence-clients 1000] [--client-procs 2] [--runs paced,max,presence] [--profile-daemon DIR] [--daemon-arg=--flag=value …]\n`,
  );
  process.exit(msg ? 2 : 0);
}

runMain(main);
