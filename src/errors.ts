// One class per failure, each with a stable `code` (listed in docs/errors.md) and, where the
// operator can act on it, a `hint` saying how to fix it. The CLI prints `message` and `hint`
// on one line each and a stack trace only with --verbose.

/** The base of walcast's own errors (not the client SDK's WalcastError, src/client/types.ts). */
export abstract class DaemonError extends Error {
  abstract readonly code: string;
  readonly hint: string | undefined;
  constructor(message: string, hint?: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.hint = hint;
  }
}

export class ConfigError extends DaemonError {
  readonly code = 'bad_config';
}

export class BadUrlError extends DaemonError {
  readonly code = 'bad_url';
}

export class DbUnreachableError extends DaemonError {
  readonly code = 'db_unreachable';
}

export class DbAuthError extends DaemonError {
  readonly code = 'db_auth_failed';
}

export class WalLevelError extends DaemonError {
  readonly code = 'wal_level_not_logical';
}

export class ReplicationPrivilegeError extends DaemonError {
  readonly code = 'no_replication_privilege';
}

/** The role lacks a grant the daemon needs (docs/OPERATIONS.md, "Privileges"). */
export class InsufficientPrivilegeError extends DaemonError {
  readonly code = 'insufficient_privilege';
}

/** max_replication_slots or max_wal_senders reached. */
export class ReplicationLimitError extends DaemonError {
  readonly code = 'replication_limit';
}

export class SlotInUseError extends DaemonError {
  readonly code = 'slot_in_use';
}

export class SlotInvalidError extends DaemonError {
  readonly code = 'slot_invalid';
}

export class ReplicationLostError extends DaemonError {
  readonly code = 'replication_lost';
}

export class NotMigratedError extends DaemonError {
  readonly code = 'not_migrated';
}

export class MigrationError extends DaemonError {
  readonly code = 'migration_failed';
}

export class ProtocolDecodeError extends DaemonError {
  readonly code = 'pgoutput_decode';
}

/** Capture was asked to change state in a way its transition table forbids: a bug in walcast. */
export class CaptureStateError extends DaemonError {
  readonly code = 'capture_state';
}

export class PositionError extends DaemonError {
  readonly code = 'bad_position';
}

export class ListenError extends DaemonError {
  readonly code = 'listen_failed';
}

/** Another process (or another walcast) has the port: walcast does not share it unless told. */
export class PortInUseError extends DaemonError {
  readonly code = 'port_in_use';
}

export class AuthConfigError extends DaemonError {
  readonly code = 'auth_config';
}

export class PolicyError extends DaemonError {
  readonly code = 'bad_policy';
}

export class PostgresStartError extends DaemonError {
  readonly code = 'postgres_start_failed';
}

export class NatsStartError extends DaemonError {
  readonly code = 'nats_start_failed';
}

export class PostgresNotFoundError extends DaemonError {
  readonly code = 'postgres_not_found';
}

/** A cluster message (src/cluster/codec.ts) that is not what its version says: a bug, or not written by walcast. */
export class ClusterMessageError extends DaemonError {
  readonly code = 'cluster_message_invalid';
}

/** A cluster message of a format version this walcast does not know: written by a newer walcast. */
export class ClusterMessageVersionError extends DaemonError {
  readonly code = 'cluster_message_version';
}

/** `serve --nats`: no NATS server of the list could be reached (or it refused us) at start. */
export class NatsUnreachableError extends DaemonError {
  readonly code = 'nats_unreachable';
}

/** `serve --nats`: another live node of the cluster already runs under this --node-id. */
export class NodeIdInUseError extends DaemonError {
  readonly code = 'node_id_in_use';
}

/** The cluster's stream exists but belongs to another database or slot, or was made otherwise. */
export class StreamMismatchError extends DaemonError {
  readonly code = 'stream_mismatch';
}

/** JetStream refused to create, update or read the stream or a KV bucket (disabled, too few servers, ...). */
export class JetStreamError extends DaemonError {
  readonly code = 'jetstream_failed';
}

/** The cluster's stream refused a publish for its expected last sequence: another capture appended (this one is a stale leader). */
export class ClusterFencedError extends DaemonError {
  readonly code = 'cluster_fenced';
}

/** A publish into the cluster's stream failed otherwise (no PubAck after a retry, no responders, an unexpected PubAck). */
export class ClusterPublishError extends DaemonError {
  readonly code = 'cluster_publish_failed';
}

// Wire protocol errors (docs/PROTOCOL.md §6 `error`, docs/errors.md): answered as {type:"error", code, message, ref?, id?}; the
// connection stays open.

export abstract class WireError extends DaemonError {
  constructor(message: string, hint?: string, options?: { cause?: unknown }) {
    // Answered to a client, never printed with a stack: capturing one was 17% of the cost of a
    // refused join in a flood of them (a 255-character name: 22 µs with, 1.6 µs without).
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      super(message, hint, options);
    } finally {
      Error.stackTraceLimit = limit;
    }
  }
}

export class BadRequestError extends WireError {
  readonly code = 'bad_request';
}

export class BadFilterError extends WireError {
  readonly code = 'bad_filter';
}

export class UnknownTableError extends WireError {
  readonly code = 'unknown_table';
}

export class ForbiddenError extends WireError {
  readonly code = 'forbidden';
}

export class DuplicateIdError extends WireError {
  readonly code = 'duplicate_id';
}

export class UnknownSubscriptionError extends WireError {
  readonly code = 'unknown_subscription';
}

export class TooLargeError extends WireError {
  readonly code = 'too_large';
}

export class LimitExceededError extends WireError {
  readonly code = 'limit_exceeded';
}

/** A token that cannot be accepted: closes the connection with 4001. */
export class AuthError extends WireError {
  readonly code = 'unauthorized';
}

/**
 * A snapshot could not be read (a database error, statement_timeout, the daemon stopping): the
 * subscription does not exist; subscribe again later.
 */
export class SnapshotFailedError extends WireError {
  readonly code = 'snapshot_failed';
}
