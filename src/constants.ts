// Wire strings, close codes and defaults live here and nowhere else.

export const PUBLICATION = 'walcast';
/** Broadcasts from SQL: committed inserts into this table (sql/004_broadcast_table.sql); not subscribable. */
export const BROADCASTS_TABLE = 'walcast.broadcasts';
/** The routing column of each table enabled with route_by (migration 005): walcast's metadata, read by the cluster, not rows for subscribers. */
export const ROUTES_TABLE = 'walcast.routes';
export const SCHEMA = 'walcast';
export const MIGRATIONS_TABLE = 'walcast.migrations';
/** Advisory lock key that serialises concurrent `walcast migrate` runs ("walcast" as ASCII). */
export const MIGRATE_LOCK_KEY = 0x77616c63;

export const DEFAULTS = {
  slot: 'walcast',
  host: '127.0.0.1',
  port: 4000,
  /** Reconnect backoff of the replication stream: full jitter between 0 and min(cap, base * 2^n). */
  backoffBaseMs: 200,
  backoffCapMs: 10_000,
  /** How often our own standby status update is sent when something changed. */
  statusIntervalMs: 1_000,
  /** Committed transactions waiting downstream before the replication socket is paused. */
  maxPendingTransactions: 64,
  /**
   * Bytes of pgoutput change messages one transaction may hold in memory; past it its changes
   * are dropped and it is handed on as oversized (`resync` transaction_too_large for the
   * subscriptions of its tables). Decoded, changes take a few times their wire size.
   */
  maxTransactionBytes: 32 * 1024 * 1024,
} as const;

/**
 * GUCs for the replication session. pgoutput renders values with the walsender's own output
 * functions, so these fix the text forms that src/capture/values.ts parses.
 */
export const REPLICATION_SESSION_OPTIONS = [
  '-c DateStyle=ISO',
  '-c TimeZone=UTC',
  '-c IntervalStyle=iso_8601',
  '-c extra_float_digits=3',
  '-c bytea_output=hex',
].join(' ');

/** pgoutput protocol version: 1 sends whole transactions only (no in-progress streaming). */
export const PGOUTPUT_PROTO_VERSION = 1;

/** Exit codes of the CLI. */
export const EXIT = { ok: 0, failure: 1, usage: 2 } as const;

/** Wire protocol v1 (docs/PROTOCOL.md). */
export const PROTOCOL_VERSION = 1;
export const WS_PATH = '/ws';

export const CLOSE = {
  goingAway: 1001,
  /**
   * RFC 6455 "try again later": too many messages waited while the policies were read anew, or
   * for their turn (SERVER_DEFAULTS.maxQueuedMessages / maxQueuedBytes).
   */
  tryAgainLater: 1013,
  authFailed: 4001,
  tooSlow: 4008,
  protocolViolation: 4400,
} as const;

