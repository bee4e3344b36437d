// Capture's view of the interest bucket (docs/dev/cluster-plan.md, item 6): which incarnations
// (edge processes) each published change concerns. Pure: fed KV entries in revision order
// (src/cluster/interest-watch.ts feeds it from a KV watch), asked once per published change, so
// answers are cached per table and route and rebuilt only after a change to that table. Answers
// are snapshots: a set handed out never changes afterwards (a later change builds a new one).
//
// Who a change concerns:
// - area `a` (policy and relation tables), ctl messages, SQL broadcasts: every known incarnation
//   (everyInc()), whether or not it follows any data;
// - area `d`, a route token or `=0`: the table's whole-table followers and that route's followers;
// - area `d`, `=n` (no routable value), `=t` (truncate), `=x` (oversize marker): everyone who
//   follows any part of the table: the row cannot be confined to a route, and a truncate or a
//   lost transaction concerns every route. (A route follower of a table whose route_by was just
//   removed keeps getting its rows that way.)
import { CLUSTER_INTEREST, CLUSTER_TOKENS } from '../constants.js';
import { parseInterestKey, type InterestKey } from './interest-keys.js';
import type { ChangeArea } from './subjects.js';

/** One KV entry as the table needs it (a KvEntry fits). */
export interface InterestEntry {
  key: string;
  operation: 'PUT' | 'DEL' | 'PURGE';
  revision: number;
  /** The value of a PUT (only presence keys' values are read). */
  value?: Uint8Array | string;
}

export interface InterestTableStats {
  /** Known incarnations (everyInc().size). */
  incs: number;
  /** Tables with at least one follower. */
  tables: number;
  /** Route keys and whole-table keys held. */
  routeKeys: number;
  wholeKeys: number;
  /** Entries whose key is not one walcast writes (ignored). */
  badKeys: number;
  /** Entries at or below the applied revision (a replay; ignored). */
  stale: number;
  /** Entries of dropped incarnations (ignored). */
  ofDropped: number;
}

type DataKey = Extract<InterestKey, { kind: 'data' }>;

const EMPTY: ReadonlySet<string> = new Set();
const SPREAD: ReadonlySet<string> = new Set([CLUSTER_TOKENS.noRoute, CLUSTER_TOKENS.truncate, CLUSTER_TOKENS.oversize]);

/** The followers of one table, with the answers built from them. */
class TableInterest {
  readonly whole = new Set<string>();
  readonly routes = new Map<string, Set<string>>();
  /** Keys per incarnation in this table (whole-table and routes). */
  readonly perInc = new Map<string, number>();
  private wholeSnap: ReadonlySet<string> | null = null;
  private anySnap: ReadonlySet<string> | null = null;
  private readonly routeSnaps = new Map<string, ReadonlySet<string>>();

  get empty(): boolean {
    return this.perInc.size === 0;
  }

  add(inc: string, route: string | null): void {
    if (route === null) this.whole.add(inc);
    else {
      let s = this.routes.get(route);
      if (!s) this.routes.set(route, (s = new Set()));
      s.add(inc);
    }
    this.perInc.set(inc, (this.perInc.get(inc) ?? 0) + 1);
    this.invalidate();
  }

  remove(inc: string, route: string | null): void {
    if (route === null) this.whole.delete(inc);
    else {
      const s = this.routes.get(route);
      s?.delete(inc);
      if (s?.size === 0) this.routes.delete(route);
    }
    const n = (this.perInc.get(inc) ?? 1) - 1;
    if (n > 0) this.perInc.set(inc, n);
    else this.perInc.delete(inc);
    this.invalidate();
  }

  private invalidate(): void {
    this.wholeSnap = null;
    this.anySnap = null;
    this.routeSnaps.clear();
  }

  /** Whole-table followers. */
  wholeSet(): ReadonlySet<string> {
    return (this.wholeSnap ??= new Set(this.whole));
  }

