// Snapshots (issue #14, docs/PROTOCOL.md): how fast a subscribe with `snapshot` delivers a
// table, how soon the first rows of a small ordered snapshot arrive, and what a running snapshot
// costs the daemon in memory. One throwaway Postgres; the daemon in this process (startDaemon,
// no auth); the clients in a forked process (bench/lib/snapshot-client.ts), so that their work
// is not the daemon's.
//
//   table       bench_snap(id bigint primary key, room int, author text, body text, created_at
//               timestamptz): --rows rows (1,000,000; --quick 100,000) of about 200 bytes,
//               `room` = id % --rooms (100), an index on (room, id).
//   throughput  `snapshot: true` of the whole table over one WebSocket, every frame parsed, until
//               `subscribed`: rows/s. Beside it, in the same run and process, a plain `pg` query
//               of the same rows (default parsers, rows as objects). --runs each, alternating;
//               medians. Goal: walcast ≥ 50% of pg.
//   first row   `{order: "id.desc", limit: 50}` with `room=eq.N` (N cycling over the rooms):
//               --ttfr-runs (200) sequential subscribes on one connection, each unsubscribed
//               after its `subscribed`; time from sending to the first `snapshot` frame. Goal:
//               p99 ≤ 20 ms.
//   memory      the daemon's RSS (this process; after full GCs under --expose-gc) before, and its
//               peak (sampled every 10 ms) while 4, then 8 connections each take a whole-table
//               snapshot at once; per snapshot. How many read at once is sampled from
//               pg_stat_activity (the daemon reads at most SNAPSHOT_DEFAULTS.maxConcurrent at once,
//               or --max-concurrent).
//
// Prints one JSON line, then readable lines and the goals, each met or missed. Exits 0 whatever
// the figures; non-zero only when the benchmark itself failed.
// Run: npm run bench:snapshot [-- --quick | --rows N] [--runs 3] [--ttfr-runs 200] [--concurrency 4,8]
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { resolveServeConfig } from '../src/config.js';
import { SNAPSHOT_DEFAULTS } from '../src/constants.js';
import { startDaemon, type Daemon } from '../src/daemon.js';
import { silentLogger } from '../src/log.js';
import { startThrowawayPostgres, type ThrowawayPostgres } from '../src/pg/throwaway.js';
import { migrate } from '../src/sql/migrate.js';
import { log, optionParsers, runMain, sleep } from './lib/common.js';
import { machine, ms2, printMachineLine, printTargets, type Target } from './lib/report.js';
import { fullGc, Helper } from './lib/rpc.js';
import type { PgResult, SnapshotsResult, TtfrResult } from './lib/snapshot-client.js';
import { fmtInt, median, round, spread, Stopwatch } from './lib/stats.js';

const GOALS = { vsPg: 0.5, ttfrP99Ms: 20 };
const TABLE = 'bench_snap';
const COLUMNS = 'id, room, author, body, created_at';
const here = path.dirname(fileURLToPath(import.meta.url)); // dist/bench

function usage(msg: string): never {
  process.stderr.write(
    `${msg ? msg + '\n' : ''}usage: node --expose-gc dist/bench/snapshot.js [--quick] [--rows N] [--rooms N] [--runs N] [--ttfr-runs N]\n` +
      '         [--concurrency 4,8] [--max-concurrent N] [--skip throughput,ttfr,memory]\n',
  );
  process.exit(2);
}

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    rows: { type: 'string' },
    rooms: { type: 'string', default: '100' },
    runs: { type: 'string', default: '3' },
    'ttfr-runs': { type: 'string', default: '200' },
    concurrency: { type: 'string', default: '4,8' },
    'max-concurrent': { type: 'string' },
    skip: { type: 'string', default: '' },
    help: { type: 'boolean', default: false },
  },
});
if (args.help) usage('');
const { positive } = optionParsers(usage);
const ROWS = args.rows !== undefined ? positive(args.rows, 'rows') : args.quick ? 100_000 : 1_000_000;
const ROOMS = positive(args.rooms, 'rooms');
const RUNS = positive(args.runs, 'runs');
const TTFR_RUNS = positive(args['ttfr-runs'], 'ttfr-runs');
const CONCURRENCY = (args.concurrency ?? '').split(',').map((s) => positive(s.trim(), 'concurrency'));
const MAX_CONCURRENT = args['max-concurrent'] !== undefined ? positive(args['max-concurrent'], 'max-concurrent') : SNAPSHOT_DEFAULTS.maxConcurrent;
const SKIP = new Set((args.skip ?? '').split(',').filter(Boolean));
/** Generous: a whole-table snapshot of a big table, with several at once. */
const TIMEOUT_MS = Math.max(120_000, ROWS / 5);

