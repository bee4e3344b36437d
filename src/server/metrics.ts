// Prometheus metrics (prom-client). Hot-path counters are plain numbers in the hub, read at
// scrape time, so a delivery costs an increment, not a registry lookup.
import client from 'prom-client';
import { SERVER_DEFAULTS } from '../constants.js';
import type { Capture } from '../capture/capture.js';
import type { Hub } from '../hub/hub.js';
import type { PolicyAuthorizer } from '../auth/authorizer.js';

export interface MetricsSources {
  hub: Hub;
  /** The slot's capture, when this process runs one (a cluster's edge nodes do not). */
  capture: () => Capture | null;
  clients: () => number;
  slowCloses: () => number;
  /** Absent under --no-auth. */
  auth?: PolicyAuthorizer | null;
  /** Connections waiting to authenticate, and upgrades refused past a cap, by reason. */
  pendingAuth?: () => number;
  refused?: () => Record<string, number>;
  /** In a cluster: the node's figures (src/cluster/node.ts status(); structural, to keep server free of cluster imports). */
  cluster?: () => ClusterFigures | null;
  /** In a cluster: channels across nodes (src/cluster/channels-bridge.ts stats; structural). */
  bridge?: () => BridgeFigures;
  /** The Supabase endpoint's connections and channels (src/supabase/route.ts). */
  supabase?: () => { connections: number; channels: number };
  /** Snapshots (src/snapshot/snapshots.ts stats; structural). */
  snapshots?: () => SnapshotFigures;
}

/** What the snapshot metrics read. */
export interface SnapshotFigures {
  running: number;
  queued: number;
  done: number;
  failed: number;
  cancelled: number;
  rows: number;
}

/** What the channel-bridge metrics read. */
export interface BridgeFigures {
  rooms: number;
  nodes: number;
  published: number;
  received: number;
  dropped: Record<string, number>;
  expiredNodes: number;
}

/** What the cluster metrics read. */
export interface ClusterFigures {
  role: 'capture' | 'edge';
  epoch: number | null;
  takeovers: number;
  stream: { firstSeq: number; lastSeq: number; messages: number; bytes: number } | null;
  lag: { followerMessages: number; publishBacklog: number };
  follower: { seq: number; gaps: number; skipped: number; fetched: number } | null;
}

/** What GET /metrics answers; cheap to call often (see createMetrics). */
export interface MetricsText {
  readonly contentType: string;
  metrics(): Promise<string>;
}

/**
 * Concurrent scrapes must not block the loop (issue #11 item 11: 500 at once delayed a ping by
 * 626 ms). The process metrics cost milliseconds (process_open_fds lists /proc/self/fd: 1.5 ms
 * with a few descriptors, 7 ms with 3,000), so they are collected at most once a second and
 * shared by the requests meanwhile (one in flight at a time); walcast's own gauges cost ~0.1 ms
 * and stay exact, rendered once per event-loop turn for all the requests of that turn.
 */
