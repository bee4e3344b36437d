// Part (a) of bench/cluster.ts: how many bytes each node receives from NATS, against its share
// of the interest. Clients on each node subscribe to rooms no other node's clients want
// (disjoint sets of `room_id`, of unequal sizes), a paced writer spreads rows evenly over the
// rooms, and each server's /connz gives the bytes it sent each node's connection (out_bytes:
// what the node received) over the run. The stream's own byte count over the same run is the
// whole; a node that received only its share would get share × that, plus protocol overhead.
import type { ThrowawayNats } from '../../src/nats/throwaway.js';
import { log, sleep, sum } from './common.js';
import { connDelta, nodeConnections, type ConnDelta, type StreamWatch } from './cluster-nats.js';
import { waitFollowed, type WalcastNode } from './cluster-nodes.js';
import type { ClusterClients } from './cluster-pool.js';
import { COLUMN, rowsPerRoom, TABLE, type Writer } from './cluster-writer.js';
import { fmtInt, round } from './stats.js';

export interface TrafficOptions {
  rate: number;
  seconds: number;
  idleSeconds: number;
  subsPerRoom: number;
  /** Rooms of each node's clients (disjoint), by node index. */
  roomsByNode: number[][];
}

export interface TrafficNode {
  node: string;
  role: string;
  rooms: number[];
  /** Fraction of the rows written that are in its rooms. */
  share: number;
  expected: number;
  deliveries: number;
  /** Over the loaded run (idle traffic included). */
  conn: ConnDelta | null;
  /** Bytes/s it received while nothing was written (heartbeats, KV, pull requests' answers). */
  idleReceivedPerSec: number | null;
  /** Received bytes / bytes the stream grew by. */
  fractionOfStream: number | null;
  /** fractionOfStream / share: 1 = exactly its share; with every node reading everything ≈ 1/share. */
  ratio: number | null;
}

export interface TrafficResult {
  rate: number;
  seconds: number;
  rows: number;
  streamMessages: number;
  streamBytes: number;
  complete: boolean;
  nodes: TrafficNode[];
}

export async function measureTraffic(
  ctx: { nodes: WalcastNode[]; clients: ClusterClients; writer: Writer; nats: ThrowawayNats; watch: StreamWatch },
  o: TrafficOptions,
): Promise<TrafficResult> {
  const { nodes, clients, writer, nats, watch } = ctx;
  const rooms = Math.max(...o.roomsByNode.flat()) + 1;
  for (let i = 0; i < nodes.length; i++) {
    const mine = o.roomsByNode[i] ?? [];
    await clients.open(`t-${nodes[i].id}`, nodes[i].port, TABLE, COLUMN, mine.flatMap((r) => new Array<number>(o.subsPerRoom).fill(r)));
  }
  await clients.record({});
  log(`traffic: ${nodes.map((n, i) => `${n.id} rooms ${(o.roomsByNode[i] ?? []).join(',')}`).join('; ')} (${o.subsPerRoom} subscribers each); idle ${o.idleSeconds} s`);

  const idle0 = await nodeConnections(nats);
  const idleT0 = Date.now();
  await sleep(o.idleSeconds * 1000);
  const idle1 = await nodeConnections(nats);
  const idleS = (Date.now() - idleT0) / 1000;

  const s0 = await watch.state();
  const c0 = await nodeConnections(nats);
  const run = writer.run(o.rate, rooms, o.rate * o.seconds);
  const w = await run.done;
  const perRoom = rowsPerRoom(w.first, w.last, rooms);
  const expected = o.roomsByNode.map((rs) => sum(rs.map((r) => perRoom[r] * o.subsPerRoom)));
  const got = await clients.waitDeliveries('t-', sum(expected), 3_000, 30_000);
  const s1 = await watch.state();
  await waitFollowed(nodes, s1.lastSeq, 15_000);
  await sleep(300); // the last pull's answer written out
  const c1 = await nodeConnections(nats);
  const stats = await clients.stats();
  const statuses = await Promise.all(nodes.map((n) => n.status()));
  await clients.close();

  const rows = w.last - w.first + 1;
  const streamBytes = s1.bytes - s0.bytes;
  const result: TrafficResult = {
    rate: o.rate,
    seconds: o.seconds,
    rows,
    streamMessages: s1.messages - s0.messages,
    streamBytes,
    complete: got >= sum(expected),
    nodes: nodes.map((n, i) => {
      const rs = o.roomsByNode[i] ?? [];
      const share = sum(rs.map((r) => perRoom[r])) / rows;
      const conn = connDelta(c0.get(n.id), c1.get(n.id));
      const idle = connDelta(idle0.get(n.id), idle1.get(n.id));
      const fraction = conn && !conn.reconnected && streamBytes > 0 ? conn.received / streamBytes : null;
      return {
        node: n.id,
        role: statuses[i]?.cluster?.role ?? '?',
        rooms: rs,
        share: round(share, 4),
        expected: expected[i],
        deliveries: stats.get(`t-${n.id}`)?.deliveries ?? 0,
        conn,
        idleReceivedPerSec: idle && !idle.reconnected ? round(idle.received / idleS) : null,
        fractionOfStream: fraction === null ? null : round(fraction, 3),
        ratio: fraction === null || share === 0 ? null : round(fraction / share, 2),
      };
    }),
  };
  for (const r of result.nodes) {
    log(`traffic: ${r.node} (${r.role}) share ${(r.share * 100).toFixed(1)}%, received ${fmtInt(r.conn?.received ?? 0)} B = ${r.fractionOfStream} of the stream's ${fmtInt(streamBytes)} B (ratio ${r.ratio}); ${fmtInt(r.deliveries)}/${fmtInt(r.expected)} deliveries`);
  }
  return result;
}