// ── database ──────────────────────────────────────────────────────────────────────────────

async function setup(db: pg.Client): Promise<void> {
  await db.query(`create table ${TABLE} (id bigint primary key, room int not null, author text not null, body text not null, created_at timestamptz not null)`);
  await db.query(`select walcast.enable('${TABLE}')`);
  // Before the daemon's slot exists: the load is not decoded. About 200 bytes a row (a 150-character body).
  await db.query(
    `insert into ${TABLE} (${COLUMNS})
       select g, g % $2, 'user-' || (g % 1000), rpad('lorem ipsum ' || g || ' ', 150, 'dolor sit amet '), '2026-01-01T00:00:00Z'::timestamptz + g * interval '1 second'
         from generate_series(1, $1::int) g`,
    [ROWS, ROOMS],
  );
  await db.query(`create index on ${TABLE} (room, id)`);
  await db.query(`vacuum analyze ${TABLE}`);
}

/** Snapshot cursors open right now (the daemon's, by their cursor's statements). */
async function readingNow(db: pg.Client): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    `select count(*)::int as n from pg_stat_activity where pid <> pg_backend_pid() and xact_start is not null and (query like 'fetch % from walcast_snapshot' or query like 'declare walcast_snapshot %')`,
  );
  return rows[0].n;
}

// ── memory ────────────────────────────────────────────────────────────────────────────────

/** The peaks of this process's RSS and heap in use while `during` runs, sampled every 10 ms; and the most snapshots seen reading at once. */
async function peakDuring<T>(db: pg.Client, during: Promise<T>): Promise<{ result: T; peakRss: number; peakHeap: number; reading: number }> {
  let peak = process.memoryUsage.rss();
  let peakHeap = process.memoryUsage().heapUsed;
  const timer = setInterval(() => {
    const m = process.memoryUsage();
    peak = Math.max(peak, m.rss);
    peakHeap = Math.max(peakHeap, m.heapUsed);
  }, 10);
  let reading = 0;
  let done = false;
  const poll = (async () => {
    while (!done) {
      reading = Math.max(reading, await readingNow(db).catch(() => 0));
      await sleep(100);
    }
  })();
  try {
    const result = await during;
    return { result, peakRss: Math.max(peak, process.memoryUsage.rss()), peakHeap, reading };
  } finally {
    done = true;
    clearInterval(timer);
    await poll;
  }
}

function settled(): { rss: number; heap: number } {
  fullGc();
  const m = process.memoryUsage();
  return { rss: m.rss, heap: m.heapUsed };
}

// ── main ──────────────────────────────────────────────────────────────────────────────────

