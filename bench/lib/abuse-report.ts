// bench/abuse.ts's output: one JSON line and one readable line per scenario, and the summary
// table at the end.
import type { Recovery } from './abuse-rig.js';
import type { AttackResult, MonitorReport } from './abuse-types.js';
import { ms2 } from './report.js';
import { fmtInt, table } from './stats.js';

/** The issue's goal for the good client during a flood. */
export const GOAL_P99_MS = 50;

export interface ScenarioResult {
  bench: 'abuse';
  scenario: string;
  item: number;
  title: string;
  scale: number;
  heapMiB: number | null;
  params: AttackResult['params'];
  figures: AttackResult['figures'];
  attack: string;
  daemon: {
    pidBefore: number;
    /** Alive at the end, same pid, /healthz 200. */
    survived: boolean;
    healthyAtEnd: boolean;
    exit: string | null;
    recovery: Recovery | null;
    rss: MonitorReport['rss'];
    cores: number;
    /** Event-loop blocks (≥ 20 ms) during the flood, and the longest. */
    blocks: number;
    blockMaxMs: number;
  };
  good: Omit<MonitorReport, 'rss' | 'daemonCores' | 'healthz'> & { closed: boolean };
  healthz: MonitorReport['healthz'];
  /** Good client's delivery p99 ≤ 50 ms and every row delivered. */
  goalMet: boolean;
  seconds: { flood: number; total: number };
  error?: string;
}

const mib = (v: number): string => (Number.isFinite(v) ? v.toFixed(0) : '?');

function daemonWord(r: ScenarioResult): string {
  if (r.daemon.survived) return 'survived';
  if (r.daemon.exit === null) return 'UNHEALTHY';
  const loop = r.daemon.recovery?.crashLoop ? ', CRASH LOOP' : '';
  const dropped = r.daemon.recovery?.slotDropped ? ', slot dropped' : '';
  return `DIED (${r.daemon.exit}${loop}${dropped})`;
}

export function readableLine(r: ScenarioResult): string {
  const g = r.good;
  const h = r.healthz;
  return (
    `[${r.scenario}, item ${r.item}] daemon ${daemonWord(r)}; RSS ${mib(r.daemon.rss.baselineMiB)} → peak ${mib(r.daemon.rss.peakMiB)} → after ${mib(r.daemon.rss.afterMiB)} MiB; ` +
    `good client p50/p99/max ${ms2(g.latency.p50)}/${ms2(g.latency.p99)}/${ms2(g.latency.max)} ms (before the flood p99 ${ms2(g.quietLatency.p99)}; ${g.delivered}/${g.written} rows${g.undelivered ? `, ${g.undelivered} UNDELIVERED` : ''}; ` +
    `goal p99 ≤ ${GOAL_P99_MS} ms ${r.goalMet ? 'met' : 'MISSED'}), ping p99 ${ms2(g.ping.p99)} ms${g.pingsUnanswered ? ` (${g.pingsUnanswered} unanswered)` : ''}` +
    `${g.closed ? `, good client CLOSED (${g.closes.join('; ')})` : ''}; /healthz ${h.failed} failed, ${h.slow} slow of ${h.probes}; ` +
    `daemon ${r.daemon.cores} cores, longest block ${fmtInt(r.daemon.blockMaxMs)} ms; flood ${r.seconds.flood} s.\n` +
    `    attack: ${r.attack}\n` +
    (r.daemon.recovery ? `    restarts: ${r.daemon.recovery.attempts.join('; ')}\n` : '')
  );
}

export function summaryTable(rs: readonly ScenarioResult[]): string {
  return table(
    ['scenario', 'item', 'daemon', 'RSS base', 'peak', 'after', 'quiet p99', 'good p50', 'p99', 'max', 'undelivered', 'ping p99', 'healthz failed', 'good closed', `p99 ≤ ${GOAL_P99_MS} ms`],
    rs.map((r) => [
      r.scenario,
      String(r.item),
      daemonWord(r),
      mib(r.daemon.rss.baselineMiB),
      mib(r.daemon.rss.peakMiB),
      mib(r.daemon.rss.afterMiB),
      ms2(r.good.quietLatency.p99),
      ms2(r.good.latency.p50),
      ms2(r.good.latency.p99),
      ms2(r.good.latency.max),
      `${r.good.undelivered}/${r.good.written}`,
      ms2(r.good.ping.p99),
      `${r.healthz.failed}/${r.healthz.probes}`,
      r.good.closed ? 'yes' : 'no',
      r.goalMet ? 'met' : 'MISSED',
    ]),
  );
}
