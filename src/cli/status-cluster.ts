// `walcast status --nats URL [--cluster NAME]`: the cluster as NATS holds it, without asking a
// daemon: who holds capture (the lease), the nodes' registry entries, the stream's figures.
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect } from '@nats-io/transport-node';
import { CLUSTER, CLUSTER_KV } from '../constants.js';
import { listNodes, type NodeSeen } from '../cluster/registry.js';
import { clusterNames } from '../cluster/stream.js';
import { readStreamFigures, type StreamFigures } from '../cluster/stream-watch.js';
import type { StatusOptions } from '../config.js';

export interface ClusterView {
  namespace: string;
  reachable: boolean;
  error?: string;
  /** The lease: the capture node and its epoch; null when nobody holds it. */
  capture?: { node: string; epoch: number | null } | null;
  nodes?: NodeSeen[];
  stream?: StreamFigures | null;
}

export async function readClusterView(c: NonNullable<StatusOptions['cluster']>): Promise<ClusterView> {
  const names = clusterNames(c.namespace);
  let nc;
  try {
    nc = await connect({ servers: c.servers, name: 'walcast status', timeout: CLUSTER.connectTimeoutMs, ...(c.tls ? { tls: {} } : {}), reconnect: false });
  } catch (err) {
    return { namespace: c.namespace, reachable: false, error: (err as Error).message };
  }
  try {
    const jsm = await jetstreamManager(nc, { timeout: CLUSTER.apiTimeoutMs });
    const stream = await readStreamFigures(jsm, names.stream).catch(() => null);
    const kv = await new Kvm(nc).open(names.clusterBucket);
    const lease = await kv.get(CLUSTER_KV.capture).catch(() => null);
    let capture: ClusterView['capture'] = null;
    if (lease && lease.operation === 'PUT') {
      const v = JSON.parse(lease.string()) as { node?: unknown; epoch?: unknown };
      capture = { node: String(v.node), epoch: typeof v.epoch === 'number' ? v.epoch : lease.revision };
    }
    return { namespace: c.namespace, reachable: true, capture, nodes: await listNodes(kv), stream };
  } catch (err) {
    return { namespace: c.namespace, reachable: false, error: (err as Error).message };
  } finally {
    await nc.close().catch(() => {});
  }
}

type Rows = [string, string][];

/** The cluster's lines of the human table (from --nats, or the daemon's /status). */
export function clusterRows(v: { capture?: ClusterView['capture']; nodes?: NodeSeen[]; stream?: StreamFigures | null }, bytes: (n: number) => string): Rows {
  const rows: Rows = [];
  rows.push(['capture', v.capture ? `${v.capture.node} (epoch ${v.capture.epoch ?? '?'})` : 'nobody holds the lease']);
  for (const n of v.nodes ?? []) {
    rows.push([`  ${n.node}`, `${n.role}${n.address ? ` at ${n.address}` : ''}, seen ${Math.round(n.ageSeconds)} s ago${n.stale ? ' (STALE: gone or cut off from NATS)' : ''}`]);
  }
  const s = v.stream;
  if (s) {
    rows.push(['stream', `${s.name}: ${s.messages} messages, ${bytes(s.bytes)} of ${bytes(s.maxBytes)}, max age ${Math.round(s.maxAgeSeconds)} s, replicas ${s.replicas}, leader ${s.leader ?? 'none'}${s.lagging.length ? `, lagging ${s.lagging.join(', ')}` : ''}`]);
    rows.push(['stream window', `${s.firstPosition ?? '-'} .. ${s.lastPosition ?? '-'} (seq ${s.firstSeq} .. ${s.lastSeq})`]);
  } else rows.push(['stream', 'not readable (no stream yet, or NATS unreachable)']);
  return rows;
}
