// The SQL of a snapshot: the table's columns, as much of the subscription's filter as Postgres
// can evaluate with the daemon's exact semantics (so an index narrows the read), and the order.
// Identifiers are quoted, literals are parameters: nothing a client sends is spliced into SQL.
// Every row read is still checked by the filter's predicate in the daemon (src/hub/filter-eval.ts),
// so a term given to Postgres only has to be at least as loose as the daemon's; a term that
// could be stricter (text ranges under the database's collation, floats, timestamps read in the
// session's time zone, json, a null test where SQL's differs from the decoded value's) stays in
// the daemon only.
import { TypeRegistry } from '../capture/types-registry.js';
import { quoteIdent } from '../pg/ident.js';
import type { ColumnInfo, FilterTerm } from '../hub/filter.js';

export interface SnapshotQueryInput {
  schema: string;
  name: string;
  /** What each row carries (the columns changes carry). */
  select: readonly ColumnInfo[];
  /** Every column, for the filter's and the order's types. */
  columns: readonly ColumnInfo[];
  terms: readonly FilterTerm[];
  order: { column: string; desc: boolean } | null;
}

export interface SnapshotQuery {
  text: string;
  values: unknown[];
  /** How many filter terms Postgres evaluates (the daemon evaluates all of them again). */
  pushed: number;
}

const INTS: ReadonlySet<number> = new Set([20, 21, 23, 26]);
const NUMERIC = 1700;
const BOOL = 16;
const TEXTS: ReadonlySet<number> = new Set([25, 1043]);
const JSON_TYPES: ReadonlySet<number> = new Set([114, 3802]);
/** Knows the builtin scalar types and their arrays only (no composite among them). */
const BUILTINS = new TypeRegistry();
const INT_TEXT = /^[+-]?\d{1,20}$/;
const NUMERIC_TEXT = /^[+-]?\d{1,100}(\.\d{1,100})?$/;

type Kind = 'int' | 'numeric' | 'bool' | 'text' | 'other';

function kindOf(oid: number): Kind {
  if (INTS.has(oid)) return 'int';
  if (oid === NUMERIC) return 'numeric';
  if (oid === BOOL) return 'bool';
  if (TEXTS.has(oid)) return 'text';
  return 'other';
}

/** Whether Postgres reads this literal for this kind exactly as the daemon does. */
function literalOk(kind: Kind, v: string): boolean {
  switch (kind) {
    case 'int':
      return INT_TEXT.test(v);
    case 'numeric':
      return NUMERIC_TEXT.test(v);
    case 'bool':
      return v === 'true' || v === 'false';
    case 'text':
      return !v.includes('\u0000'); // Postgres text cannot hold NUL: the daemon alone judges it
    default:
      return false;
  }
}

/** The WHERE condition for one term, or null when the daemon alone evaluates it. */
function condition(term: FilterTerm, oid: number, values: unknown[]): string | null {
  const kind = kindOf(oid);
  const col = quoteIdent(term.column);
  const param = (v: unknown): string => {
    values.push(v);
    return `$${values.length}`;
  };
  switch (term.op) {
    // The daemon tests the decoded value. A json 'null' decodes to null (SQL's IS NULL is false
    // on it), and IS NOT NULL on a composite is false when any field is null: only builtin types
    // (a user type may be a composite, or a domain over json) get the SQL test.
    case 'is_null':
      return BUILTINS.has(oid) && !JSON_TYPES.has(oid) ? `${col} is null` : null;
    case 'is_not_null':
      return BUILTINS.has(oid) ? `${col} is not null` : null;
    case 'is_true':
      return kind === 'bool' ? `${col} is true` : null;
    case 'is_false':
      return kind === 'bool' ? `${col} is false` : null;
    case 'eq':
      return kind !== 'other' && literalOk(kind, term.values[0]) ? `${col} = ${param(term.values[0])}` : null;
    case 'in':
      return kind !== 'other' && term.values.every((v) => literalOk(kind, v)) ? `${col} = any(${param(term.values)})` : null;
    case 'neq':
      // Under a nondeterministic collation `<>` on text is stricter than the daemon's.
      return (kind === 'int' || kind === 'numeric' || kind === 'bool') && literalOk(kind, term.values[0]) ? `${col} <> ${param(term.values[0])}` : null;
    case 'lt':
    case 'lte':
    case 'gt':
    case 'gte': {
      if ((kind !== 'int' && kind !== 'numeric') || !literalOk(kind, term.values[0])) return null;
      const op = term.op === 'lt' ? '<' : term.op === 'lte' ? '<=' : term.op === 'gt' ? '>' : '>=';
      return `${col} ${op} ${param(term.values[0])}`;
    }
  }
}

export function snapshotQuery(q: SnapshotQueryInput): SnapshotQuery {
  const types = new Map<string, number>();
  for (const c of q.columns) types.set(c.name, c.typeOid);
  const values: unknown[] = [];
  const where: string[] = [];
  for (const term of q.terms) {
    const oid = types.get(term.column);
    if (oid === undefined) continue; // compileFilter refuses unknown columns before we get here
    const cond = condition(term, oid, values);
    if (cond) where.push(cond);
  }
  let text = `select ${q.select.map((c) => quoteIdent(c.name)).join(', ')} from ${quoteIdent(q.schema)}.${quoteIdent(q.name)}`;
  if (where.length > 0) text += ` where ${where.join(' and ')}`;
  if (q.order) text += ` order by ${quoteIdent(q.order.column)} ${q.order.desc ? 'desc' : 'asc'}`;
  return { text, values, pushed: where.length };
}
