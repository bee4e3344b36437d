// Assembles decoded pgoutput messages into committed transactions. pgoutput protocol 1 sends a
// transaction only once it committed, between Begin and Commit, so assembling is collecting;
// what this adds is the change index, one change per truncated table, and the resume filter.
import { ProtocolDecodeError } from '../errors.js';
import { formatLsn } from './lsn.js';
import { isoFromMicros } from './pgoutput.js';
import type { MsgBegin, MsgCommit, PgoutputMessage } from './pgoutput.types.js';
import type { Position } from './position.js';
import type { Change, Transaction } from './types.js';

export class TransactionAssembler {
  private open: MsgBegin | null = null;
  private changes: Change[] = [];
  /** Everything at or before this position has already been handed on: replays skip it. */
  private after: Position | null;

  constructor(after: Position | null = null) {
    this.after = after;
  }

  get inTransaction(): boolean {
    return this.open !== null;
  }

  /** Forget a half-received transaction (the stream broke); it will be sent again. */
  reset(): void {
    this.open = null;
    this.changes = [];
  }

  /** Returns a transaction at its commit, `null` otherwise (or when the commit is a replay). */
  push(msg: PgoutputMessage): Transaction | null {
    switch (msg.tag) {
      case 'begin':
        this.open = msg;
        this.changes = [];
        return null;
      case 'insert':
      case 'update':
      case 'delete':
        this.add(msg);
        return null;
      case 'truncate':
        for (const relation of msg.relations) {
          this.add({ index: -1, tag: 'truncate', relation, cascade: msg.cascade, restartIdentity: msg.restartIdentity });
        }
        return null;
      case 'message':
        // Non-transactional messages are outside any transaction and have no position.
        if (msg.transactional) this.add(msg);
        return null;
      case 'commit':
        return this.commit(msg);
      default:
        return null; // relation, type, origin: metadata only
    }
  }

  private add(c: Change): void {
    if (!this.open) throw new ProtocolDecodeError(`${c.tag} outside a transaction`);
    c.index = this.changes.length;
    this.changes.push(c);
  }

  private commit(msg: MsgCommit): Transaction | null {
    const begin = this.open;
    if (!begin) throw new ProtocolDecodeError('commit without begin');
    this.open = null;
    let changes = this.changes;
    this.changes = [];
    const after = this.after;
    if (after && msg.commitLsn <= after.lsn) {
      if (msg.commitLsn < after.lsn) return null;
      changes = changes.filter((c) => c.index > after.index);
      if (changes.length === 0) return null;
    }
    this.after = { lsn: msg.commitLsn, index: Number.MAX_SAFE_INTEGER };
    return {
      xid: begin.xid,
      lsn: msg.commitLsn,
      lsnText: formatLsn(msg.commitLsn),
      endLsn: msg.endLsn,
      commitTime: isoFromMicros(msg.commitTimeUs),
      changes,
    };
  }
}
