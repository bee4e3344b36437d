// Soak (issue #6): steady load for a long time (--minutes, 30 by default), sampled every
// --sample-seconds (10): the daemon's RSS and JS heap, the replication slot's lag, commit-to-
// client latency, deliveries/s and clients, each sample printed as it comes and kept in a JSON
// file, and at the end a summary and a PNG chart (RSS, slot lag, latency over time).
//
// Load. A throwaway Postgres; table public.bench_soak (bench/lib/room-writer.ts: a per-room
// seq, each room committed in order); --rate single-row transactions/s over 4 connections into
// random rooms. --clients identities (bench/lib/churn-clients.ts, over --client-procs
// processes), one connection and one subscription each (room=eq.<n % rooms>, unfiltered for
// --unfiltered-pct% of them), connected before the clock starts. Throughout, --reconnects-per-sec
// random connections a second are dropped (--clean-pct% with unsubscribe + close frame, the
// rest abruptly) and reconnect at once with `since` = the last position they saw, as the
// client SDK does; unexpected closes reconnect after a second. Every change is checked (its
// room's seq must go up by one across reconnects too).
//
// Each sample: RSS (/proc/<pid>/status), JS heap used and total (GET /metrics, prom-client's
// nodejs_heap_* gauges), the resume window (GET /status, bytes as the daemon estimates them),
// slot lag = pg_current_wal_lsn() − confirmed_flush_lsn of the daemon's slot (and − restart_lsn:
// WAL the server keeps for it), latency p50/p99/max of the interval's live deliveries,
// deliveries/s, clients (GET /status), reconnects, the checks, daemon CPU and event-loop blocks
// (bench/lib/stall-hook.ts). The daemon holds the slot at the start of its resume window, so
// the slot lag and RSS grow for the first --history-age (10 min) and should then stay level:
// a leak is what keeps growing after that. Summary: first and last RSS, RSS and heap slope over
// the second half (MiB/hour), the largest slot lag, latency over the whole run.
//
// Output: stdout gets a JSON line and a readable line per sample, then a summary JSON line and
// readable summary; files bench/out/soak-<time>.json (rewritten after every sample, so an
// interrupted run keeps what it measured: `npm run bench:chart FILE.json` draws it) and
// bench/out/soak-<time>.png. Exits 0 whatever the figures.
// Run: npm run bench:soak -- --minutes 30   (options: see usage() and bench/README.md)
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type pg from 'pg';
import { parseDuration } from '../src/config.js';
import { writeChartPng, soakChart, type SoakFile, type SoakSample } from './lib/chart.js';
import { withChurnRig, type ChurnRigOptions } from './lib/churn-rig.js';
import { ensureOpenFiles, log, optionParsers, runMain, sleep, sleepUntil } from './lib/common.js';
import { reapDaemonsOnExit } from './lib/daemon.js';
import { stallsBetween } from './lib/daemon-probe.js';
import { Histogram } from './lib/histogram.js';
import { printTargets, type Target } from './lib/report.js';
import { nowMs } from './lib/rpc.js';
import { fmtInt, round, Stopwatch, type Spread } from './lib/stats.js';

const SLOT = 'bench_soak';
const TABLE = 'bench_soak';
const here = path.dirname(fileURLToPath(import.meta.url)); // dist/bench