export const SERVER_DEFAULTS = {
  /** History ring (the resume window). */
  historyBytes: 256 * 1024 * 1024,
  historyAgeMs: 10 * 60 * 1000,
  /**
   * WAL the slot may hold back for the window (received minus its start). Past it the window
   * shrinks. Clamped to 3/4 of the server's max_slot_wal_keep_size when that is set.
   */
  maxSlotLagBytes: 1024 * 1024 * 1024,
  /** Bytes buffered for one socket past which it is closed with 4008. */
  maxBackpressure: 4 * 1024 * 1024,
  /** Largest client frame answered with too_large rather than parsed. */
  maxMessageBytes: 64 * 1024,
  /** Frames beyond this are refused by the WebSocket layer itself (close 1009). */
  maxFrameBytes: 1024 * 1024,
  maxSubscriptionsPerSocket: 100,
  /** How often idle clients get a `progress` position. */
  progressIntervalMs: 3_000,
  /** Channels one socket may be in at once. */
  maxChannelsPerSocket: 100,
  /** Largest broadcast payload or presence state (JSON bytes). */
  maxPayloadBytes: 32 * 1024,
  /** Presence updates per socket: burst, then this many per second. */
  presenceBurst: 20,
  presencePerSecond: 10,
  /**
   * Presence one user may keep in a channel (its connections' metas, and their bytes), and a
   * channel in all: the presence_state a joiner receives stays well under maxBackpressure.
   */
  presenceMetasPerUser: 10,
  presenceBytesPerUser: 128 * 1024,
  presenceEntriesPerChannel: 5_000,
  presenceBytesPerChannel: 1024 * 1024,
  /** Client broadcasts per connection: messages and payload bytes, a burst then per second. */
  broadcastBurst: 50,
  broadcastPerSecond: 20,
  broadcastBytesBurst: 256 * 1024,
  broadcastBytesPerSecond: 64 * 1024,
  /** The same per user, all its connections together (none under --no-auth). */
  userBroadcastBurst: 100,
  userBroadcastPerSecond: 40,
  userBroadcastBytesBurst: 512 * 1024,
  userBroadcastBytesPerSecond: 128 * 1024,
  /** Seconds without traffic after which uWS pings, then closes a dead socket. */
  idleTimeoutSec: 60,
  /** A connection without `?token=` must send a valid `auth` within this long (close 4001). */
  authTimeoutMs: 10_000,
  /** Connection cap: at most this many, and at most the open-files soft limit minus the headroom. */
  maxConnections: 10_000,
  /** Descriptors kept free of WebSockets: HTTP requests (/healthz), Postgres, files. */
  fdHeadroom: 256,
  /** Connections not yet authenticated (no accepted token) at once. */
  maxPendingAuth: 1_000,
  /** Retry-After (seconds) of a 503 refusing a WebSocket upgrade past a cap. */
  refusalRetryAfterSec: 5,
  /** The process metrics (prom-client's defaults) are collected at most this often. */
  processMetricsTtlMs: 1_000,
  /** Client messages held while a token is verified; one more closes the socket with 4400. */
  maxHeldMessages: 64,
  /**
   * Milliseconds of client-message handling per turn of the event loop, all connections
   * together; later messages wait for later turns (src/server/turns.ts), one connection's at a
   * time in turn, so a flood on some connections does not hold up the others.
   */
  turnBudgetMs: 4,
  /**
   * Client messages (and bytes of them) one connection may have waiting for a later turn; one
   * more closes it with 1013. Sized for a client pipelining thousands of small requests.
   */
  maxQueuedMessages: 10_000,
  maxQueuedBytes: 4 * 1024 * 1024,
  /**
   * Catch-up work per turn of the event loop, shared by every catching-up subscription; then
   * live dispatch and socket I/O run. A unit is a change of the window examined for one
   * subscription, or a KiB sent: a turn examines about 1024 changes or copies about 1 MiB.
   */
  catchUpBudgetPerTurn: 1024,
  /** Catch-ups running at once per connection and per user (token `sub`); the rest wait in order. */
  maxCatchUpsPerConnection: 4,
  maxCatchUpsPerUser: 16,
  /**
   * Rule sets specialised per table or channel name and action that the authorizer keeps (LRU;
   * once for now, once for past rule sets). Names come from clients: bounded, so a flood of
   * distinct channel names costs at most this many entries.
   */
  decisionCacheEntries: 4096,
} as const;

/**
 * Capture timings and ratios (src/capture/). Each says why it has the value it has; the ones a
 * caller may override are also CaptureOptions (pingAfterMs, deadAfterMs).
 */
export const CAPTURE = {
  /**
   * Silence after which our status update asks the server to answer at once. A third of
   * minDeadAfterMs: a live but quiet stream is asked twice or more before it is given up.
   */
  pingAfterMs: 10_000,
  /**
   * The shortest silence after which a stream is declared dead and reconnected, and the one
   * used when wal_sender_timeout cannot be read. Long enough for a loaded server to answer a
   * ping; short enough that a half-open TCP connection is noticed within a minute.
   */
  minDeadAfterMs: 30_000,
  /**
   * The silence trusted, in wal_sender_timeouts: a walsender replaying a large transaction
   * sends a keepalive only once wal_sender_timeout / 2 passed without hearing from us
   * (ProcessPendingWrites in walsender.c), so one whole timeout, twice, is never a false alarm.
   */
  deadAfterSenderTimeouts: 2,
  /** wal_sender_timeout = 0 sends no keepalives at all: only ten quiet minutes count as death. */
  deadAfterNoKeepalivesMs: 600_000,
  /**
   * At start, how long a slot still held by another walsender is waited for before slot_in_use:
   * after a restart on the same host the old walsender exits within moments; one whose peer
   * vanished (a crashed host) holds it until wal_sender_timeout, too long to wait for here.
   */
  slotFreeWaitMs: 5_000,
  /** How often the slot is looked at meanwhile: a cheap query, and a start not delayed by much. */
  slotFreePollMs: 250,
  /**
   * A paused handoff resumes the socket once at most this share of its bounds (transactions,
   * bytes) waits: the gap keeps it from pausing and resuming at every transaction.
   */
  handoffResumeShare: 0.5,
  /**
   * Share of max_slot_wal_keep_size the resume window may hold back on the slot (docs/OPERATIONS.md §4):
   * the rest covers restart_lsn trailing confirmed_flush_lsn and WAL segment rounding.
   */
  keepSizeShare: 0.75,
} as const;

