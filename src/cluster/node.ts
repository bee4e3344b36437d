// A cluster node (`serve --nats`): connected to NATS, with the cluster's stream and KV buckets
// ensured (startClusterNode, before the daemon touches anything else), then (run) following the
// stream into its hub and standing for election as the capture node:
//
//   edge ──elected──► taking over ──► capture ──(deposed, failure)──► edge (resigned)
//
// Exactly one node holds the lease (src/cluster/elector.ts) and reads the slot
// (src/cluster/capture-leader.ts); every node, the capture one too, receives what concerns its
// clients (src/cluster/routed-follower.ts, edge-interests.ts) and reads older history from the
// stream (stream-history.ts).
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager, type StreamInfo } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import type { Subscription } from '@nats-io/transport-node';
import type pg from 'pg';
import type { Capture } from '../capture/capture.js';
import type { ClusterConfig } from '../config.js';
import { CLUSTER, CLUSTER_NODES } from '../constants.js';
import type { Logger } from '../log.js';
import { floorAt, type Position } from '../protocol/position.js';
import { CaptureLeader } from './capture-leader.js';
import { connectNats, type NatsLink } from './connect.js';
import { claimNodeId } from './node-id.js';
import { Elector } from './elector.js';
import { RoutedFollower, type FollowerSink, type RoutedFollowerStats } from './routed-follower.js';
import { EdgeInterests, type EdgeInterestsStats } from './edge-interests.js';
import { InterestRegistry, type InterestRegistryStats } from './interest.js';
import { changeSubject, tableSubjects } from './subjects.js';
import { listNodes, NodeRegistry, type NodeSeen } from './registry.js';
import { StreamWatch, type StreamFigures } from './stream-watch.js';
import { StreamHistory, type StreamHistoryStats } from './stream-history.js';
import { StreamPositions } from './stream-positions.js';
import { RelationCache } from './relations.js';
import { readSlot } from './takeover.js';
import { clusterNames, ensureBucket, ensureStream, jetStreamError, readDatabaseIdentity, streamDescription, wantedStream } from './stream.js';

export type ClusterRole = 'capture' | 'edge';

export interface ClusterStatus {
  node: string;
  role: ClusterRole;
  /** This node's capture epoch while it is the capture node. */
  epoch: number | null;
  /** The capture node as this node last saw the lease, and its epoch. */
  capture: { node: string; epoch: number } | null;
  /** Every node's registry entry (read every few seconds). */
  nodes: NodeSeen[];
  /** The stream's figures (read every few seconds); null before the first read. */
  stream: StreamFigures | null;
  lag: {
    /** Stream messages this node has not read yet. */
    followerMessages: number;
    /** On the capture node: messages sent and not yet PubAck'ed. */
    publishBacklog: number;
  };
  /** This node's feed: `seq` every message concerning it up to there handed on, `gaps` resets (messages lost), `fetched` from the stream. */
  follower: { seq: number; position: string | null; epoch: number | null; gaps: number; skipped: number; fetched: number; routing: RoutedFollowerStats & { interests: EdgeInterestsStats; registry: InterestRegistryStats } } | null;
  /** Catch-ups read from the stream (positions older than this node's window). */
  streamCatchUps: StreamHistoryStats;
  /** Times this node took over capture. */
  takeovers: number;
}

export interface ClusterRunOptions {
  db: string;
  slot: string;
  publication: string;
  authTables: ReadonlySet<string>;
  maxTransactionBytes: number;
  /** --history-age: the node's window; older stream messages are not read at start. */
  historyAgeMs: number;
  sink: FollowerSink;
}

export interface ClusterNode {
  readonly nodeId: string;
  readonly role: ClusterRole;
  readonly link: NatsLink;
  /** The stream as found or made at start. */
  readonly stream: StreamInfo;
  /** The slot's capture while this node holds it. */
  readonly capture: Capture | null;
  /** Whether the node reads the stream (its /healthz). */
  readonly following: boolean;
  /** The stream as history older than the node's window, for catch-ups. */
  readonly history: StreamHistory;
  /** What the node follows for its subscriptions (interest routing). */
  readonly interests: EdgeInterests;
  /** Follows the stream into the sink, then stands for election. */
  run(o: ClusterRunOptions): Promise<void>;
  /** The WebSocket listener's address, for the node list. */
  announce(address: string): void;
  /** What GET /status shows under `cluster`. */
  status(): ClusterStatus;
  /** Resolves with an error the node cannot go on after. */
  readonly failed: Promise<Error>;
  close(): Promise<void>;
}

