// Capture throughput: rows/s from WAL to positioned changes (walcast's Capture, onTransaction)
// beside a bare pg-logical-replication reader that only counts inserts and acknowledges each
// commit, on the same throwaway Postgres, in the same process and run.
//
//   A  one transaction inserting 200,000 rows
//   B  20,000 single-row transactions
//
// Per scenario, one logical slot per run and reader is created before the data is written, so
// every run decodes the very same WAL from its own slot. Runs are sequential, alternating which
// reader goes first; each reader runs 3 times and the median is reported. A run is timed from
// the moment the replication stream is streaming (CopyBoth started) to the commit carrying the
// last expected row; CPU is this process's user+system time over the same interval. Before the
// scenarios, an unmeasured warm-up runs both readers over a smaller data set, so both start
// with optimised code for the shared pg protocol path.
//
// Prints one JSON line, then a readable table per scenario. Exits 0 whatever the ratio (the
// JSON says whether the target was met); non-zero only when the benchmark itself failed.
// Run: npm run bench   (or: npm run build && node --expose-gc dist/bench/capture.js [options]; see usage() and bench/README.md)
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { LogicalReplicationService, PgoutputPlugin, type Pgoutput } from 'pg-logical-replication';
import { Capture } from '../src/capture/capture.js';
import type { CapturedChange as Change } from '../src/capture/types.js';
import { PUBLICATION } from '../src/constants.js';
import { startThrowawayPostgres, type ThrowawayPostgres } from '../src/pg/throwaway.js';
import { migrate } from '../src/sql/migrate.js';
import { fmtInt, GcMeter, median, round, Stopwatch, table, type Sample } from './lib/stats.js';

const TARGET_RATIO = 0.8;
const RUN_TIMEOUT_MS = 90_000;

const { values: args } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    rows: { type: 'string', default: '200000' },
    txs: { type: 'string', default: '20000' },
    pg: { type: 'string', multiple: true, default: [] },
    readers: { type: 'string', default: 'walcast,bare' },
  },
});
/** Extra postgresql.conf settings for the throwaway server: --pg name=value (repeatable). */
const PG_SETTINGS = Object.fromEntries(
  (args.pg ?? []).map((kv) => {
    const eq = kv.indexOf('=');
    if (eq < 1) usage(`--pg takes name=value, got ${JSON.stringify(kv)}`);
    return [kv.slice(0, eq), kv.slice(eq + 1)];
  }),
);
const RUNS = positive(args.runs, 'runs');
const BIG_ROWS = positive(args.rows, 'rows');
const SINGLE_TXS = positive(args.txs, 'txs');

type ReaderName = 'walcast' | 'bare';
/** --readers walcast (e.g. under --cpu-prof) runs one reader only; the ratio is then omitted. */
const READERS = (args.readers ?? '').split(',').map((r) => r.trim()) as ReaderName[];
if (READERS.length === 0 || READERS.some((r) => r !== 'walcast' && r !== 'bare') || new Set(READERS).size !== READERS.length) {
  usage(`--readers takes walcast, bare or both, got ${JSON.stringify(args.readers)}`);
}

interface Expect {
  rows: number;
  transactions: number;
}

interface RunResult extends Sample {
  reader: ReaderName;
  rows: number;
  transactions: number;
  /** From the call that opens the reader (connect, preflight) to the last row. */
  fromCallMs: number;
  /** From streaming start to the first message: the server decoding before it sends anything. */
  firstMessageMs: number;
  /** CPU time of the walsender process serving this run (Linux /proc), or null when unknown. */
  walsenderCpuMs: number | null;
  /** Main-thread garbage-collection pauses during the run. */
  gcMs: number;
}

/** A reader that has received everything: its figures so far, and how to close it. */
interface Finished {
  result: Omit<RunResult, 'walsenderCpuMs' | 'gcMs'>;
  stop(): Promise<void>;
}

interface Scenario {
  key: string;
  name: string;
  expect: Expect;
  write(db: pg.Client, firstId: number): Promise<void>;
}

const gc = new GcMeter();
/** Present under node --expose-gc (as `npm run bench` runs it): a full collection before each run. */
const forceGc = (globalThis as { gc?: () => void }).gc;

const log = (msg: string): void => {
  process.stderr.write(`[bench] ${msg}\n`);
};

// ---------------------------------------------------------------------------------------------
// Readers. Each resolves at the commit that completes the expected rows and transactions.

