// Churn (issue #6): 10,000 clients connecting, subscribing and dropping in waves, while a paced
// writer commits, to show that nothing a wave takes stays behind (connections, subscriptions,
// JS heap) and that the daemon's memory does not grow from wave to wave.
//
// Scenario. A throwaway Postgres; table public.bench_churn (bench/lib/room-writer.ts: rows
// with a per-room seq, rooms routed to writer connections so each room commits in order),
// --rate single-row transactions/s over 4 connections into random rooms, from before the first
// wave to the end. The daemon runs with --history-age (20 s by default) so that its resume
// window is full, and stays the same size, before the first wave: its growth is not taken for
// a leak. Identities 0…clients-1 (bench/lib/churn-clients.ts, split over --client-procs
// processes), each with one subscription: room=eq.<n % rooms>, or unfiltered for about
// --unfiltered-pct% of them. Each wave:
//   connect  every identity connects and subscribes (at most --concurrency handshakes in
//            flight per client process); from the second wave on, --resume-pct% of them
//            resume with `since` = the last position their previous connection saw, and get
//            what they missed as a catch-up before `subscribed`.
//   hold     --hold seconds, all subscribed, the writer going.
//   drop     every connection goes: --clean-pct% with unsubscribe + a WebSocket close frame,
//            the rest abruptly (socket destroyed, no close frame).
//   settle   GET /status is polled until it shows 0 clients and 0 subscriptions; then full GCs
//            in the daemon (bench/lib/daemon-hook.ts, SIGUSR2) and its memory.
// Per wave: connects/s and the per-connection time to `subscribed` (p50/p99), deliveries and
// commit-to-client latency (receive time − sent_at_ms), the daemon's RSS at the start, at its
// peak (sampled every 200 ms) and after the drop (after full GCs), its JS heap after the drop,
// /status after the drop, CPU and event-loop blocks. Every change is checked (its room's seq
// must go up by one: no hole, no repeat, also across a resume).
//
// Prints one JSON line, then a table and the checks, each marked met or MISSED. Exits 0
// whatever the figures; non-zero only when the benchmark itself failed.
// Run: npm run bench:churn   (options: see usage() and bench/README.md)
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { ChurnPool, PooledConnect, PooledTake } from './lib/churn-pool.js';
import { withChurnRig, type ChurnRigOptions } from './lib/churn-rig.js';
import { ensureOpenFiles, log, optionParsers, runMain, sleep } from './lib/common.js';
import { reapDaemonsOnExit } from './lib/daemon.js';
import { stallsBetween, type DaemonMem, type DaemonStatus, type ProbedDaemon } from './lib/daemon-probe.js';
import { Histogram } from './lib/histogram.js';
import { machine, ms2, printMachineLine, printTargets, type Target } from './lib/report.js';
import type { RoomWriter } from './lib/room-writer.js';
import { nowMs } from './lib/rpc.js';
import { fmtInt, percentile, round, Stopwatch, table, type Spread } from './lib/stats.js';

const SLOT = 'bench_churn';
const TABLE = 'bench_churn';
const QTABLE = `public.${TABLE}`;

const { positive, nonNegative, pct } = optionParsers(usage);
const { values: args } = parseArgs({
  options: {
    clients: { type: 'string', default: '10000' },
    waves: { type: 'string', default: '5' },
    hold: { type: 'string', default: '10' },
    rate: { type: 'string', default: '100' },
    rooms: { type: 'string', default: '100' },
    'unfiltered-pct': { type: 'string', default: '1' },
    'resume-pct': { type: 'string', default: '30' },
    'clean-pct': { type: 'string', default: '20' },
    'history-age': { type: 'string', default: '20s' },
    warmup: { type: 'string', default: '25' },
    gap: { type: 'string', default: '2' },
    concurrency: { type: 'string', default: '200' },
    'client-procs': { type: 'string', default: '2' },
    auth: { type: 'boolean', default: false },
    'profile-daemon': { type: 'string' },
    'daemon-arg': { type: 'string', multiple: true, default: [] },
    help: { type: 'boolean', default: false },
  },
});
if (args.help) usage('');
const CLIENTS = positive(args.clients, 'clients');
const WAVES = positive(args.waves, 'waves');
const HOLD_S = positive(args.hold, 'hold');
const RATE = positive(args.rate, 'rate');
const ROOMS = positive(args.rooms, 'rooms');
const UNFILTERED_PCT = pct(args['unfiltered-pct'], 'unfiltered-pct');
const RESUME_PCT = pct(args['resume-pct'], 'resume-pct');
const CLEAN_PCT = pct(args['clean-pct'], 'clean-pct');
const HISTORY_AGE = args['history-age'] ?? '20s';
const WARMUP_S = nonNegative(args.warmup, 'warmup');
const GAP_S = nonNegative(args.gap, 'gap');
const CONCURRENCY = positive(args.concurrency, 'concurrency');
const CLIENT_PROCS = positive(args['client-procs'], 'client-procs');
const AUTH = !!args.auth;
const PROFILE_DIR = args['profile-daemon'] ? path.resolve(args['profile-daemon']) : null;
const DAEMON_ARGS: string[] = args['daemon-arg'] ?? [];
const WRITERS = 4;
if (ROOMS < WRITERS) usage(`--rooms must be at least ${WRITERS}`);
const DRAIN_TIMEOUT_MS = 30_000;

