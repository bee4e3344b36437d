// Binds a parsed row filter to a table's column types and builds its predicate. Literals are
// checked and converted once here; the per-row closures do no parsing and no regex work beyond
// reading a timestamp row value's ISO text by char codes (and the rare int8 beyond 2^53 or long
// numeric, which arrive as text and compare exactly). SQL semantics on the column's type: NULL
// fails every operator but is.null; timestamps compare by instant to the microsecond; text by
// UTF-16 code units: C-collation order (UTF-8 byte order) except between astral characters and
// U+E000-U+FFFF, never the database's collation. json/jsonb/arrays: eq, neq, in only (equal
// JSON values, key order ignored). Pass domain columns with their base type's OID.
import { BadFilterError } from '../errors.js';
import { TypeRegistry } from '../capture/types-registry.js';
import { formatTerm, type Filter, type FilterOp, type FilterTerm } from './filter-parse.js';
import { INSTANT, canonicalJson, canonicalUuid, compareDecimal, floatCmp, floatSpecial, parseDecimal, parseInstant, type Decimal } from './filter-values.js';

export interface ColumnInfo {
  name: string;
  typeOid: number;
}

export type RowPredicate = (row: Record<string, unknown>) => boolean;

type Kind = 'int' | 'float' | 'numeric' | 'bool' | 'time' | 'text' | 'json';

const INT_RANGES: ReadonlyMap<number, readonly [string, bigint, bigint]> = new Map([
  [21, ['int2', -32768n, 32767n]],
  [23, ['int4', -2147483648n, 2147483647n]],
  [20, ['int8', -(2n ** 63n), 2n ** 63n - 1n]],
  [26, ['oid', 0n, 4294967295n]],
] as const);
// Builtin array types (see src/capture/types-registry.ts), json and jsonb.
const JSON_OIDS: ReadonlySet<number> = new Set([
  114, 3802, 199, 3807, 143, 651, 791, 1000, 1001, 1002, 1003, 1005, 1007, 1009, 1014, 1015, 1016, 1017, 1020, 1021, 1022, 1028, 1040,
  1041, 1115, 1182, 1183, 1185, 1187, 1231, 1270, 1561, 1563, 2951, 4073,
]);
const TYPE_NAMES: ReadonlyMap<number, string> = new Map([
  [16, 'bool'], [700, 'float4'], [701, 'float8'], [1700, 'numeric'], [1184, 'timestamptz'], [1114, 'timestamp'], [1082, 'date'],
  [114, 'json'], [3802, 'jsonb'], [25, 'text'], [1043, 'varchar'], [1042, 'bpchar'], [2950, 'uuid'],
]);
const arrays = new TypeRegistry();

function kindOf(oid: number): Kind {
  if (INT_RANGES.has(oid)) return 'int';
  if (oid === 700 || oid === 701) return 'float';
  if (oid === 1700) return 'numeric';
  if (oid === 16) return 'bool';
  if (oid === 1184 || oid === 1114 || oid === 1082) return 'time';
  return JSON_OIDS.has(oid) ? 'json' : 'text';
}

function typeName(oid: number): string {
  return INT_RANGES.get(oid)?.[0] ?? TYPE_NAMES.get(oid) ?? (JSON_OIDS.has(oid) ? 'array' : `type ${oid}`);
}

/** Whether an `eq` term on a column of this type can be served by a hash index keyed with
 * eqTermKeys / rowValueKey. False for json, jsonb and arrays (their row values are objects, for
 * which rowValueKey gives no key) and for timestamps (keys exist only for years 1-9999). */
export function eqIndexable(typeOid: number): boolean {
  const kind = kindOf(typeOid);
  return kind !== 'json' && kind !== 'time';
}

/** One converted literal. `cmp(v)` orders a non-null row value against it: <0, 0, >0, or NaN
 * when the two cannot be compared. When `fastType` is set, a row value of that JS type compares
 * exactly with `fast` by JS operators (a shortcut around cmp). */