/** walcast: Capture decodes every value and hands over whole, positioned transactions. */
function runWalcast(url: string, slot: string, expect: Expect): Promise<Finished> {
  const call = new Stopwatch();
  let watch: Stopwatch | null = null;
  let firstMessageMs = -1;
  let rows = 0;
  let transactions = 0;
  const capture: Capture = new Capture({
    url,
    slot,
    publication: PUBLICATION,
    onTransaction: (tx) => {
      if (transactions === 0) check(tx.changes[0]);
      rows += tx.changes.length;
      transactions++;
      if (rows >= expect.rows && transactions >= expect.transactions) finish();
    },
  });
  const stop = (): Promise<void> => capture.stop();
  let finish: () => void = () => {};
  let check: (c: unknown) => void = () => {};
  return new Promise<Finished>((resolve, reject) => {
    const timeout = setTimeout(() => fail(new Error(`walcast reader timed out (${rows} rows)`)), RUN_TIMEOUT_MS);
    const fail = (err: Error): void => {
      clearTimeout(timeout);
      void stop();
      reject(err);
    };
    finish = () => {
      if (!watch) return;
      clearTimeout(timeout);
      const sample = watch.sample();
      resolve({ result: { reader: 'walcast', rows, transactions, fromCallMs: call.elapsedMs(), firstMessageMs, ...sample }, stop });
      finish = () => {};
    };
    check = (c) => {
      const ch = c as Change | undefined;
      if (!ch || ch.tag !== 'insert' || typeof ch.new.id !== 'number' || typeof ch.new.body !== 'string') {
        fail(new Error(`unexpected first change from walcast: ${JSON.stringify(ch, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v))}`));
      }
    };
    capture.on('state', (state: string) => {
      if (state !== 'streaming' || watch) return;
      watch = new Stopwatch();
      // Diagnostic only: when the first message arrives (Capture has no per-message hook, so
      // this listens once on its private replication service).
      const service = (capture as unknown as { stream?: { service?: LogicalReplicationService } }).stream?.service;
      service?.once('data', () => (firstMessageMs = watch ? watch.elapsedMs() : -1));
    });
    capture.on('fatal', fail);
    capture.start().catch(fail);
  });
}

/** Bare: pg-logical-replication's own pgoutput plugin, counting inserts, acknowledging each commit. */
function runBare(url: string, slot: string, expect: Expect): Promise<Finished> {
  const call = new Stopwatch();
  let watch: Stopwatch | null = null;
  let firstMessageMs = -1;
  let rows = 0;
  let transactions = 0;
  let done = false;
  const service = new LogicalReplicationService(
    { connectionString: url },
    { acknowledge: { auto: false, timeoutSeconds: 0 } },
  );
  const plugin = new PgoutputPlugin({ protoVersion: 1, publicationNames: [PUBLICATION] });
  const stop = async (): Promise<void> => {
    done = true;
    await service.destroy().catch(() => {});
  };
  return new Promise<Finished>((resolve, reject) => {
    const timeout = setTimeout(() => fail(new Error(`bare reader timed out (${rows} rows)`)), RUN_TIMEOUT_MS);
    const fail = (err: Error): void => {
      if (done) return;
      clearTimeout(timeout);
      void stop();
      reject(err);
    };
    service.on('start', () => {
      watch ??= new Stopwatch();
    });
    service.on('data', (lsn: string, msg: Pgoutput.Message) => {
      if (firstMessageMs < 0 && watch) firstMessageMs = watch.elapsedMs();
      if (msg.tag === 'insert') {
        rows++;
      } else if (msg.tag === 'commit') {
        transactions++;
        void service.acknowledge(lsn);
        if (rows >= expect.rows && transactions >= expect.transactions && watch && !done) {
          done = true;
          clearTimeout(timeout);
          const sample = watch.sample();
          resolve({ result: { reader: 'bare', rows, transactions, fromCallMs: call.elapsedMs(), firstMessageMs, ...sample }, stop });
        }
      }
    });
    service.on('error', fail);
    service.subscribe(plugin, slot).catch(fail);
  });
}

const RUNNERS: Record<ReaderName, (url: string, slot: string, expect: Expect) => Promise<Finished>> = {
  walcast: runWalcast,
  bare: runBare,
};

// ---------------------------------------------------------------------------------------------
// Data.

const ROW_SQL = (g: string): string =>
  `(${g})::bigint, ((${g}) % 100)::int, 'user-' || ((${g}) % 1000), repeat('lorem ipsum ', (1 + (${g}) % 8)::int) || (${g})`;