async function main(): Promise<void> {
  const total = new Stopwatch();
  log(`starting a throwaway Postgres; ${fmtInt(ROWS)} rows`);
  const pgServer: ThrowawayPostgres = await startThrowawayPostgres();
  const url = pgServer.url;
  const db = new pg.Client({ connectionString: url });
  let daemon: Daemon | null = null;
  let client: Helper | null = null;
  try {
    await migrate(url);
    await db.connect();
    const loadWatch = new Stopwatch();
    await setup(db);
    const { rows: info } = await db.query<{ v: string; bytes: string }>(`select current_setting('server_version') as v, pg_table_size('${TABLE}')::text as bytes`);
    log(`loaded in ${(loadWatch.elapsedMs() / 1000).toFixed(1)} s; table ${fmtInt(Number(info[0].bytes) / 2 ** 20)} MiB`);

    daemon = await startDaemon(resolveServeConfig({ db: url, port: '0', auth: false }, {}), silentLogger, { snapshots: { maxConcurrent: MAX_CONCURRENT } });
    const wsUrl = `ws://127.0.0.1:${daemon.port}/ws`;
    client = Helper.fork('client', path.join(here, 'lib', 'snapshot-client.js'));
    const c = client;
    const whole = { table: TABLE, snapshot: true };

    // Warm-up (not reported): a small ordered snapshot and a plain query.
    await c.call<TtfrResult>('ttfr', { wsUrl, runs: 5, table: TABLE, rooms: ROOMS, snapshot: { order: 'id.desc', limit: 50 }, timeoutMs: TIMEOUT_MS }, TIMEOUT_MS);
    await c.call<PgResult>('pg', { url, text: `select ${COLUMNS} from ${TABLE} where room = 0` }, TIMEOUT_MS);

    // (1) throughput
    let throughput = null;
    if (!SKIP.has('throughput')) {
      const walcastRuns: Array<{ rowsPerSec: number; ms: number; firstRowMs: number; frames: number; bytes: number; clientCpuMs: number; daemonCpuMs: number }> = [];
      const pgRuns: Array<{ rowsPerSec: number; ms: number; clientCpuMs: number }> = [];
      for (let i = 0; i < RUNS; i++) {
        const order = i % 2 === 0 ? (['pg', 'walcast'] as const) : (['walcast', 'pg'] as const);
        for (const who of order) {
          fullGc();
          if (who === 'pg') {
            const r = await c.call<PgResult>('pg', { url, text: `select ${COLUMNS} from ${TABLE}` }, TIMEOUT_MS);
            if (r.rows !== ROWS) throw new Error(`pg read ${r.rows} rows, not ${ROWS}`);
            pgRuns.push({ rowsPerSec: r.rows / (r.ms / 1000), ms: r.ms, clientCpuMs: r.cpuMs });
            log(`throughput run ${i + 1}: pg      ${fmtInt(r.rows / (r.ms / 1000)).padStart(9)} rows/s  ${fmtInt(r.ms)} ms`);
          } else {
            const cpu = process.cpuUsage();
            const r = await c.call<SnapshotsResult>('snapshots', { wsUrl, count: 1, subscribe: whole, timeoutMs: TIMEOUT_MS }, TIMEOUT_MS);
            const d = process.cpuUsage(cpu);
            const run = r.runs[0];
            if (run.end !== 'subscribed' || run.rows !== ROWS) throw new Error(`the snapshot ended with ${run.end} after ${run.rows} of ${ROWS} rows`);
            walcastRuns.push({ rowsPerSec: run.rows / (run.subscribedMs / 1000), ms: run.subscribedMs, firstRowMs: run.firstRowMs, frames: run.frames, bytes: run.bytes, clientCpuMs: r.cpuMs, daemonCpuMs: (d.user + d.system) / 1000 });
            log(`throughput run ${i + 1}: walcast ${fmtInt(run.rows / (run.subscribedMs / 1000)).padStart(9)} rows/s  ${fmtInt(run.subscribedMs)} ms  first row ${ms2(run.firstRowMs)} ms  ${fmtInt(run.frames)} frames`);
          }
        }
      }
      const w = median(walcastRuns.map((r) => r.rowsPerSec));
      const p = median(pgRuns.map((r) => r.rowsPerSec));
      const wMed = walcastRuns.find((r) => r.rowsPerSec === w) ?? walcastRuns[0];
      throughput = {
        rows: ROWS,
        walcast: {
          rowsPerSec: round(w),
          ms: round(wMed.ms),
          firstRowMs: round(wMed.firstRowMs, 2),
          frames: wMed.frames,
          mbPerSec: round(wMed.bytes / 2 ** 20 / (wMed.ms / 1000), 1),
          daemonCpuUsPerRow: round((wMed.daemonCpuMs * 1000) / ROWS, 2),
          clientCpuUsPerRow: round((wMed.clientCpuMs * 1000) / ROWS, 2),
          runs: walcastRuns.map((r) => round(r.rowsPerSec)),
        },
        pg: { rowsPerSec: round(p), clientCpuUsPerRow: round((median(pgRuns.map((r) => r.clientCpuMs)) * 1000) / ROWS, 2), runs: pgRuns.map((r) => round(r.rowsPerSec)) },
        ratio: round(w / p, 3),
      };
    }

    // (2) time to first row
    let ttfr = null;
    if (!SKIP.has('ttfr')) {
      const r = await c.call<TtfrResult>('ttfr', { wsUrl, runs: TTFR_RUNS, table: TABLE, rooms: ROOMS, snapshot: { order: 'id.desc', limit: 50 }, timeoutMs: TIMEOUT_MS }, TIMEOUT_MS * 4);
      const first = spread(Float64Array.from(r.firstRowMs).sort());
      const sub = spread(Float64Array.from(r.subscribedMs).sort());
      ttfr = { runs: TTFR_RUNS, rowsPerRun: median(r.rows), firstRowMs: first, subscribedMs: sub };
      log(`first row: p50 ${ms2(first.p50)} ms, p99 ${ms2(first.p99)} ms; subscribed p50 ${ms2(sub.p50)} ms`);
    }

    // (3) memory
    const memory: Array<{
      concurrent: number;
      readingAtOnce: number;
      rssBeforeMiB: number;
      peakRssMiB: number;
      perSnapshotMiB: number;
      perReadingMiB: number;
      heapBeforeMiB: number;
      peakHeapMiB: number;
      rowsPerSec: number;
      ends: string[];
    }> = [];
    if (!SKIP.has('memory')) {
      for (const n of CONCURRENCY) {
        await sleep(500);
        const { rss: before, heap: heapBefore } = settled();
        const { result, peakRss, peakHeap, reading } = await peakDuring(db, c.call<SnapshotsResult>('snapshots', { wsUrl, count: n, subscribe: whole, timeoutMs: TIMEOUT_MS * n }, TIMEOUT_MS * n));
        const delta = (peakRss - before) / 2 ** 20;
        const rows = result.runs.reduce((s, x) => s + x.rows, 0);
        memory.push({
          concurrent: n,
          readingAtOnce: reading,
          rssBeforeMiB: round(before / 2 ** 20, 1),
          peakRssMiB: round(peakRss / 2 ** 20, 1),
          perSnapshotMiB: round(delta / n, 2),
          perReadingMiB: round(delta / Math.max(1, Math.min(n, reading)), 2),
          heapBeforeMiB: round(heapBefore / 2 ** 20, 1),
          peakHeapMiB: round(peakHeap / 2 ** 20, 1),
          rowsPerSec: round(rows / (result.ms / 1000)),
          ends: [...new Set(result.runs.map((x) => x.end))],
        });
        log(`memory, ${n} at once: rss ${round(before / 2 ** 20, 1)} → peak ${round(peakRss / 2 ** 20, 1)} MiB (${reading} reading at once), ${fmtInt(rows / (result.ms / 1000))} rows/s in all`);
      }
    }

    const m = machine(info[0].v);
    const out = {
      bench: 'snapshot',
      rows: ROWS,
      rooms: ROOMS,
      tableMiB: round(Number(info[0].bytes) / 2 ** 20, 1),
      snapshotLimits: { ...SNAPSHOT_DEFAULTS, maxConcurrent: MAX_CONCURRENT },
      throughput,
      ttfr,
      memory,
      goals: GOALS,
      ...m,
      totalSeconds: round(total.elapsedMs() / 1000, 1),
    };
    process.stdout.write(JSON.stringify(out) + '\n');

    if (throughput) {
      const t = throughput;
      process.stdout.write(
        `\nthroughput, ${fmtInt(ROWS)} rows (median of ${RUNS}): walcast ${fmtInt(t.walcast.rowsPerSec)} rows/s (${t.walcast.mbPerSec} MiB/s of frames, ${fmtInt(t.walcast.frames)} frames, ` +
          `daemon ${t.walcast.daemonCpuUsPerRow} µs cpu/row, client ${t.walcast.clientCpuUsPerRow}), pg ${fmtInt(t.pg.rowsPerSec)} rows/s (client ${t.pg.clientCpuUsPerRow} µs cpu/row): ${round(t.ratio * 100, 1)}%\n`,
      );
    }
    if (ttfr) {
      process.stdout.write(
        `first row, {order: id.desc, limit: 50} of room=eq.N (${TTFR_RUNS} runs): p50 ${ms2(ttfr.firstRowMs.p50)} ms, p90 ${ms2(ttfr.firstRowMs.p90)}, p99 ${ms2(ttfr.firstRowMs.p99)}, max ${ms2(ttfr.firstRowMs.max)}; ` +
          `to subscribed p50 ${ms2(ttfr.subscribedMs.p50)}, p99 ${ms2(ttfr.subscribedMs.p99)}\n`,
      );
    }
    for (const r of memory) {
      process.stdout.write(
        `memory, ${r.concurrent} whole-table snapshots at once (${r.readingAtOnce} reading at once): rss ${r.rssBeforeMiB} → peak ${r.peakRssMiB} MiB, ` +
          `${r.perSnapshotMiB} MiB per snapshot (${r.perReadingMiB} per reading one); heap in use ${r.heapBeforeMiB} → peak ${r.peakHeapMiB} MiB; ` +
          `${fmtInt(r.rowsPerSec)} rows/s in all; ended ${r.ends.join(', ')}\n`,
      );
    }
    const targets: Target[] = [
      { name: `walcast rows/s ≥ ${GOALS.vsPg * 100}% of a plain pg query`, value: throughput ? `${round(throughput.ratio * 100, 1)}%` : null, met: throughput ? throughput.ratio >= GOALS.vsPg : null },
      { name: `first row p99 ≤ ${GOALS.ttfrP99Ms} ms`, value: ttfr ? `${ms2(ttfr.firstRowMs.p99)} ms` : null, met: ttfr ? ttfr.firstRowMs.p99 <= GOALS.ttfrP99Ms : null },
    ];
    printTargets(targets);
    printMachineLine(out);
  } finally {
    await client?.stop();
    await daemon?.stop().catch(() => {});
    await db.end().catch(() => {});
    await pgServer.destroy();
  }
}

runMain(main);
