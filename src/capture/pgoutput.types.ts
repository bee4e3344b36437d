// Decoded pgoutput messages, protocol version 1, as a discriminated union on `tag`.
// https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html
// Types only: the decoder is src/capture/pgoutput.ts.
import type { Decoder } from './types-registry.js';

export type Row = Record<string, unknown>;

export interface RelationColumn {
  readonly name: string;
  /** Part of the replica identity key (flag bit 1). */
  readonly key: boolean;
  readonly typeOid: number;
  readonly typeMod: number;
}

export interface Relation {
  readonly oid: number;
  readonly schema: string;
  readonly name: string;
  /** "schema.table", as clients name it. */
  readonly qualified: string;
  readonly replicaIdentity: 'default' | 'nothing' | 'full' | 'index';
  readonly columns: readonly RelationColumn[];
  /** One decoder per column, chosen once when the relation message arrives. */
  readonly decoders: readonly Decoder[];
}

export interface MsgBegin {
  tag: 'begin';
  /** LSN of the commit record: the "commit LSN" of positions. */
  finalLsn: bigint;
  /** Microseconds since the Unix epoch. */
  commitTimeUs: bigint;
  xid: number;
}

export interface MsgCommit {
  tag: 'commit';
  commitLsn: bigint;
  /** End of the commit record: acknowledging it means "this transaction is done". */
  endLsn: bigint;
  commitTimeUs: bigint;
}

export interface MsgOrigin {
  tag: 'origin';
  originLsn: bigint;
  name: string;
}

export interface MsgRelation {
  tag: 'relation';
  relation: Relation;
}

export interface MsgType {
  tag: 'type';
  typeOid: number;
  schema: string;
  name: string;
}

export interface MsgInsert {
  /** Index within the transaction (the second half of a position); set by the assembler, -1 before. */
  index: number;
  tag: 'insert';
  relation: Relation;
  new: Row;
}

export interface MsgUpdate {
  /** Index within the transaction (the second half of a position); set by the assembler, -1 before. */
  index: number;
  tag: 'update';
  relation: Relation;
  /** The whole old row with REPLICA IDENTITY FULL, only its key columns with a key identity. */
  old: Row | null;
  new: Row;
  /** Columns whose unchanged TOAST value could not be filled in (no full old row). */
  unchangedToast: string[] | null;
}

export interface MsgDelete {
  /** Index within the transaction (the second half of a position); set by the assembler, -1 before. */
  index: number;
  tag: 'delete';
  relation: Relation;
  old: Row;
}

export interface MsgTruncate {
  tag: 'truncate';
  relations: Relation[];
  cascade: boolean;
  restartIdentity: boolean;
}

/**
 * A logical decoding message (pg_logical_emit_message). walcast asks for none (messages 'false')
 * and drops any that arrives anyway without reading its content: anyone who can log in can emit
 * them, as many as they like, as large as they like.
 */
export interface MsgIgnored {
  tag: 'ignored';
  kind: 'message';
}

export type PgoutputMessage =
  | MsgBegin
  | MsgCommit
  | MsgOrigin
  | MsgRelation
  | MsgType
  | MsgInsert
  | MsgUpdate
  | MsgDelete
  | MsgTruncate
  | MsgIgnored;
