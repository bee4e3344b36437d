// The table of bench/cluster.ts and its writer: single-row transactions at a steady rate over a
// few connections, each row carrying `room_id` (what subscribers filter on) and `sent_at_ms`
// (the writer's clock just before the INSERT is sent). Runs for a number of rows, or until
// stopped (the failover phase, whose rounds last as long as the takeovers take).
import { performance } from 'node:perf_hooks';
import type pg from 'pg';
import { sleep } from './common.js';
import { nowMs } from './rpc.js';

export const TABLE = 'bench_cluster';
export const COLUMN = 'room_id';
const INSERT = `insert into ${TABLE} (id, ${COLUMN}, sent_at_ms, body) values ($1, $2, $3, $4)`;
/** Rows of one size (about 280 bytes as a change frame), so that bytes follow row counts. */
const BODY = 'lorem ipsum dolor sit amet '.repeat(3);

export async function createTable(db: pg.Client): Promise<void> {
  await db.query(`create table ${TABLE} (id int primary key, ${COLUMN} int not null, sent_at_ms float8 not null, body text not null)`);
  // Routed by room: a cluster node follows only its clients' rooms (a single node ignores it).
  await db.query(`select walcast.enable('${TABLE}', route_by => '${COLUMN}')`);
}

export interface Written {
  /** Ids first..last (inclusive) were written, each to room id % rooms. */
  first: number;
  last: number;
  /** Writer-side round trip of each INSERT (statement + commit), ms, sorted. */
  commitMs: Float64Array;
  /** How far the writer fell behind its schedule at worst, ms. */
  maxLagMs: number;
  failures: number;
  wallMs: number;
}

/** Ids go up by one across all runs of one writer: a row's room is id % rooms. */
export class Writer {
  private nextId = 1;

  constructor(private readonly conns: pg.Client[]) {}

  /** `rate` rows/s into `rooms` rooms, `total` rows, or until stop() when total is Infinity. */
  run(rate: number, rooms: number, total = Infinity): { stop(): void; done: Promise<Written> } {
    let stopped = false;
    const first = this.nextId;
    const commit: number[] = [];
    let failures = 0;
    const done = (async (): Promise<Written> => {
      const inflight: Array<Promise<unknown>> = [];
      const t0 = performance.now();
      let maxLagMs = 0;
      let i = 0;
      while (i < total && !stopped) {
        const now = performance.now() - t0;
        const due = Math.min(total, Math.floor((now * rate) / 1000) + 1);
        if (due > i) maxLagMs = Math.max(maxLagMs, now - (i * 1000) / rate);
        for (; i < due; i++) {
          const id = this.nextId++;
          const sent = nowMs();
          inflight.push(
            this.conns[i % this.conns.length].query({ name: 'bench_cluster_insert', text: INSERT, values: [id, id % rooms, sent, BODY] }).then(
              () => commit.push(nowMs() - sent),
              () => failures++,
            ),
          );
        }
        // Do not let a stalled database pile up promises without bound.
        if (inflight.length > 50_000) await Promise.all(inflight.splice(0));
        await sleep(1);
      }
      await Promise.all(inflight);
      return { first, last: this.nextId - 1, commitMs: Float64Array.from(commit).sort(), maxLagMs, failures, wallMs: performance.now() - t0 };
    })();
    return {
      stop: () => {
        stopped = true;
      },
      done,
    };
  }
}

/** Rows of first..last in each room. */
export function rowsPerRoom(first: number, last: number, rooms: number): number[] {
  const n = new Array<number>(rooms).fill(0);
  for (let id = first; id <= last; id++) n[id % rooms]++;
  return n;
}
