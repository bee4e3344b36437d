// A Casbin matcher specialised for one policy rule and one (kind, name, action): the rule's
// values and `eval(p.cond)` substituted, everything known folded away. What is left is a small
// predicate over the subject and the row, compiled to closures, plus its reach: which user ids
// the row can reach (relations, owners, roles), found by reading links backwards, so a change
// is checked for the users it can reach rather than for every subscriber.
import { Util } from 'casbin';
import type { Position } from '../protocol/position.js';
import type { Row } from '../capture/pgoutput.types.js';
import { parseExpr, type Expr } from './expr.js';
import type { Identity } from './jwt.js';
import type { LinkStore } from './store.js';

/** What a decision is asked about. */
export interface Env {
  sub: Identity;
  row: Row | undefined;
  /** null: the state now; else the policies and links in force at that position. */
  at: Position | null;
}

export type Test = (e: Env) => unknown;
/** Adds the user ids a row can reach to `into`. */
export type ReachFn = (row: Row, into: Set<string>) => void;
/** 'all': any subject could pass (check every candidate); 'none': nobody. */
export type Reach = ReachFn | 'all' | 'none';

/** What is fixed while specialising: the request's object and action, maybe the subject. */
export interface Known {
  kind: string;
  name: string;
  act: string;
  sub?: Identity;
}

export interface Links {
  get(ptype: string): LinkStore | undefined;
}

const BUILTINS: Record<string, (...a: unknown[]) => unknown> = {
  keyMatch: Util.keyMatchFunc,
  keyMatch2: Util.keyMatch2Func,
  keyMatch3: Util.keyMatch3Func,
  keyMatch4: Util.keyMatch4Func,
  keyMatch5: Util.keyMatch5Func,
  regexMatch: Util.regexMatchFunc,
  ipMatch: Util.ipMatchFunc,
  globMatch: (a, b) => Util.globMatch(String(a), String(b)),
};

const lit = (v: unknown): Expr => ({ k: 'lit', v });

/** Conditions parsed once: the same few texts recur across many rules and tables. */
const conds = new Map<string, Expr>();
function parsedCond(text: string): Expr {
  let x = conds.get(text);
  if (!x) {
    x = parseExpr(text);
    if (conds.size > 10_000) conds.clear();
    conds.set(text, x);
  }
  return x;
}

/**
 * Substitutes a rule's values for p.* (and parses `eval(...)` of them), then folds with what is
 * known. Throws AuthConfigError when a rule's condition does not parse.
 */
export function specialise(x: Expr, p: Record<string, string>, known: Known, gNames: ReadonlySet<string>, depth = 0): Expr {
  const again = (e: Expr) => specialise(e, p, known, gNames, depth);
  switch (x.k) {
    case 'lit':
      return x;
    case 'ref': {
      if (x.root === 'p') return x.path.length === 1 && x.path[0] in p ? lit(p[x.path[0]]) : lit(undefined);
      const [head, ...rest] = x.path;
      if (head === 'act') return rest.length === 0 ? lit(known.act) : lit(undefined);
      if (head === 'obj' && rest.length === 1 && (rest[0] === 'kind' || rest[0] === 'name')) return lit(known[rest[0]]);
      if (head === 'sub' && known.sub) return lit(tryGet(known.sub, rest));
      return x;
    }
    case 'not': {
      const e = again(x.e);
      return e.k === 'lit' ? lit(!e.v) : { k: 'not', e };
    }
    case 'neg': {
      const e = again(x.e);
      return e.k === 'lit' ? lit(-(e.v as number)) : { k: 'neg', e };
    }
    case 'call': {
      const args = x.args.map(again);
      if (x.fn === 'eval') {
        // eval(p.cond): the condition text of this rule, parsed and specialised in its place.
        if (args.length !== 1 || args[0].k !== 'lit' || typeof args[0].v !== 'string' || depth > 4) return lit(false);
        return specialise(parsedCond(args[0].v), p, known, gNames, depth + 1);
      }
      if (gNames.has(x.fn)) return { k: 'call', fn: x.fn, args };
      const f = BUILTINS[x.fn];
      if (f && args.every((a) => a.k === 'lit')) return lit(f(...args.map((a) => (a as { v: unknown }).v)));
      return { k: 'call', fn: x.fn, args };
    }
    case 'bin': {
      const l = again(x.l);
      // A left side that decides alone spares the right one: a rule for another kind, action or
      // name is not specialised further (its condition neither parsed nor folded), which is most
      // of the rules for a name seen the first time.
      if (l.k === 'lit' && ((x.op === '&&' && !l.v) || (x.op === '||' && l.v))) return lit(x.op === '||');
      const r = again(x.r);
      // Decisions are taken on truthiness, so `x && true` is `x` and `x || false` is `x`.
      if (x.op === '&&') {
        if (l.k === 'lit') return l.v ? r : lit(false);
        if (r.k === 'lit') return r.v ? l : lit(false);
      } else if (x.op === '||') {
        if (l.k === 'lit') return l.v ? lit(true) : r;
        if (r.k === 'lit') return r.v ? lit(true) : l;
      } else if (l.k === 'lit' && r.k === 'lit') {
        return lit(binop(x.op, l.v, r.v));
      }
      return { k: 'bin', op: x.op, l, r };
    }
  }
}

function tryGet(v: unknown, path: string[]): unknown {
  for (const k of path) {
    if (v === null || v === undefined) return undefined;
    v = (v as Record<string, unknown>)[k];
  }
  return v;
}

