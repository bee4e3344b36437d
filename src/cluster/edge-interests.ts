// What this node follows (interest routing, docs/dev/cluster-plan.md §5 and "Next increments in
// detail" item 6): subscriptions make it follow their tables, or only the route values they
// filter on of a table enabled with route_by. Following one means an interest
// key in the bucket (interest.ts), which capture applies to the chains it stamps, and a core NATS
// subscription to the table's republished subjects. The node's feed (routed-follower.ts) carries
// the table once a heartbeat's applied revision covers the key's (at stream seq S), from the
// first message it hands on past S: from then on the ring holds every change of the table, and
// subscriptions move from stream catch-ups to the ring (hub/older-history.ts).
//
//   follow ──► pending (key written, rev R) ──heartbeat appliedRev ≥ R──► applied (seq S)
//                                                                          │ a message past S
//   released, after lingerMs ◄── covered (from that message's position) ◄──┘
//
// A released table lingers (lingerMs) so that clients resubscribing cause no churn; once dropped,
// the key goes and the ring stops receiving it: a later follow starts over at pending.
import { CLUSTER_INTEREST } from '../constants.js';
import type { Interests } from '../hub/older-history.js';
import { compareWalPositions, type Position } from '../protocol/position.js';
import type { Interest, InterestRegistry } from './interest.js';

/** Everything: for tables every node follows whole (policy and relation tables). */
const ALWAYS: Position = { lsn: 0n, index: 0 };

interface Followed {
  readonly schema: string;
  readonly name: string;
  refs: number;
  interest: Interest;
  rev: number | null;
  /** The heartbeat's appliedSeq once capture applied the key. */
  appliedSeq: number | null;
  from: Position | null;
  linger: NodeJS.Timeout | null;
  /** Ends the core subscription to the table's subjects. */
  unsubscribe: () => void;
}

export interface EdgeInterestsOptions {
  registry: Pick<InterestRegistry, 'acquire'>;
  /** Core NATS subscription to a table's republished subjects (one route's, or all: null); returns its end. */
  subscribe: (schema: string, table: string, route: string | null) => () => void;
  /** Tables every node follows whole, from its start (policy and relation tables). */
  always: ReadonlySet<string>;
  lingerMs?: number;
}

/** The record key of an interest: a table, or one route of it. */
function keyOf(table: string, route: string | null): string {
  return route === null ? table : `${table}\u0000${route}`;
}

export interface EdgeInterestsStats {
  /** Interests followed: whole tables and single routes. */
  tables: number;
  pending: number;
  covered: number;
}

export class EdgeInterests implements Interests {
  private readonly tables = new Map<string, Followed>();
  /** Those not covered yet: what heartbeats and handed-on messages are checked against (none, mostly). */
  private readonly uncovered = new Set<Followed>();
  private readonly lingerMs: number;
  private closed = false;
  private appliedRev = 0;
  private appliedSeq = 0;
  private wake: () => void = () => {};

  constructor(private readonly o: EdgeInterestsOptions) {
    this.lingerMs = o.lingerMs ?? CLUSTER_INTEREST.lingerMs;
  }

  get stats(): EdgeInterestsStats {
    const covered = this.tables.size - this.uncovered.size;
    return { tables: this.tables.size, pending: this.tables.size - covered, covered };
  }

