// Configuration resolved in one place: command-line flag, then environment variable, then
// default, each value validated into a typed error that says what to pass instead.
import { statSync } from 'node:fs';
import { hostname } from 'node:os';
import { CLUSTER, DEFAULTS, NAMESPACE_PATTERN, SERVER_DEFAULTS, SNAPSHOT_DEFAULTS } from './constants.js';
import { AuthConfigError, ConfigError } from './errors.js';
import { LOG_LEVELS } from './log.js';
import { checkDatabaseUrl } from './pg/connect.js';
import { parseWalPosition, type Position } from './protocol/position.js';
import { openFilesSoftLimit } from './util/fd-limit.js';

export type Env = Record<string, string | undefined>;

export interface Config {
  db: string;
  slot: string;
  since: Position | null;
  verbose: boolean;
  logLevel: string;
}

export interface Flags {
  db?: string;
  slot?: string;
  since?: string;
  verbose?: boolean;
  logLevel?: string;
}

const SLOT_RE = /^[a-z0-9_]{1,63}$/;

export function resolveConfig(flags: Flags, env: Env = process.env): Config {
  const verbose = flags.verbose ?? truthy(env.WALCAST_VERBOSE);
  const since = flags.since ?? env.WALCAST_SINCE;
  return {
    db: resolveDb(flags.db, env),
    slot: resolveSlot(flags.slot ?? env.WALCAST_SLOT ?? DEFAULTS.slot),
    since: since ? parseWalPosition(since) : null,
    verbose,
    logLevel: resolveLogLevel(flags.logLevel, env, verbose ? 'debug' : 'info'),
  };
}

/** --log-level, then WALCAST_LOG_LEVEL, then the command's default: a pino level, any case. */
export function resolveLogLevel(flag: string | undefined, env: Env = process.env, fallback = 'info'): string {
  const given = nonEmpty(flag);
  const text = given ?? nonEmpty(env.WALCAST_LOG_LEVEL);
  if (text === undefined) return fallback;
  const level = text.trim().toLowerCase();
  if (!LOG_LEVELS.includes(level)) {
    throw new ConfigError(`bad ${given === undefined ? 'WALCAST_LOG_LEVEL' : '--log-level'} ${JSON.stringify(text)}`, `a log level is one of ${LOG_LEVELS.join(', ')}`);
  }
  return level;
}

export function resolveDb(flag: string | undefined, env: Env = process.env): string {
  const url = flag ?? env.WALCAST_DB ?? env.DATABASE_URL;
  if (!url) throw new ConfigError('no database given', 'pass --db postgres://USER:PASSWORD@HOST:PORT/DATABASE or set DATABASE_URL');
  checkDatabaseUrl(url);
  return url;
}

export function resolveSlot(name: string): string {
  if (!SLOT_RE.test(name)) {
    throw new ConfigError(`bad slot name ${JSON.stringify(name)}`, 'slot names are 1-63 lower-case letters, digits and underscores');
  }
  return name;
}

function truthy(v: string | undefined): boolean {
  return v === '1' || v === 'true' || v === 'yes';
}

/** An empty value (`VAR=` in an environment file) counts as not given. */
function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v === '' ? undefined : v;
}

export interface StatusFlags {
  db?: string;
  slot?: string;
  daemon?: string;
  nats?: string;
  cluster?: string;
}

export interface StatusOptions {
  db: string;
  /** The daemon's slot as configured here (WALCAST_SLOT, default walcast): shown in detail, and known to be walcast's by its name. */
  walcastSlot: string;
  /** --slot: only this slot, in detail. The environment never narrows: every slot holds WAL. */
  only: string | null;
  daemon: string;
  /** --nats (and --cluster, default the slot name): read the cluster from NATS itself. */
  cluster: { servers: string[]; tls: boolean; namespace: string } | null;
}