const { positive, positiveNumber, nonNegative, pct } = optionParsers(usage);
const { values: args } = parseArgs({
  options: {
    minutes: { type: 'string', default: '30' },
    'sample-seconds': { type: 'string', default: '10' },
    clients: { type: 'string', default: '3000' },
    rate: { type: 'string', default: '500' },
    rooms: { type: 'string', default: '100' },
    'unfiltered-pct': { type: 'string', default: '1' },
    'reconnects-per-sec': { type: 'string', default: '10' },
    'clean-pct': { type: 'string', default: '20' },
    'history-age': { type: 'string', default: '10m' },
    concurrency: { type: 'string', default: '200' },
    'client-procs': { type: 'string', default: '2' },
    out: { type: 'string' },
    auth: { type: 'boolean', default: false },
    'profile-daemon': { type: 'string' },
    'daemon-arg': { type: 'string', multiple: true, default: [] },
    help: { type: 'boolean', default: false },
  },
});
if (args.help) usage('');
const MINUTES = positiveNumber(args.minutes, 'minutes');
const SAMPLE_S = positiveNumber(args['sample-seconds'], 'sample-seconds');
const CLIENTS = positive(args.clients, 'clients');
const RATE = positive(args.rate, 'rate');
const ROOMS = positive(args.rooms, 'rooms');
const UNFILTERED_PCT = pct(args['unfiltered-pct'], 'unfiltered-pct');
const RECONNECTS = nonNegative(args['reconnects-per-sec'], 'reconnects-per-sec');
const CLEAN_PCT = pct(args['clean-pct'], 'clean-pct');
const HISTORY_AGE = args['history-age'] ?? '10m';
let HISTORY_AGE_MS = 0;
try {
  HISTORY_AGE_MS = parseDuration(HISTORY_AGE, 0, '--history-age');
} catch (err) {
  usage((err as Error).message);
}
const CONCURRENCY = positive(args.concurrency, 'concurrency');
const CLIENT_PROCS = positive(args['client-procs'], 'client-procs');
const OUT_DIR = path.resolve(args.out ?? path.join(here, '..', '..', 'bench', 'out'));
const AUTH = !!args.auth;
const PROFILE_DIR = args['profile-daemon'] ? path.resolve(args['profile-daemon']) : null;
const DAEMON_ARGS: string[] = args['daemon-arg'] ?? [];
const WRITERS = 4;
if (ROOMS < WRITERS) usage(`--rooms must be at least ${WRITERS}`);
/** Indicative: RSS slope over the second half of a run whose window was full by then. */
const LIMITS = { rssSlopeMiBPerHour: 20, minSecondHalfSeconds: 600 };

/** Everything a sample holds (SoakSample: what the chart reads). */
interface Sample extends SoakSample {
  n: number;
  at: string;
  heapTotalMiB: number | null;
  externalMiB: number | null;
  windowTransactions: number;
  windowAgeSeconds: number;
  /** The daemon's own figure (walcast_slot_lag_bytes): received − acknowledged. */
  daemonSlotLagMiB: number | null;
  latency: Spread;
  latencySamples: number;
  catchup: number;
  commitsPerSec: number;
  commitP99: number;
  writerMaxLagMs: number;
  subscriptions: number;
  clientsOpen: number;
  reconnects: number;
  reconnectP50: number;
  reconnectP99: number;
  reconnectFailures: number;
  checks: { gaps: number; missing: number; dups: number; foreign: number; resyncs: number; errors: number; unexpectedCloses: number };
  closeCodes: Record<string, number>;
  daemonCores: number;
  blocks: number;
  blockMaxMs: number;
  gcMaxMs: number;
  clientElu: number[];
}

/** The samples file: what bench/lib/chart.ts reads, and more. */
interface SoakOut<Sc extends SoakFile['scenario']> extends SoakFile {
  scenario: Sc;
  samples: Sample[];
  summary?: unknown;
}

const mib = (b: number): number => round(b / 1024 / 1024, 1);

/** Least-squares slope of y over x. */
function slope(pts: ReadonlyArray<readonly [number, number]>): number {
  const ok = pts.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  if (ok.length < 3) return Number.NaN;
  const n = ok.length;
  const mx = ok.reduce((a, [x]) => a + x, 0) / n;
  const my = ok.reduce((a, [, y]) => a + y, 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of ok) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return den > 0 ? num / den : Number.NaN;
}

async function slotLag(db: pg.Client): Promise<{ lag: number; retained: number }> {
  const { rows } = await db.query<{ lag: number | null; retained: number | null }>(
    `select pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::float8 as lag,
            pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::float8 as retained
       from pg_replication_slots where slot_name = $1`,
    [SLOT],
  );
  return { lag: rows[0]?.lag ?? Number.NaN, retained: rows[0]?.retained ?? Number.NaN };
}