interface Lit {
  cmp: (v: unknown) => number;
  fastType?: 'number' | 'string' | 'boolean';
  fast?: number | string | boolean;
}

/** Shared by every unfiltered subscription: one function, not one closure each. */
const MATCH_ALL: RowPredicate = () => true;

export function compileFilter(filter: Filter, columns: readonly ColumnInfo[]): RowPredicate {
  const byName = new Map<string, ColumnInfo>();
  for (const c of columns) byName.set(c.name, c);
  const preds = filter.terms.map((t) => compileTerm(t, byName));
  if (preds.length === 0) return MATCH_ALL;
  if (preds.length === 1) return preds[0];
  if (preds.length === 2) {
    const [a, b] = preds;
    return (row) => a(row) && b(row);
  }
  return (row) => {
    for (let i = 0; i < preds.length; i++) if (!preds[i](row)) return false;
    return true;
  };
}

function compileTerm(term: FilterTerm, byName: ReadonlyMap<string, ColumnInfo>): RowPredicate {
  const info = byName.get(term.column);
  const where = `in ${JSON.stringify(formatTerm(term))}`;
  if (!info) {
    const lower = term.column.toLowerCase();
    const near = [...byName.keys()].find((n) => n.toLowerCase() === lower);
    throw new BadFilterError(`unknown column ${JSON.stringify(term.column)} ${where}`, near ? `did you mean ${JSON.stringify(near)}? Column names are case-sensitive` : undefined);
  }
  const col = info.name;
  const kind = kindOf(info.typeOid);
  switch (term.op) {
    case 'is_null':
      return (row) => row[col] == null;
    case 'is_not_null':
      return (row) => row[col] != null;
    case 'is_true':
    case 'is_false': {
      if (kind !== 'bool') throw new BadFilterError(`is.true / is.false need a bool column; ${JSON.stringify(col)} is ${typeName(info.typeOid)} ${where}`);
      const want = term.op === 'is_true';
      return (row) => row[col] === want;
    }
    default:
  }
  if (kind === 'json' && term.op !== 'eq' && term.op !== 'neq' && term.op !== 'in') {
    throw new BadFilterError(`operator ${JSON.stringify(term.op)} is not supported on column ${JSON.stringify(col)} of type ${typeName(info.typeOid)} (only eq, neq, in and is) ${where}`);
  }
  const lits = term.values.map((v) => {
    const lit = literal(kind, info.typeOid, v);
    if (typeof lit === 'string') throw new BadFilterError(`value ${JSON.stringify(v)} ${lit} for column ${JSON.stringify(col)} ${where}`);
    return lit;
  });
  return term.op === 'in' ? inPredicate(col, lits) : comparePredicate(col, term.op, lits[0]);
}

