// Subscriptions and the index that finds a change's candidate subscribers without scanning all
// of them: per table, those without an equality filter, and those with one hashed by
// column → value (a subscriber is registered under one `eq` term; the whole filter is then
// evaluated on candidates only).
import type { OlderSegment, SegmentStart } from './older-history.js';
import type { Position } from '../protocol/position.js';
import type { Row } from '../capture/pgoutput.types.js';
import { eqTermKeys, rowValueKey, type FilterTerm, type RowPredicate } from './filter.js';
import type { ChangeEvent } from '../protocol/types.js';
import type { ChangeRender, HubSubscriptionState, Peer } from './types.js';

export interface SubscriptionInit {
  peer: Peer;
  /** As the client gave it (string or number), echoed back. */
  id: string | number;
  /** The subscribe message's ref, echoed in `subscribed` (or `resync`). */
  ref?: string | number;
  table: string;
  events: ReadonlySet<ChangeEvent> | null;
  predicate: RowPredicate;
  /** Interned `{"type":"change","sub":<id>` (PrefixTable). */
  prefix: Buffer;
  /** The `eq` term to hash it under, when one is on a column whose values have index keys. */
  indexTerm: FilterTerm | null;
  after: Position;
  /**
   * The route values (subject tokens) its filter confines it to on the table's route_by column;
   * null: any row of the table (a cluster node then follows the whole table).
   */
  routes?: readonly string[] | null;
  /** The route_by column `routes` are values of. */
  routeBy?: string | null;
  /**
   * After a snapshot: the transactions (by xid) the snapshot already contains, skipped while
   * catching up (src/pg/snapshot-visibility.ts). Absent otherwise.
   */
  skip?: ((xid: number) => boolean) | null;
  /** Frames of another wire format (the Supabase endpoint); absent: walcast's own. */
  render?: ChangeRender | null;
}

export class HubSubscription {
  readonly peer: Peer;
  readonly id: string | number;
  readonly ref: string | number | undefined;
  /** `{"type":"change","sub":<id>`, encoded once and shared by subscriptions of the same id. */
  readonly prefix: Buffer;
  readonly table: string;
  readonly wantsInsert: boolean;
  readonly wantsUpdate: boolean;
  readonly wantsDelete: boolean;
  /** Whether an update that takes a row out of its view is sent (as `leave`, or a delete). */
  readonly wantsLeave: boolean;
  readonly render: ChangeRender | null;
  readonly predicate: RowPredicate;
  readonly indexTerm: FilterTerm | null;
  /** Route values it is confined to (SubscriptionInit.routes). */
  readonly routes: readonly string[] | null;
  readonly routeBy: string | null;
  /** Deliver only changes after this position (a resume position, possibly ahead of the head). */
  after: Position;
  state: HubSubscriptionState = 'catching_up';
  /** Next ring sequence number to deliver from, while catching up. */
  cursor = 0;
  /** Next change index within the entry at `cursor` (a large transaction spans catch-up turns). */
  within = 0;
  /** Catching up from before the ring's floor: the older history read (null until opened, and once in the ring). */
  segment: OlderSegment | null = null;
  /** Where its older-history read starts (older-history.ts), null when it reads the ring (a segment is opened when its catch-up first runs). */
  older: SegmentStart | null = null;
  /** Lets go of what the node follows for it (Interests.follow). */
  release: (() => void) | null = null;
  /** Dispatch stamp: a subscriber found twice for one change (old and new row) is visited once. */
  stamp = 0;
  /** The index slot it is registered in, for removal. */
  indexKey: { column: string; keys: string[] } | null = null;
  /** Its user id (index byUser, catch-up limits), null without an identity. */
  user: string | null;
  /** SubscriptionInit.skip; dropped when it goes live (nothing after that is in its snapshot). */
  skip: ((xid: number) => boolean) | null;

  constructor(init: SubscriptionInit) {
    this.peer = init.peer;
    this.id = init.id;
    this.ref = init.ref;
    this.prefix = init.prefix;
    this.table = init.table;
    this.wantsInsert = !init.events || init.events.has('insert');
    this.wantsUpdate = !init.events || init.events.has('update');
    this.wantsDelete = !init.events || init.events.has('delete');
    this.render = init.render ?? null;
    this.wantsLeave = this.wantsDelete || (this.wantsUpdate && !this.render?.leavesAsDeletes);
    this.predicate = init.predicate;
    this.indexTerm = init.indexTerm;
    this.after = init.after;
    this.routes = init.routes ?? null;
    this.routeBy = init.routeBy ?? null;
    this.user = init.peer.identity?.id ?? null;
    this.skip = init.skip ?? null;
  }