function readable(s: Sample): string {
  const c = s.checks;
  const bad = c.gaps + c.dups + c.foreign + c.resyncs + c.errors;
  const mm = `${Math.floor(s.t / 60)}:${String(Math.round(s.t % 60)).padStart(2, '0')}`;
  return (
    `  ${mm.padStart(6)}  RSS ${s.rssMiB.toFixed(1)} MiB (heap ${s.heapUsedMiB?.toFixed(1) ?? '?'}, window ${s.windowMiB?.toFixed(1) ?? '?'})  ` +
    `slot lag ${s.slotLagMiB.toFixed(1)} MiB  latency p50 ${s.latency.p50} p99 ${s.latency.p99} max ${s.latency.max} ms  ` +
    `${fmtInt(s.deliveriesPerSec)} deliveries/s  ${fmtInt(s.clients)} clients  ${fmtInt(s.reconnects)} reconnects (p99 ${s.reconnectP99} ms)  ` +
    `daemon ${s.daemonCores.toFixed(2)} cores, max block ${s.blockMaxMs} ms  checks ${bad === 0 && c.unexpectedCloses === 0 ? 'ok' : `gaps ${c.gaps} dups ${c.dups} foreign ${c.foreign} resyncs ${c.resyncs} errors ${c.errors} closes ${c.unexpectedCloses}`}`
  );
}

// ── main ──────────────────────────────────────────────────────────────────────────────────