export function createMetrics(src: MetricsSources): MetricsText {
  const registry = new client.Registry();
  const processRegistry = new client.Registry();
  client.collectDefaultMetrics({ register: processRegistry, prefix: 'walcast_process_' });
  const gauge = (name: string, help: string, read: () => number) =>
    new client.Gauge({ name, help, registers: [registry], collect() { this.set(read()); } });
  const counter = (name: string, help: string, read: () => number) => {
    let reported = 0;
    return new client.Counter({
      name,
      help,
      registers: [registry],
      collect() {
        const now = read();
        if (now > reported) this.inc(now - reported);
        reported = now;
      },
    });
  };
  /** A counter per value of one label, read as a record of totals. */
  const labelled = (name: string, help: string, label: string, read: () => Record<string, number>) => {
    const reported = new Map<string, number>();
    return new client.Counter({
      name,
      help,
      labelNames: [label],
      registers: [registry],
      collect() {
        for (const [value, now] of Object.entries(read())) {
          const before = reported.get(value) ?? 0;
          this.inc({ [label]: value }, now - before);
          reported.set(value, now);
        }
      },
    });
  };
  const { hub, capture } = src;
  gauge('walcast_clients', 'Connected WebSocket clients', src.clients);
  gauge('walcast_subscriptions', 'Active subscriptions (live and catching up)', () => hub.subscriptionCount);
  if (src.supabase) {
    const sb = src.supabase;
    gauge('walcast_supabase_clients', 'Clients connected to the Supabase Realtime endpoint (also in walcast_clients)', () => sb().connections);
    gauge('walcast_supabase_channels', 'Phoenix channels joined (or joining) on the Supabase Realtime endpoint', () => sb().channels);
  }
  counter('walcast_transactions_in_total', 'Committed transactions received from the slot', () => hub.counters.transactionsIn);
  counter('walcast_changes_in_total', 'Row changes received from the slot', () => hub.counters.changesIn);
  counter('walcast_deliveries_total', 'Changes sent to subscriptions', () => hub.counters.deliveries);
  counter('walcast_resyncs_total', 'resync messages sent', () => hub.counters.resyncs);
  counter('walcast_oversized_transactions_total', 'Transactions past --max-transaction-bytes, skipped with resync transaction_too_large', () => hub.counters.oversized);
  counter('walcast_window_shrinks_total', 'Times the slot lag bound dropped the oldest part of the history window', () => hub.counters.windowShrinks);
  counter('walcast_sql_broadcasts_dropped_total', 'Rows of walcast.broadcasts dropped (payload over the limit, or malformed)', () => hub.sqlBroadcasts?.dropped ?? 0);
  counter('walcast_slow_closes_total', 'Sockets closed with 4008 for backpressure', src.slowCloses);
  gauge('walcast_clients_pending_auth', 'Connected WebSocket clients without an accepted token yet', src.pendingAuth ?? (() => 0));
  labelled('walcast_connections_refused_total', 'WebSocket upgrades refused with 503 past a connection cap, by reason', 'reason', src.refused ?? (() => ({})));
  gauge('walcast_replication_up', '1 while the replication stream is streaming', () => (capture()?.current === 'streaming' ? 1 : 0));
  gauge('walcast_slot_lag_bytes', 'WAL bytes between the furthest position seen and the slot acknowledgement', () => {
    const c = capture();
    if (!c) return 0;
    const l = c.lsns;
    return Number(l.received > l.acked ? l.received - l.acked : 0n);
  });
  {
    const snap = perTurn(src.snapshots ?? (() => null));
    const read = (f: (s: SnapshotFigures) => number) => () => {
      const s = snap();
      return s ? f(s) : 0;
    };
    gauge('walcast_snapshots_running', 'Snapshots reading rows now', read((s) => s.running));
    gauge('walcast_snapshots_queued', 'Snapshots waiting for a turn', read((s) => s.queued));
    counter('walcast_snapshots_total', 'Snapshots sent in full (their subscription then caught up)', read((s) => s.done));
    counter('walcast_snapshots_failed_total', 'Snapshots answered snapshot_failed or limit_exceeded', read((s) => s.failed));
    counter('walcast_snapshots_cancelled_total', 'Snapshots stopped by unsubscribe, a closed connection or 4008', read((s) => s.cancelled));
    counter('walcast_snapshot_rows_total', 'Rows sent in snapshots', read((s) => s.rows));
  }
  gauge('walcast_history_bytes', 'Estimated bytes held by the history window', () => hub.ring.stats().bytes);
  gauge('walcast_history_entries', 'Transactions and marks in the history window', () => hub.ring.stats().entries);
  gauge('walcast_history_transactions', 'Transactions in the history window', () => hub.ring.stats().transactions);
  gauge('walcast_history_age_seconds', 'Age of the oldest entry of the history window', () => {
    const t = hub.ring.stats().oldestTime;
    return t === null ? 0 : Math.max(0, (Date.now() - t) / 1000);
  });
  // Registered on a single node too (reading 0): one set of metric names whatever the mode.
  {
    const cluster = perTurn(src.cluster ?? (() => null));
    const read = (f: (c: ClusterFigures) => number) => () => {
      const c = cluster();
      return c ? f(c) : 0;
    };
    gauge('walcast_cluster_capture', '1 while this node is the cluster\'s capture node', read((c) => (c.role === 'capture' ? 1 : 0)));
    gauge('walcast_cluster_capture_epoch', 'This node\'s capture epoch while it captures (0 otherwise)', read((c) => c.epoch ?? 0));
    counter('walcast_cluster_takeovers_total', 'Times this node took over capture', read((c) => c.takeovers));
    gauge('walcast_cluster_publish_backlog', 'Capture node: messages sent to the stream and not yet acknowledged by JetStream', read((c) => c.lag.publishBacklog));
    gauge('walcast_stream_first_seq', 'The cluster stream\'s first sequence', read((c) => c.stream?.firstSeq ?? 0));
    gauge('walcast_stream_last_seq', 'The cluster stream\'s last sequence', read((c) => c.stream?.lastSeq ?? 0));
    gauge('walcast_stream_messages', 'Messages in the cluster stream (the resume window)', read((c) => c.stream?.messages ?? 0));
    gauge('walcast_stream_bytes', 'Bytes in the cluster stream', read((c) => c.stream?.bytes ?? 0));
    gauge('walcast_follower_seq', 'Every message concerning this node up to this stream sequence is handed on', read((c) => c.follower?.seq ?? 0));
    gauge('walcast_follower_lag_messages', 'Stream messages concerning this node it has not handed on yet', read((c) => c.lag.followerMessages));
    counter('walcast_follower_gaps_total', 'Messages concerning this node lost before it handed them on (a window reset each)', read((c) => c.follower?.gaps ?? 0));
    counter('walcast_follower_skipped_total', 'Stream messages skipped as malformed or already read', read((c) => c.follower?.skipped ?? 0));
    counter('walcast_follower_fetches_total', 'Stream messages this node fetched because core NATS lost or delayed them', read((c) => c.follower?.fetched ?? 0));
  }
  {
    const none: BridgeFigures = { rooms: 0, nodes: 0, published: 0, received: 0, dropped: {}, expiredNodes: 0 };
    const bridge = perTurn(src.bridge ?? (() => none));
    gauge('walcast_cluster_channels_open', 'cluster: channels with members on this node (followed on NATS)', () => bridge().rooms);
    gauge('walcast_cluster_nodes_alive', 'cluster: other nodes heard from lately (channels and presence)', () => bridge().nodes);
    counter('walcast_cluster_channel_messages_total', 'cluster: broadcast and presence messages sent to and received from other nodes', () => bridge().published + bridge().received);
    labelled('walcast_cluster_channel_dropped_total', 'cluster: channel messages from other nodes dropped, by reason', 'reason', () => bridge().dropped);
    counter('walcast_cluster_nodes_expired_total', 'cluster: other nodes declared dead (their presence removed)', () => bridge().expiredNodes);
  }
  const auth = src.auth;
  if (auth) {
    gauge('walcast_policy_rules', 'Policy rules (p) in force', () => auth.ruleCount);
    gauge('walcast_policy_links', 'Role and relation links (g, g2, ...) held in memory, with their history in the window', () => auth.linkTotal);
    gauge('walcast_policy_ready', '1 once policies and relations are loaded (0: every decision is deny)', () => (auth.ready ? 1 : 0));
  }
  return sharedRendering(registry, processRegistry);
}

function sharedRendering(own: client.Registry, processMetrics: client.Registry): MetricsText {
  let turn: Promise<string> | null = null;
  let proc: { at: number; text: Promise<string> } | null = null;
  const ownText = () => {
    if (!turn) {
      turn = own.metrics();
      setImmediate(() => (turn = null));
    }
    return turn;
  };
  const processText = () => {
    const now = Date.now();
    if (!proc || now - proc.at >= SERVER_DEFAULTS.processMetricsTtlMs) {
      const text = processMetrics.metrics();
      const entry = { at: now, text };
      proc = entry;
      text.catch(() => proc === entry && (proc = null)); // a failure is not kept for a second
    }
    return proc.text;
  };
  return {
    contentType: own.contentType,
    async metrics() {
      const [a, b] = await Promise.all([ownText(), processText()]);
      return a.endsWith('\n') || a === '' ? a + b : `${a}\n${b}`;
    },
  };
}

/** `read` called once per event-loop turn: a scrape reads one snapshot for all its gauges. */
function perTurn<T>(read: () => T): () => T {
  let held: { v: T } | null = null;
  return () => {
    if (!held) {
      held = { v: read() };
      setImmediate(() => (held = null));
    }
    return held.v;
  };
}