/** Milliseconds from the Unix epoch to 2000-01-01, the epoch of Postgres timestamps (replication protocol). */
export const PG_EPOCH_MS = 946_684_800_000;

/**
 * How long a connection to Postgres may take to open. A reachable server answers within
 * milliseconds; 5 s allows a slow network or TLS handshake without hanging a start or a
 * reconnect attempt for long.
 */
export const PG_CONNECT_TIMEOUT_MS = 5_000;

/**
 * Fixed parts of the cluster's NATS names (docs/dev/cluster-plan.md §2; built and parsed in
 * src/cluster/subjects.ts). Every subject starts `walcast.<ns>.`; capture writes under `s`, the
 * stream republishes to `r`.
 */
export const CLUSTER_SUBJECTS = {
  root: 'walcast',
  stream: 's',
  republished: 'r',
  data: 'd',
  auth: 'a',
  sqlBroadcast: 'x',
  ctl: 'ctl',
  heartbeat: 'hb',
  alive: 'alive',
  broadcast: 'c',
  presence: 'p',
  presenceSync: 'psync',
  nodeId: 'id',
} as const;

/**
 * Reserved subject / KV-key tokens. Two characters starting with `=`: an encoded name is either
 * `[A-Za-z0-9_-]{1,48}` or `=` + 22 base64url characters, so it can never be one of these.
 */
export const CLUSTER_TOKENS = {
  /** The table has no route_by column. */
  noRoute: '=n',
  /** The row's route value is NULL. */
  nullRoute: '=0',
  /** A truncate of the table (every route). */
  truncate: '=t',
  /** A transaction too large to publish: one marker per table it touched. */
  oversize: '=x',
  /** In interest keys: the whole table. */
  wholeTable: '=a',
} as const;

/** KV keys of the cluster bucket (`walcast_<ns>_cluster`). */
export const CLUSTER_KV = {
  capture: 'capture',
  node: 'node',
  short: 'short',
  relation: 'rel',
} as const;

/** Cluster mode (`serve --nats`, docs/dev/cluster-plan.md): names and defaults. */
export const CLUSTER = {
  /** NATS connection name `walcast <node-id>`: a fixed contract (operators find nodes by it in /connz). */
  connectionNamePrefix: 'walcast ',
  /** Stream `WALCAST_<ns>`, KV buckets `walcast_<ns>_cluster`, `walcast_<ns>_interest`. */
  streamPrefix: 'WALCAST_',
  bucketPrefix: 'walcast_',
  /** The resume window of the cluster is the stream: bounded by age and bytes. */
  streamMaxAgeMs: 60 * 60 * 1000,
  streamMaxBytes: 1024 * 1024 * 1024,
  streamReplicas: 3,
  maxReplicas: 5,
  /**
   * Slot acknowledgement held back this long after a PubAck: nats-server 2.9 fsyncs its stores
   * every 2 min and its Raft log every 5 min, so 6 min outlives a power loss of a quorum.
   */
  ackDelayMs: 6 * 60 * 1000,
  /** Dedupe by message id only covers in-flight retries; takeover relies on the fence. */
  duplicateWindowMs: 30_000,
  /** --node-id: printable, at most this long (it names the node in connz, KV keys and logs). */
  maxNodeIdLength: 64,
  /** At start, replies from a live node under the same --node-id are awaited this long. */
  nodeIdProbeMs: 300,
  /** The first connection to NATS: a handshake taking longer than this is an unreachable server. */
  connectTimeoutMs: 5_000,
  /** Reconnect forever: the wait grows with the outage (half its length so far) between these. */
  reconnectMinMs: 250,
  reconnectMaxMs: 5_000,
  /** JetStream API requests (stream info/add/update, KV create). */
  apiTimeoutMs: 5_000,
  /** At shutdown, what is published gets this long to flush before the connection is closed anyway. */
  drainTimeoutMs: 2_000,
  /** Capture's publishes in flight (sent, PubAck pending) at most. */
  publishWindow: 256,
  /** nats-server's default max_payload, when the server does not say (recommend 8MB: docs/OPERATIONS.md). */
  defaultMaxPayload: 1024 * 1024,
  /** Room left in a message for headers (position, epoch, message id) and the envelope. */
  headerRoomBytes: 4096,
  minPayloadBytes: 16 * 1024,
  /** A publish without PubAck after this long is retried once (same message id), then fails. */
  publishTimeoutMs: 5_000,
} as const;