async function setup(db: pg.Client): Promise<void> {
  await db.query(`create table bench_rows (
    id bigint primary key, room int, author text, body text, created_at timestamptz default now())`);
  await db.query(`select walcast.enable('bench_rows')`);
  await db.query(`create procedure bench_single_txs(first bigint, n int) language plpgsql as $$
    begin
      for i in 0 .. n - 1 loop
        insert into bench_rows (id, room, author, body) values (${ROW_SQL('first + i')});
        commit;
      end loop;
    end $$`);
}

async function writeOneTransaction(db: pg.Client, firstId: number, rows: number): Promise<void> {
  await db.query(
    `insert into bench_rows (id, room, author, body)
       select ${ROW_SQL('g')} from generate_series($1::bigint, $2::bigint) g`,
    [firstId, firstId + rows - 1],
  );
}

async function writeSingleTransactions(db: pg.Client, firstId: number, txs: number): Promise<void> {
  await db.query('call bench_single_txs($1, $2)', [firstId, txs]);
}

async function createSlots(db: pg.Client, names: string[]): Promise<void> {
  for (const name of names) await db.query(`select pg_create_logical_replication_slot($1, 'pgoutput')`, [name]);
}

/** Drops the slots once their walsenders have let go of them. */
async function dropSlots(db: pg.Client, names: string[]): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const { rows } = await db.query<{ n: number }>(
      `select count(*)::int as n from pg_replication_slots where slot_name = any($1) and active`,
      [names],
    );
    if (rows[0].n === 0 || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  await db.query(`select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = any($1)`, [names]);
}

/**
 * CPU time so far of the walsender serving `slot`, from /proc (Linux, same host). The walsender
 * is a fresh process per connection, so this is the server's cost of the run (plus its start).
 */
async function walsenderCpu(db: pg.Client, slot: string): Promise<number | null> {
  const { rows } = await db.query<{ pid: number | null }>(`select active_pid as pid from pg_replication_slots where slot_name = $1`, [slot]);
  const pid = rows[0]?.pid;
  if (!pid) return null;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields from #3 (state) on
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS; // #14 utime, #15 stime
  } catch {
    return null;
  }
}

