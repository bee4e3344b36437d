// The orchestrator's side of bench/lib/churn-clients.ts (bench/churn.ts, bench/soak.ts): the
// client processes, each owning a block of identities, and their answers pooled.
import type { ChurnConnectArgs, ChurnConnectResult, ChurnDropArgs, ChurnDropResult, ChurnInitArgs, ChurnTake } from './churn-clients.js';
import { concatSorted, sum } from './common.js';
import { Histogram } from './histogram.js';
import { BasePool } from './pool.js';
import { round } from './stats.js';

export type PooledTake = Omit<ChurnTake, 'latency' | 'reconnectTime' | 'elu'> & { latency: Histogram; reconnectTime: Histogram; elu: number[] };

/** ChurnConnectResult over all processes: `ms` the slowest process's time to have all its
 *  connections subscribed or failed, `times` all of them sorted. */
export type PooledConnect = ChurnConnectResult;

export class ChurnPool extends BasePool {
  static start(n: number): ChurnPool {
    return new ChurnPool(BasePool.fork(n, 'churn-clients.js'));
  }

  /** `total` identities split over the processes. */
  async init(total: number, a: Omit<ChurnInitArgs, 'offset' | 'count'>): Promise<{ unfiltered: number }> {
    const res = await Promise.all(
      this.split(total, Math.ceil(total / this.procs.length)).map(({ count, offset }, i) => this.procs[i].call<{ unfiltered: number }>('init', { ...a, offset, count } satisfies ChurnInitArgs, 120_000)),
    );
    return { unfiltered: sum(res.map((r) => r.unfiltered)) };
  }

  async connect(a: ChurnConnectArgs): Promise<PooledConnect> {
    const all = await this.each<ChurnConnectResult>('connect', a, (a.timeoutMs ?? 120_000) + 10_000);
    return {
      attempted: sum(all.map((r) => r.attempted)),
      ready: sum(all.map((r) => r.ready)),
      failed: sum(all.map((r) => r.failed)),
      resumed: sum(all.map((r) => r.resumed)),
      ms: Math.max(...all.map((r) => r.ms)),
      times: concatSorted(all.map((r) => r.times)),
      failures: all.flatMap((r) => r.failures).slice(0, 5),
    };
  }

  async drop(a: ChurnDropArgs): Promise<ChurnDropResult> {
    const all = await this.each<ChurnDropResult>('drop', a, (a.timeoutMs ?? 10_000) + 10_000);
    return {
      abrupt: sum(all.map((r) => r.abrupt)),
      clean: sum(all.map((r) => r.clean)),
      cleanAnswered: sum(all.map((r) => r.cleanAnswered)),
      cleanMs: Math.max(...all.map((r) => r.cleanMs)),
    };
  }

  /** Soak: `perSec` reconnects a second over all processes (0 stops them). */
  async churn(perSec: number, cleanPct: number): Promise<void> {
    await this.each('churn', { perSec: perSec / this.procs.length, cleanPct });
  }

  async take(): Promise<PooledTake> {
    const all = await this.each<ChurnTake>('take');
    const closeCodes: Record<string, number> = {};
    for (const t of all) for (const [k, v] of Object.entries(t.closeCodes)) closeCodes[k] = (closeCodes[k] ?? 0) + v;
    const s = (k: keyof ChurnTake): number => sum(all.map((t) => t[k] as number));
    return {
      open: s('open'),
      live: s('live'),
      deliveries: s('deliveries'),
      catchup: s('catchup'),
      latency: Histogram.from(all.map((t) => t.latency)),
      foreign: s('foreign'),
      gaps: s('gaps'),
      missing: s('missing'),
      dups: s('dups'),
      resyncs: s('resyncs'),
      errors: s('errors'),
      errorSamples: all.flatMap((t) => t.errorSamples).slice(0, 5),
      progress: s('progress'),
      unexpectedCloses: s('unexpectedCloses'),
      closeCodes,
      reconnects: s('reconnects'),
      reconnectsResumed: s('reconnectsResumed'),
      reconnectFailures: s('reconnectFailures'),
      reconnectTime: Histogram.from(all.map((t) => t.reconnectTime)),
      cpuMs: s('cpuMs'),
      elu: all.map((t) => round(t.elu, 2)),
    };
  }
}