/** `walcast status`: --db, --slot, --daemon. */
export function resolveStatusOptions(flags: StatusFlags, env: Env = process.env): StatusOptions {
  return {
    db: resolveDb(flags.db, env),
    walcastSlot: resolveSlot(env.WALCAST_SLOT ?? DEFAULTS.slot),
    only: flags.slot === undefined ? null : resolveSlot(flags.slot),
    daemon: resolveDaemonUrl(flags.daemon ?? `http://${DEFAULTS.host}:${DEFAULTS.port}`),
    cluster: resolveStatusCluster(flags, env),
  };
}

function resolveStatusCluster(flags: StatusFlags, env: Env): StatusOptions['cluster'] {
  const nats = nonEmpty(flags.nats ?? env.WALCAST_NATS);
  const ns = nonEmpty(flags.cluster ?? env.WALCAST_CLUSTER);
  if (nats === undefined) {
    if (flags.cluster !== undefined) throw new ConfigError('--cluster given without --nats', 'pass --nats URL too: the cluster is read from NATS');
    return null;
  }
  return { ...parseNatsUrls(nats), namespace: resolveNamespace(ns, flags.slot ?? env.WALCAST_SLOT ?? DEFAULTS.slot) };
}

function resolveDaemonUrl(text: string): string {
  let url: URL | null = null;
  try {
    url = new URL(text);
  } catch {
    // reported below
  }
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    throw new ConfigError(`bad --daemon ${JSON.stringify(text)}`, `pass the daemon's HTTP address (its --port, or --metrics-port), e.g. http://${DEFAULTS.host}:${DEFAULTS.port}`);
  }
  return text.replace(/\/+$/, '');
}

/** `walcast policy add`: the model its rules are checked against, as `serve` resolves it. */
export function resolvePolicyOptions(flags: { model?: string }, env: Env = process.env): { model: string | undefined } {
  return { model: resolveModel(nonEmpty(flags.model ?? env.WALCAST_MODEL)) };
}

export interface ServeFlags extends Flags {
  host?: string;
  port?: string;
  /** commander's --no-auth: false when given. */
  auth?: boolean;
  historyBytes?: string;
  historyAge?: string;
  maxSlotLag?: string;
  maxTransactionBytes?: string;
  maxBackpressure?: string;
  maxMessageBytes?: string;
  broadcastRate?: string;
  broadcastBytesRate?: string;
  progressInterval?: string;
  idleTimeout?: string;
  jwtSecret?: string;
  jwks?: string;
  jwtIssuer?: string;
  jwtAudience?: string;
  model?: string;
  /** --relation, repeatable. */
  relation?: string[];
  maxConnections?: string;
  maxPendingAuth?: string;
  /** Snapshots reading at once, and the statement_timeout of theirs (PROTOCOL.md §7). */
  maxSnapshots?: string;
  snapshotTimeout?: string;
  reusePort?: boolean;
  metricsHost?: string;
  metricsPort?: string;
  /** Cluster mode: NATS server URLs, comma-separated; the rest below needs it. */
  nats?: string;
  nodeId?: string;
  cluster?: string;
  streamMaxAge?: string;
  streamMaxBytes?: string;
  streamReplicas?: string;
  natsAckDelay?: string;
}

export interface ServeConfig extends Config {
  host: string;
  port: number;
  noAuth: boolean;
  historyBytes: number;
  historyAgeMs: number;
  /** WAL bytes the window may hold back on the slot (before clamping to the server's setting). */
  maxSlotLag: number;
  /** Bytes of changes one transaction may hold in memory; past it, skipped with resync. */
  maxTransactionBytes: number;
  maxBackpressure: number;
  maxMessageBytes: number;
  maxFrameBytes: number;
  /** Client broadcasts per connection per second, and their payload bytes (bursts and per user scale with them). */
  broadcastRate: number;
  broadcastBytesRate: number;
  maxSubscriptions: number;
  progressIntervalMs: number;
  idleTimeoutSec: number;
  /** HS256 shared secret (exclusive with jwks); both absent only under noAuth. */
  jwtSecret?: string;
  /** JWKS file path or http(s) URL. */
  jwks?: string;
  jwtIssuer?: string;
  jwtAudience?: string;
  /** Casbin model file; undefined: the shipped default model. Checked to exist. */
  model?: string;
  /** Relation table declarations, as given (parsed by the authorization code). */
  relations: string[];
  /** A connection without a token must authenticate within this long. */
  authTimeoutMs: number;
  /** WebSockets open at once, and those of them not authenticated yet. */
  maxConnections: number;
  maxPendingAuth: number;
  /** Snapshots reading at once (their pool's size), and each snapshot statement's timeout. */
  maxSnapshots: number;
  snapshotTimeoutMs: number;
  /** Share the port(s) with other processes passing it too (SO_REUSEPORT); else exclusive. */
  reusePort: boolean;
  /** A listener of its own for /metrics and /status; null: they are on the main port. */
  metricsHost: string;
  metricsPort: number | null;
  /** `--nats` given: this node's cluster settings; null: a single node, exactly as without a cluster. */
  cluster: ClusterConfig | null;
}