  /** Everyone following any part of the table. */
  anySet(): ReadonlySet<string> {
    return (this.anySnap ??= new Set(this.perInc.keys()));
  }

  /** Whole-table followers and those of `route`; cached only for routes someone follows (no growth with routes nobody follows). */
  routeSet(route: string): ReadonlySet<string> {
    const own = this.routes.get(route);
    if (!own) return this.wholeSet();
    let snap = this.routeSnaps.get(route);
    if (!snap) {
      const u = new Set(this.whole);
      for (const inc of own) u.add(inc);
      this.routeSnaps.set(route, (snap = u));
    }
    return snap;
  }
}

interface IncState {
  /** Keys of this incarnation now held (presence and data). */
  keys: Set<string>;
  node: string | null;
  started: string | null;
}

export class InterestTable {
  private readonly held = new Map<string, DataKey | { kind: 'node'; inc: string }>();
  private readonly incs = new Map<string, IncState>();
  private readonly tables = new Map<string, TableInterest>();
  /** Dropped incarnations, oldest first (bounded). */
  private readonly dropped = new Set<string>();
  private everySnap: ReadonlySet<string> | null = null;
  private applied = 0;
  private routeKeys = 0;
  private wholeKeys = 0;
  private badKeys = 0;
  private stale = 0;
  private ofDropped = 0;

  /**
   * `onDrop`: an incarnation was dropped, with the keys it held (capture deletes them: nobody
   * else will, its process being gone).
   */
  constructor(
    private readonly maxDropped: number = CLUSTER_INTEREST.droppedRemembered,
    private readonly onDrop: (inc: string, keys: string[]) => void = () => {},
  ) {}

  /** The highest KV revision applied: every interest put at or below it is in the answers. */
  get appliedRevision(): number {
    return this.applied;
  }

  /**
   * Applies one entry. Entries must come in revision order (a KV watch's); one at or below the
   * applied revision is a replay and ignored, so the applied revision only grows.
   */
  apply(e: InterestEntry): void {
    if (!Number.isSafeInteger(e.revision) || e.revision <= this.applied) {
      this.stale++;
      return;
    }
    this.applied = e.revision;
    const k = parseInterestKey(e.key);
    if (!k) {
      this.badKeys++;
      return;
    }
    if (this.dropped.has(k.inc)) {
      this.ofDropped++;
      return;
    }
    if (e.operation === 'PUT') this.put(e.key, k, e.value);
    else this.remove(e.key);
  }

  /** The incarnations a change of this table and route concerns (tokens as in its subject). */
  incsFor(area: ChangeArea, schemaTok: string, tableTok: string, routeTok: string): ReadonlySet<string> {
    if (area !== 'd') return this.everyInc();
    const t = this.tables.get(`${schemaTok}.${tableTok}`);
    if (!t) return EMPTY;
    return SPREAD.has(routeTok) ? t.anySet() : t.routeSet(routeTok);
  }

  /**
   * An update that moved its row from one route to another: published once on the new route, it
   * concerns the followers of both (the old route's must see the row leave).
   */
  incsForMove(area: ChangeArea, schemaTok: string, tableTok: string, fromRoute: string, toRoute: string): ReadonlySet<string> {
    const to = this.incsFor(area, schemaTok, tableTok, toRoute);
    if (fromRoute === toRoute) return to;
    const from = this.incsFor(area, schemaTok, tableTok, fromRoute);
    if (from === to || from.size === 0) return to;
    if (to.size === 0) return from;
    const u = new Set(to);
    for (const inc of from) u.add(inc);
    return u;
  }

  /** Every known incarnation (presence or any interest): what auth, ctl and SQL broadcast messages concern. */
  everyInc(): ReadonlySet<string> {
    return (this.everySnap ??= new Set(this.incs.keys()));
  }

  /** The node an incarnation said it runs as (its presence key), if known. */
  nodeOf(inc: string): string | null {
    return this.incs.get(inc)?.node ?? null;
  }

