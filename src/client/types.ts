// The wire protocol v1 (docs/PROTOCOL.md) as the client sees it, and the minimal WebSocket
// surface the client needs. Defined here, not imported from the server, so that the client
// stays a handful of plain ES modules with no Node dependency.

/** Echoed in the reply to the message that carried it. */
export type Ref = string | number;

/** A subscription id on the wire (the client chooses them). */
export type SubscriptionId = string | number;

export type ChangeEvent = 'insert' | 'update' | 'delete';
export type ChangeOp = ChangeEvent | 'leave' | 'truncate';

/** Known resync reasons; treat any other string like them. */
export type ResyncReason = 'position_outside_window' | 'slot_recreated' | (string & {});

/** Row data: column name → JSON value. */
export type Row = Record<string, unknown>;

/** A `change` message (docs/PROTOCOL.md §6). */
export interface Change<R extends Row = Row> {
  type: 'change';
  sub: SubscriptionId;
  /** The change's position, "16/B374D848:3". */
  pos: string;
  /** Commit timestamp of its transaction, ISO 8601 UTC. */
  commit_time: string;
  op: ChangeOp;
  /** "schema.table". */
  table: string;
  /** insert, update. */
  new?: R;
  /** update, delete, leave. */
  old?: R;
  /** update: the columns whose values differ. */
  changed?: string[];
}

/** Any server message: an object with a `type` (unknown types are ignored). */
export interface ServerMessage {
  type: string;
  ref?: Ref;
  [field: string]: unknown;
}

/**
 * The smallest WebSocket the client needs: the browser's WebSocket and the `ws` package's both
 * fit. Event handlers are assigned as properties; their events are read defensively (`data` of
 * a message, `code`/`reason` of a close), so the handler types are left open here.
 */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: unknown;
  onmessage: unknown;
  onclose: unknown;
  onerror: unknown;
}

/** `globalThis.WebSocket` in browsers (and Node 22+), or `WebSocket` of the `ws` package. */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** readyState of an open socket (the same in every implementation). */
export const OPEN = 1;

/** Codes of `error` messages from the server, and the client's own (see WalcastError). */
export type ErrorCode =
  | 'bad_request'
  | 'bad_filter'
  | 'unknown_table'
  | 'forbidden'
  | 'duplicate_id'
  | 'unknown_subscription'
  | 'too_large'
  | 'limit_exceeded'
  | 'snapshot_failed'
  | 'unauthorized'
  | 'token_failed'
  | 'client_closed'
  | 'left'
  | 'protocol'
  | 'resync'
  | (string & {});

/**
 * An error from the server (`{type:"error", code, message}`) or from the client itself:
 * `token_failed` (the token function threw or returned no token), `unauthorized` (the server
 * refused the token and there is no way to get another), `client_closed` (close() was called
 * while waiting), `left` (leave() while a join was waiting), `protocol` (a server message the
 * client could not use), `resync` (a subscription without a resync listener needs one).
 */
export class WalcastError extends Error {
  readonly code: ErrorCode;
  readonly ref?: Ref;
  readonly id?: SubscriptionId;
  /** What caused it (the token function's error, say). */
  override readonly cause?: unknown;

  constructor(code: ErrorCode, message: string, extra: { ref?: Ref; id?: SubscriptionId; cause?: unknown } = {}) {
    super(message);
    this.name = 'WalcastError';
    this.code = code;
    if (extra.ref !== undefined) this.ref = extra.ref;
    if (extra.id !== undefined) this.id = extra.id;
    if (extra.cause !== undefined) this.cause = extra.cause;
  }
}
