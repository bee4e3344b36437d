// Small helpers shared by the benchmarks: timing with process CPU time, medians, and plain-text
// tables. Nothing here depends on walcast itself.
import { performance, PerformanceObserver } from 'node:perf_hooks';

/** Wall-clock and process CPU time (user + system, all threads of this process) since start(). */
export interface Sample {
  /** performance.now() at start and end, e.g. for GcMeter.between(). */
  from: number;
  to: number;
  wallMs: number;
  cpuUserMs: number;
  cpuSystemMs: number;
}

export class Stopwatch {
  private readonly t0 = performance.now();
  private readonly cpu0 = process.cpuUsage();

  /** Milliseconds since construction. */
  elapsedMs(): number {
    return performance.now() - this.t0;
  }

  sample(): Sample {
    const cpu = process.cpuUsage(this.cpu0);
    const to = performance.now();
    return { from: this.t0, to, wallMs: to - this.t0, cpuUserMs: cpu.user / 1000, cpuSystemMs: cpu.system / 1000 };
  }
}

/**
 * Main-thread garbage-collection pauses, from perf_hooks 'gc' entries. Entries arrive
 * asynchronously: ask for an interval only after yielding to the event loop once it ended.
 */
export class GcMeter {
  private readonly entries: Array<{ start: number; duration: number }> = [];
  private readonly observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) this.entries.push({ start: e.startTime, duration: e.duration });
  });

  constructor() {
    this.observer.observe({ entryTypes: ['gc'] });
  }

  /** Total pause time (ms) of collections that started within [from, to). */
  between(from: number, to: number): number {
    let ms = 0;
    for (const e of this.entries) if (e.start >= from && e.start < to) ms += e.duration;
    return ms;
  }

  close(): void {
    this.observer.disconnect();
  }
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** The element whose `key` is the median (lower median for an even count), so its other fields stay consistent. */
export function medianBy<T>(items: readonly T[], key: (t: T) => number): T {
  if (items.length === 0) throw new Error('medianBy of nothing');
  const s = [...items].sort((a, b) => key(a) - key(b));
  return s[(s.length - 1) >> 1];
}

/** Rounds to `digits` decimals (for JSON output that stays readable). */
export function round(v: number, digits = 0): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

/** 123456.7 -> "123,457" */
export function fmtInt(v: number): string {
  return Math.round(v).toLocaleString('en-US');
}

/** Left-aligned first column, right-aligned others, columns separated by two spaces. */
export function table(headers: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ').trimEnd();
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** Nearest-rank percentile (0 < p ≤ 100) of values sorted ascending; NaN when empty. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

/** Percentiles, max and mean of a sample (ms, two decimals). */
export interface Spread {
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

/** Spread of values sorted ascending (NaN last, and so the max when present); NaN when empty. */
export function spread(sorted: ArrayLike<number>): Spread {
  let total = 0;
  for (let i = 0; i < sorted.length; i++) total += sorted[i];
  return {
    p50: round(percentile(sorted, 50), 2),
    p90: round(percentile(sorted, 90), 2),
    p99: round(percentile(sorted, 99), 2),
    p999: round(percentile(sorted, 99.9), 2),
    max: round(sorted.length ? sorted[sorted.length - 1] : Number.NaN, 2),
    mean: round(total / Math.max(1, sorted.length), 2),
  };
}
