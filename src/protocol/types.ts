// Wire protocol v1 (docs/PROTOCOL.md): the messages as TypeScript types. Client
// messages are the *parsed* form produced by parseClientMessage (src/protocol/parse.ts), so a
// few fields are richer than on the wire (`table` is split, `since` is a Position). Server
// messages are the wire form, field for field: test/unit/frames.test.ts checks what the builders
// of frames.ts (and the change bodies of src/hub/render.ts) write against them.
import type { Position } from './position.js';

/** Echoed in the reply to the message that carried it. */
export type Ref = string | number;

/**
 * A subscription id chosen by the client: a string of 1..128 characters or a safe integer.
 * Compared as a JSON value: `1` and `"1"` are different subscriptions.
 */
export type SubscriptionId = string | number;

/** What `events` may list. */
export type ChangeEvent = 'insert' | 'update' | 'delete';

/** `op` of a `change` message. `truncate` is an addition to the base v1 messages (all rows were removed). */
export type ChangeOp = ChangeEvent | 'leave' | 'truncate';

/** Why a subscription's position cannot be honoured. */
export type ResyncReason = 'position_outside_window' | 'slot_recreated' | 'transaction_too_large';

/** Codes of `error` messages, one WireError class each in src/errors.ts. */
export type WireErrorCode =
  | 'bad_request'
  | 'bad_filter'
  | 'unknown_table'
  | 'forbidden'
  | 'duplicate_id'
  | 'unknown_subscription'
  | 'too_large'
  | 'limit_exceeded'
  | 'unauthorized'
  | 'snapshot_failed';

/**
 * A table named by a client. `schema` and `name` are the identifiers as Postgres stores them
 * (unquoted ones folded to lower case, quotes and `""` escapes removed); `qualified` is
 * `schema + "." + name`, the form of change messages and Casbin objects (the same as
 * Relation.qualified of capture). Look tables up by schema and name: `qualified` is ambiguous
 * when an identifier contains a dot.
 */
export interface TableName {
  readonly schema: string;
  readonly name: string;
  readonly qualified: string;
}

/** Who a WireError is about: attached to thrown errors as own properties `ref` and `id`. */
export interface WireContext {
  ref?: Ref;
  id?: SubscriptionId;
}

// ---- client → server (parsed) ----

interface ClientBase {
  /** Absent when the message had none (or `null`). */
  readonly ref?: Ref;
}

export interface AuthMessage extends ClientBase {
  readonly type: 'auth';
  readonly token: string;
}

export interface SubscribeMessage extends ClientBase {
  readonly type: 'subscribe';
  readonly id: SubscriptionId;
  readonly table: TableName;
  /** Non-empty, no duplicates, in the client's order. Absent means all three. */
  readonly events?: readonly ChangeEvent[];
  /** PostgREST-style filter text, parsed elsewhere. Absent when missing, null or "". */
  readonly filter?: string;
  /** Resume after this position. Absent (or null on the wire) means "from now". */
  readonly since?: Position;
  /** Send the rows there are first (docs/PROTOCOL.md §7). Absent when false, null or missing; never with `since`. */
  readonly snapshot?: SnapshotRequest;
}

/** What `snapshot` asked for: `true` is every row, unordered. */
export interface SnapshotRequest {
  /** `"col.asc"` / `"col.desc"` as sent: the column is checked against the table at subscribe. */
  readonly order: { readonly column: string; readonly desc: boolean } | null;
  /** At most this many rows (1..LIMITS.snapshotLimit); null: all. */
  readonly limit: number | null;
}

export interface UnsubscribeMessage extends ClientBase {
  readonly type: 'unsubscribe';
  readonly id: SubscriptionId;
}

export interface JoinMessage extends ClientBase {
  readonly type: 'join';
  readonly channel: string;
}

export interface LeaveMessage extends ClientBase {
  readonly type: 'leave';
  readonly channel: string;
}