export interface ClusterNodeOptions {
  cluster: ClusterConfig;
  slot: string;
  /** Reads the database's identity, which the stream's description names, and the slot. */
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
    const kvm = new Kvm(link.nc);
    const kv = await kvm.open(want.names.clusterBucket);
    const interestKv = await kvm.open(want.names.interestBucket);
    const claim = await claimNodeId(link.nc, cfg.namespace, cfg.nodeId);
    log.info({ node: cfg.nodeId, stream: want.names.stream, replicas: stream.config.num_replicas }, 'cluster node ready');
    return new Node(cfg, link, jetstream(link.nc, { timeout: CLUSTER.apiTimeoutMs }), jsm, kv, interestKv, stream, opts.pool, log, claim);
  } catch (err) {
    await link.close().catch(() => {});
    throw err;
  }
}

class Node implements ClusterNode {
  private follower: RoutedFollower | null = null;
  private elector: Elector | null = null;
  private leader: CaptureLeader | null = null;
  private closing = false;
  private registry: NodeRegistry | null = null;
  private watch: StreamWatch | null = null;
  private nodes: NodeSeen[] = [];
  private nodesTimer: NodeJS.Timeout | null = null;
  private takeovers = 0;
  private fatal: (err: Error) => void = () => {};
  readonly failed: Promise<Error>;
  private readonly relations: RelationCache;
  private readonly positions: StreamPositions;
  readonly history: StreamHistory;
  readonly interests: EdgeInterests;
  private readonly interestRegistry: InterestRegistry;
  /** Tables every node follows whole (policy and relation tables), known at run(). */
  private readonly always = new Set<string>();

  constructor(
    private readonly cfg: ClusterConfig,
    readonly link: NatsLink,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly kv: KV,
    interestKv: KV,
    readonly stream: StreamInfo,
    private readonly pool: pg.Pool,
    private readonly log: Logger,
    private readonly claim: Subscription,
  ) {
    this.failed = new Promise((resolve) => (this.fatal = resolve));
    const ns = cfg.namespace;
    const name = clusterNames(ns).stream;
    this.relations = new RelationCache(kv);
    this.positions = new StreamPositions(jsm, name, ns);
    this.history = new StreamHistory({ js, jsm, positions: this.positions, relations: this.relations, ns, stream: name, figures: () => this.watch?.current ?? null, log });
    this.interestRegistry = new InterestRegistry({ kv: interestKv, nodeId: cfg.nodeId, log });
    this.interests = new EdgeInterests({
      registry: this.interestRegistry,
      subscribe: (schema, table, route) => this.follower?.subscribe(route === null ? tableSubjects(ns, 'd', schema, table, true) : changeSubject(ns, 'd', schema, table, route, true)) ?? (() => {}),
      always: this.always,
    });
  }

  get nodeId(): string {
    return this.cfg.nodeId;
  }

  get role(): ClusterRole {
    return this.leader ? 'capture' : 'edge';
  }

  get capture(): Capture | null {
    return this.leader?.current ?? null;
  }

  get following(): boolean {
    return this.follower?.reading ?? false;
  }

  async run(o: ClusterRunOptions): Promise<void> {
    const names = clusterNames(this.cfg.namespace);
    for (const t of o.authTables) this.always.add(t);
    const follower = new RoutedFollower({
      nc: this.link.nc,
      js: this.js,
      jsm: this.jsm,
      registry: this.interestRegistry,
      interests: this.interests,
      relations: this.relations,
      positions: this.positions,
      ns: this.cfg.namespace,
      stream: names.stream,
      sink: o.sink,
      emptyFloor: () => this.slotFloor(o.slot),
      historyAgeMs: o.historyAgeMs,
      log: this.log,
    });
    this.follower = follower;
    void follower.failed.then((err) => this.fatal(err));
    await follower.start();
    this.watch = new StreamWatch(this.jsm, names.stream);
    this.watch.start();
    this.registry = new NodeRegistry(this.kv, this.cfg.nodeId, () => this.role, this.log);
    this.registry.start();
    const readNodes = () => void listNodes(this.kv).then((n) => (this.nodes = n), () => {});
    readNodes();
    this.nodesTimer = setInterval(readNodes, CLUSTER_NODES.beatMs);
    const elector = new Elector({
      kv: this.kv,
      nodeId: this.cfg.nodeId,
      log: this.log,
      onElected: (epoch) => this.lead(epoch, o, names.stream),
      onDeposed: (reason) => void this.stepDown(reason),
    });
    this.elector = elector;
    elector.start();
  }