/** Checks and thresholds (bench/README.md, "Churn"). */
const LIMITS = { heapGrowthMiB: 2, peakGrowthShare: 0.1 };

interface WaveResult {
  wave: number;
  connect: {
    attempted: number;
    ready: number;
    failed: number;
    failures: string[];
    resumed: number;
    ms: number;
    perSec: number;
    /** Per connection, TCP connect → subscribed, ms. */
    p50: number;
    p99: number;
    max: number;
    /** Changes delivered as catch-ups (subscriptions with since, before `subscribed`). */
    catchup: number;
    /** Live deliveries while the wave was connecting, and their latency. */
    deliveries: number;
    latency: Spread;
  };
  hold: {
    seconds: number;
    deliveries: number;
    deliveriesPerSec: number;
    latency: Spread;
    writerCommits: number;
    commitP99: number;
    clientElu: number[];
  };
  checks: { gaps: number; missing: number; dups: number; foreign: number; resyncs: number; errors: number; errorSamples: string[]; unexpectedCloses: number; closeCodes: Record<string, number> };
  /** daemonCpuMs: the daemon's CPU time from the drop until /status showed no client. */
  drop: { abrupt: number; clean: number; cleanAnswered: number; cleanMs: number; drainMs: number; drained: boolean; daemonCpuMs: number };
  statusConnected: Pick<DaemonStatus, 'clients' | 'subscriptions'>;
  statusAfter: Pick<DaemonStatus, 'clients' | 'subscriptions' | 'channels'> & { windowBytes: number; windowTransactions: number };
  daemon: {
    rssStartMiB: number;
    rssPeakMiB: number;
    rssAfterMiB: number;
    heapUsedAfterMiB: number;
    heapTotalAfterMiB: number;
    externalAfterMiB: number;
    cpuMs: number;
    cores: number;
    blocks: number;
    blockMaxMs: number;
    gcMaxMs: number;
    /** Event-loop blocks (≥ 20 ms) and the longest, by phase. */
    phases: Record<'connect' | 'hold' | 'drop', { blocks: number; blockMaxMs: number; gcMaxMs: number }>;
  };
  seconds: number;
}

const mib = (b: number): number => round(b / 1024 / 1024, 1);

function addChecks(into: WaveResult['checks'], t: PooledTake): void {
  into.gaps += t.gaps;
  into.missing += t.missing;
  into.dups += t.dups;
  into.foreign += t.foreign;
  into.resyncs += t.resyncs;
  into.errors += t.errors;
  into.errorSamples.push(...t.errorSamples.slice(0, 5 - into.errorSamples.length));
  into.unexpectedCloses += t.unexpectedCloses;
  for (const [k, v] of Object.entries(t.closeCodes)) into.closeCodes[k] = (into.closeCodes[k] ?? 0) + v;
}

/** Polls /status until it shows no client and no subscription (or the timeout). */
async function drain(daemon: ProbedDaemon, t0: number): Promise<{ status: DaemonStatus; ms: number; drained: boolean }> {
  for (;;) {
    const status = await daemon.status();
    const ms = nowMs() - t0;
    if (status.clients === 0 && status.subscriptions === 0) return { status, ms: round(ms), drained: true };
    if (ms > DRAIN_TIMEOUT_MS) return { status, ms: round(ms), drained: false };
    await sleep(100);
  }
}

