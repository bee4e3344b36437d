// `walcast serve` assembled: capture → history ring → hub → WebSocket server, with the
// checkpoint wired back (the slot is held at the start of the ring's window).
import pg from 'pg';
import { createVerifier } from './auth/jwt.js';
import { Capture } from './capture/capture.js';
import { floorAt, formatWalPosition } from './protocol/position.js';
import type { Relation } from './capture/pgoutput.types.js';
import type { Transaction } from './capture/types.js';
import type { ServeConfig } from './config.js';
import { BROADCASTS_TABLE, CLUSTER, PUBLICATION, ROUTES_TABLE, SERVER_DEFAULTS } from './constants.js';
import { HistoryRing } from './history/ring.js';
import { LagGuard } from './history/lag-guard.js';
import { Catalog } from './hub/catalog.js';
import { SupabaseChanges } from './supabase/render.js';
import { supabaseEndpoint } from './supabase/route.js';
import { Hub } from './hub/hub.js';
import { Channels, channelLimits, type ChannelLimits } from './hub/channels.js';
import { SqlBroadcasts } from './hub/sql-broadcast.js';
import { oversizeAware } from './hub/oversize.js';
import { POLICY_TABLE } from './auth/authorizer.js';
import { parseRelation } from './auth/relations.js';
import type { Logger } from './log.js';
import { clientConfig, explainConnectError, withApplicationName } from './pg/connect.js';
import { Handlers, type HandlerDeps } from './server/handlers.js';
import { snapshotSetup } from './snapshot/setup.js';
import type { Snapshots } from './snapshot/snapshots.js';
import { reloadPolicies, startAuthorizer } from './auth/setup.js';
import type { PolicyAuthorizer } from './auth/authorizer.js';
import { createMetrics } from './server/metrics.js';
import { startClusterNode, type ClusterNode } from './cluster/node.js';
import { startChannelsBridge } from './cluster/channels-bridge.js';
import { Server, type ServerOptions } from './server/server.js';

export interface Daemon {
  readonly port: number;
  /** The metrics listener's port (--metrics-port); null when /metrics is on the main port. */
  readonly metricsPort: number | null;
  readonly hub: Hub;
  /** The slot's capture: always on a single node; in a cluster, only on the capture node, while it is. */
  readonly capture: Capture | null;
  /** In a cluster (--nats): the node. */
  readonly cluster: ClusterNode | null;
  readonly server: Server;
  /** Subscriptions' snapshots (their figures: `stats`). */
  readonly snapshots: Snapshots;
  /** Graceful: clients closed with 1001, final acknowledgement, connections closed. */
  stop(): Promise<void>;
  /** Resolves with an error when the daemon cannot go on (downstream failure). */
  readonly failed: Promise<Error>;
}

export interface DaemonExtras {
  /** More HTTP routes on the daemon's port (the dev demo). */
  routes?: ServerOptions['routes'];
  /** Channel bounds other than the defaults (tests show a bound with lowered limits). */
  channels?: Partial<ChannelLimits>;
  /** Per-turn message handling other than the defaults (tests show the queue bound). */
  turns?: HandlerDeps['turns'];
  /** Snapshot bounds other than the defaults (tests show a bound with lowered limits). */
  snapshots?: Parameters<typeof snapshotSetup>[2];
}