/** The cluster's node list (src/cluster/registry.ts) and stream figures (src/cluster/stream-watch.ts). */
export const CLUSTER_NODES = {
  /** Each node rewrites its entry this often. */
  beatMs: 5_000,
  /** An entry not rewritten for this long is shown as stale (the node died without removing it). */
  staleAfterMs: 15_000,
  /** At most this many entries are read by a status. */
  maxListed: 1_000,
  /** The stream's figures (GET /status, metrics) are read this often. */
  streamReadMs: 2_000,
} as const;

/** Reading the cluster's stream by sequence (src/cluster/stream-positions.ts, relations.ts). */
export const CLUSTER_FOLLOWER = {
  /** Table shapes cached (a bound, not a working-set size: a table has one shape at a time). */
  maxRelations: 10_000,
  /** Messages without a position (foreign) skipped at most, looking for walcast's. */
  scanForPosition: 256,
} as const;

/**
 * Catch-ups from the cluster's stream (src/cluster/stream-segment.ts): a resume position older
 * than a node's history window is read from the stream, a bounded buffer ahead of the client.
 */
/**
 * A node's feed with interest routing (src/cluster/routed-follower.ts): core NATS for what
 * concerns it, the stream for what core NATS lost.
 */
export const CLUSTER_ROUTING = {
  /** The chain's timers (a heartbeat's tail fetched after quiet) are looked at this often. */
  tickMs: 100,
  /** Core messages kept while booting (past it they are dropped: the chain fetches them). */
  maxEarly: 10_000,
  /** Replaying policy changes at boot: messages per pull, and how long a pull waits at the end. */
  replayBatch: 256,
  replayExpiresMs: 1_000,
  /** A fetched seq not readable yet (a lagging replica, no stream leader): waits between tries (doubling), and when to give up (a reset). */
  fetchRetryMs: 50,
  fetchRetryCapMs: 1_000,
  fetchGiveUpMs: 60_000,
} as const;

export const CLUSTER_CATCHUP = {
  /** Segments reading at once per node; more catch-ups wait for one to finish. */
  maxSegments: 16,
  /** Read ahead per segment: entries and bytes (the last entry may go past the bytes). */
  bufferEntries: 256,
  bufferBytes: 1024 * 1024,
  /** Messages per pull (a pull's messages are received whole: batch × max_payload at most), and how long a pull waits at the stream's end. */
  batch: 32,
  fetchExpiresMs: 2_000,
  retryBaseMs: 250,
  retryCapMs: 5_000,
} as const;

/**
 * Channels across cluster nodes (src/cluster/channels-bridge.ts, docs/dev/cluster-plan.md §9):
 * client broadcasts and presence on core NATS, node liveness by heartbeat.
 */
export const CLUSTER_CHANNELS = {
  /** Each node says it is alive this often. */
  aliveIntervalMs: 2_000,
  /** A node unheard of for this long is dead: its presence leaves everywhere (≤ 12 s with the sweep). */
  nodeExpiryMs: 10_000,
  /** Dead nodes are looked for this often. */
  sweepIntervalMs: 1_000,
  /** A room opening on a node waits at most this long for the other nodes' presence... */
  syncWaitMs: 100,
  /** ...and no longer than this after the last answer (the others have answered by then). */
  syncStallMs: 25,
  /** A node asked for its presence of a channel (a gap in its diffs) that has not answered by then is taken to have none. */
  syncTimeoutMs: 1_000,
  /** A presence snapshot goes out in parts of about this many bytes (NATS max_payload is 1 MiB by default). */
  snapshotPartBytes: 256 * 1024,
  /** Inbound messages larger than this are dropped unread. */
  maxMessageBytes: 512 * 1024,
  /** Longest user id (presence key) and session id accepted from another node. */
  maxKeyLength: 1_024,
  maxSessionLength: 256,
  /** Replaced incarnations remembered per node (their late messages are dropped). */
  deadIncarnations: 4,
  /** Nodes remembered at most (live or replaced): a bound against a flood of made-up node ids. */
  maxNodes: 1_000,
} as const;

