// What one subscription receives of one change, and the frame that carries it: the rules of
// docs/PROTOCOL.md §6 `change` and docs/AUTHORIZATION.md §7, the same live and in catch-up (live:
// the policies in force now; catch-up: those in force at the change's commit).
//
// Every row that goes out is one the policies let the subscriber read at that point: `new` of an
// insert or update, `old` of a delete or leave, and `old` and `changed` of an update. An update
// whose new row the subscriber may read but whose old row it may not arrives as an `insert` of the
// new row (it enters the subscriber's view); an old row that is readable but outside the filter
// still comes as `update` with `old` (the filter narrows, it does not hide).
import type { Row } from '../capture/pgoutput.types.js';
import type { CapturedChange, Transaction } from '../capture/types.js';
import type { HistoryRing, RingEntry } from '../history/ring.js';
import type { Authorizer } from '../auth/types.js';
import type { Identity } from '../auth/jwt.js';
import { changeBody, encodeBody, enterBody, leaveBody } from './render.js';
import type { HubSubscription } from './subscriptions.js';
import type { Peer } from './types.js';

type RowChange = CapturedChange & { relation: { qualified: string } };
type Update = CapturedChange & { tag: 'update' };

export class Delivery {
  /** Frames of the change being dispatched, by interned prefix (cleared by the hub per change). */
  readonly frames = new Map<Buffer, Buffer>();
  /** Decisions of the change being dispatched, per identity: [new row, old row] (likewise). */
  readonly decisions: [Map<Identity, boolean>, Map<Identity, boolean>] = [new Map(), new Map()];
  /** Frames of the change being dispatched for subscribers not let see its old row. */
  private readonly entering = new Map<Buffer, Buffer>();
  private enteringStamp = 0;

  constructor(
    private readonly ring: HistoryRing,
    private readonly auth: Authorizer | null,
    /** Peers with live frames to flush this turn. */
    private readonly touched: Set<Peer>,
    private readonly counters: { deliveries: number },
  ) {}

  /**
   * Sends one change to one subscription if it wants it and may see it: the bytes queued, 0 when
   * nothing was. `stamp` names the change being dispatched live (frames are shared under it).
   */
  deliver(entry: RingEntry, tx: Transaction, c: CapturedChange, sub: HubSubscription, live: boolean, stamp: number): number {
    if (tx.lsn <= sub.after.lsn && (tx.lsn < sub.after.lsn || c.index <= sub.after.index)) return 0;
    // A transaction its snapshot already holds (catching up after a snapshot).
    if (sub.skip !== null && sub.skip(tx.xid)) return 0;
    // Live, the index finds the table's subscriptions; a catch-up walks every table's changes.
    if (c.relation.qualified !== sub.table) return 0;
    let leave = false;
    let enter = false;
    const at = live ? null : tx.lsn;
    switch (c.tag) {
      case 'insert':
        if (!sub.wantsInsert || !this.visible(sub, c, c.new, 0, at)) return 0;
        break;
      case 'update':
        if (this.visible(sub, c, c.new, 0, at)) {
          if (!sub.wantsUpdate) return 0;
          // The old row (and which columns changed) only to whom the policies let read it, at the
          // same point; to the others the row enters their view as an insert. Without replica
          // identity full no old row goes out anyway.
          enter = c.old !== null && c.relation.replicaIdentity === 'full' && !this.allowed(sub, c, c.old, 1, at);
        } else if (c.old && sub.wantsLeave && this.visible(sub, c, c.old, 1, at)) {
          leave = true; // `old` is visible: filter and policies
        } else return 0;
        break;
      case 'delete':
        if (!sub.wantsDelete || !this.visible(sub, c, c.old, 0, at)) return 0;
        break;
      case 'truncate':
        if (!sub.wantsDelete) return 0;
        break;
      default:
        return 0;
    }
    // Another wire format (ChangeRender) writes its own frame, or none, for what was decided here.
    const frame =
      sub.render !== null
        ? sub.render.frame(tx, c, leave ? 'leave' : enter ? 'enter' : 'change', live, stamp)
        : leave
          ? Buffer.concat([sub.prefix, Buffer.from(leaveBody(tx, c as Update))])
          : enter
            ? this.enterFrame(tx, c as Update, sub.prefix, live, stamp)
            : this.frame(entry, tx, c, sub.prefix, live);
    if (frame === null) return 0;
    sub.peer.pushFrame(frame);
    this.counters.deliveries++;
    if (live) this.touched.add(sub.peer);
    return frame.length;
  }

  /** Whether the subscriber may see this row: its filter, then the policies. */
  private visible(sub: HubSubscription, c: RowChange, row: Row, which: 0 | 1, lsn: bigint | null): boolean {
    return sub.predicate(row) && this.allowed(sub, c, row, which, lsn);
  }

  /**
   * Whether the policies let the subscriber read this row, whatever its filter: in force now
   * (lsn null) or at the change's commit. Live decisions are shared by the subscriptions of one
   * identity for the change being dispatched.
   */
  private allowed(sub: HubSubscription, c: RowChange, row: Row, which: 0 | 1, lsn: bigint | null): boolean {
    const auth = this.auth;
    if (!auth) return true;
    const identity = sub.peer.identity;
    if (!identity) return false;
    if (lsn !== null) return auth.mayRead(identity, c.relation.qualified, row, { lsn, index: c.index });
    const cache = this.decisions[which];
    let ok = cache.get(identity);
    if (ok === undefined) cache.set(identity, (ok = auth.mayRead(identity, c.relation.qualified, row, null)));
    return ok;
  }

  /**
   * The whole frame of a change for one prefix. The body is encoded once per change (kept in the
   * ring for catch-ups); during a live dispatch, frames are shared by every subscription with the
   * same prefix, so a change costs one copy per distinct subscription id, not per subscriber.
   */
  private frame(entry: RingEntry, tx: Transaction, c: CapturedChange, prefix: Buffer, live: boolean): Buffer {
    const body = entry.bodies?.[c.index] ?? this.ring.addBody(entry, c.index, encodeBody(changeBody(tx, c)));
    if (!live) return Buffer.concat([prefix, body]);
    let f = this.frames.get(prefix);
    if (!f) this.frames.set(prefix, (f = Buffer.concat([prefix, body])));
    return f;
  }

  /** An update as the insert of its new row; shared per prefix during a live dispatch, like frame(). */
  private enterFrame(tx: Transaction, c: Update, prefix: Buffer, live: boolean, stamp: number): Buffer {
    if (!live) return Buffer.concat([prefix, Buffer.from(enterBody(tx, c))]);
    if (this.enteringStamp !== stamp) {
      this.entering.clear();
      this.enteringStamp = stamp;
    }
    let f = this.entering.get(prefix);
    if (!f) this.entering.set(prefix, (f = Buffer.concat([prefix, Buffer.from(enterBody(tx, c))])));
    return f;
  }
}