/** A converted literal, or a string saying why it cannot be one ("is not a valid int4"). */
function literal(kind: Kind, oid: number, v: string): Lit | string {
  switch (kind) {
    case 'int': {
      const [name, min, max] = INT_RANGES.get(oid) as readonly [string, bigint, bigint];
      if (!/^[+-]?[0-9]+$/.test(v)) return `is not a valid ${name}`;
      const big = BigInt(v);
      if (big < min || big > max) return `is out of range for ${name}`;
      const d = Number(big);
      return Number.isSafeInteger(d) ? { cmp: intCmp(big), fastType: 'number', fast: d } : { cmp: intCmp(big) };
    }
    case 'float': {
      const special = floatSpecial(v);
      const d = special !== null ? Number(special) : parseDecimal(v) ? Number(v) : NaN;
      if (special === null && !Number.isFinite(d)) return parseDecimal(v) ? `is out of range for ${typeName(oid)}` : `is not a valid ${typeName(oid)}`;
      const fast = Number.isNaN(d) ? {} : { fastType: 'number' as const, fast: d };
      return { cmp: (x) => floatCmp(x, d), ...fast };
    }
    case 'numeric':
      return numericLiteral(v);
    case 'bool': {
      const l = v.toLowerCase();
      const b = l === 'true' || l === 't' ? true : l === 'false' || l === 'f' ? false : undefined;
      if (b === undefined) return 'is not a valid bool (use true, false, t or f)';
      return { cmp: (x) => (typeof x === 'boolean' ? Number(x) - Number(b) : NaN), fastType: 'boolean', fast: b };
    }
    case 'time': {
      if (!parseInstant(v)) return `is not a valid ${typeName(oid)} (use ISO 8601, e.g. 2024-01-02T03:04:05Z)`;
      const { sec, us } = INSTANT;
      return {
        cmp: (x) => {
          if (typeof x !== 'string' || !parseInstant(x)) return NaN;
          return INSTANT.sec !== sec ? (INSTANT.sec < sec ? -1 : 1) : INSTANT.us - us;
        },
      };
    }
    case 'json':
      return jsonLiteral(oid, v);
    case 'text': {
      let s = v;
      if (oid === 2950) {
        const u = canonicalUuid(v);
        if (u === null) return 'is not a valid uuid';
        s = u;
      }
      return { cmp: (x) => textCmp(x, s), fastType: 'string', fast: s };
    }
  }
}

/** Exact order of a row integer (a number, or decimal text beyond 2^53) against `big`. */
function intCmp(big: bigint): (v: unknown) => number {
  return (v) => {
    if (typeof v === 'number') return v < big ? -1 : v > big ? 1 : v === v ? 0 : NaN; // number vs bigint compares exactly
    if (typeof v !== 'string' || v.length === 0) return NaN;
    let b: bigint;
    try {
      b = BigInt(v);
    } catch {
      return NaN;
    }
    return b < big ? -1 : b > big ? 1 : 0;
  };
}

/** Ranks of numeric values: -Infinity < finite < Infinity < NaN (Postgres numeric order). */
function specialRank(s: string): number {
  return s === 'NaN' ? 3 : s === 'Infinity' ? 2 : s === '-Infinity' ? -2 : 0;
}

function numericLiteral(v: string): Lit | string {
  const special = floatSpecial(v);
  const m = /^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE]([+-]?[0-9]+))?$/.exec(v);
  if (special === null && m === null) return 'is not a valid numeric';
  if (m?.[2] !== undefined && Math.abs(Number(m[2])) > 1000) return 'is out of range for numeric';
  const rank = special === null ? 0 : specialRank(special);
  const dec: Decimal | null = special === null ? parseDecimal(v) : null;
  const d = special === null ? Number(v) : Number(special);
  // The literal's double stands for it exactly when the double's shortest text is the same
  // decimal; numeric row numbers always do (src/capture/values.ts decodeNumeric).
  const exact = dec !== null && Number.isFinite(d) && compareDecimal(parseDecimal(String(d)) as Decimal, dec) === 0;
  const cmp = (x: unknown): number => {
    let r: number;
    if (typeof x === 'number') r = x !== x ? 3 : x === Infinity ? 2 : x === -Infinity ? -2 : 0;
    else if (typeof x === 'string') r = specialRank(x);
    else return NaN;
    if (r !== rank) return r < rank ? -1 : 1;
    if (dec === null) return 0; // equal specials
    if (typeof x === 'number') {
      // Rounding to double is monotonic, so different doubles order their decimals too.
      if (x !== d) return x < d ? -1 : 1;
      if (exact) return 0;
      return compareDecimal(parseDecimal(String(x)) as Decimal, dec);
    }
    const rowDec = parseDecimal(x as string);
    return rowDec === null ? NaN : compareDecimal(rowDec, dec);
  };
  return rank === 3 ? { cmp } : exact || rank !== 0 ? { cmp, fastType: 'number', fast: d } : { cmp };
}

