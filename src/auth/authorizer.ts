// Row-level authorization with no query per change (docs/AUTHORIZATION.md). Policies (walcast.casbin_rule)
// and declared relation tables are loaded once, then kept in step with the change stream in
// commit order; each decision runs the model's matcher specialised per table (see compile.ts).
//
// Loading races the stream: the load runs in a snapshot, and a streamed transaction the
// snapshot already contains is recorded for history but not counted again (xid visibility).
//
//   loading ──(snapshot read, queued changes replayed)──► ready ──(slot recreated)──► loading
import type pg from 'pg';
import { compareWalPositions, type Position } from '../protocol/position.js';
import type { Row } from '../capture/pgoutput.types.js';
import type { CapturedChange } from '../capture/types.js';
import { SERVER_DEFAULTS } from '../constants.js';
import type { Logger } from '../log.js';
import { quoteIdent } from '../pg/ident.js';
import { Lru } from '../util/lru.js';
import type { Identity } from './jwt.js';
import { compile, reachOf, specialise, usesSubject, type Env, type ReachFn, type Test } from './compile.js';
import type { Expr } from './expr.js';
import type { PolicyModel } from './model.js';
import { keyText, linkOf, type RelationDecl } from './relations.js';
import { Counted, GroupNames, LinkStore, type SourceKind } from './store.js';
import type { Authorizer } from './types.js';
import { parseSnapshot, type Snapshot } from './snapshot.js';

export const POLICY_TABLE = 'walcast.casbin_rule';
const V = ['v0', 'v1', 'v2', 'v3', 'v4', 'v5'] as const;

interface RuleEntry {
  ptype: string;
  values: string[];
  c: Counted;
}

interface TableRules {
  /** The rules of the table, specialised (subject unknown). */
  exprs: Expr[];
  /** No rule reads r.sub: a row's decision is the same for every subscriber. */
  anySubject: boolean;
  tests: Test[];
  /** null: some rule lets any subject through; reach cannot narrow the candidates. */
  reach: ReachFn[] | null;
}

interface Queued {
  c: CapturedChange;
  lsn: bigint;
  xid: number;
}

export class PolicyAuthorizer implements Authorizer {
  private readonly links = new Map<string, LinkStore>();
  private readonly rules = new Map<string, RuleEntry>();
  /** Positions at which the set of p rules changed, oldest first (historical rule sets). */
  private pOps: Position[] = [];
  /**
   * Rules specialised per (kind, name, act), now and at past rule sets ("version\0key"). Names
   * come from clients (channel names), so both are bounded; a name no rule can match shares
   * NO_RULES rather than holding rules of its own.
   */
  private readonly current: Lru<string, TableRules>;
  private readonly past: Lru<string, TableRules>;
  private readonly relations = new Map<string, RelationDecl[]>();
  /** Links each source holds now (for truncate): source → "ptype\0a\0b" → count. */
  private readonly held = new Map<string, Map<string, number>>();
  private snapshot: Snapshot | null = null;
  private queue: Queued[] | null = [];
  /** What whenReady() hands out while a load is under way, settled by install(). */
  private loaded: { promise: Promise<void>; resolve: () => void } | null = null;
  private readonly badRules = new Set<string>();
  /** Bumped by every policy or relation change: decisions cached elsewhere are stale. */
  epoch = 0;
  /** The last shared decision (see mayRead). */
  private last: { row: Row | null; rules: TableRules | null; ok: boolean } = { row: null, rules: null, ok: false };

  constructor(
    private readonly model: PolicyModel,
    relations: RelationDecl[],
    private readonly log: Logger | null = null,
    cacheEntries: number = SERVER_DEFAULTS.decisionCacheEntries,
  ) {
    this.current = new Lru(cacheEntries);
    this.past = new Lru(cacheEntries);
    const groups = new GroupNames();
    for (const g of model.gNames) this.links.set(g, new LinkStore(groups));
    for (const r of relations) {
      const list = this.relations.get(r.table) ?? [];
      list.push(r);
      this.relations.set(r.table, list);
    }
  }

  get ready(): boolean {
    return this.queue === null;
  }

