// The benchmarks' paced SQL writer: single-row INSERT transactions at a steady rate, spread over
// several connections, each stamped with the writer's clock just before it is sent.
import { performance } from 'node:perf_hooks';
import type pg from 'pg';
import { sleep } from './common.js';
import { nowMs } from './rpc.js';

export interface PacedWrites {
  /** Writer-side round trip of each INSERT (its commit), ms. */
  commitMs: Float64Array;
  /** How far the writer fell behind its schedule at worst, ms. */
  maxLagMs: number;
  /** From the first INSERT sent to the last one committed. */
  writeMs: number;
}

/**
 * `total` single-row transactions at `rate`/s over `conns`: `text` (a prepared statement) with
 * values(id, room, sent), sent = nowMs() just before sending; next() gives each row's id and room.
 */
export async function pacedInserts(
  conns: pg.Client[],
  rate: number,
  total: number,
  text: string,
  next: () => { id: number; room: number },
  values: (id: number, room: number, sent: number) => unknown[],
): Promise<PacedWrites> {
  const commitMs = new Float64Array(total);
  const inflight: Array<Promise<unknown>> = [];
  const t0 = performance.now();
  let maxLagMs = 0;
  let i = 0;
  while (i < total) {
    const now = performance.now() - t0;
    const due = Math.min(total, Math.floor((now * rate) / 1000) + 1);
    if (due > i) maxLagMs = Math.max(maxLagMs, now - (i * 1000) / rate);
    for (; i < due; i++) {
      const { id, room } = next();
      const k = i;
      const sent = nowMs();
      inflight.push(
        conns[i % conns.length].query({ name: 'bench_insert', text, values: values(id, room, sent) }).then(() => {
          commitMs[k] = nowMs() - sent;
        }),
      );
    }
    await sleep(1);
  }
  await Promise.all(inflight);
  return { commitMs, maxLagMs, writeMs: performance.now() - t0 };
}