/** The capture leader of a cluster (src/cluster/capture-leader.ts). */
export const CLUSTER_LEADER = {
  /** Takeover: reading the tail and appending the epoch marker, raced by a late writer, this many times. */
  fenceAttempts: 5,
  /** Messages queued or in flight past which capture waits for PubAcks (and pauses the slot's socket). */
  maxBacklog: 4 * 256,
  /** Idle marks in the stream at most this often. */
  markIntervalMs: 1_000,
} as const;

/**
 * The capture lease (src/cluster/elector.ts, docs/dev/cluster-plan.md §4): KV key `capture`, the
 * KV revision of the winning write is the epoch. Every duration is measured on each node's own
 * monotonic clock. Safety needs renewMs < staleMs < expiryMs: a leader steps down staleMs after
 * sending its last successful renew, a candidate takes over no sooner than expiryMs after it
 * first saw that renew stored, so the gap (0.5 s) absorbs clock-rate drift and timer lateness.
 */
export const CLUSTER_ELECTION = {
  /** The leader renews, candidates read the key, this often. */
  renewMs: 500,
  /** A candidate takes the lease when the key's revision has not changed for this long. */
  expiryMs: 2_000,
  /** A leader with no successful renew for this long steps down (after SIGSTOP/SIGCONT too). */
  staleMs: 1_500,
  /** After resign(), not a candidate for this long: another node gets the handover. */
  cooldownMs: 1_000,
} as const;

/**
 * A cluster namespace (`--cluster`, default the slot name): one NATS subject token that also goes
 * into stream and bucket names; 64 so that any Postgres slot name (at most 63) fits.
 */
export const NAMESPACE_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * Per-node chains (src/cluster/chain.ts, chain-codec.ts; docs/dev/cluster-plan.md §6): the
 * `Walcast-Chain` header capture writes, and an edge's reorder buffer.
 */
export const CLUSTER_CHAIN = {
  /** A longer `Walcast-Chain` header is refused unread. */
  maxHeaderLength: 64 * 1024,
  /**
   * An incarnation token as a chain header names it (capture's are 8 characters; up to 16 parse,
   * so that a longer token later still reads). No `=`, `,` or `;`: links split without escapes.
   */
  incPattern: /^[a-z0-9]{1,16}$/,
  /** Incarnations capture chains at once: with 16-character tokens and 16-digit seqs the header stays under maxHeaderLength. */
  maxIncs: 1_000,
  /** Messages an edge holds ahead of a hole, by count and by payload bytes; past either, a reset. */
  maxPending: 10_000,
  maxPendingBytes: 16 * 1024 * 1024,
  /** A heartbeat naming a seq past the edge's head, with nothing arriving for this long: fetch it. */
  quietMs: 300,
  /** A new epoch's scan of the old epoch's tail longer than this many seqs: a reset instead. */
  maxScanSeqs: 50_000,
} as const;

/**
 * Interest routing's registry (src/cluster/interest.ts, interest-table.ts; docs/dev/cluster-plan.md
 * §2 and "Next increments in detail", item 6): KV bucket `walcast_<ns>_interest`, keys
 * `<inc>.d.<schema>.<table>.<route or =a>` and `<inc>.node`.
 */
export const CLUSTER_INTEREST = {
  /** A process's incarnation id: this many of [a-z0-9], random at start. */
  incLength: 8,
  /** Presence key suffix: `<inc>.node` says the incarnation exists even with no data interest. */
  presenceToken: 'node',
  /** After its last subscription goes, an interest key stays this long (a resubscribe keeps it: no KV churn). */
  lingerMs: 30_000,
  /**
   * Route keys one incarnation holds at most. Beyond it, a route subscription follows its whole
   * table instead: a node whose clients filter on very many distinct routes of a table would
   * otherwise put a KV key (and a capture-side set entry and chain work) per route; the whole
   * table costs bandwidth but is one key. Whole-table keys are at most one per table, not counted.
   */
  maxRouteKeys: 10_000,
  /** KV writes (puts, deletes) in flight at most: a burst of subscriptions is queued, not fired at once. */
  writeConcurrency: 16,
  /** A failed KV write is retried after a backoff between these. */
  retryBaseMs: 250,
  retryCapMs: 5_000,
  /** At close, deleting this incarnation's keys gets this long (the capture also expires dead incarnations). */
  closeTimeoutMs: 2_000,
  /** The capture's KV watch, ended or failed, is reopened after a backoff between these. */
  watchRetryBaseMs: 250,
  watchRetryCapMs: 5_000,
  /** Dropped (dead) incarnations remembered, so their late writes stay ignored: a bound against restarts piling up. */
  droppedRemembered: 10_000,
} as const;

