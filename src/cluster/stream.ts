// The cluster's JetStream objects, made or checked at start (docs/dev/cluster-plan.md §2): the
// stream `WALCAST_<ns>` that capture writes every change into (the cluster's resume window) and
// the KV buckets of the cluster and of interest. A stream of another database or slot is refused
// (`stream_mismatch`); limits set by flags (age, bytes, replicas) are brought in line.
import { DiscardPolicy, JetStreamApiError, RetentionPolicy, StorageType, type JetStreamManager, type StreamConfig, type StreamInfo } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type pg from 'pg';
import type { ClusterConfig } from '../config.js';
import { CLUSTER } from '../constants.js';
import { InsufficientPrivilegeError, JetStreamError, StreamMismatchError } from '../errors.js';
import type { Logger } from '../log.js';
import { streamSubjects } from './subjects.js';

/** JetStream API error codes (nats-server errors.json): no such stream, too few servers or too little room, JetStream off. */
const API = { streamNotFound: 10059, noSuitablePeers: 10005, insufficientResources: 10023, jetStreamNotEnabled: 10039 } as const;

/** JetStream durations are nanoseconds. */
export const NS_PER_MS = 1_000_000;

/**
 * The names of one namespace. The namespace is `[A-Za-z0-9_-]{1,48}` (src/config.ts), every
 * character of which is legal as is in a stream name, a KV bucket name and a subject token, so it
 * is used verbatim (no upper-casing: stream names are case-sensitive, and folding case could
 * put two namespaces into one stream).
 */
export function clusterNames(ns: string) {
  return {
    stream: `${CLUSTER.streamPrefix}${ns}`,
    /** Everything capture writes. */
    stored: streamSubjects(ns),
    /** Their RePublished copies, what edges subscribe to. */
    republished: streamSubjects(ns, true),
    clusterBucket: `${CLUSTER.bucketPrefix}${ns}_cluster`,
    interestBucket: `${CLUSTER.bucketPrefix}${ns}_interest`,
  };
}

/** Which database and slot a stream belongs to: Postgres' system identifier (it survives a rename of the host, not a re-initdb). */
export interface DatabaseIdentity {
  systemId: string;
  dbname: string;
}

export function streamDescription(id: DatabaseIdentity, slot: string): string {
  return `walcast db=${id.systemId}/${id.dbname} slot=${slot}`;
}

/**
 * pg_control_system() is executable by PUBLIC (Postgres 10 to 17): the daemon's role needs no
 * grant for it. A server that revoked it is told as a missing privilege.
 */
export async function readDatabaseIdentity(pool: pg.Pool): Promise<DatabaseIdentity> {
  try {
    const { rows } = await pool.query<{ id: string; db: string }>('select system_identifier::text as id, current_database() as db from pg_control_system()');
    return { systemId: rows[0].id, dbname: rows[0].db };
  } catch (err) {
    if ((err as { code?: string }).code === '42501') {
      throw new InsufficientPrivilegeError(`reading the database's system identifier: ${(err as Error).message}`, 'grant execute on function pg_control_system() to the daemon\'s role (Postgres grants it to PUBLIC by default)', { cause: err });
    }
    throw err;
  }
}

export interface StreamWanted {
  names: ReturnType<typeof clusterNames>;
  description: string;
  maxAgeMs: number;
  maxBytes: number;
  replicas: number;
}

export function wantedStream(cfg: Pick<ClusterConfig, 'namespace' | 'streamMaxAgeMs' | 'streamMaxBytes' | 'streamReplicas'>, description: string): StreamWanted {
  return { names: clusterNames(cfg.namespace), description, maxAgeMs: cfg.streamMaxAgeMs, maxBytes: cfg.streamMaxBytes, replicas: cfg.streamReplicas };
}

/** The whole configuration the stream is created with; only features of nats-server 2.9. */
export function streamConfig(w: StreamWanted): Partial<StreamConfig> & { name: string } {
  return {
    name: w.names.stream,
    description: w.description,
    subjects: [w.names.stored],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    num_replicas: w.replicas,
    max_age: w.maxAgeMs * NS_PER_MS,
    max_bytes: w.maxBytes,
    max_msgs: -1,
    max_msgs_per_subject: -1,
    duplicate_window: CLUSTER.duplicateWindowMs * NS_PER_MS,
    allow_direct: true,
    allow_rollup_hdrs: false,
    deny_delete: true,
    deny_purge: true,
    republish: { src: w.names.stored, dest: w.names.republished },
  };
}

