// What capture hands downstream: whole committed transactions, in commit order.
import type { MsgDelete, MsgInsert, MsgUpdate, Relation } from './pgoutput.types.js';

export interface TruncateChange {
  index: number;
  tag: 'truncate';
  relation: Relation;
  cascade: boolean;
  restartIdentity: boolean;
}

/**
 * A change within its transaction; `index` is the second half of its position. Logical decoding
 * messages are neither requested nor kept (src/capture/pgoutput.ts): every change is of a table.
 */
export type CapturedChange = MsgInsert | MsgUpdate | MsgDelete | TruncateChange;

/** A change of a table (every change capture produces). */
export type RowChange = MsgInsert | MsgUpdate | MsgDelete | TruncateChange;

/**
 * A transaction past the memory bound (--max-transaction-bytes): its changes were counted as
 * they arrived, not kept.
 */
export interface Oversize {
  /** Tables it changed ("schema.table"), each once. */
  tables: string[];
  /** How many changes it had (their indexes were 0 to changes - 1). */
  changes: number;
  /** Bytes of pgoutput change messages it had. */
  bytes: number;
}

/** What every change of a transaction shares, known from its Begin (protocol 1 sends it once committed). */
export interface TransactionHead {
  xid: number;
  /** LSN of the commit record. */
  lsn: bigint;
  lsnText: string;
  commitTime: string;
}

export interface Transaction {
  xid: number;
  /** LSN of the commit record: the first half of every position in this transaction. */
  lsn: bigint;
  /** Same LSN in Postgres text form, formatted once. */
  lsnText: string;
  /** End of the commit record. */
  endLsn: bigint;
  /** ISO 8601 with microseconds. */
  commitTime: string;
  /** In transaction order. After a resume, only those past the resume position (indexes kept). Empty when oversized. */
  changes: CapturedChange[];
  /** Set when the transaction was past the memory bound: `changes` is empty, this says what it touched. */
  oversize?: Oversize;
}

export type CaptureState = 'idle' | 'connecting' | 'streaming' | 'backoff' | 'stopping' | 'stopped' | 'failed';
