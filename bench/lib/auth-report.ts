// The readable part of bench/auth.ts's report (after its JSON line), and the shapes of its results.
import type { LeakSample } from './auth-clients.js';
import { ms2, printMachineLine, printTargets, type Machine, type Target } from './report.js';
import { fmtInt, table, type Spread } from './stats.js';

export type RunName = 'auth' | 'filtered' | 'unfiltered';

export interface StallSummary {
  blocks: number;
  blockMaxMs: number;
  blockTotalMs: number;
  gcPauses: number;
  gcMaxMs: number;
  /** The longest ones, in time order: {atMs after the start of the writes, ms, kind}. */
  longest: Array<{ atMs: number; ms: number; kind: string }>;
}

export interface SlowWindow {
  /** Start of the window, ms after the start of the writes (by the rows' sent_at_ms). */
  atMs: number;
  samples: number;
  maxMs: number;
}

export interface Check {
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

export interface Stall {
  kind: 'block' | 'gc';
  /** ms since the epoch */
  at: number;
  ms: number;
}

export interface PacedPhase extends Spread {
  txPerSec: number;
  seconds: number;
  transactions: number;
  /** Deliveries at the clients / (last delivery − start of the writes), s. */
  deliveriesPerSec: number;
  /** What the run owes per second: expected deliveries / the writer's duration. */
  offeredPerSec: number;
  check: Check;
  samples: number;
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

export interface CapacityPhase {
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

export interface RunResult {
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

export interface ReportOptions {
  subscribers: number;
  rooms: number;
  /** Deliveries per row when filtered or authorized (the members of a room). */
  membersPerRoom: number;
  p99TargetMs: number;
  profileDir: string | null;
}

/** The tables, the tail, the targets and the machine line, as bench/auth.ts prints them. */
export function printAuthReport(results: readonly RunResult[], targets: readonly Target[], out: Machine & { totalSeconds: number }, o: ReportOptions): void {
  const label = (r: RunResult): string => (r.name === 'auth' ? 'auth' : `no-auth ${r.name}`);
  const correctness = (c: Check): string =>
    c.complete ? 'ok' : [c.foreign && `${fmtInt(c.foreign)} foreign`, c.missing && `${fmtInt(c.missing)} missing`, c.extra && `${fmtInt(c.extra)} extra`, c.idSumMismatches && `${c.idSumMismatches} id-sum`].filter(Boolean).join(', ');
  if (results.length) {
    process.stdout.write(
      `\n${fmtInt(o.subscribers)} subscribers (one connection, one subscription each), ${fmtInt(o.rooms)} rooms of ${o.subscribers / o.rooms} members; policy: members of the row's room may read\n`,
    );
    process.stdout.write(`\nPaced: single-row insert transactions, random room (latency ms: writer stamp before INSERT → client receive)\n`);
    process.stdout.write(
      table(
        ['run', 'filter', 'tx/s', 'per row', 'deliveries/s', 'received/expected', 'check', 'p50', 'p90', 'p99', 'max', 'commit p99', 'daemon CPU ms/s', 'µs/row', 'walsender ms/s', 'client ELU'],
        results.map((r) => [
          label(r),
          r.filter,
          fmtInt(r.paced.txPerSec),
          r.name === 'unfiltered' ? fmtInt(o.subscribers) : String(o.membersPerRoom),
          fmtInt(r.paced.deliveriesPerSec),
          `${fmtInt(r.paced.check.received)}/${fmtInt(r.paced.check.expected)}`,
          correctness(r.paced.check),
          ms2(r.paced.p50),
          ms2(r.paced.p90),
          ms2(r.paced.p99),
          ms2(r.paced.max),
          ms2(r.paced.commitP99),
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
        `  ${label(r)}: deliveries over ${o.p99TargetMs} ms by when their row was written (100 ms windows × samples): ${shown.length ? shown.slice(0, 30).join(' ') + (shown.length > 30 ? ' …' : '') : 'none'}\n`,
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
  printTargets(targets);
  printMachineLine(out);
  if (o.profileDir) process.stdout.write(`walcast CPU profiles written to ${o.profileDir}\n`);
}