  announce(address: string): void {
    this.registry?.announce(address);
  }

  status(): ClusterStatus {
    const stream = this.watch?.current ?? null;
    const routed = this.follower?.stats ?? null;
    const follower = routed ? { seq: routed.head, position: routed.position, epoch: routed.epoch, gaps: routed.resets, skipped: routed.skipped, fetched: routed.fetched, routing: { ...routed, interests: this.interests.stats, registry: this.interestRegistry.stats() } } : null;
    return {
      node: this.cfg.nodeId,
      role: this.role,
      epoch: this.leader?.epoch ?? null,
      capture: this.elector?.holder ?? null,
      nodes: this.nodes,
      stream,
      lag: { followerMessages: routed ? routed.behind : 0, publishBacklog: this.leader?.backlog ?? 0 },
      follower,
      streamCatchUps: this.history.stats,
      takeovers: this.takeovers,
    };
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    // Capture first (its last acknowledgement bounded by what the stream holds), then the lease
    // (deleted: another node takes over at once) and the rest.
    // Each step bounded: with NATS gone, the lease delete and the publisher's drain would wait
    // for their timeouts, and a stopping daemon must not.
    await within(this.stepDown('shutdown'), CLUSTER.drainTimeoutMs);
    if (this.nodesTimer) clearInterval(this.nodesTimer);
    this.watch?.stop();
    this.claim.unsubscribe();
    this.interests.close();
    // The lease, the node list entry, reading, and this incarnation's interest keys: independent
    // of one another once capture has stopped, so at once.
    await within(Promise.all([this.elector?.stop(), this.registry?.stop(), this.follower?.stop(), this.interestRegistry.close()]), CLUSTER.drainTimeoutMs / 2);
    await this.link.close();
  }

  /** The slot's confirmed position (or the WAL's, before there is a slot): the floor of an empty stream. */
  private async slotFloor(slot: string): Promise<Position> {
    return floorAt((await readSlot(this.pool, slot)).confirmed);
  }

  private lead(epoch: number, o: ClusterRunOptions, stream: string): void {
    if (this.closing) return;
    const leader: CaptureLeader = new CaptureLeader({
      db: o.db,
      slot: o.slot,
      publication: o.publication,
      js: this.js,
      jsm: this.jsm,
      kv: this.kv,
      ns: this.cfg.namespace,
      stream,
      epoch,
      nodeId: this.cfg.nodeId,
      authTables: o.authTables,
      maxTransactionBytes: o.maxTransactionBytes,
      ackDelayMs: this.cfg.ackDelayMs,
      maxPayload: Math.max(CLUSTER.minPayloadBytes, (this.link.nc.info?.max_payload ?? CLUSTER.defaultMaxPayload) - CLUSTER.headerRoomBytes),
      log: this.log,
      onFailed: (err) => this.abandon(leader, err),
    });
    this.leader = leader;
    this.takeovers++;
    this.registry?.beat();
    this.log.info({ node: this.cfg.nodeId, epoch }, 'elected capture node: taking over the slot');
    leader.start().catch((err: Error) => this.abandon(leader, err));
  }

  /** This leadership failed: stop it and give the lease up (the election starts over). */
  private abandon(leader: CaptureLeader, err: Error): void {
    if (this.leader !== leader) return;
    this.log.error({ err: err.message, code: (err as { code?: string }).code }, 'capture leadership failed; resigning');
    void this.stepDown('failed').then(() => this.elector?.resign());
  }

  private async stepDown(reason: string): Promise<void> {
    const leader = this.leader;
    if (!leader) return;
    this.leader = null;
    this.registry?.beat();
    this.log.info({ node: this.cfg.nodeId, reason }, 'capture node stepping down');
    await leader.stop();
  }
}

/** Waits for p, at most ms; never rejects. */
function within(p: Promise<unknown> | undefined, ms: number): Promise<void> {
  if (!p) return Promise.resolve();
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p.then(() => {}, () => {}), new Promise<void>((r) => (timer = setTimeout(r, ms)))]).finally(() => clearTimeout(timer));
}
