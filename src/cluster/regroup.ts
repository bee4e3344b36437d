// Stream messages back into capture's transactions (docs/dev/cluster-plan.md §6): consecutive
// change messages of one commit LSN form one transaction, handed on at the one marked last
// (`Walcast-Last`), or when something else comes first (another commit LSN, a control message:
// a transaction cut short by a capture failover goes on in order in the next epoch, as a second
// part). Positions only move forward: a change at or before the last one handed on is skipped.
// Pure: no I/O, so that every case is unit-tested.
import type { CapturedChange, Transaction, TransactionHead } from '../capture/types.js';
import { compareWalPositions, MAX_POSITION_INDEX, type Position } from '../protocol/position.js';
import { formatLsn } from '../protocol/lsn.js';

interface OpenTx {
  head: TransactionHead & { endLsn: bigint };
  changes: CapturedChange[];
}

/** An oversized transaction's marker, as a control message carries it. */
export interface OversizeMarker {
  xid: number;
  lsn: bigint;
  end: bigint;
  t: string;
  tables: string[];
  changes: number;
  bytes: number;
}

export class Regrouper {
  private open: OpenTx | null = null;
  private lastPos: Position | null = null;
  /** Changes (and markers) skipped as at or before a position already handed on. */
  skipped = 0;

  constructor(private readonly out: (tx: Transaction) => void) {}

  /** The last position handed on (or set by a reset). */
  get last(): Position | null {
    return this.lastPos;
  }

  /** One change message; `last`: the last change of its transaction. */
  change(head: TransactionHead & { endLsn: bigint }, change: CapturedChange, last: boolean): void {
    const pos = { lsn: head.lsn, index: change.index };
    if (this.lastPos && compareWalPositions(pos, this.lastPos) <= 0) {
      this.skipped++;
      return;
    }
    this.lastPos = pos;
    if (this.open && this.open.head.lsn !== head.lsn) this.flush();
    this.open ??= { head, changes: [] };
    this.open.changes.push(change);
    if (last) this.flush();
  }

  /** An oversized transaction's marker: handed on as a transaction without changes. */
  oversize(m: OversizeMarker): void {
    this.flush();
    const pos = { lsn: m.lsn, index: MAX_POSITION_INDEX };
    if (this.lastPos && compareWalPositions(pos, this.lastPos) <= 0) {
      this.skipped++;
      return;
    }
    this.lastPos = pos;
    this.out({ xid: m.xid, lsn: m.lsn, lsnText: formatLsn(m.lsn), endLsn: m.end, commitTime: m.t, changes: [], oversize: { tables: m.tables, changes: m.changes, bytes: m.bytes } });
  }

  /** Hands on the open transaction, whole or the part received (a control message comes next). */
  flush(): void {
    const open = this.open;
    if (!open) return;
    this.open = null;
    const h = open.head;
    this.out({ xid: h.xid, lsn: h.lsn, lsnText: h.lsnText, endLsn: h.endLsn, commitTime: h.commitTime, changes: open.changes });
  }

  /** Messages were lost: the open transaction's missing part is gone too, it is dropped. */
  drop(): void {
    this.open = null;
  }

  /** A window reset: nothing at or before `floor` is handed on any more. */
  resetTo(floor: Position): void {
    this.open = null;
    this.lastPos = floor;
  }
}