  /** The known incarnations of a node (more than one when an old one died without cleaning up). */
  incsOfNode(node: string): string[] {
    const out: string[] = [];
    for (const [inc, s] of this.incs) if (s.node === node) out.push(inc);
    return out;
  }

  /** The keys an incarnation holds (for the capture to delete after dropping it). */
  keysOf(inc: string): string[] {
    return [...(this.incs.get(inc)?.keys ?? [])];
  }

  /**
   * The incarnation is dead (its node stopped answering, or came back as another incarnation):
   * its keys leave the answers, and its later writes (a late put) are ignored. A node cut off
   * long enough to be dropped must come back as a new incarnation.
   */
  dropInc(inc: string): void {
    const keys = this.keysOf(inc);
    for (const key of keys) this.remove(key);
    this.incs.delete(inc);
    this.everySnap = null;
    this.dropped.delete(inc);
    this.dropped.add(inc);
    if (this.dropped.size > this.maxDropped) this.dropped.delete(this.dropped.values().next().value as string);
    if (keys.length > 0) this.onDrop(inc, keys);
  }

  isDropped(inc: string): boolean {
    return this.dropped.has(inc);
  }

  stats(): InterestTableStats {
    return { incs: this.incs.size, tables: this.tables.size, routeKeys: this.routeKeys, wholeKeys: this.wholeKeys, badKeys: this.badKeys, stale: this.stale, ofDropped: this.ofDropped };
  }

  private incState(inc: string): IncState {
    let s = this.incs.get(inc);
    if (!s) {
      this.incs.set(inc, (s = { keys: new Set(), node: null, started: null }));
      this.everySnap = null;
    }
    return s;
  }

  private put(key: string, k: InterestKey, value: Uint8Array | string | undefined): void {
    const s = this.incState(k.inc);
    if (k.kind === 'node') {
      const v = presenceOf(value);
      s.node = v?.node ?? null;
      s.started = v?.started ?? null;
      // One live process per node id (node_id_in_use): an earlier incarnation of the same node
      // died without cleaning up (SIGKILL, crash). Its keys would be followed for ever.
      if (s.node !== null) for (const other of this.incsOfNode(s.node)) if (other !== k.inc) this.dropInc(other);
    }
    if (this.held.has(key)) return; // rewritten: same interest
    this.held.set(key, k);
    s.keys.add(key);
    if (k.kind !== 'data') return;
    const tk = `${k.schema}.${k.table}`;
    let t = this.tables.get(tk);
    if (!t) this.tables.set(tk, (t = new TableInterest()));
    t.add(k.inc, k.route);
    if (k.route === null) this.wholeKeys++;
    else this.routeKeys++;
  }

  private remove(key: string): void {
    const k = this.held.get(key);
    if (!k) return;
    this.held.delete(key);
    const s = this.incs.get(k.inc);
    s?.keys.delete(key);
    if (s && s.keys.size === 0) {
      // Neither presence nor interest left: the incarnation is gone (closed cleanly).
      this.incs.delete(k.inc);
      this.everySnap = null;
    }
    if (k.kind !== 'data') return;
    const tk = `${k.schema}.${k.table}`;
    const t = this.tables.get(tk);
    if (!t) return;
    t.remove(k.inc, k.route);
    if (t.empty) this.tables.delete(tk);
    if (k.route === null) this.wholeKeys--;
    else this.routeKeys--;
  }
}

function presenceOf(value: Uint8Array | string | undefined): { node: string | null; started: string | null } | null {
  if (value === undefined) return null;
  try {
    const v = JSON.parse(typeof value === 'string' ? value : new TextDecoder().decode(value)) as Record<string, unknown>;
    return { node: typeof v.node === 'string' ? v.node : null, started: typeof v.started === 'string' ? v.started : null };
  } catch {
    return null;
  }
}