/** What an existing stream must already have: none of it can be changed in place on 2.9 without changing what the stream is. */
function mismatches(have: StreamConfig, want: ReturnType<typeof streamConfig>): string[] {
  const out: string[] = [];
  const same = (a: unknown, b: unknown) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
  if (!same(have.subjects, want.subjects)) out.push(`subjects ${JSON.stringify(have.subjects)} (want ${JSON.stringify(want.subjects)})`);
  if (have.storage !== want.storage) out.push(`storage ${have.storage} (want ${want.storage})`);
  if (have.retention !== want.retention) out.push(`retention ${have.retention} (want ${want.retention})`);
  const rp = have.republish;
  if (!rp || rp.src !== want.republish?.src || rp.dest !== want.republish?.dest || rp.headers_only === true) {
    out.push(`republish ${rp ? `${rp.src} -> ${rp.dest}${rp.headers_only ? ' (headers only)' : ''}` : 'none'} (want ${want.republish?.src} -> ${want.republish?.dest}; nats-server cannot change it on a stream)`);
  }
  if (have.deny_delete !== true || have.deny_purge !== true) out.push('deny_delete/deny_purge off (want both on)');
  return out;
}

/** Limits walcast's flags set: updated in place when they differ. */
const LIMITS = ['max_age', 'max_bytes', 'num_replicas', 'duplicate_window', 'discard', 'allow_direct', 'max_msgs', 'max_msgs_per_subject', 'allow_rollup_hdrs'] as const;
function limitChanges(have: StreamConfig, want: ReturnType<typeof streamConfig>): Array<(typeof LIMITS)[number]> {
  return LIMITS.filter((k) => have[k] !== want[k]);
}

export function jetStreamError(what: string, err: unknown, replicas: number): Error {
  if (err instanceof StreamMismatchError || err instanceof JetStreamError) return err;
  const code = err instanceof JetStreamApiError ? err.code : undefined;
  const message = err instanceof Error ? err.message : String(err);
  let hint = 'check that JetStream is enabled on the NATS servers and that this node may use the JetStream API';
  if (code === API.noSuitablePeers || code === API.insufficientResources || /insufficient (storage )?resources|no suitable peers/i.test(message)) {
    hint = `--stream-replicas ${replicas} needs ${replicas} JetStream servers, each with --stream-max-bytes free in its store (max_file_store): nats-server 2.9 reserves a stream's max_bytes up front`;
  }
  if (code === API.jetStreamNotEnabled || /jetstream not enabled/i.test(message)) hint = 'enable JetStream on the NATS servers (a jetstream {} block with a store_dir)';
  return new JetStreamError(`${what}: ${message}`, hint, { cause: err });
}

/** Creates the stream, or checks and updates the one there; returns its info. */
export async function ensureStream(jsm: JetStreamManager, w: StreamWanted, slot: string, log: Logger): Promise<StreamInfo> {
  const want = streamConfig(w);
  try {
    let info: StreamInfo | null = null;
    try {
      info = await jsm.streams.info(want.name);
    } catch (err) {
      if (!(err instanceof JetStreamApiError && err.code === API.streamNotFound)) throw err;
    }
    if (info === null) {
      log.info({ stream: want.name, replicas: want.num_replicas }, 'creating the cluster stream');
      return await jsm.streams.add(want);
    }
    const have = info.config;
    if (have.description !== want.description) {
      throw new StreamMismatchError(
        `NATS stream ${want.name} belongs to ${JSON.stringify(have.description ?? '')}, not to this daemon (${want.description})`,
        `each database and slot needs its own cluster name: pass another --cluster (WALCAST_CLUSTER), or check --db and --slot (this one is ${slot})`,
      );
    }
    const wrong = mismatches(have, want);
    if (wrong.length > 0) {
      throw new StreamMismatchError(
        `NATS stream ${want.name} was made with another configuration: ${wrong.join('; ')}`,
        `walcast cannot change this in place: delete the stream (its contents are only a resume window: nats stream rm ${want.name}) and start again, or pass another --cluster`,
      );
    }
    const changed = limitChanges(have, want);
    if (changed.length === 0) return info;
    log.info({ stream: want.name, changed: Object.fromEntries(changed.map((k) => [k, { from: have[k], to: want[k] }])) }, 'updating the cluster stream\'s limits');
    return await jsm.streams.update(want.name, { ...have, ...Object.fromEntries(changed.map((k) => [k, want[k]])) });
  } catch (err) {
    throw jetStreamError(`ensuring NATS stream ${want.name}`, err, w.replicas);
  }
}

/** A KV bucket with history 1 and the stream's replicas, created or reused (its replicas brought in line). */
export async function ensureBucket(nc: NatsConnection, jsm: JetStreamManager, name: string, replicas: number, log: Logger): Promise<void> {
  try {
    await new Kvm(nc).create(name, { history: 1, replicas });
    const streamName = `KV_${name}`;
    const info = await jsm.streams.info(streamName);
    if (info.config.num_replicas !== replicas || info.config.max_msgs_per_subject !== 1) {
      log.info({ bucket: name, replicas, was: info.config.num_replicas }, 'updating a cluster KV bucket');
      await jsm.streams.update(streamName, { ...info.config, num_replicas: replicas, max_msgs_per_subject: 1 });
    }
  } catch (err) {
    throw jetStreamError(`ensuring NATS KV bucket ${name}`, err, replicas);
  }
}