function jsonLiteral(oid: number, v: string): Lit {
  let value: unknown = v;
  if (v.startsWith('{') && oid !== 114 && oid !== 3802) {
    const arr = arrays.decoder(oid)(v); // a Postgres array literal, decoded as rows are
    if (Array.isArray(arr)) value = arr;
  }
  if (value === v) {
    try {
      value = JSON.parse(v) as unknown;
    } catch {
      // not JSON: compare as the string itself
    }
  }
  if (value === null) return { cmp: () => 1 }; // JSON null arrives as SQL NULL: never equal
  if (typeof value === 'object') {
    const key = canonicalJson(value);
    return { cmp: (x) => (x !== null && typeof x === 'object' && canonicalJson(x) === key ? 0 : 1) };
  }
  const t = typeof value as 'number' | 'string' | 'boolean';
  return { cmp: (x) => (x === value ? 0 : 1), fastType: t, fast: value as number };
}

function textCmp(x: unknown, s: string): number {
  if (typeof x === 'object' || typeof x === 'function' || typeof x === 'symbol') return NaN;
  const t = typeof x === 'string' ? x : String(x); // a domain or unknown type decoded as a number/boolean
  return t < s ? -1 : t > s ? 1 : 0;
}

type CompareOp = Exclude<FilterOp, 'in' | 'is_null' | 'is_not_null' | 'is_true' | 'is_false'>;

function comparePredicate(col: string, op: CompareOp, lit: Lit): RowPredicate {
  const { cmp, fastType } = lit;
  // Typed as number for the compiler; at run time also a string or boolean, which the same
  // operators order the way cmp does (code units; false < true).
  const f = lit.fast as number;
  if (fastType === undefined) {
    switch (op) {
      case 'eq': return (row) => { const v = row[col]; return v != null && cmp(v) === 0; };
      case 'neq': return (row) => { const v = row[col]; if (v == null) return false; const c = cmp(v); return c !== 0 && c === c; };
      case 'lt': return (row) => { const v = row[col]; return v != null && cmp(v) < 0; };
      case 'lte': return (row) => { const v = row[col]; return v != null && cmp(v) <= 0; };
      case 'gt': return (row) => { const v = row[col]; return v != null && cmp(v) > 0; };
      case 'gte': return (row) => { const v = row[col]; return v != null && cmp(v) >= 0; };
    }
  }
  switch (op) {
    case 'eq': return (row) => { const v = row[col]; return typeof v === fastType ? v === f : v != null && cmp(v) === 0; };
    case 'neq': return (row) => { const v = row[col]; if (typeof v === fastType) return v !== f; if (v == null) return false; const c = cmp(v); return c !== 0 && c === c; };
    case 'lt': return (row) => { const v = row[col]; return typeof v === fastType ? (v as number) < f : v != null && cmp(v) < 0; };
    case 'lte': return (row) => { const v = row[col]; return typeof v === fastType ? (v as number) <= f : v != null && cmp(v) <= 0; };
    case 'gt': return (row) => { const v = row[col]; return typeof v === fastType ? (v as number) > f : v != null && cmp(v) > 0; };
    case 'gte': return (row) => { const v = row[col]; return typeof v === fastType ? (v as number) >= f : v != null && cmp(v) >= 0; };
  }
}

/** `in`: eq against any member; members with a fast value are looked up in a Set. */
function inPredicate(col: string, lits: Lit[]): RowPredicate {
  if (lits.length === 0) return () => false;
  const fastType = lits[0].fastType;
  const set = new Set<unknown>();
  const slow: Lit[] = [];
  for (const l of lits) {
    if (fastType !== undefined && l.fastType === fastType) set.add(l.fast);
    else slow.push(l);
  }
  return (row) => {
    const v = row[col];
    if (v == null) return false;
    if (typeof v === fastType) {
      if (set.has(v)) return true;
      for (let i = 0; i < slow.length; i++) if (slow[i].cmp(v) === 0) return true;
      return false;
    }
    for (let i = 0; i < lits.length; i++) if (lits[i].cmp(v) === 0) return true;
    return false;
  };
}