  /** Resolves once the policies are loaded (at once when they are). */
  whenReady(): Promise<void> {
    if (this.ready) return Promise.resolve();
    if (!this.loaded) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.loaded = { promise, resolve };
    }
    return this.loaded.promise;
  }

  get ruleCount(): number {
    let n = 0;
    for (const r of this.rules.values()) if (r.c.now > 0) n++;
    return n;
  }

  get linkTotal(): number {
    let n = 0;
    for (const s of this.links.values()) n += s.size;
    return n;
  }

  /** Specialised rule sets cached (at most twice the cache bound: now, and past rule sets). */
  get cachedRuleSets(): number {
    return this.current.size + this.past.size;
  }

  /** The bound of each of the two caches. */
  get cacheBound(): number {
    return this.current.max;
  }

  linkCount(ptype: string): number {
    return this.links.get(ptype)?.size ?? 0;
  }

  /** Reads the policy table and every declared relation table in one snapshot. */
  async load(db: pg.Pool | pg.ClientBase): Promise<void> {
    this.queue ??= [];
    const client = 'release' in db || !('connect' in db && 'totalCount' in db) ? (db as pg.ClientBase) : await (db as pg.Pool).connect();
    const pooled = client !== db;
    try {
      await client.query('begin isolation level repeatable read read only');
      const snap = await client.query<{ s: string; lsn: string }>('select pg_current_snapshot()::text as s, pg_current_wal_insert_lsn()::text as lsn');
      const { rows: ruleRows } = await client.query<Row>(`select ptype, v0, v1, v2, v3, v4, v5 from ${POLICY_TABLE} order by id`);
      const relRows: [RelationDecl, Row[]][] = [];
      for (const decls of this.relations.values()) {
        for (const d of decls) {
          const cols = d.columns.map((c, i) => `to_jsonb(${quoteIdent(c)}) #>> '{}' as c${i}`).join(', ');
          const { rows } = await client.query<Record<string, string | null>>(`select ${cols} from ${d.table.split('.').map(quoteIdent).join('.')}`);
          relRows.push([d, rows.map((r) => Object.fromEntries(d.columns.map((c, i) => [c, r[`c${i}`]])))]);
        }
      }
      await client.query('commit');
      this.install(parseSnapshot(snap.rows[0].s, snap.rows[0].lsn), ruleRows, relRows);
    } catch (err) {
      await client.query('rollback').catch(() => {});
      throw err;
    } finally {
      if (pooled) (client as pg.PoolClient).release();
    }
  }

  /** The loaded state, then the changes that arrived meanwhile (public for tests). */
  install(snapshot: Snapshot | null, ruleRows: Row[], relRows: [RelationDecl, Row[]][]): void {
    this.reset();
    this.epoch++;
    this.snapshot = snapshot;
    for (const row of ruleRows) this.ruleRow(row, 1, null, true);
    for (const [d, rows] of relRows) for (const row of rows) this.relationRow(d, row, 1, null, true);
    const queued = this.queue ?? [];
    this.queue = null;
    for (const q of queued) this.apply(q.c, q.lsn, q.xid);
    this.loaded?.resolve();
    this.loaded = null;
    this.log?.info({ rules: this.ruleCount, links: Object.fromEntries([...this.links].map(([k, s]) => [k, s.size])) }, 'policies loaded');
  }

  /** Starts over (slot recreated): denies everything until load() completes. */
  unload(): void {
    this.queue = [];
    this.epoch++;
  }

  // ── the change stream ───────────────────────────────────────────────────────────────────

  apply(c: CapturedChange, lsn: bigint, xid: number): boolean {
    const table = c.relation.qualified;
    const decls = this.relations.get(table);
    if (table !== POLICY_TABLE && !decls) return false;
    if (this.queue) {
      this.queue.push({ c, lsn, xid });
      return true;
    }
    const pos: Position = { lsn, index: c.index };
    this.epoch++;
    const counted = !this.snapshot || !this.snapshot.contains(xid, pos.lsn);
    if (this.snapshot && pos.lsn >= this.snapshot.after) this.snapshot = null; // nothing later can be in it
    const each = (row: Row, d: number) => {
      if (table === POLICY_TABLE) this.ruleRow(row, d, pos, counted);
      for (const decl of decls ?? []) this.relationRow(decl, row, d, pos, counted);
    };
    switch (c.tag) {
      case 'insert':
        each(c.new, 1);
        break;
      case 'update':
        if (c.old) each(c.old, -1);
        each(c.new, 1);
        break;
      case 'delete':
        each(c.old, -1);
        break;
      case 'truncate':
        if (table === POLICY_TABLE) this.truncate(POLICY_TABLE, pos, counted);
        for (const decl of decls ?? []) this.truncate(decl.spec, pos, counted);
        break;
    }
    return true;
  }

  forget(before: Position): void {
    for (const s of this.links.values()) s.forget(before);
    for (const [k, r] of this.rules) if (r.c.forget(before)) this.rules.delete(k);
    const keep = this.pOps.findIndex((p) => compareWalPositions(p, before) > 0);
    if (keep !== 0) {
      this.pOps = keep < 0 ? [] : this.pOps.slice(keep);
      this.past.clear();
    }
  }

  // ── decisions ───────────────────────────────────────────────────────────────────────────

  mayEverRead(identity: Identity, table: string, since: Position | null = null): boolean {
    if (!this.ready) return false;
    const known = { kind: 'table', name: table, act: 'read', sub: identity };
    const allows = (x: Expr | null) => x !== null && !(x.k === 'lit' && !x.v);
    if (since === null || this.pOps.length === 0 || compareWalPositions(this.pOps[this.pOps.length - 1], since) <= 0) {
      // The rules now are the rules since then: their residuals for the table, with the subject.
      return this.tableRules(table, null).exprs.some((x) => allows(specialise(x, {}, known, this.model.gNameSet)));
    }
    for (const r of this.rules.values()) if (r.c.existedSince(since) && allows(this.specialised(r, known))) return true;
    return false;
  }

  mayAct(identity: Identity, kind: string, name: string, act: string): boolean {
    if (!this.ready) return false;
    return anyAllows(this.rulesFor(kind, name, act, null).tests, { sub: identity, row: undefined, at: null });
  }

  mayRead(identity: Identity, table: string, row: Row, at: Position | null): boolean {
    if (!this.ready) return false;
    const tr = this.tableRules(table, at);
    // Rules that never look at the subject decide once per row, for every subscriber.
    const shared = tr.anySubject && at === null;
    if (shared && this.last.row === row && this.last.rules === tr) return this.last.ok;
    const ok = anyAllows(tr.tests, { sub: identity, row, at });
    if (shared) this.last = { row, rules: tr, ok };
    return ok;
  }

  reach(table: string, row: Row): ReadonlySet<string> | null {
    if (!this.ready) return EMPTY;
    const fns = this.tableRules(table, null).reach;
    if (!fns) return null;
    const into = new Set<string>();
    for (const f of fns) f(row, into);
    return into;
  }

  // ── internals ───────────────────────────────────────────────────────────────────────────

  private reset(): void {
    for (const s of this.links.values()) s.clear();
    this.rules.clear();
    this.held.clear();
    this.pOps = [];
    this.current.clear();
    this.past.clear();
  }

  private ruleRow(row: Row, d: number, pos: Position | null, counted: boolean): void {
    const ptype = typeof row.ptype === 'string' ? row.ptype : '';
    const values = V.map((k) => keyText(row[k]) ?? '');
    while (values.length > 0 && values[values.length - 1] === '') values.pop();
    if (this.links.has(ptype)) {
      if (values.length !== 2) return; // role domains are not supported by the model walcast ships
      this.link(POLICY_TABLE, ptype, '?', values[0], values[1], d, pos, counted);
      return;
    }
    if (ptype !== 'p') return;
    const k = `${ptype}\0${values.join('\0')}`;
    let r = this.rules.get(k);
    if (!r) this.rules.set(k, (r = { ptype, values, c: new Counted() }));
    if (pos) {
      r.c.change(d, pos, counted);
      this.pOps.push(pos);
      this.past.clear();
    } else r.c.now += d;
    this.current.clear();
  }

  private relationRow(decl: RelationDecl, row: Row, d: number, pos: Position | null, counted: boolean): void {
    const l = linkOf(decl, row);
    if (l) this.link(decl.spec, decl.ptype, decl.subjectKind, l[0], l[1], d, pos, counted);
  }

  private link(source: string, ptype: string, kind: SourceKind, a: string, b: string, d: number, pos: Position | null, counted: boolean): void {
    const store = this.links.get(ptype);
    if (!store) return;
    store.change(kind, a, b, d, pos, counted);
    if (!counted) return;
    let held = this.held.get(source);
    if (!held) this.held.set(source, (held = new Map()));
    const k = `${ptype}\0${kind}${a}\0${b}`;
    const n = (held.get(k) ?? 0) + d;
    if (n > 0) held.set(k, n);
    else held.delete(k);
  }

  private truncate(source: string, pos: Position, counted: boolean): void {
    if (source === POLICY_TABLE) {
      for (const r of this.rules.values()) {
        const n = r.c.at(null);
        if (n > 0) r.c.change(-n, pos, counted);
      }
      this.pOps.push(pos);
      this.current.clear();
      this.past.clear();
    }
    for (const [k, n] of [...(this.held.get(source) ?? [])]) {
      const [ptype, src, b] = k.split('\0');
      this.link(source, ptype, src[0] as SourceKind, src.slice(1), b, -n, pos, counted);
    }
  }

  /** The p rules in force at `at` (null: now). */
  private *activeRules(at: Position | null): Iterable<RuleEntry> {
    for (const r of this.rules.values()) if (r.c.at(at) > 0) yield r;
  }

  private specialised(r: RuleEntry, known: { kind: string; name: string; act: string; sub?: Identity }) {
    const p: Record<string, string> = {};
    this.model.pTokens.forEach((t, i) => (p[t] = r.values[i] ?? ''));
    try {
      return specialise(this.model.matcher, p, known, this.model.gNameSet);
    } catch (err) {
      const k = r.values.join(', ');
      if (!this.badRules.has(k)) {
        this.badRules.add(k);
        this.log?.warn({ rule: r.values, err: (err as Error).message }, 'a policy rule cannot be used; it allows nothing');
      }
      return null;
    }
  }

  private tableRules(table: string, at: Position | null): TableRules {
    return this.rulesFor('table', table, 'read', at);
  }

  private rulesFor(kind: string, name: string, act: string, at: Position | null): TableRules {
    let cache = this.current;
    let when: Position | null = null;
    let key = kind === 'table' && act === 'read' ? name : `${kind}\0${name}\0${act}`;
    if (at !== null && this.pOps.length > 0 && compareWalPositions(this.pOps[this.pOps.length - 1], at) > 0) {
      // Some rule changed after `at`: the rule set of that time.
      let v = 0;
      while (compareWalPositions(this.pOps[v], at) <= 0) v++;
      cache = this.past;
      key = `${v}\0${key}`;
      when = at;
    }
    let tr = cache.get(key);
    if (!tr) {
      tr = { exprs: [], anySubject: true, tests: [], reach: [] };
      const known = { kind, name, act };
      for (const r of this.activeRules(when)) {
        const x = this.specialised(r, known);
        if (!x || (x.k === 'lit' && !x.v)) continue;
        tr.exprs.push(x);
        if (usesSubject(x)) tr.anySubject = false;
        tr.tests.push(compile(x, this.links));
        const reach = reachOf(x, this.links);
        if (reach === 'all') tr.reach = null;
        else if (reach !== 'none') tr.reach?.push(reach);
      }
      if (tr.exprs.length === 0) tr = NO_RULES;
      cache.set(key, tr);
    }
    return tr;
  }
}

/** What a name no rule can match gets: one shared entry (a refused name costs its key only). */
const NO_RULES: TableRules = Object.freeze({ exprs: [], anySubject: true, tests: [], reach: [] }) as unknown as TableRules;

const EMPTY: ReadonlySet<string> = new Set();

/** Whether some rule allows; a condition reading a member of nothing does not (as in Casbin). */
function anyAllows(tests: Test[], env: Env): boolean {
  for (const test of tests) {
    try {
      if (test(env)) return true;
    } catch {
      // that rule does not allow
    }
  }
  return false;
}
