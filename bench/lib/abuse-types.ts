// Shapes shared by bench/abuse.ts, its scenarios (bench/lib/abuse-<name>.ts) and the good-client
// process (bench/lib/abuse-monitor.ts). Types only: importing this runs nothing.
import type { Spread } from './stats.js';

/** What the good-client process needs to start (bench/lib/abuse-monitor.ts). */
export interface MonitorInit {
  pgUrl: string;
  port: number;
  token: string;
  /** The room the good client reads and the writer writes. */
  room: number;
  /** Writer rows per second. */
  rate: number;
  /** The daemon's pid (RSS and CPU are read from /proc/<pid>). */
  pid: number;
}

/** The good client's view of [from, to) (nowMs()), asked for once the flood is over and settled. */
export interface MonitorReport {
  /** Writer send → receipt of its row by the good client, rows sent within [from, to). */
  latency: Spread;
  /** The same, rows sent in the baseline seconds before the flood (how noisy the machine is). */
  quietLatency: Spread;
  /** commit_time (Postgres clock) → receipt, same rows. */
  commitLatency: Spread;
  written: number;
  delivered: number;
  /** Rows sent within [from, to) and not received when the report was made. */
  undelivered: number;
  /** Protocol-level ping → pong, pings sent within [from, to). */
  ping: Spread;
  pings: number;
  /** Pings sent within [from, to) with no pong yet. */
  pingsUnanswered: number;
  /** Closes of the good client's connection within [from, report time]: "code reason". */
  closes: string[];
  /** GET /healthz on a fresh connection every 500 ms (2 s timeout), probes started within [from, to). */
  healthz: { probes: number; ok: number; failed: number; slow: number; p99: number; max: number; failures: string[] };
  /** Daemon VmRSS, MiB: median over the baseline seconds before `from`, highest in [from, to], last sample. */
  rss: { baselineMiB: number; peakMiB: number; afterMiB: number; gone: boolean };
  /** Daemon CPU (all threads) within [from, to], in cores. */
  daemonCores: number;
}

export interface MonitorReportArgs {
  from: number;
  to: number;
  baselineFrom: number;
}

/** What one scenario did, from its own side. */
export interface AttackResult {
  /** The sizes actually used (after --scale). */
  params: Record<string, unknown>;
  /** Counts and measurements of the flood, scenario-specific. */
  figures: Record<string, unknown>;
  /** One short human-readable summary of the figures. */
  summary: string;
}

/** What a scenario gets from bench/abuse.ts. */
export interface AbuseContext {
  rig: import('./abuse-rig.js').AbuseRig;
  /** The good-client process (bench/lib/abuse-monitor.ts). */
  monitor: import('./rpc.js').Helper;
  scale: number;
  /** `full` × --scale, rounded, at least `min` (1 by default). */
  n(full: number, min?: number): number;
  /** A flood's duration in ms: `seconds`, or --seconds when given. */
  floodMs(seconds: number): number;
  /** The daemon has exited since the scenario began. */
  dead(): boolean;
  /** Scenario options from the command line (--bigtx-rows, --metrics-port, …). */
  options: Record<string, number | null>;
}

export interface Scenario {
  name: string;
  /** The item of issue #11 it performs. */
  item: number;
  title: string;
  /** Set-up that is not part of the flood (it runs before the baseline seconds). */
  prepare?(ctx: AbuseContext): Promise<void>;
  /** The flood; resolves once it is over (its connections closed). */
  run(ctx: AbuseContext): Promise<AttackResult>;
}