/** Operators as Casbin's evaluator applies them: JavaScript's, loose == included. */
function binop(op: string, a: unknown, b: unknown): unknown {
  const x = a as number;
  const y = b as number;
  switch (op) {
    case '==':
      return a == b;
    case '!=':
      return a != b;
    case '===':
      return a === b;
    case '!==':
      return a !== b;
    case '<':
      return x < y;
    case '<=':
      return x <= y;
    case '>':
      return x > y;
    case '>=':
      return x >= y;
    case '+':
      return (x as unknown as string) + (y as unknown as string);
    case '-':
      return x - y;
  }
  return undefined;
}

/** Member access as Casbin's evaluator does it: reading a member of nothing is an error. */
function getter(head: 'sub' | 'row', path: string[]): Test {
  return (e) => {
    let v: unknown = head === 'sub' ? e.sub : e.row;
    for (const k of path) {
      if (v === null || v === undefined) throw new TypeError(`cannot read ${k}`);
      v = (v as Record<string, unknown>)[k];
    }
    return v;
  };
}

/** Compiles a specialised expression to closures. */
export function compile(x: Expr, links: Links): Test {
  switch (x.k) {
    case 'lit': {
      const v = x.v;
      return () => v;
    }
    case 'ref': {
      const [head, ...rest] = x.path;
      if (head === 'sub') return getter('sub', rest);
      if (head === 'obj' && rest[0] === 'row') return getter('row', rest.slice(1));
      return () => undefined;
    }
    case 'not': {
      const f = compile(x.e, links);
      return (e) => !f(e);
    }
    case 'neg': {
      const f = compile(x.e, links);
      return (e) => -(f(e) as number);
    }
    case 'call': {
      const args = x.args.map((a) => compile(a, links));
      const store = links.get(x.fn);
      if (store) {
        const [a, b] = args;
        return (e) => args.length === 2 && store.has(String(a(e) ?? ''), String(b(e) ?? ''), e.at);
      }
      const f = BUILTINS[x.fn];
      return (e) => f(...args.map((a) => a(e)));
    }
    case 'bin': {
      const l = compile(x.l, links);
      const r = compile(x.r, links);
      const op = x.op;
      if (op === '&&') return (e) => l(e) && r(e);
      if (op === '||') return (e) => l(e) || r(e);
      return (e) => binop(op, l(e), r(e));
    }
  }
}

/** Function names a model may use: the built-ins and its role definitions. */
export function checkFunctions(x: Expr, gNames: ReadonlySet<string>): string | null {
  switch (x.k) {
    case 'call':
      if (x.fn !== 'eval' && !gNames.has(x.fn) && !BUILTINS[x.fn]) return x.fn;
      for (const a of x.args) {
        const bad = checkFunctions(a, gNames);
        if (bad) return bad;
      }
      return null;
    case 'bin':
      return checkFunctions(x.l, gNames) ?? checkFunctions(x.r, gNames);
    case 'not':
    case 'neg':
      return checkFunctions(x.e, gNames);
    default:
      return null;
  }
}

const isSubId = (x: Expr) => x.k === 'ref' && x.root === 'r' && x.path.length === 2 && x.path[0] === 'sub' && x.path[1] === 'id';

/** Whether an expression reads the subject (r.sub): if not, its value is the same for anyone. */
export function usesSubject(x: Expr): boolean {
  switch (x.k) {
    case 'ref':
      return x.root === 'r' && x.path[0] === 'sub';
    case 'call':
      return x.args.some(usesSubject);
    case 'bin':
      return usesSubject(x.l) || usesSubject(x.r);
    case 'not':
    case 'neg':
      return usesSubject(x.e);
    default:
      return false;
  }
}

/**
 * Which user ids a specialised rule can let through for a row: bounded by a relation or role
 * link from r.sub.id, or by r.sub.id equal to a row value; 'all' when nothing bounds it. An
 * over-approximation: every user it yields is still checked with the whole rule.
 */
export function reachOf(x: Expr, links: Links): Reach {
  if (x.k === 'lit') return x.v ? 'all' : 'none';
  if (x.k === 'bin' && (x.op === '&&' || x.op === '||')) {
    const a = reachOf(x.l, links);
    const b = reachOf(x.r, links);
    if (x.op === '&&') {
      if (a === 'none' || b === 'none') return 'none';
      return a === 'all' ? b : a;
    }
    if (a === 'all' || b === 'all') return 'all';
    if (a === 'none') return b;
    if (b === 'none') return a;
    return (row, into) => {
      a(row, into);
      b(row, into);
    };
  }
  if (x.k === 'call' && x.args.length === 2 && isSubId(x.args[0]) && !usesSubject(x.args[1])) {
    const store = links.get(x.fn);
    if (!store) return 'all';
    const obj = compile(x.args[1], links);
    return (row, into) => {
      const v = safe(obj, row);
      if (v !== undefined) store.reaching(String(v ?? ''), into);
    };
  }
  if (x.k === 'bin' && (x.op === '==' || x.op === '===')) {
    const [id, other] = isSubId(x.l) ? [x.l, x.r] : isSubId(x.r) ? [x.r, x.l] : [null, null];
    if (id && other && !usesSubject(other)) {
      const f = compile(other, links);
      return (row, into) => {
        const v = safe(f, row);
        if (v !== undefined && v !== null) into.add(String(v));
      };
    }
  }
  return 'all';
}

const NO_SUB = {} as Identity;

/** A row-only expression's value, undefined when it cannot be computed. */
function safe(f: Test, row: Row): unknown {
  try {
    return f({ sub: NO_SUB, row, at: null });
  } catch {
    return undefined;
  }
}