async function wave(k: number, daemon: ProbedDaemon, pool: ChurnPool, writer: RoomWriter, rssStart: number): Promise<{ r: WaveResult; mem: DaemonMem }> {
  const w = new Stopwatch();
  const t0 = nowMs();
  const cpu0 = daemon.cpuMs();
  let peak = daemon.rss();
  const sampler = setInterval(() => {
    try {
      peak = Math.max(peak, daemon.rss());
    } catch {
      // gone: the next call reports it
    }
  }, 200);
  try {
    await pool.take();
    writer.take();
    const checks: WaveResult['checks'] = { gaps: 0, missing: 0, dups: 0, foreign: 0, resyncs: 0, errors: 0, errorSamples: [], unexpectedCloses: 0, closeCodes: {} };

    log(`wave ${k}: connecting ${fmtInt(CLIENTS)} clients${k > 1 ? ` (${RESUME_PCT}% resuming with since)` : ''}`);
    const c: PooledConnect = await pool.connect({ resumePct: k === 1 ? 0 : RESUME_PCT, concurrency: CONCURRENCY, timeoutMs: 120_000 });
    const during = await pool.take();
    const tConnected = nowMs();
    addChecks(checks, during);
    const up = await daemon.status();
    log(
      `wave ${k}: ${fmtInt(c.ready)}/${fmtInt(c.attempted)} subscribed in ${fmtInt(c.ms)} ms (${fmtInt((c.ready / c.ms) * 1000)}/s; p50 ${ms2(percentile(c.times, 50))} ms, p99 ${ms2(percentile(c.times, 99))} ms)` +
        `${c.failed ? `, ${c.failed} FAILED (${c.failures[0]})` : ''}; ${fmtInt(c.resumed)} resumed, ${fmtInt(during.catchup)} catch-up changes; /status ${up.clients} clients, ${up.subscriptions} subscriptions`,
    );

    await sleep(HOLD_S * 1000);
    const hold = await pool.take();
    addChecks(checks, hold);
    const wr = writer.take();
    const holdLatency = hold.latency.spread();
    log(`wave ${k}: hold ${HOLD_S} s: ${fmtInt(hold.deliveries)} deliveries (${fmtInt(hold.deliveries / HOLD_S)}/s), p50 ${holdLatency.p50} ms, p99 ${holdLatency.p99} ms; RSS peak ${mib(peak)} MiB`);

    const tDrop = nowMs();
    const cpuDrop0 = daemon.cpuMs();
    const d = await pool.drop({ cleanPct: CLEAN_PCT, timeoutMs: 10_000 });
    const dr = await drain(daemon, tDrop);
    const dropCpuMs = daemon.cpuMs() - cpuDrop0;
    const after = await pool.take();
    addChecks(checks, after);
    await sleep(1_000);
    const tMem = nowMs(); // the forced GCs below block the daemon: not counted as its own blocks
    const mem = await daemon.mem();
    clearInterval(sampler);
    const cpuMs = daemon.cpuMs() - cpu0;
    const st = stallsBetween(daemon.stalls, t0, tMem);
    log(
      `wave ${k}: dropped ${fmtInt(d.abrupt)} abruptly, ${fmtInt(d.clean)} cleanly (${fmtInt(d.cleanAnswered)} answered); /status ${dr.status.clients} clients, ` +
        `${dr.status.subscriptions} subscriptions after ${fmtInt(dr.ms)} ms; after GC: RSS ${mib(mem.rss)} MiB, heap used ${mib(mem.heapUsed)} MiB`,
    );
    const r: WaveResult = {
      wave: k,
      connect: {
        attempted: c.attempted,
        ready: c.ready,
        failed: c.failed,
        failures: c.failures,
        resumed: c.resumed,
        ms: c.ms,
        perSec: round((c.ready / c.ms) * 1000),
        p50: round(percentile(c.times, 50), 2),
        p99: round(percentile(c.times, 99), 2),
        max: round(c.times.length ? c.times[c.times.length - 1] : Number.NaN, 2),
        catchup: during.catchup + hold.catchup,
        deliveries: during.deliveries,
        latency: during.latency.spread(),
      },
      hold: {
        seconds: HOLD_S,
        deliveries: hold.deliveries,
        deliveriesPerSec: round(hold.deliveries / HOLD_S),
        latency: holdLatency,
        writerCommits: wr.commits,
        commitP99: round(Histogram.from([wr.commit]).percentile(99), 2),
        clientElu: hold.elu,
      },
      checks,
      drop: { ...d, drainMs: dr.ms, drained: dr.drained, daemonCpuMs: round(dropCpuMs) },
      statusConnected: { clients: up.clients, subscriptions: up.subscriptions },
      statusAfter: {
        clients: dr.status.clients,
        subscriptions: dr.status.subscriptions,
        channels: dr.status.channels,
        windowBytes: dr.status.window.bytes,
        windowTransactions: dr.status.window.transactions,
      },
      daemon: {
        rssStartMiB: mib(rssStart),
        rssPeakMiB: mib(peak),
        rssAfterMiB: mib(mem.rss),
        heapUsedAfterMiB: mib(mem.heapUsed),
        heapTotalAfterMiB: mib(mem.heapTotal),
        externalAfterMiB: mib(mem.external),
        cpuMs: round(cpuMs),
        cores: round(cpuMs / w.elapsedMs(), 2),
        ...st,
        phases: {
          connect: stallsBetween(daemon.stalls, t0, tConnected),
          hold: stallsBetween(daemon.stalls, tConnected, tDrop),
          drop: stallsBetween(daemon.stalls, tDrop, tMem),
        },
      },
      seconds: round(w.elapsedMs() / 1000, 1),
    };
    return { r, mem };
  } finally {
    clearInterval(sampler);
  }
}