const CLOCK_TICKS = ((): number => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

// ---------------------------------------------------------------------------------------------

interface ReaderSummary {
  runs: number;
  rowsPerSec: number;
  txPerSec: number;
  wallMs: number;
  fromCallMs: number;
  cpuMs: number;
  cpuUserMs: number;
  cpuSystemMs: number;
  cpuUsPerRow: number;
  gcMs: number;
  firstMessageMs: number;
  /** Rows/s counted from the first message: leaves out the server's decoding before it sends anything. */
  afterFirstRowsPerSec: number;
  walsenderCpuMs: number | null;
  /** Process CPU time over wall time: 1.0 is one core busy throughout. */
  cores: number;
  samples: Array<{ order: number; rowsPerSec: number; wallMs: number; cpuMs: number; gcMs: number; firstMessageMs: number; walsenderCpuMs: number | null }>;
}

function summarize(runs: Array<RunResult & { order: number }>): ReaderSummary {
  const rate = (r: RunResult): number => r.rows / (r.wallMs / 1000);
  const cpu = (r: RunResult): number => r.cpuUserMs + r.cpuSystemMs;
  const rows = runs[0].rows;
  const wallMs = median(runs.map((r) => r.wallMs));
  const cpuMs = median(runs.map(cpu));
  return {
    runs: runs.length,
    rowsPerSec: round(median(runs.map(rate))),
    txPerSec: round(median(runs.map((r) => r.transactions / (r.wallMs / 1000)))),
    wallMs: round(wallMs, 1),
    fromCallMs: round(median(runs.map((r) => r.fromCallMs)), 1),
    cpuMs: round(cpuMs, 1),
    cpuUserMs: round(median(runs.map((r) => r.cpuUserMs)), 1),
    cpuSystemMs: round(median(runs.map((r) => r.cpuSystemMs)), 1),
    cpuUsPerRow: round((cpuMs * 1000) / rows, 2),
    gcMs: round(median(runs.map((r) => r.gcMs)), 1),
    firstMessageMs: round(median(runs.map((r) => r.firstMessageMs)), 1),
    // NaN (null in JSON) when the first message was not seen.
    afterFirstRowsPerSec: round(median(runs.map((r) => (r.firstMessageMs >= 0 ? r.rows / ((r.wallMs - r.firstMessageMs) / 1000) : Number.NaN)))),
    walsenderCpuMs: runs.every((r) => r.walsenderCpuMs !== null) ? round(median(runs.map((r) => r.walsenderCpuMs as number)), 1) : null,
    cores: round(median(runs.map((r) => cpu(r) / r.wallMs)), 2),
    samples: runs.map((r) => ({
      order: r.order,
      rowsPerSec: round(rate(r)),
      wallMs: round(r.wallMs, 1),
      cpuMs: round(cpu(r), 1),
      gcMs: round(r.gcMs, 1),
      firstMessageMs: round(r.firstMessageMs, 1),
      walsenderCpuMs: r.walsenderCpuMs,
    })),
  };
}

async function measure(url: string, db: pg.Client, scenario: Scenario, firstId: number, runs: number, tag: string) {
  const slots = new Map<string, ReaderName>();
  const plan: Array<{ reader: ReaderName; slot: string }> = [];
  for (let i = 0; i < runs; i++) {
    // Alternate which reader goes first in each round.
    const order = i % 2 === 0 ? READERS : [...READERS].reverse();
    for (const reader of order) {
      const slot = `bench_${tag.toLowerCase()}_${reader}_${i}`;
      slots.set(slot, reader);
      plan.push({ reader, slot });
    }
  }
  await createSlots(db, [...slots.keys()]);
  const w = new Stopwatch();
  await scenario.write(db, firstId);
  log(`${tag}: wrote ${fmtInt(scenario.expect.rows)} rows in ${fmtInt(scenario.expect.transactions)} transaction(s) in ${fmtInt(w.elapsedMs())} ms`);
  const results: Record<ReaderName, Array<RunResult & { order: number }>> = { walcast: [], bare: [] };
  try {
    for (const [i, { reader, slot }] of plan.entries()) {
      // Garbage the previous run left (a whole 200k-row transaction) is not this run's cost.
      forceGc?.();
      const finished = await RUNNERS[reader](url, slot, scenario.expect);
      let walsenderCpuMs: number | null;
      try {
        walsenderCpuMs = await walsenderCpu(db, slot);
      } finally {
        await finished.stop();
      }
      await new Promise((r) => setTimeout(r, 10)); // let the last gc entries arrive
      const gcMs = gc.between(finished.result.from, finished.result.to);
      const r: RunResult = { ...finished.result, walsenderCpuMs, gcMs };
      results[reader].push({ ...r, order: i });
      log(
        `${tag}: ${reader.padEnd(7)} ${fmtInt(r.rows / (r.wallMs / 1000)).padStart(9)} rows/s  ${fmtInt(r.wallMs).padStart(6)} ms` +
          `  first message ${fmtInt(r.firstMessageMs).padStart(5)} ms  cpu ${fmtInt(r.cpuUserMs + r.cpuSystemMs).padStart(5)} ms` +
          `  gc ${fmtInt(gcMs).padStart(5)} ms  walsender cpu ${walsenderCpuMs === null ? '?' : fmtInt(walsenderCpuMs)} ms`,
      );
    }
  } finally {
    await dropSlots(db, [...slots.keys()]);
  }
  return results;
}

async function main(): Promise<void> {
  const total = new Stopwatch();
  log('starting a throwaway Postgres');
  const pgServer: ThrowawayPostgres = await startThrowawayPostgres({ settings: PG_SETTINGS });
  const url = pgServer.url;
  const client = new pg.Client({ connectionString: url });
  try {
    await migrate(url);
    await client.connect();
  } catch (err) {
    await client.end().catch(() => {});
    await pgServer.destroy();
    throw err;
  }
  try {
    await setup(client);
    const { rows: ver } = await client.query<{ v: string }>(`select current_setting('server_version') as v`);
    let nextId = 1;
    const scenarios: Scenario[] = [
      {
        key: 'A',
        name: `${fmtInt(BIG_ROWS)} rows in one transaction`,
        expect: { rows: BIG_ROWS, transactions: 1 },
        write: (c, first) => writeOneTransaction(c, first, BIG_ROWS),
      },
      {
        key: 'B',
        name: `${fmtInt(SINGLE_TXS)} single-row transactions`,
        expect: { rows: SINGLE_TXS, transactions: SINGLE_TXS },
        write: (c, first) => writeSingleTransactions(c, first, SINGLE_TXS),
      },
    ];

    // Warm-up, not reported: both readers over a tenth of each scenario.
    const warmRows = Math.max(1, Math.floor(BIG_ROWS / 10));
    const warmTxs = Math.max(1, Math.floor(SINGLE_TXS / 10));
    const warm: Scenario = {
      key: 'warmup',
      name: 'warm-up',
      expect: { rows: warmRows + warmTxs, transactions: 1 + warmTxs },
      write: async (c, first) => {
        await writeOneTransaction(c, first, warmRows);
        await writeSingleTransactions(c, first + warmRows, warmTxs);
      },
    };
    await measure(url, client, warm, nextId, 1, warm.key);
    nextId += warm.expect.rows;

    const report = [];
    for (const s of scenarios) {
      const res = await measure(url, client, s, nextId, RUNS, s.key);
      nextId += s.expect.rows;
      const walcast = res.walcast.length > 0 ? summarize(res.walcast) : null;
      const bare = res.bare.length > 0 ? summarize(res.bare) : null;
      const ratio = walcast && bare ? round(walcast.rowsPerSec / bare.rowsPerSec, 3) : null;
      report.push({
        scenario: s.key,
        name: s.name,
        rows: s.expect.rows,
        transactions: s.expect.transactions,
        walcast,
        bare,
        /** walcast rows/s over bare rows/s, both medians. */
        ratio,
        /** The same over rows/s counted from the first message (the server's decode wait left out). */
        afterFirstMessageRatio: walcast && bare ? round(walcast.afterFirstRowsPerSec / bare.afterFirstRowsPerSec, 3) : null,
        /** walcast process CPU over bare process CPU, both medians. */
        cpuRatio: walcast && bare ? round(walcast.cpuMs / bare.cpuMs, 3) : null,
        target: TARGET_RATIO,
        meetsTarget: ratio === null ? null : ratio >= TARGET_RATIO,
      });
    }

    const out = {
      bench: 'capture',
      timing:
        'rows/s from streaming start (CopyBoth) to the commit completing the expected rows; afterFirst: from the first message instead; ' +
        'cpu = process.cpuUsage (user+system) over the same interval; walsenderCpu = CPU of the serving walsender process',
      node: process.version,
      postgres: ver[0].v,
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model ?? 'unknown',
      loadAverage: os.loadavg().map((v) => round(v, 2)),
      runsPerReader: RUNS,
      pgSettings: PG_SETTINGS,
      gcBeforeEachRun: forceGc !== undefined,
      scenarios: report,
      totalSeconds: round(total.elapsedMs() / 1000, 1),
    };
    process.stdout.write(JSON.stringify(out) + '\n');

    for (const r of report) {
      const txCol = r.transactions > 1;
      const headers = [
        'reader', 'rows/s', ...(txCol ? ['tx/s'] : []), 'ms', '1st msg ms', 'rows/s after 1st', 'cpu ms', 'gc ms', 'cpu µs/row', 'walsender cpu ms', 'runs (rows/s)',
      ];
      const line = (name: string, s: ReaderSummary): string[] => [
        name,
        fmtInt(s.rowsPerSec),
        ...(txCol ? [fmtInt(s.txPerSec)] : []),
        fmtInt(s.wallMs),
        fmtInt(s.firstMessageMs),
        fmtInt(s.afterFirstRowsPerSec),
        fmtInt(s.cpuMs),
        fmtInt(s.gcMs),
        s.cpuUsPerRow.toFixed(2),
        s.walsenderCpuMs === null ? '?' : fmtInt(s.walsenderCpuMs),
        s.samples.map((x) => fmtInt(x.rowsPerSec)).join(' / '),
      ];
      const lines: string[][] = [];
      if (r.walcast) lines.push(line('walcast', r.walcast));
      if (r.bare) lines.push(line('bare', r.bare));
      process.stdout.write(`\n${r.scenario}: ${r.name} (median of ${RUNS})\n${table(headers, lines)}\n`);
      if (r.ratio !== null && r.cpuRatio !== null && r.afterFirstMessageRatio !== null) {
        process.stdout.write(
          `walcast/bare = ${(r.ratio * 100).toFixed(1)}% (${r.meetsTarget ? 'meets' : 'BELOW'} the ${TARGET_RATIO * 100}% target)` +
            `; after 1st message ${(r.afterFirstMessageRatio * 100).toFixed(1)}%; cpu walcast/bare = ${r.cpuRatio.toFixed(2)}\n`,
        );
      }
    }
    process.stdout.write(`\nnode ${out.node}, Postgres ${out.postgres}, ${out.cpus} cpus (${out.cpuModel}), ${out.totalSeconds} s\n`);
  } finally {
    gc.close();
    await client.end().catch(() => {});
    await pgServer.destroy();
  }
}

function positive(v: string | undefined, name: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) usage(`--${name} must be a positive integer, got ${JSON.stringify(v)}`);
  return n;
}

function usage(msg: string): never {
  process.stderr.write(`${msg}\nusage: node --expose-gc dist/bench/capture.js [--runs 3] [--rows 200000] [--txs 20000] [--pg name=value ...] [--readers walcast,bare]\n`);
  process.exit(2);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