  follow(table: string, routes: readonly string[] | null = null): () => void {
    if (this.o.always.has(table) || this.closed) return () => {};
    const recs = (routes ?? [null]).map((route) => this.acquire(table, route));
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (const [key, rec] of recs) {
        if (--rec.refs > 0 || this.tables.get(key) !== rec) continue;
        rec.linger = setTimeout(() => this.drop(key, rec), this.lingerMs);
        rec.linger.unref?.();
      }
    };
  }

  /** The record of one interest (a route of a table, or the whole table), made on first use. */
  private acquire(table: string, route: string | null): [string, Followed] {
    const key = keyOf(table, route);
    let rec = this.tables.get(key);
    if (!rec) {
      const dot = table.indexOf('.');
      const schema = table.slice(0, dot);
      const name = table.slice(dot + 1);
      const interest = this.o.registry.acquire(schema, name, route);
      // Subscribed before the key is written: nothing capture routes here is missed on the way.
      // Past the registry's bound on route keys it follows the whole table (interest.route null).
      const unsubscribe = this.o.subscribe(schema, name, interest.route);
      const made: Followed = { schema, name, refs: 0, interest, rev: null, appliedSeq: null, from: null, linger: null, unsubscribe };
      rec = made;
      this.tables.set(key, made);
      this.uncovered.add(made);
      void interest.revision.then((rev) => {
        if (this.tables.get(key) !== made || rev === null) return;
        made.rev = rev;
        // A heartbeat may already have said so.
        if (this.appliedRev >= rev) made.appliedSeq = this.appliedSeq;
      });
    }
    rec.refs++;
    if (rec.linger) {
      clearTimeout(rec.linger);
      rec.linger = null;
    }
    return [key, rec];
  }

  onCovered(listener: () => void): void {
    this.wake = listener;
  }

  /**
   * The whole table followed and covered: from there. Else every route asked for followed and
   * covered: from the latest of them (before it, one of them may be missing changes).
   */
  coveredFrom(table: string, routes: readonly string[] | null = null): Position | null {
    if (this.o.always.has(table)) return ALWAYS;
    const whole = this.tables.get(keyOf(table, null))?.from ?? null;
    if (whole || routes === null) return whole;
    let latest: Position | null = null;
    for (const route of routes) {
      const from = this.tables.get(keyOf(table, route))?.from ?? null;
      if (!from) return null;
      if (!latest || compareWalPositions(from, latest) > 0) latest = from;
    }
    return latest ?? ALWAYS; // no route at all (`in.()`): it matches no row
  }

  /**
   * Capture's heartbeat: every message after `appliedSeq` was routed with the interests at
   * revision `appliedRev` or later. The first one at or past a key's revision is the one that counts.
   */
  applied(appliedRev: number, appliedSeq: number): void {
    if (appliedRev < this.appliedRev) return;
    if (appliedRev > this.appliedRev) {
      this.appliedRev = appliedRev;
      this.appliedSeq = appliedSeq;
    }
    for (const f of this.uncovered) {
      if (f.rev !== null && f.appliedSeq === null && f.rev <= appliedRev) f.appliedSeq = appliedSeq;
    }
  }

  /** Whether some interest waits for its coverage (the feed then reports each message handed on). */
  get awaiting(): boolean {
    return this.uncovered.size > 0;
  }

  /**
   * The node's feed handed on the message at stream seq `seq`, position `pos`. The first one past
   * a table's applied seq starts its coverage at its own position: changes of the table after it
   * were all routed here, those before it (back to the applied seq) perhaps not all.
   */
  advanced(seq: number, pos: Position): void {
    let moved = false;
    for (const f of this.uncovered) {
      if (f.appliedSeq !== null && seq > f.appliedSeq) moved = this.cover(f, pos);
    }
    if (moved) this.wake();
  }

  /**
   * The feed has handed on every message concerning this node up to stream seq `seq` (capture's
   * heartbeat named nothing later for it): each table applied at or before `seq` is covered from
   * its applied message's position on (`positionOf` reads it from the stream).
   */
  async caughtUp(seq: number, positionOf: (seq: number) => Promise<Position | null>): Promise<void> {
    let moved = false;
    for (const f of [...this.uncovered]) {
      if (f.appliedSeq === null || f.appliedSeq > seq) continue;
      const s = f.appliedSeq;
      const pos = s === 0 ? ALWAYS : await positionOf(s);
      // Still the same state after the read (not covered, dropped or reset meanwhile): covered from there.
      if (pos && this.uncovered.has(f) && f.appliedSeq === s) moved = this.cover(f, pos);
    }
    if (moved) this.wake();
  }

  /** The feed lost messages: nothing is covered until capture's next heartbeats say so again. */
  uncover(): void {
    for (const f of this.tables.values()) {
      f.from = null;
      f.appliedSeq = null;
      this.uncovered.add(f);
    }
    this.appliedRev = 0;
    this.appliedSeq = 0;
  }

  close(): void {
    this.closed = true;
    for (const [table, f] of this.tables) this.drop(table, f);
  }

  private cover(f: Followed, from: Position): true {
    f.from = from;
    this.uncovered.delete(f);
    return true;
  }

  private drop(table: string, f: Followed): void {
    if (this.tables.get(table) !== f) return;
    if (f.linger) clearTimeout(f.linger);
    this.tables.delete(table);
    this.uncovered.delete(f);
    // Uncovered first: the ring stops receiving the table once capture applies the delete.
    f.unsubscribe();
    f.interest.release();
  }
}