export interface BroadcastClientMessage extends ClientBase {
  readonly type: 'broadcast';
  readonly channel: string;
  readonly event: string;
  /** Any JSON value; `null` when the message had none. */
  readonly payload: unknown;
  /** `payload` serialised once at parse time, ready for broadcastMsg(). */
  readonly payloadJson: string;
  /** The sender receives its own broadcast too (default: excluded). */
  readonly self: boolean;
}

export interface PresenceMessage extends ClientBase {
  readonly type: 'presence';
  readonly channel: string;
  /** A JSON object to track, or null to untrack. */
  readonly state: Record<string, unknown> | null;
}

export interface PingMessage extends ClientBase {
  readonly type: 'ping';
}

export type ClientMessage =
  | AuthMessage
  | SubscribeMessage
  | UnsubscribeMessage
  | JoinMessage
  | LeaveMessage
  | BroadcastClientMessage
  | PresenceMessage
  | PingMessage;

export type ClientMessageType = ClientMessage['type'];

// ---- server → client (wire form) ----

export interface WelcomeMessage {
  type: 'welcome';
  protocol: 1;
  session: string;
}

/** The reply to an accepted `auth` (an addition to the base v1 messages; docs/PROTOCOL.md §6). */
export interface AuthenticatedMessage {
  type: 'authenticated';
  /** The token's `exp`, ISO 8601 UTC; absent when it has none. */
  expires_at?: string;
  ref?: Ref;
}

export interface SubscribedMessage {
  type: 'subscribed';
  id: SubscriptionId;
  position: string;
  ref?: Ref;
}

/** Rows of a snapshot (docs/PROTOCOL.md §7): zero or more of these, then the catch-up's changes, then `subscribed`. */
export interface SnapshotMessage {
  type: 'snapshot';
  sub: SubscriptionId;
  /** Rows as `change.new` renders them. */
  rows: Record<string, unknown>[];
}

export interface UnsubscribedMessage {
  type: 'unsubscribed';
  id: SubscriptionId;
  ref?: Ref;
}

export interface ChangeMessage {
  type: 'change';
  sub: SubscriptionId;
  pos: string;
  /** ISO 8601, UTC, microseconds. */
  commit_time: string;
  op: ChangeOp;
  /** "schema.table". */
  table: string;
  /** insert, update. */
  new?: Record<string, unknown>;
  /** update, delete, leave. */
  old?: Record<string, unknown>;
  /** update: the columns whose values differ between old and new. */
  changed?: string[];
}

export interface ProgressMessage {
  type: 'progress';
  pos: string;
}

export interface ResyncMessage {
  type: 'resync';
  sub: SubscriptionId;
  reason: ResyncReason;
  /** Set when the resync is the direct answer to a subscribe that carried a ref. */
  ref?: Ref;
}

export interface JoinedMessage {
  type: 'joined';
  channel: string;
  ref?: Ref;
}

export interface LeftMessage {
  type: 'left';
  channel: string;
  ref?: Ref;
}

export interface BroadcastServerMessage {
  type: 'broadcast';
  channel: string;
  event: string;
  payload: unknown;
  /** The sender's user id, set by the server; absent on broadcasts from SQL. */
  from?: string;
}

export interface PresenceStateMessage {
  type: 'presence_state';
  channel: string;
  state: Record<string, unknown>;
}

export interface PresenceDiffMessage {
  type: 'presence_diff';
  channel: string;
  joins: Record<string, unknown>;
  leaves: Record<string, unknown>;
}

export interface ErrorMessage {
  type: 'error';
  code: WireErrorCode;
  message: string;
  ref?: Ref;
  id?: SubscriptionId;
}

export interface PongMessage {
  type: 'pong';
  ref?: Ref;
}

export type ServerMessage =
  | WelcomeMessage
  | AuthenticatedMessage
  | SubscribedMessage
  | SnapshotMessage
  | UnsubscribedMessage
  | ChangeMessage
  | ProgressMessage
  | ResyncMessage
  | JoinedMessage
  | LeftMessage
  | BroadcastServerMessage
  | PresenceStateMessage
  | PresenceDiffMessage
  | ErrorMessage
  | PongMessage;

export type ServerMessageType = ServerMessage['type'];
