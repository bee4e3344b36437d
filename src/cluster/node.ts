// A cluster node (`serve --nats`): connected to NATS, with the cluster's stream and KV buckets
// ensured. Increment 1 of docs/dev/cluster-plan.md §12: nothing is published or followed yet.
import { jetstreamManager, type StreamInfo } from '@nats-io/jetstream';
import type pg from 'pg';
import type { ClusterConfig } from '../config.js';
import { CLUSTER } from '../constants.js';
import type { Logger } from '../log.js';
import { connectNats, type NatsLink } from './connect.js';
import { ensureBucket, ensureStream, jetStreamError, readDatabaseIdentity, streamDescription, wantedStream } from './stream.js';

export interface ClusterNode {
  readonly nodeId: string;
  /** "edge" until capture is elected (a later increment). */
  readonly role: 'capture' | 'edge';
  readonly link: NatsLink;
  /** The stream as found or made at start. */
  readonly stream: StreamInfo;
  /** What GET /status shows under `cluster`. */
  status(): { node: string; role: 'capture' | 'edge' };
  close(): Promise<void>;
}

export interface ClusterNodeOptions {
  cluster: ClusterConfig;
  slot: string;
  /** Reads the database's identity, which the stream's description names. */
  pool: pg.Pool;
}

export async function startClusterNode(opts: ClusterNodeOptions, log: Logger): Promise<ClusterNode> {
  const cfg = opts.cluster;
  const identity = await readDatabaseIdentity(opts.pool);
  const link = await connectNats(cfg, log);
  try {
    const jsm = await jetstreamManager(link.nc, { timeout: CLUSTER.apiTimeoutMs }).catch((err: unknown) => {
      throw jetStreamError('opening JetStream', err, cfg.streamReplicas);
    });
    const want = wantedStream(cfg, streamDescription(identity, opts.slot));
    const stream = await ensureStream(jsm, want, opts.slot, log);
    await ensureBucket(link.nc, jsm, want.names.clusterBucket, cfg.streamReplicas, log);
    await ensureBucket(link.nc, jsm, want.names.interestBucket, cfg.streamReplicas, log);
    log.info({ node: cfg.nodeId, stream: want.names.stream, replicas: stream.config.num_replicas }, 'cluster node ready');
    return {
      nodeId: cfg.nodeId,
      role: 'edge',
      link,
      stream,
      status: () => ({ node: cfg.nodeId, role: 'edge' }),
      close: () => link.close(),
    };
  } catch (err) {
    await link.close().catch(() => {});
    throw err;
  }
}
