// What the publisher has put into the stream (docs/dev/cluster-plan.md §3.2, §3.4): each message
// by its predicted stream sequence, and the transactions they belong to. PubAcks may come back
// in any order; acked() is the last position of the gap-free PubAck'ed prefix, hold() the commit
// LSN the slot must not be acknowledged past. No I/O and no clock of its own: callers pass the
// time, so the delay is unit-tested without waiting.
import { compareWalPositions, type Position } from '../protocol/position.js';

interface TxEntry {
  /** Commit LSN: holding it keeps the transaction in the slot; null: holds nothing (a mark). */
  readonly lsn: bigint | null;
  /** Messages not PubAck'ed yet. */
  pending: number;
  /** When its last message was PubAck'ed; null while some are pending. */
  ackedAt: number | null;
}

interface MsgEntry {
  readonly pos: Position;
  /** On the last message of a transaction or a mark: the WAL position it completes (see covered()). */
  readonly end: bigint | null;
  readonly tx: TxEntry;
  acked: boolean;
}

/** One message of a transaction: its position and the stream sequence it is published to get. */
export interface LedgerMessage {
  seq: number;
  pos: Position;
}

export class PublishLedger {
  /** Messages not yet past the acked prefix, by seq. */
  private readonly msgs = new Map<number, MsgEntry>();
  /** The first seq of the not-yet-acked prefix (everything before it is PubAck'ed). */
  private front: number | null = null;
  /** Transactions not yet released by hold(), in commit order. */
  private txs: TxEntry[] = [];
  private last: Position | null = null;
  private end: bigint | null = null;

  /**
   * Records a transaction's messages, in order and with consecutive seqs following the previous
   * ones. A transaction without messages counts as PubAck'ed now. `lsn` null: messages that
   * carry no change (marks, epoch markers) and hold no WAL. `end`: the WAL position before which
   * every commit is in the stream once these messages are (a transaction's end LSN, a mark's WAL end).
   */
  append(lsn: bigint | null, messages: readonly LedgerMessage[], nowMs: number, end: bigint | null = null): void {
    const tx: TxEntry = { lsn, pending: messages.length, ackedAt: messages.length === 0 ? nowMs : null };
    this.txs.push(tx);
    messages.forEach((m, i) => {
      if (this.front === null) this.front = m.seq;
      this.msgs.set(m.seq, { pos: m.pos, end: i === messages.length - 1 ? end : null, tx, acked: false });
    });
  }

  /** A PubAck (or a duplicate's) for seq; false when seq is unknown or already acked. */
  ack(seq: number, nowMs: number): boolean {
    const m = this.msgs.get(seq);
    if (!m || m.acked) return false;
    m.acked = true;
    if (--m.tx.pending === 0) m.tx.ackedAt = nowMs;
    // Advance the gap-free prefix.
    while (this.front !== null) {
      const f = this.msgs.get(this.front);
      if (!f) {
        this.front = null;
        break;
      }
      if (!f.acked) break;
      if (this.last === null || compareWalPositions(f.pos, this.last) > 0) this.last = f.pos;
      if (f.end !== null && (this.end === null || f.end > this.end)) this.end = f.end;
      this.msgs.delete(this.front);
      this.front = this.msgs.size === 0 ? null : this.front + 1;
    }
    return true;
  }

  /**
   * The WAL position before which every commit is PubAck'ed in the stream (the furthest `end` of
   * the acked prefix); null before the first. The slot is never acknowledged past it.
   */
  covered(): bigint | null {
    return this.end;
  }

  /** The last position such that it and every message before it are PubAck'ed; null before the first. */
  acked(): Position | null {
    return this.last;
  }

  /** Messages recorded and not yet PubAck'ed (including those past a gap). */
  unacked(): number {
    let n = 0;
    for (const m of this.msgs.values()) if (!m.acked) n++;
    return n;
  }

  /**
   * The commit LSN of the oldest transaction not fully PubAck'ed, or PubAck'ed less than
   * `ackDelayMs` before `nowMs`: the slot may be acknowledged up to it (it is kept). Null when no
   * transaction is held. Transactions released here are forgotten.
   */
  hold(nowMs: number, ackDelayMs: number): bigint | null {
    let i = 0;
    while (i < this.txs.length) {
      const tx = this.txs[i];
      if (tx.lsn !== null && (tx.ackedAt === null || nowMs - tx.ackedAt < ackDelayMs)) break;
      i++;
    }
    if (i > 0) this.txs = this.txs.slice(i);
    return this.txs.length > 0 ? this.txs[0].lsn : null;
  }
}