async function main(): Promise<void> {
  ensureOpenFiles(CLIENTS, '--clients', true);
  reapDaemonsOnExit();
  const total = new Stopwatch();
  mkdirSync(OUT_DIR, { recursive: true });
  const startedAt = new Date();
  const stamp = startedAt.toISOString().replace(/\.\d+Z$/, 'Z').replace(/:/g, '-');
  const jsonFile = path.join(OUT_DIR, `soak-${stamp}.json`);
  const pngFile = path.join(OUT_DIR, `soak-${stamp}.png`);
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
    gc: false,
    profileDir: PROFILE_DIR,
    daemonArgs: DAEMON_ARGS,
  };
  await withChurnRig(rig, async ({ db, pool, daemon, writer, machine: mach, unfiltered }) => {
    const conn = await pool.connect({ resumePct: 0, concurrency: CONCURRENCY, timeoutMs: 120_000 });
    log(`${fmtInt(conn.ready)}/${fmtInt(conn.attempted)} clients subscribed in ${fmtInt(conn.ms)} ms${conn.failed ? ` (${conn.failed} failed: ${conn.failures[0]})` : ''}`);

    const scenario = {
      clients: CLIENTS,
      rate: RATE,
      reconnectsPerSec: RECONNECTS,
      cleanPct: CLEAN_PCT,
      minutes: MINUTES,
      sampleSeconds: SAMPLE_S,
      rooms: ROOMS,
      unfiltered: unfiltered,
      historyAge: HISTORY_AGE,
      auth: AUTH,
      daemonArgs: DAEMON_ARGS,
      subscription: `room=eq.<n % ${ROOMS}>, unfiltered for ${unfiltered} identities`,
    };
    const file: SoakOut<typeof scenario> = {
      bench: 'soak',
      startedAt: startedAt.toISOString(),
      scenario,
      machine: mach,
      samples: [],
    };
    process.stdout.write(JSON.stringify({ bench: 'soak-start', scenario, ...mach, samplesFile: jsonFile }) + '\n');
    process.stdout.write(
      `\nSoak: ${fmtInt(CLIENTS)} clients, ${fmtInt(RATE)} tx/s over ${ROOMS} rooms, ${RECONNECTS} reconnects/s (resuming with since), ${MINUTES} min, a sample every ${SAMPLE_S} s; samples in ${jsonFile}\n`,
    );

    await pool.take();
    writer.start();
    await pool.churn(RECONNECTS, CLEAN_PCT);
    const t0 = nowMs();
    let prevAt = t0;
    let cpuPrev = daemon.cpuMs();
    const overall = new Histogram();
    const reconnectAll = new Histogram();
    const totals = { deliveries: 0, catchup: 0, reconnects: 0, reconnectFailures: 0, gaps: 0, missing: 0, dups: 0, foreign: 0, resyncs: 0, errors: 0, unexpectedCloses: 0, commits: 0 };
    const errorSamples: string[] = [];
    const end = t0 + MINUTES * 60_000;
    for (let k = 1; ; k++) {
      const due = Math.min(end, t0 + k * SAMPLE_S * 1000);
      await sleepUntil(due);
      const tk = await pool.take();
      const wr = writer.take();
      const at = nowMs();
      const secs = (at - prevAt) / 1000;
      const rss = daemon.rss();
      const cpu = daemon.cpuMs();
      const [metrics, status, lag] = await Promise.all([daemon.metrics().catch(() => null), daemon.status(), slotLag(db)]);
      const met = (name: string): number | null => {
        const v = metrics?.get(name);
        return v === undefined ? null : v;
      };
      const heapUsed = met('walcast_process_nodejs_heap_size_used_bytes');
      const heapTotal = met('walcast_process_nodejs_heap_size_total_bytes');
      const external = met('walcast_process_nodejs_external_memory_bytes');
      const dLag = met('walcast_slot_lag_bytes');
      const st = stallsBetween(daemon.stalls, prevAt, at);
      overall.merge(tk.latency.data());
      reconnectAll.merge(tk.reconnectTime.data());
      const commitH = Histogram.from([wr.commit]);
      const s: Sample = {
        n: k,
        t: round((at - t0) / 1000, 1),
        at: new Date(at).toISOString(),
        rssMiB: mib(rss),
        heapUsedMiB: heapUsed === null ? null : mib(heapUsed),
        heapTotalMiB: heapTotal === null ? null : mib(heapTotal),
        externalMiB: external === null ? null : mib(external),
        windowMiB: mib(status.window.bytes),
        windowTransactions: status.window.transactions,
        windowAgeSeconds: round(status.window.ageSeconds, 1),
        slotLagMiB: mib(lag.lag),
        walRetainedMiB: mib(lag.retained),
        daemonSlotLagMiB: dLag === null ? null : mib(dLag),
        latency: tk.latency.spread(),
        latencySamples: tk.latency.n,
        deliveriesPerSec: round(tk.deliveries / secs),
        catchup: tk.catchup,
        commitsPerSec: round(wr.commits / secs),
        commitP99: round(commitH.percentile(99), 2),
        writerMaxLagMs: round(wr.maxLagMs, 1),
        clients: status.clients,
        subscriptions: status.subscriptions,
        clientsOpen: tk.open,
        reconnects: tk.reconnects,
        reconnectP50: round(tk.reconnectTime.percentile(50), 2),
        reconnectP99: round(tk.reconnectTime.percentile(99), 2),
        reconnectFailures: tk.reconnectFailures,
        checks: { gaps: tk.gaps, missing: tk.missing, dups: tk.dups, foreign: tk.foreign, resyncs: tk.resyncs, errors: tk.errors, unexpectedCloses: tk.unexpectedCloses },
        closeCodes: tk.closeCodes,
        daemonCores: round((cpu - cpuPrev) / (at - prevAt), 2),
        ...st,
        clientElu: tk.elu,
      };
      prevAt = at;
      cpuPrev = cpu;
      for (const key of ['deliveries', 'catchup', 'reconnects', 'reconnectFailures', 'gaps', 'missing', 'dups', 'foreign', 'resyncs', 'errors', 'unexpectedCloses'] as const) totals[key] += tk[key];
      totals.commits += wr.commits;
      errorSamples.push(...tk.errorSamples.slice(0, 5 - errorSamples.length));
      file.samples.push(s);
      writeFileSync(jsonFile, JSON.stringify(file) + '\n');
      process.stdout.write(JSON.stringify({ bench: 'soak-sample', ...s }) + '\n');
      process.stdout.write(readable(s) + '\n');
      if (at >= end - 1) break;
    }

    // ── wind down: stop the load, drop everyone, and see that the daemon lets go of them ──
    await pool.churn(0, CLEAN_PCT);
    await writer.stop();
    const loadSeconds = (nowMs() - t0) / 1000;
    const d = await pool.drop({ cleanPct: CLEAN_PCT, timeoutMs: 10_000 });
    const tDrop = nowMs();
    let after = await daemon.status();
    while ((after.clients > 0 || after.subscriptions > 0) && nowMs() - tDrop < 30_000) {
      await sleep(200);
      after = await daemon.status();
    }
    const last = await pool.take();
    totals.unexpectedCloses += last.unexpectedCloses;
    log(`dropped ${fmtInt(d.abrupt)} abruptly, ${fmtInt(d.clean)} cleanly; /status ${after.clients} clients, ${after.subscriptions} subscriptions`);

    // ── summary ──
    const S = file.samples;
    const firstS = S[0];
    const lastS = S[S.length - 1];
    const half = S.filter((x) => x.t >= (lastS?.t ?? 0) / 2);
    const perHour = (get: (x: Sample) => number | null): number => round(slope(half.map((x) => [x.t / 3600, get(x) ?? Number.NaN] as const)), 1);
    const rssSlope = perHour((x) => x.rssMiB);
    const heapSlope = perHour((x) => x.heapUsedMiB);
    const windowFull = (lastS?.t ?? 0) / 2 >= HISTORY_AGE_MS / 1000;
    // A slope over a few minutes of samples is mostly V8's heap breathing: judged from 10 minutes on.
    const halfLongEnough = (lastS?.t ?? 0) / 2 >= LIMITS.minSecondHalfSeconds;
    const maxOf = (get: (x: Sample) => number): number => Math.max(...S.map(get));
    const summary = {
      loadSeconds: round(loadSeconds, 1),
      samples: S.length,
      rssFirstMiB: firstS?.rssMiB ?? null,
      rssLastMiB: lastS?.rssMiB ?? null,
      rssMaxMiB: maxOf((x) => x.rssMiB),
      heapUsedFirstMiB: firstS?.heapUsedMiB ?? null,
      heapUsedLastMiB: lastS?.heapUsedMiB ?? null,
      rssSlopeSecondHalfMiBPerHour: rssSlope,
      heapSlopeSecondHalfMiBPerHour: heapSlope,
      secondHalfFrom: half[0]?.t ?? null,
      windowFullBySecondHalf: windowFull,
      slopeJudged: windowFull && halfLongEnough,
      slotLagMaxMiB: maxOf((x) => x.slotLagMiB),
      slotLagLastMiB: lastS?.slotLagMiB ?? null,
      walRetainedMaxMiB: maxOf((x) => x.walRetainedMiB),
      latency: overall.spread(),
      latencySamples: overall.n,
      worstIntervalP99: maxOf((x) => (Number.isFinite(x.latency.p99) ? x.latency.p99 : 0)),
      deliveriesPerSec: round(totals.deliveries / loadSeconds),
      commitsPerSec: round(totals.commits / loadSeconds),
      reconnectTime: reconnectAll.spread(),
      totals,
      errorSamples,
      statusAfterDrop: { clients: after.clients, subscriptions: after.subscriptions, channels: after.channels },
      drop: d,
    };
    const c = totals;
    const targets: Target[] = [
      {
        name: 'every change exactly once and in order per room, across every reconnect (no hole, repeat, other room or resync)',
        value: `gaps ${c.gaps} (${c.missing} missing), duplicates ${c.dups}, foreign ${c.foreign}, resyncs ${c.resyncs}, errors ${c.errors}`,
        met: c.gaps === 0 && c.dups === 0 && c.foreign === 0 && c.resyncs === 0 && c.errors === 0,
      },
      { name: 'no close the clients did not ask for; every reconnect subscribed', value: `unexpected closes ${c.unexpectedCloses}, failed reconnects ${c.reconnectFailures}`, met: c.unexpectedCloses === 0 && c.reconnectFailures === 0 },
      {
        name: `RSS slope over the second half ≤ ${LIMITS.rssSlopeMiBPerHour} MiB/hour (judged when the resume window, --history-age ${HISTORY_AGE}, was full by then and the second half is ${LIMITS.minSecondHalfSeconds / 60} minutes or more)`,
        value: `${rssSlope} MiB/hour (JS heap ${heapSlope} MiB/hour) from ${summary.secondHalfFrom ?? '?'} s`,
        met: windowFull && halfLongEnough ? rssSlope <= LIMITS.rssSlopeMiBPerHour : null,
      },
      { name: 'after the run, all clients dropped: GET /status shows 0 clients and 0 subscriptions', value: `${after.clients}/${after.subscriptions}`, met: after.clients === 0 && after.subscriptions === 0 },
    ];
    file.summary = { ...summary, targets };
    writeFileSync(jsonFile, JSON.stringify(file) + '\n');
    let chartNote = '';
    try {
      writeChartPng(soakChart(file), pngFile);
    } catch (err) {
      chartNote = `chart not written: ${(err as Error).message}`;
    }
    process.stdout.write(JSON.stringify({ bench: 'soak', scenario, ...mach, summary, targets, samplesFile: jsonFile, chartFile: chartNote ? null : pngFile, totalSeconds: round(total.elapsedMs() / 1000, 1) }) + '\n');
    const l = summary.latency;
    process.stdout.write(
      `\nSummary (${round(loadSeconds / 60, 1)} min under load, ${S.length} samples)\n` +
        `  RSS: first ${summary.rssFirstMiB} MiB, last ${summary.rssLastMiB} MiB, max ${summary.rssMaxMiB} MiB; slope over the second half (from ${summary.secondHalfFrom} s) ${rssSlope} MiB/hour (JS heap ${heapSlope} MiB/hour)` +
        `${windowFull ? '' : `; the resume window (${HISTORY_AGE}) was still filling then, so the slope includes its growth`}` +
        `${halfLongEnough ? '' : '; too short a second half for the slope to say much'}\n` +
        `  slot lag: max ${summary.slotLagMaxMiB} MiB, last ${summary.slotLagLastMiB} MiB (WAL kept for the slot: max ${summary.walRetainedMaxMiB} MiB)\n` +
        `  latency (all ${fmtInt(overall.n)} live deliveries): p50 ${l.p50} ms, p90 ${l.p90} ms, p99 ${l.p99} ms, p99.9 ${l.p999} ms, max ${l.max} ms; worst interval p99 ${summary.worstIntervalP99} ms\n` +
        `  ${fmtInt(summary.deliveriesPerSec)} deliveries/s, ${fmtInt(summary.commitsPerSec)} commits/s; ${fmtInt(c.reconnects)} reconnects (to subscribed p50 ${summary.reconnectTime.p50} ms, p99 ${summary.reconnectTime.p99} ms), ${fmtInt(c.catchup)} catch-up changes\n` +
        `  after the run: ${fmtInt(d.abrupt)} dropped abruptly, ${fmtInt(d.clean)} cleanly; /status ${after.clients} clients, ${after.subscriptions} subscriptions\n` +
        `  samples: ${jsonFile}\n  chart: ${chartNote || pngFile}\n`,
    );
    printTargets(targets);
    process.stdout.write(`\nnode ${mach.node}, Postgres ${mach.postgres}, ${mach.cpus} cpus (${mach.cpuModel}), load ${mach.loadAverage.join(' ')} at the start, ${round(total.elapsedMs() / 1000, 1)} s\n`);
  });
}

function usage(msg: string): never {
  process.stderr.write(
    `${msg ? msg + '\n' : ''}usage: node dist/bench/soak.js [--minutes 30] [--sample-seconds 10] [--clients 3000] [--rate 500] [--rooms 100]\n` +
      `  [--unfiltered-pct 1] [--reconnects-per-sec 10] [--clean-pct 20] [--history-age 10m] [--concurrency 200] [--client-procs 2]\n` +
      `  [--out DIR] [--auth] [--profile-daemon DIR] [--daemon-arg=--serve-flag=value …]\n`,
  );
  process.exit(msg ? 2 : 0);
}

runMain(main);