// ── main ──────────────────────────────────────────────────────────────────────────────────

async function main(): Promise<void> {
  ensureOpenFiles(CLIENTS, '--clients', true);
  reapDaemonsOnExit();
  const total = new Stopwatch();
  const rig: ChurnRigOptions = {
    clients: CLIENTS,
    rooms: ROOMS,
    table: TABLE,
    slot: SLOT,
    writers: WRITERS,
    rate: RATE,
    clientProcs: CLIENT_PROCS,
    unfilteredPct: UNFILTERED_PCT,
    auth: AUTH,
    historyAge: HISTORY_AGE,
    gc: true,
    profileDir: PROFILE_DIR,
    daemonArgs: DAEMON_ARGS,
  };
  await withChurnRig(rig, async ({ pool, daemon, writer, serverVersion, unfiltered }) => {
    writer.start();
    log(`writer: ${RATE} tx/s; warm-up ${WARMUP_S} s (the resume window fills up)`);
    await sleep(WARMUP_S * 1000);
    const baseline = await daemon.mem();
    const baseStatus = await daemon.status();
    log(`baseline after GC: RSS ${mib(baseline.rss)} MiB, heap used ${mib(baseline.heapUsed)} MiB; window ${fmtInt(baseStatus.window.transactions)} transactions, ${mib(baseStatus.window.bytes)} MiB`);

    const waves: WaveResult[] = [];
    let rssStart = baseline.rss;
    for (let k = 1; k <= WAVES; k++) {
      const { r, mem } = await wave(k, daemon, pool, writer, rssStart);
      waves.push(r);
      rssStart = mem.rss;
      if (k < WAVES) await sleep(GAP_S * 1000);
    }
    await writer.stop();
    const finalStatus = await daemon.status();

    // ── report ──
    const first = waves[0];
    const last = waves[waves.length - 1];
    const heapGrowth = round(last.daemon.heapUsedAfterMiB - first.daemon.heapUsedAfterMiB, 1);
    const rssGrowth = round(last.daemon.rssAfterMiB - first.daemon.rssAfterMiB, 1);
    const waveCost = round(first.daemon.rssPeakMiB - mib(baseline.rss), 1);
    const returned = waves.map((r) => round(r.daemon.rssPeakMiB - r.daemon.rssAfterMiB, 1));
    // Wave 1 has no resumes and grows the process once (V8's heap, the allocator's arenas), and
    // the next few may still settle: the last wave's peak is compared with the highest peak of
    // the first half of the waves from wave 2 on (waves 2–3 of 5).
    const early = waves.slice(1, Math.max(2, Math.ceil(WAVES / 2)));
    const earlyPeak = early.length ? Math.max(...early.map((r) => r.daemon.rssPeakMiB)) : Number.NaN;
    const earlyNames = early.length > 1 ? `waves ${early[0].wave}–${early[early.length - 1].wave}` : 'wave 2';
    const peakGrowth = round(last.daemon.rssPeakMiB - earlyPeak, 1);
    const sumOf = (f: (r: WaveResult) => number): number => waves.reduce((a, r) => a + f(r), 0);
    const notDrained = waves.filter((r) => !r.drop.drained || r.statusAfter.clients !== 0 || r.statusAfter.subscriptions !== 0);
    const failed = sumOf((r) => r.connect.failed);
    const unexpected = sumOf((r) => r.checks.unexpectedCloses);
    const gaps = sumOf((r) => r.checks.gaps);
    const dups = sumOf((r) => r.checks.dups);
    const foreign = sumOf((r) => r.checks.foreign);
    const resyncs = sumOf((r) => r.checks.resyncs);
    const errors = sumOf((r) => r.checks.errors);
    const targets: Target[] = [
      {
        name: `after every drop, GET /status shows 0 clients and 0 subscriptions (within ${DRAIN_TIMEOUT_MS / 1000} s)`,
        value: waves.map((r) => `${r.statusAfter.clients}/${r.statusAfter.subscriptions} in ${fmtInt(r.drop.drainMs)} ms`).join(', '),
        met: notDrained.length === 0,
      },
      { name: 'every connection subscribed; no close the clients did not ask for', value: `failed ${failed}, unexpected closes ${unexpected}`, met: failed === 0 && unexpected === 0 },
      {
        name: 'every change exactly once and in order per room, also across resumes (no hole, no repeat, no other room, no resync)',
        value: `gaps ${gaps} (${sumOf((r) => r.checks.missing)} missing), duplicates ${dups}, foreign ${foreign}, resyncs ${resyncs}, errors ${errors}`,
        met: gaps === 0 && dups === 0 && foreign === 0 && resyncs === 0 && errors === 0,
      },
      {
        name: `JS heap after full GCs: last wave ≤ first wave + ${LIMITS.heapGrowthMiB} MiB (nothing kept per connection)`,
        value: `${first.daemon.heapUsedAfterMiB} → ${last.daemon.heapUsedAfterMiB} MiB (${heapGrowth >= 0 ? '+' : ''}${heapGrowth})`,
        met: WAVES > 1 ? heapGrowth <= LIMITS.heapGrowthMiB : null,
      },
      {
        name: `RSS does not grow from wave to wave: peak of the last wave ≤ highest peak of ${earlyNames} + ${LIMITS.peakGrowthShare * 100}% of what wave 1 took (peak − baseline, ${waveCost} MiB)`,
        value: WAVES > 2 ? `${earlyPeak} → ${last.daemon.rssPeakMiB} MiB (${peakGrowth >= 0 ? '+' : ''}${peakGrowth})` : null,
        met: WAVES > 2 ? peakGrowth <= waveCost * LIMITS.peakGrowthShare : null,
      },
    ];
    const out = {
      bench: 'churn',
      scenario: {
        clients: CLIENTS,
        waves: WAVES,
        holdSeconds: HOLD_S,
        rate: RATE,
        rooms: ROOMS,
        unfiltered: unfiltered,
        resumePct: RESUME_PCT,
        cleanPct: CLEAN_PCT,
        historyAge: HISTORY_AGE,
        auth: AUTH,
        concurrencyPerProcess: CONCURRENCY,
        table: QTABLE,
        subscription: `room=eq.<n % ${ROOMS}>, unfiltered for ${unfiltered} identities${AUTH ? '; user u<n> member of room n % rooms (g2 through room_members)' : ''}`,
      },
      timing:
        'connect: per connection from the TCP connect to `subscribed`; rate = subscribed / time for all of a wave. latency = client receive time − sent_at_ms (writer clock before the INSERT; commit included), live deliveries only. ' +
        'RSS: /proc/<pid>/status VmRSS; "after": after the drop, /status drained, then full GCs in the daemon (SIGUSR2 hook).',
      ...machine(serverVersion),
      clientProcesses: CLIENT_PROCS,
      baseline: { rssMiB: mib(baseline.rss), heapUsedMiB: mib(baseline.heapUsed), heapTotalMiB: mib(baseline.heapTotal), windowBytes: baseStatus.window.bytes, windowTransactions: baseStatus.window.transactions },
      waves,
      memory: { waveCostMiB: waveCost, returnedMiB: returned, rssAfterGrowthMiB: rssGrowth, peakGrowthMiB: peakGrowth, heapGrowthMiB: heapGrowth },
      finalStatus,
      targets,
      totalSeconds: round(total.elapsedMs() / 1000, 1),
    };
    process.stdout.write(JSON.stringify(out) + '\n');

    process.stdout.write(
      `\nChurn: ${fmtInt(CLIENTS)} clients × ${WAVES} waves (${HOLD_S} s held; ${CLEAN_PCT}% closed cleanly, the rest dropped; ${RESUME_PCT}% resume with since from wave 2), ` +
        `writer ${RATE} tx/s over ${ROOMS} rooms, ${unfiltered} unfiltered${AUTH ? ', authorization on' : ', --no-auth'}\n`,
    );
    process.stdout.write(
      table(
        ['wave', 'subscribed', 'connect s', 'conn/s', 'p50 ms', 'p99 ms', 'resumed', 'catch-up', 'deliv/s (hold)', 'lat p50', 'lat p99', 'lat max', 'RSS start', 'peak', 'after', 'heap after', '/status after', 'drain ms', 'daemon cores', 'max block ms (connect/hold/drop)'],
        waves.map((r) => [
          String(r.wave),
          `${fmtInt(r.connect.ready)}${r.connect.failed ? ` (${r.connect.failed} failed)` : ''}`,
          (r.connect.ms / 1000).toFixed(1),
          fmtInt(r.connect.perSec),
          ms2(r.connect.p50),
          ms2(r.connect.p99),
          fmtInt(r.connect.resumed),
          fmtInt(r.connect.catchup),
          fmtInt(r.hold.deliveriesPerSec),
          ms2(r.hold.latency.p50),
          ms2(r.hold.latency.p99),
          ms2(r.hold.latency.max),
          r.daemon.rssStartMiB.toFixed(1),
          r.daemon.rssPeakMiB.toFixed(1),
          r.daemon.rssAfterMiB.toFixed(1),
          r.daemon.heapUsedAfterMiB.toFixed(1),
          `${r.statusAfter.clients}/${r.statusAfter.subscriptions}`,
          fmtInt(r.drop.drainMs),
          r.daemon.cores.toFixed(2),
          `${fmtInt(r.daemon.phases.connect.blockMaxMs)}/${fmtInt(r.daemon.phases.hold.blockMaxMs)}/${fmtInt(r.daemon.phases.drop.blockMaxMs)}`,
        ]),
      ) + '\n',
    );
    process.stdout.write(
      `  memory in MiB (daemon RSS; "after" and "heap after": after the drop and full GCs). Baseline before wave 1: RSS ${mib(baseline.rss)}, heap ${mib(baseline.heapUsed)}; ` +
        `window ${fmtInt(baseStatus.window.transactions)} transactions (${mib(baseStatus.window.bytes)} MiB).\n` +
        `  latency: commit-to-client, live deliveries during the hold; catch-up: changes replayed to resuming subscriptions before \`subscribed\`.\n` +
        `  RSS given back to the system after each drop (peak − after): ${returned.join(', ')} MiB of the ${waveCost} MiB wave 1 took; RSS after the drop, first → last wave: ${first.daemon.rssAfterMiB} → ${last.daemon.rssAfterMiB} MiB.\n` +
        `  final /status: ${finalStatus.clients} clients, ${finalStatus.subscriptions} subscriptions, ${finalStatus.channels} channels.\n`,
    );
    printTargets(targets);
    printMachineLine(out);
  });
}

function usage(msg: string): never {
  process.stderr.write(
    `${msg ? msg + '\n' : ''}usage: node dist/bench/churn.js [--clients 10000] [--waves 5] [--hold 10] [--rate 100] [--rooms 100]\n` +
      `  [--unfiltered-pct 1] [--resume-pct 30] [--clean-pct 20] [--history-age 20s] [--warmup 25] [--gap 2] [--concurrency 200]\n` +
      `  [--client-procs 2] [--auth] [--profile-daemon DIR] [--daemon-arg=--serve-flag=value …]\n`,
  );
  process.exit(msg ? 2 : 0);
}

runMain(main);
