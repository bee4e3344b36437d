// Part (c) of bench/cluster.ts: commit-to-client latency at a steady rate, each change reaching
// `perChange` subscribers (room_id=eq.<n % rooms>), on whatever nodes are given: one single
// node, or the cluster's nodes with subscriber n on node n % nodes. A sample is the client's
// receive time − the row's sent_at_ms (the writer's clock just before its INSERT): it includes
// the statement and its commit, which the writer's own round trip (commit p50/p99) shows.
import { log, sleep } from './common.js';
import type { WalcastNode } from './cluster-nodes.js';
import type { ClusterClients } from './cluster-pool.js';
import { COLUMN, rowsPerRoom, TABLE, type Writer } from './cluster-writer.js';
import type { CpuMeter } from './cluster-cpu.js';
import { nowMs } from './rpc.js';
import { fmtInt, percentile, round, spread, type Spread } from './stats.js';

export interface LatencyOptions {
  name: string;
  subscribers: number;
  rooms: number;
  rate: number;
  seconds: number;
  warmupSeconds: number;
}

export interface LatencyResult extends Spread {
  name: string;
  nodes: number;
  subscribers: number;
  perChange: number;
  txPerSec: number;
  seconds: number;
  expected: number;
  samples: number;
  complete: boolean;
  /** The writer's INSERT round trip (statement + commit). */
  commitP50: number;
  commitP99: number;
  writerMaxLagMs: number;
  /** CPU over the run (1 = one core): each walcast process, NATS, Postgres, clients, this process, the machine, the rest. */
  cores: Record<string, number>;
  /** Cluster only: sent_at_ms → the change RePublished by the stream (stored, before any node reads it). */
  stored: Spread | null;
}

export async function measureLatency(ctx: { nodes: WalcastNode[]; clients: ClusterClients; writer: Writer; cpu: CpuMeter; tap?: (sinceMs: number) => { stop(): Promise<Float64Array> } }, o: LatencyOptions): Promise<LatencyResult> {
  const { nodes, clients, writer } = ctx;
  const byNode: number[][] = nodes.map(() => []);
  for (let n = 0; n < o.subscribers; n++) byNode[n % nodes.length].push(n % o.rooms);
  for (let i = 0; i < nodes.length; i++) await clients.open(`l-${nodes[i].id}`, nodes[i].port, TABLE, COLUMN, byNode[i]);
  const subsPerRoom = new Array<number>(o.rooms).fill(0);
  for (let n = 0; n < o.subscribers; n++) subsPerRoom[n % o.rooms]++;
  log(`${o.name}: ${fmtInt(o.subscribers)} subscribers on ${nodes.length} node(s); warming up ${o.warmupSeconds} s`);
  await clients.record({ latency: true });
  await writer.run(o.rate, o.rooms, o.rate * o.warmupSeconds).done;
  await sleep(200);
  // Rows stamped before this are the warm-up's: left out even if they arrive late.
  const since = nowMs();
  await clients.record({ latency: true, sinceMs: since });
  const tap = ctx.tap?.(since);
  ctx.cpu.start();
  const res = await writer.run(o.rate, o.rooms, o.rate * o.seconds).done;
  const perRoom = rowsPerRoom(res.first, res.last, o.rooms);
  let expected = 0;
  for (let r = 0; r < o.rooms; r++) expected += perRoom[r] * subsPerRoom[r];
  await clients.waitDeliveries('l-', expected, 3_000, 30_000);
  const cores = ctx.cpu.stop();
  const stored = tap ? spread(await tap.stop()) : null;
  const lat = await clients.latencies('l-');
  await clients.close();
  const r: LatencyResult = {
    name: o.name,
    nodes: nodes.length,
    subscribers: o.subscribers,
    perChange: round(o.subscribers / o.rooms, 1),
    txPerSec: o.rate,
    seconds: o.seconds,
    expected,
    samples: lat.length,
    complete: lat.length >= expected,
    ...spread(lat),
    commitP50: round(percentile(res.commitMs, 50), 2),
    commitP99: round(percentile(res.commitMs, 99), 2),
    writerMaxLagMs: round(res.maxLagMs, 1),
    cores,
    stored,
  };
  log(`${o.name}: p50 ${r.p50} ms, p99 ${r.p99} ms, max ${r.max} ms over ${fmtInt(r.samples)}/${fmtInt(expected)} deliveries (commit p50 ${r.commitP50} ms${stored ? `; stored in the stream p50 ${stored.p50} ms, p99 ${stored.p99} ms` : ''})`);
  return r;
}