export interface ClusterConfig {
  /** NATS server URLs (nats:// or tls://, one scheme for all). */
  servers: string[];
  /** tls:// given: the connection requires TLS. */
  tls: boolean;
  /** Names this node: NATS connection name `walcast <nodeId>`, logs, later KV keys. */
  nodeId: string;
  /** The cluster's namespace `<ns>`: stream WALCAST_<ns>, subjects walcast.<ns>.…, buckets walcast_<ns>_…. */
  namespace: string;
  streamMaxAgeMs: number;
  streamMaxBytes: number;
  streamReplicas: number;
  /** How long after its PubAck a position may be acknowledged on the slot; 0: at once. */
  ackDelayMs: number;
}

export function resolveServeConfig(flags: ServeFlags, env: Env = process.env): ServeConfig {
  const pick = (flag: string | undefined, name: string) => flag ?? env[name];
  const port = Number(pick(flags.port, 'WALCAST_PORT') ?? DEFAULTS.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ConfigError(`bad port ${JSON.stringify(pick(flags.port, 'WALCAST_PORT'))}`, 'a port is 0-65535 (0 picks a free one)');
  const maxMessageBytes = parseBytes(pick(flags.maxMessageBytes, 'WALCAST_MAX_MESSAGE_BYTES'), SERVER_DEFAULTS.maxMessageBytes, '--max-message-bytes');
  const noAuth = flags.auth === false || truthy(env.WALCAST_NO_AUTH);
  const jwtSecret = nonEmpty(pick(flags.jwtSecret, 'WALCAST_JWT_SECRET'));
  const jwks = nonEmpty(pick(flags.jwks, 'WALCAST_JWKS'));
  resolveKeySource(noAuth, jwtSecret, jwks);
  const relations = flags.relation ?? splitList(env.WALCAST_RELATIONS);
  return {
    ...resolveConfig(flags, env),
    host: pick(flags.host, 'WALCAST_HOST') ?? DEFAULTS.host,
    port,
    noAuth,
    historyBytes: parseBytes(pick(flags.historyBytes, 'WALCAST_HISTORY_BYTES'), SERVER_DEFAULTS.historyBytes, '--history-bytes'),
    historyAgeMs: parseDuration(pick(flags.historyAge, 'WALCAST_HISTORY_AGE'), SERVER_DEFAULTS.historyAgeMs, '--history-age'),
    maxSlotLag: parseBytes(pick(flags.maxSlotLag, 'WALCAST_MAX_SLOT_LAG'), SERVER_DEFAULTS.maxSlotLagBytes, '--max-slot-lag'),
    maxTransactionBytes: parseBytes(pick(flags.maxTransactionBytes, 'WALCAST_MAX_TRANSACTION_BYTES'), DEFAULTS.maxTransactionBytes, '--max-transaction-bytes'),
    maxBackpressure: parseBytes(pick(flags.maxBackpressure, 'WALCAST_MAX_BACKPRESSURE'), SERVER_DEFAULTS.maxBackpressure, '--max-backpressure'),
    maxMessageBytes,
    maxFrameBytes: Math.max(SERVER_DEFAULTS.maxFrameBytes, maxMessageBytes * 2),
    maxSubscriptions: SERVER_DEFAULTS.maxSubscriptionsPerSocket,
    broadcastRate: parseRate(pick(flags.broadcastRate, 'WALCAST_BROADCAST_RATE'), SERVER_DEFAULTS.broadcastPerSecond),
    broadcastBytesRate: parseBytes(pick(flags.broadcastBytesRate, 'WALCAST_BROADCAST_BYTES_RATE'), SERVER_DEFAULTS.broadcastBytesPerSecond, '--broadcast-bytes-rate'),
    progressIntervalMs: parseDuration(pick(flags.progressInterval, 'WALCAST_PROGRESS_INTERVAL'), SERVER_DEFAULTS.progressIntervalMs, '--progress-interval'),
    idleTimeoutSec: idleTimeout(pick(flags.idleTimeout, 'WALCAST_IDLE_TIMEOUT')),
    jwtSecret,
    jwks,
    jwtIssuer: nonEmpty(pick(flags.jwtIssuer, 'WALCAST_JWT_ISSUER')),
    jwtAudience: nonEmpty(pick(flags.jwtAudience, 'WALCAST_JWT_AUDIENCE')),
    model: resolveModel(nonEmpty(pick(flags.model, 'WALCAST_MODEL'))),
    relations: relations.map((r) => r.trim()).filter((r) => r !== ''),
    authTimeoutMs: SERVER_DEFAULTS.authTimeoutMs,
    ...resolveConnectionCaps(pick(flags.maxConnections, 'WALCAST_MAX_CONNECTIONS'), pick(flags.maxPendingAuth, 'WALCAST_MAX_PENDING_AUTH'), openFilesSoftLimit()),
    maxSnapshots: resolveMaxSnapshots(pick(flags.maxSnapshots, 'WALCAST_MAX_SNAPSHOTS')),
    snapshotTimeoutMs: parseDuration(pick(flags.snapshotTimeout, 'WALCAST_SNAPSHOT_TIMEOUT'), SNAPSHOT_DEFAULTS.statementTimeoutMs, '--snapshot-timeout'),
    reusePort: flags.reusePort ?? truthy(env.WALCAST_REUSE_PORT),
    ...resolveMetricsListener(pick(flags.metricsHost, 'WALCAST_METRICS_HOST'), pick(flags.metricsPort, 'WALCAST_METRICS_PORT'), pick(flags.host, 'WALCAST_HOST') ?? DEFAULTS.host),
    cluster: resolveCluster(flags, env, port),
  };
}

/** Visible ASCII: the id goes into a NATS connection name, log lines and (encoded) KV keys. */
const NODE_ID_RE = /^[\x21-\x7e]+$/;

/**
 * `--nats` and the settings that only mean something with it. Without `--nats` (nor
 * WALCAST_NATS) the daemon is a single node as before, and a cluster setting given anyway (flag
 * or environment) is refused rather than silently ignored.
 */
export function resolveCluster(flags: ServeFlags, env: Env, port: number): ClusterConfig | null {
  const pick = (flag: string | undefined, name: string) => nonEmpty(flag ?? env[name]);
  const given = {
    '--node-id': pick(flags.nodeId, 'WALCAST_NODE_ID'),
    '--cluster': pick(flags.cluster, 'WALCAST_CLUSTER'),
    '--stream-max-age': pick(flags.streamMaxAge, 'WALCAST_STREAM_MAX_AGE'),
    '--stream-max-bytes': pick(flags.streamMaxBytes, 'WALCAST_STREAM_MAX_BYTES'),
    '--stream-replicas': pick(flags.streamReplicas, 'WALCAST_STREAM_REPLICAS'),
    '--nats-ack-delay': pick(flags.natsAckDelay, 'WALCAST_NATS_ACK_DELAY'),
  };
  const nats = pick(flags.nats, 'WALCAST_NATS');
  if (nats === undefined) {
    const stray = Object.entries(given).filter(([, v]) => v !== undefined).map(([k]) => k);
    if (stray.length > 0) throw new ConfigError(`${stray.join(', ')} given without --nats`, 'these settings are for cluster mode: pass --nats URL (or WALCAST_NATS) too, or drop them');
    return null;
  }
  const { servers, tls } = parseNatsUrls(nats);
  return {
    servers,
    tls,
    nodeId: resolveNodeId(given['--node-id'], port),
    namespace: resolveNamespace(given['--cluster'], flags.slot ?? env.WALCAST_SLOT ?? DEFAULTS.slot),
    streamMaxAgeMs: parseDuration(given['--stream-max-age'], CLUSTER.streamMaxAgeMs, '--stream-max-age'),
    streamMaxBytes: parseBytes(given['--stream-max-bytes'], CLUSTER.streamMaxBytes, '--stream-max-bytes'),
    streamReplicas: resolveReplicas(given['--stream-replicas']),
    ackDelayMs: /^\s*0+(?:\.0+)?\s*(?:ms|s|m|min|h)?\s*$/i.test(given['--nats-ack-delay'] ?? '') ? 0 : parseDuration(given['--nats-ack-delay'], CLUSTER.ackDelayMs, '--nats-ack-delay'),
  };
}

/** "nats://a:4222,nats://b:4222": nats:// or tls:// with a host, one scheme for all, no credentials. */
export function parseNatsUrls(text: string): { servers: string[]; tls: boolean } {
  const servers = text.split(',').map((s) => s.trim()).filter((s) => s !== '');
  const schemes = new Set<string>();
  for (const s of servers) {
    let url: URL | null = null;
    try {
      url = new URL(s);
    } catch {
      // reported below
    }
    if (!url || (url.protocol !== 'nats:' && url.protocol !== 'tls:') || url.hostname === '' || (url.pathname !== '' && url.pathname !== '/') || url.search !== '' || url.hash !== '') {
      throw new ConfigError(`bad --nats URL ${JSON.stringify(s)}`, 'NATS servers look like nats://HOST:4222 (or tls://HOST:4222), several separated by commas');
    }
    if (url.username !== '' || url.password !== '') {
      throw new ConfigError(`--nats URL ${url.protocol}//${url.host} carries credentials`, 'credentials in --nats URLs are not supported: use a NATS server that accepts this node without them (authentication options come later)');
    }
    schemes.add(url.protocol);
  }
  if (servers.length === 0) throw new ConfigError('--nats is empty', 'pass one or more NATS server URLs, e.g. --nats nats://127.0.0.1:4222');
  if (schemes.size > 1) throw new ConfigError('--nats mixes nats:// and tls:// URLs', 'use tls:// for every server (TLS required) or nats:// for every one');
  return { servers, tls: schemes.has('tls:') };
}

/**
 * Default `<hostname>:<port>`: stable across restarts, unlike anything drawn at start. With
 * --port 0 the port is only known after listening, too late to name the connection.
 */
function resolveNodeId(text: string | undefined, port: number): string {
  if (text === undefined && port === 0) throw new ConfigError('--port 0 with --nats needs a --node-id', 'pass --node-id NAME (WALCAST_NODE_ID), stable across restarts of this node, or a fixed --port');
  const id = text ?? `${hostname()}:${port}`;
  if (!NODE_ID_RE.test(id) || id.length > CLUSTER.maxNodeIdLength) {
    throw new ConfigError(`bad ${text === undefined ? 'default node id' : '--node-id'} ${JSON.stringify(id)}`, `a node id is 1-${CLUSTER.maxNodeIdLength} visible ASCII characters (no spaces); pass --node-id (WALCAST_NODE_ID)`);
  }
  return id;
}

function resolveNamespace(text: string | undefined, slot: string): string {
  const ns = text ?? slot;
  if (!NAMESPACE_PATTERN.test(ns)) {
    const what = text === undefined ? `the slot name ${JSON.stringify(ns)} (the default --cluster)` : `--cluster ${JSON.stringify(ns)}`;
    throw new ConfigError(`bad cluster name: ${what}`, 'a cluster name is 1-64 letters, digits, _ or - (it goes into NATS subjects and stream names); pass --cluster NAME (WALCAST_CLUSTER)');
  }
  return ns;
}

function resolveReplicas(text: string | undefined): number {
  if (text === undefined) return CLUSTER.streamReplicas;
  const n = positiveInt(text, '--stream-replicas');
  if (n > CLUSTER.maxReplicas) throw new ConfigError(`bad --stream-replicas ${JSON.stringify(text)}`, `JetStream replicates a stream 1 to ${CLUSTER.maxReplicas} times; 3 on a 3-server cluster survives one server lost`);
  return n;
}

/**
 * Every socket takes a file descriptor: the connection cap stays below the open-files soft
 * limit, with headroom for HTTP requests (/healthz must answer while the cap is hit), Postgres
 * and files. Default min(10000, limit - 256); a larger value given is refused rather than
 * clamped, so that the capacity planned is the capacity run.
 */
export function resolveConnectionCaps(maxText: string | undefined, pendingText: string | undefined, softLimit: number | null): { maxConnections: number; maxPendingAuth: number } {
  const room = softLimit === null ? Infinity : softLimit - SERVER_DEFAULTS.fdHeadroom;
  const raise = 'raise the open-files limit (ulimit -n, systemd LimitNOFILE=, docker run --ulimit nofile=N:N)';
  if (room < 1) {
    throw new ConfigError(`the open-files limit (${softLimit}) leaves no room for connections (${SERVER_DEFAULTS.fdHeadroom} descriptors are kept for HTTP, Postgres and files)`, raise);
  }
  let maxConnections = Math.min(SERVER_DEFAULTS.maxConnections, room);
  if (maxText !== undefined) {
    maxConnections = positiveInt(maxText, '--max-connections');
    if (maxConnections > room) {
      throw new ConfigError(
        `--max-connections ${maxConnections} is more than the open-files limit allows (${softLimit} - ${SERVER_DEFAULTS.fdHeadroom} kept for HTTP, Postgres and files = ${room})`,
        `${raise}, or pass --max-connections ${room} or less`,
      );
    }
  }
  const pending = pendingText === undefined ? SERVER_DEFAULTS.maxPendingAuth : positiveInt(pendingText, '--max-pending-auth');
  return { maxConnections, maxPendingAuth: Math.min(pending, maxConnections) };
}

function resolveMetricsListener(host: string | undefined, portText: string | undefined, mainHost: string): { metricsHost: string; metricsPort: number | null } {
  if (portText === undefined || portText === '') {
    if (host !== undefined && host !== '') throw new ConfigError('--metrics-host was given without --metrics-port', 'pass --metrics-port too (0 picks a free one), or drop --metrics-host');
    return { metricsHost: mainHost, metricsPort: null };
  }
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ConfigError(`bad --metrics-port ${JSON.stringify(portText)}`, 'a port is 0-65535 (0 picks a free one)');
  return { metricsHost: host || mainHost, metricsPort: port };
}

/** Each snapshot reading holds a database connection: 1 to 64. */
function resolveMaxSnapshots(text: string | undefined): number {
  if (text === undefined || text.trim() === '') return SNAPSHOT_DEFAULTS.maxConcurrent;
  const n = positiveInt(text, '--max-snapshots');
  if (n > 64) throw new ConfigError(`--max-snapshots ${n} is more than 64`, 'each snapshot being read holds a database connection; 1 to 64');
  return n;
}

function positiveInt(text: string, what: string): number {
  const n = Number(text);
  if (!/^\s*\d+\s*$/.test(text) || !Number.isSafeInteger(n) || n < 1) throw new ConfigError(`bad ${what} ${JSON.stringify(text)}`, `${what} is a whole number, 1 or more`);
  return n;
}

/**
 * Exactly one way to verify tokens unless authorization is off. Without one `serve` refuses to
 * start rather than serve nobody (or everybody). Key contents (secret length, JWKS) are checked
 * by createVerifier at start.
 */
function resolveKeySource(noAuth: boolean, secret: string | undefined, jwks: string | undefined): void {
  if (noAuth) {
    if (secret !== undefined || jwks !== undefined) {
      throw new AuthConfigError('--no-auth was given together with a JWT key', 'drop --no-auth (and WALCAST_NO_AUTH) to verify tokens, or drop the key to serve without authorization (development only)');
    }
    return;
  }
  if (secret !== undefined && jwks !== undefined) throw new AuthConfigError('both a JWT secret and a JWKS were given', 'pass one of --jwt-secret (WALCAST_JWT_SECRET) or --jwks (WALCAST_JWKS)');
  if (secret === undefined && jwks === undefined) {
    throw new AuthConfigError(
      'no key to verify client tokens with',
      'pass --jwt-secret S (or WALCAST_JWT_SECRET) for HS256, --jwks FILE_OR_URL (or WALCAST_JWKS) for RS/ES keys, or --no-auth for development only',
    );
  }
}

function resolveModel(file: string | undefined): string | undefined {
  if (file === undefined) return undefined;
  let isFile = false;
  try {
    isFile = statSync(file).isFile();
  } catch {
    // reported below
  }
  if (!isFile) throw new ConfigError(`no Casbin model file at ${file}`, 'pass --model with the path of a model .conf file, or leave it out for the default model');
  return file;
}

/** "a;b;;c" → ["a", "b", "c"]. */
function splitList(text: string | undefined): string[] {
  return text === undefined ? [] : text.split(';');
}

/**
 * Seconds a silent socket lives (pinged half-way). 0: never (uWebSockets.js then neither pings
 * nor times out); any other value must be 8 to 960, or uWebSockets.js aborts the process.
 */
function idleTimeout(text: string | undefined): number {
  if (text === undefined) return SERVER_DEFAULTS.idleTimeoutSec;
  if (/^\s*0+(?:\.0+)?\s*(?:ms|s|m|min|h)?\s*$/i.test(text)) return 0;
  const s = Math.round(parseDuration(text, 0, '--idle-timeout') / 1000);
  if (s < 8 || s > 960) {
    throw new ConfigError(`bad --idle-timeout ${JSON.stringify(text)}: 0 (never), or 8s to 16m`, 'a dead socket (and its presence) is dropped after this long without traffic; with 0, only once TCP gives up on it');
  }
  return s;
}

const BYTE_UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, kb: 1024, kib: 1024, m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gb: 1024 ** 3, gib: 1024 ** 3 };
const TIME_UNITS: Record<string, number> = { ms: 1, '': 1000, s: 1000, m: 60_000, min: 60_000, h: 3_600_000 };