  /** Its connection (catch-up limits per connection). */
  get conn(): Peer {
    return this.peer;
  }
}

class TableIndex {
  readonly unindexed = new Set<HubSubscription>();
  readonly byEq = new Map<string, Map<string, Set<HubSubscription>>>();
  /** By the subscriber's user id (sub claim), for policies that bound a row's reach. */
  readonly byUser = new Map<string, Set<HubSubscription>>();
  size = 0;
}

export class SubscriptionIndex {
  private readonly tables = new Map<string, TableIndex>();
  private total = 0;

  get size(): number {
    return this.total;
  }

  add(sub: HubSubscription): void {
    let t = this.tables.get(sub.table);
    if (!t) this.tables.set(sub.table, (t = new TableIndex()));
    const eq = sub.indexTerm;
    if (eq) {
      const keys = eqTermKeys(eq.values[0]);
      sub.indexKey = { column: eq.column, keys };
      let byValue = t.byEq.get(eq.column);
      if (!byValue) t.byEq.set(eq.column, (byValue = new Map()));
      for (const k of keys) {
        let set = byValue.get(k);
        if (!set) byValue.set(k, (set = new Set()));
        set.add(sub);
      }
    } else {
      t.unindexed.add(sub);
    }
    const user = sub.peer.identity?.id;
    if (user !== undefined) {
      sub.user = user;
      let set = t.byUser.get(user);
      if (!set) t.byUser.set(user, (set = new Set()));
      set.add(sub);
    }
    t.size++;
    this.total++;
  }

  remove(sub: HubSubscription): void {
    const t = this.tables.get(sub.table);
    if (!t) return;
    let removed = false;
    if (sub.indexKey) {
      const byValue = t.byEq.get(sub.indexKey.column);
      for (const k of sub.indexKey.keys) {
        const set = byValue?.get(k);
        if (set?.delete(sub)) removed = true;
        if (set && set.size === 0) byValue?.delete(k);
      }
      if (byValue && byValue.size === 0) t.byEq.delete(sub.indexKey.column);
    } else {
      removed = t.unindexed.delete(sub);
    }
    if (!removed) return;
    if (sub.user !== null) {
      const set = t.byUser.get(sub.user);
      set?.delete(sub);
      if (set?.size === 0) t.byUser.delete(sub.user);
    }
    t.size--;
    this.total--;
    if (t.size === 0) this.tables.delete(sub.table);
  }

  /**
   * Calls `visit` once for every subscription of `table` that a row (or, for updates, either of
   * two rows) could match; `stamp` must be new for every change.
   */
  candidates(table: string, row: Row | null, other: Row | null, stamp: number, visit: (sub: HubSubscription) => void): void {
    const t = this.tables.get(table);
    if (!t) return;
    for (const sub of t.unindexed) visit(sub);
    for (const [column, byValue] of t.byEq) {
      this.visitKey(byValue, row, column, stamp, visit);
      if (other) this.visitKey(byValue, other, column, stamp, visit);
    }
  }

  /** Subscriptions of a table, live or catching up, 0 when none. */
  sizeOf(table: string): number {
    return this.tables.get(table)?.size ?? 0;
  }

  /** Calls `visit` once for every subscription of `table` held by one of `users`. */
  ofUsers(table: string, users: Iterable<string>, stamp: number, visit: (sub: HubSubscription) => void): void {
    const t = this.tables.get(table);
    if (!t) return;
    for (const u of users) {
      const set = t.byUser.get(u);
      if (!set) continue;
      for (const sub of set) {
        if (sub.stamp === stamp) continue;
        sub.stamp = stamp;
        visit(sub);
      }
    }
  }

  /** Every subscription of a table, once each (truncate). */
  all(table: string, stamp: number, visit: (sub: HubSubscription) => void): void {
    const t = this.tables.get(table);
    if (!t) return;
    for (const sub of t.unindexed) visit(sub);
    for (const byValue of t.byEq.values()) {
      for (const set of byValue.values()) {
        for (const sub of set) {
          if (sub.stamp === stamp) continue;
          sub.stamp = stamp;
          visit(sub);
        }
      }
    }
  }

  private visitKey(byValue: Map<string, Set<HubSubscription>>, row: Row | null, column: string, stamp: number, visit: (sub: HubSubscription) => void): void {
    if (!row) return;
    const key = rowValueKey(row[column]);
    if (key === null) return;
    const set = byValue.get(key);
    if (!set) return;
    for (const sub of set) {
      if (sub.stamp === stamp) continue;
      sub.stamp = stamp;
      visit(sub);
    }
  }
}
