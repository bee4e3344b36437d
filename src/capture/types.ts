// What capture hands downstream: whole committed transactions, in commit order.
import type { MsgDelete, MsgInsert, MsgMessage, MsgUpdate, Relation } from './pgoutput.types.js';

export interface TruncateChange {
  index: number;
  tag: 'truncate';
  relation: Relation;
  cascade: boolean;
  restartIdentity: boolean;
}

/** A change within its transaction; `index` is the second half of its position. */
export type Change = MsgInsert | MsgUpdate | MsgDelete | TruncateChange | MsgMessage;

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
  /** In transaction order. After a resume, only those past the resume position (indexes kept). */
  changes: Change[];
}

export type CaptureState = 'idle' | 'connecting' | 'streaming' | 'backoff' | 'stopping' | 'stopped' | 'failed';