/** "256MiB", "64k", "1048576" (bytes; units are powers of 1024). */
export function parseBytes(text: string | undefined, fallback: number, what: string): number {
  if (text === undefined) return fallback;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = m ? BYTE_UNITS[m[2].toLowerCase()] : undefined;
  if (!m || unit === undefined || Number(m[1]) * unit < 1) throw new ConfigError(`bad size for ${what}: ${JSON.stringify(text)}`, 'sizes look like 65536, 64KiB or 256MiB');
  return Math.floor(Number(m[1]) * unit);
}

/** A positive number of messages per second. */
function parseRate(text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n) || n <= 0) throw new ConfigError(`bad --broadcast-rate ${JSON.stringify(text)}: a positive number (per second)`, 'e.g. --broadcast-rate 20');
  return n;
}

/** "10m", "30s", "500ms", "1h"; a bare number is seconds. */
export function parseDuration(text: string | undefined, fallback: number, what: string): number {
  if (text === undefined) return fallback;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = m ? TIME_UNITS[m[2].toLowerCase()] : undefined;
  if (!m || unit === undefined || Number(m[1]) * unit < 1) throw new ConfigError(`bad duration for ${what}: ${JSON.stringify(text)}`, 'durations look like 500ms, 30s, 10m or 1h');
  return Math.floor(Number(m[1]) * unit);
}