export async function startDaemon(given: ServeConfig, log: Logger, extras: DaemonExtras = {}): Promise<Daemon> {
  // Named in pg_stat_activity / pg_stat_replication: `walcast`, or `walcast <node-id>` in a cluster.
  const cfg = { ...given, db: withApplicationName(given.db, given.cluster ? `${CLUSTER.connectionNamePrefix}${given.cluster.nodeId}` : 'walcast') };
  // First, so that a bad key (short secret, unreadable JWKS) stops the start before any connection.
  const verify = cfg.noAuth ? null : createVerifier({ secret: cfg.jwtSecret, jwks: cfg.jwks, issuer: cfg.jwtIssuer, audience: cfg.jwtAudience });
  const pool = new pg.Pool({ ...clientConfig(cfg.db), max: 2 });
  pool.on('error', () => {}); // idle clients losing the server: the next query reconnects
  // Policies and relations are read before the stream starts, so that no change is ever
  // authorized against a state that has not been loaded.
  let auth: PolicyAuthorizer | null = null;
  try {
    auth = cfg.noAuth ? null : await startAuthorizer({ model: cfg.model, relations: cfg.relations }, pool, cfg.db, log);
  } catch (err) {
    await pool.end().catch(() => {});
    throw err;
  }
  // Cluster mode (--nats): connected and the stream checked before anything else, so that a wrong
  // NATS address or another database's stream stops the start at once. Then the hub is fed from
  // the cluster's stream, not from a slot of its own: one elected node captures into the stream.
  let cluster: ClusterNode | null = null;
  if (cfg.cluster) {
    try {
      cluster = await startClusterNode({ cluster: cfg.cluster, slot: cfg.slot, pool }, log);
    } catch (err) {
      await pool.end().catch(() => {});
      throw explainConnectError(err, given.db);
    }
  }
  const ring = new HistoryRing({ maxBytes: cfg.historyBytes, maxAgeMs: cfg.historyAgeMs });
  const channels = new Channels({
    auth,
    maxPerPeer: SERVER_DEFAULTS.maxChannelsPerSocket,
    maxPayloadBytes: SERVER_DEFAULTS.maxPayloadBytes,
    presenceBurst: SERVER_DEFAULTS.presenceBurst,
    presencePerSecond: SERVER_DEFAULTS.presencePerSecond,
    ...channelLimits(SERVER_DEFAULTS, cfg),
    ...extras.channels,
  });
  // In a cluster, channels reach the members on other nodes (client broadcasts, presence).
  const bridge = cluster && cfg.cluster ? startChannelsBridge({ nc: cluster.link.nc, ns: cfg.cluster.namespace, nodeId: cluster.nodeId, channels, log }) : null;
  const snapshotDb = snapshotSetup(clientConfig(cfg.db), log, { maxConcurrent: cfg.maxSnapshots, statementTimeoutMs: cfg.snapshotTimeoutMs, ...extras.snapshots });
  const sqlBroadcasts = new SqlBroadcasts({ channels, maxPayloadBytes: SERVER_DEFAULTS.maxPayloadBytes, log });
  const hub = new Hub({
    ring,
    catchUpHighWater: Math.floor(cfg.maxBackpressure / 4),
    catchUpBudgetPerTurn: SERVER_DEFAULTS.catchUpBudgetPerTurn,
    maxCatchUpsPerConnection: SERVER_DEFAULTS.maxCatchUpsPerConnection,
    maxCatchUpsPerUser: SERVER_DEFAULTS.maxCatchUpsPerUser,
    auth,
    channels,
    sqlBroadcasts,
    // In a cluster, positions older than the window are read from the stream.
    older: cluster?.history ?? null,
    // …and a node follows only the tables its clients subscribe to (interest routing).
    interests: cluster?.interests ?? null,
    marks: snapshotDb.marks,
  });
  const snapshots = snapshotDb.start(hub);
  // Tables whose changes the policies follow: an oversized transaction touching one resets them.
  const authTables = new Set(auth ? [POLICY_TABLE, ...cfg.relations.map((r) => parseRelation(r).table)] : []);
  const onTransaction = oversizeAware(hub, { authTables, reloadPolicies: () => auth && reloadPolicies(auth, pool, log), log });
  const catalog = new Catalog(pool);
  const capture = cluster ? null : localCapture(cfg, { hub, catalog, onTransaction, auth, pool, log });
  const failed = cluster ? cluster.failed : new Promise<Error>((resolve) => capture?.on('fatal', resolve));
  const slotCapture = () => capture ?? cluster?.capture ?? null;

  let lag: LagGuard;
  try {
    if (cluster) {
      await cluster.run({
        db: cfg.db,
        slot: cfg.slot,
        publication: PUBLICATION,
        authTables,
        maxTransactionBytes: cfg.maxTransactionBytes,
        historyAgeMs: cfg.historyAgeMs,
        sink: {
          reset: (floor, reason) => hub.reset(floor, reason),
          liveFrom: (pos) => hub.liveFrom(pos),
          transaction: (tx) => {
            onTransaction(tx);
            // A table's route_by changed: what nodes follow for route-filtered subscriptions is
            // keyed by the old column's values. They resubscribe (reading the new one).
            if (tx.changes.some((c) => c.relation.qualified === ROUTES_TABLE)) {
              catalog.invalidateAll();
              void catalog.reload().then(
                () => hub.resyncAll('position_outside_window', (sub) => sub.routes !== null && catalog.peek(sub.table)?.routeBy !== sub.routeBy),
                () => {},
              );
            }
          },
          progress: hub.onProgress,
          relation: (rel) => catalog.invalidate(rel.qualified),
          reloadPolicies: () => auth && reloadPolicies(auth, pool, log),
        },
      });
    } else {
      await capture?.start();
    }
    await catalog.reload();
    if (!catalog.broadcastsPublished) log.warn(`${BROADCASTS_TABLE} is not in the publication: broadcasts from SQL are not sent (run walcast migrate)`);
    // In a cluster the window holds nothing on the slot (the stream does): received stays 0.
    lag = await LagGuard.start({ configured: cfg.maxSlotLag, log, ring, received: () => capture?.lsns.received ?? 0n, evict: (minLsn) => hub.evict(minLsn) }, pool);
  } catch (err) {
    // Nothing may linger: the process is about to report the error and exit.
    await capture?.stop().catch(() => {});
    await bridge?.stop();
    await cluster?.close().catch(() => {});
    await pool.end().catch(() => {});
    throw explainConnectError(err, given.db);
  }
  const handlers = new Handlers({ hub, catalog, log, maxMessageBytes: cfg.maxMessageBytes, maxSubscriptions: cfg.maxSubscriptions, verify, authTimeoutMs: cfg.authTimeoutMs, turns: extras.turns, snapshots });
  const supabase = supabaseEndpoint({
    hub,
    handlers,
    verify,
    deps: { catalog, changes: new SupabaseChanges((oid) => catalog.typeName(oid)), log, maxMessageBytes: cfg.maxMessageBytes, maxSubscriptions: cfg.maxSubscriptions },
    maxBackpressure: cfg.maxBackpressure,
    maxFrameBytes: cfg.maxFrameBytes,
    idleTimeoutSec: cfg.idleTimeoutSec,
  });
  let front: Server | null = null; // the metrics read the server created just below
  const registry = createMetrics({ hub, snapshots: () => snapshots.stats, capture: slotCapture, clients: () => front?.clients ?? 0, slowCloses: () => front?.slowCloses ?? 0, auth,
    pendingAuth: () => front?.admission.pending ?? 0, refused: () => front?.admission.refused ?? {}, cluster: cluster ? () => cluster.status() : undefined,
    bridge: bridge ? () => bridge.stats : undefined, supabase: () => supabase.stats() });
  const server = new Server({
    host: cfg.host,
    port: cfg.port,
    reusePort: cfg.reusePort,
    metricsHost: cfg.metricsHost,
    metricsPort: cfg.metricsPort,
    maxConnections: cfg.maxConnections,
    maxPendingAuth: cfg.maxPendingAuth,
    authRequired: !cfg.noAuth,
    maxBackpressure: cfg.maxBackpressure,
    maxFrameBytes: cfg.maxFrameBytes,
    idleTimeoutSec: cfg.idleTimeoutSec,
    hub,
    handlers,
    log,
    healthy: () => (cluster ? cluster.following : capture?.current === 'streaming'),
    metrics: async () => ({ contentType: registry.contentType, body: await registry.metrics() }),
    routes: extras.routes,
    sockets: [supabase],
    status: () => {
      const w = ring.stats();
      return {
        slot: cfg.slot,
        replication: slotCapture()?.current ?? 'none',
        clients: front?.clients ?? 0,
        subscriptions: hub.subscriptionCount,
        channels: channels.count,
        window: {
          floor: formatWalPosition(w.floor.lsn, w.floor.index),
          head: formatWalPosition(w.head.lsn, w.head.index),
          transactions: w.transactions,
          bytes: w.bytes,
          ageSeconds: w.oldestTime === null ? 0 : Math.max(0, (Date.now() - w.oldestTime) / 1000),
          walHeld: lag.held,
          walBound: lag.bytes,
        },
        auth: auth ? { rules: auth.ruleCount, links: auth.linkTotal, ready: auth.ready } : null,
        snapshots: snapshots.stats,
        supabase: supabase.stats(),
        ...(cluster ? { cluster: { ...cluster.status(), channels: bridge?.stats ?? null } } : {}),
      };
    },
  });
  front = server;
  let port: number;
  try {
    port = await server.listen();
    cluster?.announce(`${cfg.host}:${port}`);
  } catch (err) {
    await capture?.stop();
    await bridge?.stop();
    await cluster?.close().catch(() => {});
    await snapshotDb.close();
    await pool.end().catch(() => {});
    throw err;
  }
  const timers = [setInterval(() => hub.sendProgress(), cfg.progressIntervalMs), setInterval(() => lag.evict(), 1_000), setInterval(() => lag.reread(pool), 60_000)];
  log.info({ host: cfg.host, port, metricsPort: server.metricsPort, maxConnections: cfg.maxConnections, maxPendingAuth: cfg.maxPendingAuth, slot: cfg.slot, noAuth: cfg.noAuth }, 'walcast serving');
  let stopping: Promise<void> | null = null;
  return {
    port,
    metricsPort: server.metricsPort,
    hub,
    capture,
    cluster,
    server,
    snapshots,
    failed,
    stop() {
      stopping ??= (async () => {
        for (const t of timers) clearInterval(t);
        server.close();
        await capture?.stop();
        await bridge?.stop();
        await cluster?.close().catch(() => {});
        await snapshotDb.close();
        await pool.end().catch(() => {});
      })();
      return stopping;
    },
  };
}