/**
 * Capture's side of interest routing (src/cluster/capture-routing.ts, capture-heartbeat.ts;
 * docs/dev/cluster-plan.md, "Next increments in detail", item 6): the chain headers and the
 * heartbeat on core NATS `walcast.<ns>.hb`.
 */
export const CLUSTER_CAPTURE_CHAIN = {
  /** The capture heartbeat (acked seq, each inc's last seq, the applied interest revision), this often. */
  heartbeatMs: 500,
  /** A takeover waits this long at most for the interest watch's first contents before the epoch marker; then goes on with what it has. */
  interestReadyMs: 5_000,
  /** Version of the heartbeat's JSON body. */
  heartbeatVersion: 1,
} as const;

/** Marks a snapshot waits for (sql/006_snapshot_marks.sql; src/snapshot/marks.ts): not subscribable, never in the window. */
export const SNAPSHOT_MARKS_TABLE = 'walcast.snapshot_marks';

/** Snapshots (docs/PROTOCOL.md §7, src/snapshot/): bounds and defaults. */
export const SNAPSHOT_DEFAULTS = {
  /** Snapshots reading at once, all connections together (the size of their own pool). */
  maxConcurrent: 4,
  /** Snapshots reading at once per connection; its others wait in order. */
  maxPerConnection: 2,
  /** Snapshots waiting for a turn, all connections together; past it, `limit_exceeded`. */
  maxQueued: 1_000,
  /** Rows fetched from the cursor per round trip at most... */
  fetchRows: 2_000,
  /** ...and about this many bytes of values (wide rows come fewer at a time); two batches are held at most. */
  fetchBytes: 1024 * 1024,
  /** A `snapshot` frame is sent once its rows reach this many bytes of JSON (a single bigger row goes alone). */
  frameBytes: 64 * 1024,
  /** With more than this unsent on the socket, the snapshot waits for it to drain... */
  highWater: 1024 * 1024,
  /** ...at most this long; then the client is closed with 4008 (too slow). */
  drainTimeoutMs: 30_000,
  /** statement_timeout of each snapshot statement. */
  statementTimeoutMs: 30_000,
  /** A snapshot's mark must come back through the replication stream within this. */
  markTimeoutMs: 15_000,
  /** Transactions before the snapshot's start looked at for ones its snapshot did not yet see (src/snapshot/start.ts). */
  startScan: 10_000,
} as const;

/** The Supabase Realtime-compatible endpoint (docs/SUPABASE.md, src/supabase/): Phoenix channels. */
export const SUPABASE = {
  /** realtime-js appends `/websocket` to the `…/realtime/v1` endpoint supabase-js derives from the project URL. */
  wsPath: '/realtime/v1/websocket',
  /** Topics are `realtime:<channel>`; the heartbeat's is `phoenix`. */
  topicPrefix: 'realtime:',
  phoenixTopic: 'phoenix',
  /** Phoenix and Supabase event names, as on the wire. */
  events: {
    join: 'phx_join',
    leave: 'phx_leave',
    reply: 'phx_reply',
    close: 'phx_close',
    error: 'phx_error',
    heartbeat: 'heartbeat',
    accessToken: 'access_token',
    broadcast: 'broadcast',
    presence: 'presence',
    presenceState: 'presence_state',
    presenceDiff: 'presence_diff',
    postgresChanges: 'postgres_changes',
    system: 'system',
  },
  /** Topics one connection may have joined (or be joining) at once. */
  maxTopics: 100,
  /**
   * Frames read while a token is verified wait (a client joining its channels at once sends the
   * token with each join): at most this many, of at most this many bytes; past either, 4400.
   */
  maxDeferredFrames: 256,
  maxDeferredBytes: 1024 * 1024,
  /** Frames held for a topic while its join is answered; past it the join fails (retry). */
  maxHeldPerJoin: 1_000,
  /** Longest config.presence.key: what a cluster's presence codec carries (CLUSTER_CHANNELS.maxKeyLength). */
  maxPresenceKey: 1_024,
  /** A join not answered within this (the database did not answer the table lookups) fails. */
  joinTimeoutMs: 15_000,
} as const;
