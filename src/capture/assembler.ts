// Assembles decoded pgoutput messages into committed transactions. pgoutput protocol 1 sends a
// transaction only once it committed, between Begin and Commit, so assembling is collecting;
// what this adds is the change index, one change per truncated table, the resume filter, and
// the memory bound.
//
// The bound: the pgoutput bytes of a transaction's changes are counted as they arrive; past
// `maxBytes` its changes are no longer kept (nor, see Capture, decoded), only the tables it
// touches and how many changes it had, and it is handed on marked `oversize` with no changes.
// In streaming mode (`onChange`, for `walcast tail`) nothing is kept at all: each change goes out
// as it is decoded (Begin already carries the commit LSN and time), so there is nothing to bound.
import { ProtocolDecodeError } from '../errors.js';
import { formatLsn } from '../protocol/lsn.js';
import { isoFromMicros } from './pgoutput.js';
import type { MsgBegin, MsgCommit, PgoutputMessage, Relation } from './pgoutput.types.js';
import type { Position } from '../protocol/position.js';
import type { CapturedChange, RowChange, Transaction, TransactionHead } from './types.js';

export interface AssemblerOptions {
  /** Everything at or before this position has already been handed on: replays skip it. */
  after?: Position | null;
  /** Bytes of change messages past which a transaction's changes are no longer kept. */
  maxBytes?: number;
  /** Streaming: each change is handed here as it is decoded, and commits hand on nothing. */
  onChange?: (head: TransactionHead, c: CapturedChange) => void;
}

export class TransactionAssembler {
  private open: MsgBegin | null = null;
  private head: TransactionHead | null = null;
  private changes: CapturedChange[] = [];
  /** Changes of the open transaction so far (the next index). */
  private count = 0;
  /** Bytes of the open transaction's change messages so far. */
  private bytes = 0;
  /** Tables of an open transaction past the bound (then `changes` stays empty), else null. */
  private touched: Set<string> | null = null;
  private after: Position | null;
  private readonly maxBytes: number;
  private readonly onChange: AssemblerOptions['onChange'];

  constructor(opts: AssemblerOptions = {}) {
    this.after = opts.after ?? null;
    this.maxBytes = opts.maxBytes ?? Number.POSITIVE_INFINITY;
    this.onChange = opts.onChange;
  }

  get inTransaction(): boolean {
    return this.open !== null;
  }

  /** Bytes of change messages of the open transaction, or of the last one committed. */
  get lastBytes(): number {
    return this.bytes;
  }

  /**
   * Whether a change message of `bytes` takes the open transaction past the bound. Asked before
   * decoding it, so that one huge row (a 500 MB text) is never turned into a string at all;
   * when true, the transaction is from now on oversized (see skip()).
   */
  overflowsWith(bytes: number): boolean {
    if (this.onChange || !this.open || this.touched || this.bytes + bytes <= this.maxBytes) return false;
    this.touched = new Set();
    for (const k of this.changes) this.touched.add(k.relation.qualified);
    this.changes = [];
    return true;
  }

  /** The open transaction is past the bound: its row changes need not be decoded, see skip(). */
  get oversized(): boolean {
    return this.touched !== null;
  }

  /** Forget a half-received transaction (the stream broke); it will be sent again. */
  reset(): void {
    this.open = null;
    this.head = null;
    this.changes = [];
    this.touched = null;
  }

  /**
   * Returns a transaction at its commit, `null` otherwise (or when the commit is a replay, or in
   * streaming mode). `bytes`: the size of the pgoutput message, counted against the bound.
   */
  push(msg: PgoutputMessage, bytes = 0): Transaction | null {
    switch (msg.tag) {
      case 'begin':
        this.open = msg;
        this.head = null;
        this.changes = [];
        this.count = 0;
        this.bytes = 0;
        this.touched = null;
        return null;
      case 'insert':
      case 'update':
      case 'delete':
        this.bytes += bytes;
        this.add(msg);
        return null;
      case 'truncate':
        this.bytes += bytes;
        for (const relation of msg.relations) {
          this.add({ index: -1, tag: 'truncate', relation, cascade: msg.cascade, restartIdentity: msg.restartIdentity });
        }
        return null;
      case 'commit':
        return this.commit(msg);
      default:
        return null; // relation, type, origin: metadata; ignored: logical decoding messages
    }
  }

  /** A row change of an oversized transaction, counted from its relations alone. */
  skip(relations: readonly Relation[], bytes: number): void {
    if (!this.open || !this.touched) throw new ProtocolDecodeError('change outside a transaction');
    this.bytes += bytes;
    for (const r of relations) this.touched.add(r.qualified);
    this.count += relations.length;
  }

  private add(c: RowChange): void {
    if (!this.open) throw new ProtocolDecodeError(`${c.tag} outside a transaction`);
    c.index = this.count++;
    if (this.onChange) {
      this.stream(c);
    } else if (this.touched) {
      this.touched.add(c.relation.qualified);
    } else {
      this.changes.push(c);
      if (this.bytes > this.maxBytes) {
        // Past the bound: from here on only the tables touched and the count are kept.
        this.touched = new Set();
        for (const k of this.changes) this.touched.add(k.relation.qualified);
        this.changes = [];
      }
    }
  }

  private stream(c: RowChange): void {
    const begin = this.open as MsgBegin;
    const after = this.after;
    if (after && begin.finalLsn <= after.lsn && (begin.finalLsn < after.lsn || c.index <= after.index)) return;
    this.head ??= { xid: begin.xid, lsn: begin.finalLsn, lsnText: formatLsn(begin.finalLsn), commitTime: isoFromMicros(begin.commitTimeUs) };
    (this.onChange as NonNullable<AssemblerOptions['onChange']>)(this.head, c);
    // Handed on: a replay of this transaction (the stream broke before its commit) resumes after it.
    this.after = { lsn: begin.finalLsn, index: c.index };
  }

  private commit(msg: MsgCommit): Transaction | null {
    const begin = this.open;
    if (!begin) throw new ProtocolDecodeError('commit without begin');
    this.open = null;
    this.head = null;
    let changes = this.changes;
    this.changes = [];
    const touched = this.touched;
    this.touched = null;
    const after = this.after;
    if (!after || msg.commitLsn >= after.lsn) this.after = { lsn: msg.commitLsn, index: Number.MAX_SAFE_INTEGER };
    if (this.onChange) return null;
    if (after && msg.commitLsn <= after.lsn) {
      if (msg.commitLsn < after.lsn) return null;
      if (touched) {
        if (after.index >= this.count - 1) return null;
      } else {
        changes = changes.filter((c) => c.index > after.index);
        if (changes.length === 0) return null;
      }
    }
    const tx: Transaction = {
      xid: begin.xid,
      lsn: msg.commitLsn,
      lsnText: formatLsn(msg.commitLsn),
      endLsn: msg.endLsn,
      commitTime: isoFromMicros(msg.commitTimeUs),
      changes,
    };
    if (touched) tx.oversize = { tables: [...touched], changes: this.count, bytes: this.bytes };
    return tx;
  }
}