interface LocalCaptureDeps {
  hub: Hub;
  catalog: Catalog;
  onTransaction: (tx: Transaction) => void;
  auth: PolicyAuthorizer | null;
  pool: pg.Pool;
  log: Logger;
}

/** A single node's input: its own slot, the window held on it. */
function localCapture(cfg: ServeConfig, d: LocalCaptureDeps): Capture {
  const { hub, auth, pool, log } = d;
  const capture = new Capture({
    url: cfg.db,
    slot: cfg.slot,
    publication: PUBLICATION,
    onTransaction: d.onTransaction,
    maxTransactionBytes: cfg.maxTransactionBytes,
    hold: hub.hold,
    logger: log,
  });
  // Nothing before the slot's position will be streamed again: the window starts there.
  capture.on('ready', ({ confirmedFlush, walAtStart }: { confirmedFlush: bigint; walAtStart: bigint }) => {
    hub.reset(floorAt(confirmedFlush), null);
    hub.liveFrom(floorAt(walAtStart));
  });
  capture.on('slotCreated', ({ confirmedFlush, invalidated, atStart }: { confirmedFlush: bigint; invalidated: boolean; atStart?: boolean }) => {
    // A slot first created at start replaces nothing (unless an invalidated one): older
    // positions are just outside the window. One recreated under a running daemon, or in place
    // of an invalidated one, means `slot_recreated`.
    hub.reset(floorAt(confirmedFlush), atStart && !invalidated ? null : 'slot_recreated');
    // Changes made while there was no slot were never streamed: the policies are read anew.
    if (auth) reloadPolicies(auth, pool, log);
  });
  capture.on('progress', hub.onProgress);
  capture.on('relation', (rel: Relation) => d.catalog.invalidate(rel.qualified));
  return capture;
}
