// The orchestrator's side of the load-client processes (bench/lib/*clients.ts): forking them,
// splitting connections over them, pooling their counters and latency samples.
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import type { ClientStats } from './clients.js';
import { concatSorted, log, sleep, sum } from './common.js';
import { Helper } from './rpc.js';
import { fmtInt, round, Stopwatch } from './stats.js';

const LIB = path.dirname(fileURLToPath(import.meta.url)); // dist/bench/lib

/** What every client process counts (bench/lib/clients.ts, and auth-clients.ts with more). */
export type BaseClientStats = ClientStats;

/** Those of all processes together; the event-loop utilisation of each, rounded. */
export type Pooled<S extends BaseClientStats> = Omit<S, 'elu'> & { elu: number[] };

export class BasePool {
  protected constructor(readonly procs: Helper[]) {}

  /** Client processes running bench/lib/<script>. */
  protected static fork(n: number, script: string): Helper[] {
    return Array.from({ length: n }, (_, i) => Helper.fork(`client-${i}`, path.join(LIB, script)));
  }

  /** `total` connections in blocks of `per` over the processes: each one's {count, offset}. */
  protected split(total: number, per: number): Array<{ count: number; offset: number }> {
    return this.procs.map((_, i) => ({ count: Math.max(0, Math.min(per, total - i * per)), offset: i * per }));
  }

  each<T>(cmd: string, a?: unknown, timeoutMs?: number): Promise<T[]> {
    return Promise.all(this.procs.map((p) => p.call<T>(cmd, a, timeoutMs)));
  }

  /** Everyone's latency samples, sorted. */
  async latencies(): Promise<Float64Array> {
    return concatSorted(await this.each<Float64Array>('latencies'));
  }

  /** Closes every connection, then waits `settleMs` for the server to see the closes. */
  async closeAll(settleMs: number, timeoutMs?: number): Promise<void> {
    await this.each('closeAll', {}, timeoutMs);
    await sleep(settleMs);
  }

  async stop(): Promise<void> {
    await Promise.all(this.procs.map((p) => p.stop()));
  }
}

/** A pool whose processes answer `stats` with BaseClientStats (and maybe more counters). */
export class StatsPool<S extends BaseClientStats> extends BasePool {
  /** The counters that are not in BaseClientStats, summed. */
  protected extraCounters: Array<keyof S & string> = [];

  async stats(): Promise<Pooled<S>> {
    const all = await this.each<S>('stats');
    const firsts = all.filter((s) => s.deliveries > 0).map((s) => s.firstAt);
    const closeCodes: Record<string, number> = {};
    for (const s of all) for (const [k, v] of Object.entries(s.closeCodes)) closeCodes[k] = (closeCodes[k] ?? 0) + v;
    const extra: Record<string, number> = {};
    for (const k of this.extraCounters) extra[k] = sum(all.map((s) => s[k] as number));
    return {
      open: sum(all.map((s) => s.open)),
      deliveries: sum(all.map((s) => s.deliveries)),
      ...extra,
      bytes: sum(all.map((s) => s.bytes)),
      other: sum(all.map((s) => s.other)),
      stale: sum(all.map((s) => s.stale)),
      firstAt: firsts.length ? Math.min(...firsts) : 0,
      lastAt: Math.max(...all.map((s) => s.lastAt)),
      unexpectedCloses: sum(all.map((s) => s.unexpectedCloses)),
      closeCodes,
      cpuMs: sum(all.map((s) => s.cpuMs)),
      elu: all.map((s) => round(s.elu, 2)),
    } as unknown as Pooled<S>;
  }

  /**
   * Polls (every `pollMs`) until `expected` deliveries arrived, nothing arrived for `idleMs`, or
   * `timeoutMs` passed. `at` is when the last poll saw the figure (before any settling).
   */
  async waitFor(expected: number, idleMs: number, timeoutMs: number, pollMs: number, clock: () => number): Promise<Pooled<S> & { at: number; timedOut: boolean }> {
    const w = new Stopwatch();
    let last = -1;
    let lastChange = performance.now();
    for (;;) {
      const s = await this.stats();
      const at = clock();
      if (s.deliveries >= expected) return { ...s, at, timedOut: false };
      if (s.deliveries !== last) {
        last = s.deliveries;
        lastChange = performance.now();
      }
      if (performance.now() - lastChange > idleMs || w.elapsedMs() > timeoutMs) {
        log(`  incomplete: ${fmtInt(s.deliveries)} of ${fmtInt(expected)} deliveries`);
        return { ...s, at, timedOut: true };
      }
      await sleep(pollMs);
    }
  }
}
