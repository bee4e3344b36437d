// Route values (docs/dev/cluster-plan.md §2, §5): the value of a table's route_by column in a row,
// and the values of a subscription's `eq` / `in` term on that column, as one canonical text each,
// so that whenever src/hub/filter-eval.ts finds the row equal to the term's value both give the
// same text, hence the same subject token. Routable column types (by base type OID, as the catalog
// gives domains): int2, int4, int8 (integers: decimal digits, no `+`, no leading zeros, `-` only
// below zero), text, varchar, bpchar (the text itself, compared as code units like filter-eval),
// uuid (lower-case, hyphenated) and bool (`true` / `false`). Other types (floats, numeric,
// timestamps, json, arrays, ...) are not routable: sql/005_route_by.sql refuses them, and a
// subscriber filtering on such a column follows the whole table.
import { CLUSTER_TOKENS } from '../constants.js';
import type { FilterTerm } from '../hub/filter-parse.js';
import type { ColumnInfo } from '../hub/filter.js';
import { canonicalUuid } from '../hub/filter-values.js';
import { token } from './subjects.js';

type RouteKind = 'int' | 'text' | 'uuid' | 'bool';

const ROUTE_KINDS: ReadonlyMap<number, RouteKind> = new Map<number, RouteKind>([
  [21, 'int'],
  [23, 'int'],
  [20, 'int'],
  [25, 'text'],
  [1043, 'text'],
  [1042, 'text'],
  [2950, 'uuid'],
  [16, 'bool'],
]);

/** Type OIDs a route_by column may have (domains: their base type). */
export const ROUTABLE_TYPE_OIDS: readonly number[] = [...ROUTE_KINDS.keys()];

export function isRoutableType(typeOid: number): boolean {
  return ROUTE_KINDS.has(typeOid);
}

const INTEGER = /^[+-]?[0-9]+$/;

/**
 * The canonical text of a row's route value as capture decoded it (src/capture/values.ts);
 * null for SQL NULL; undefined when the value cannot be routed (a type that is not routable, or
 * a value of an unexpected shape, which no filter of the type matches either).
 */
export function rowRouteText(typeOid: number, value: unknown): string | null | undefined {
  if (value === null || value === undefined) return null;
  switch (ROUTE_KINDS.get(typeOid)) {
    case 'int':
      // int2/int4 and safe int8 arrive as numbers, int8 beyond 2^53 as its digits.
      if (typeof value === 'number') return Number.isInteger(value) ? String(value) : undefined; // String(-0) is '0'
      if (typeof value === 'string' && INTEGER.test(value)) return BigInt(value).toString();
      return undefined;
    case 'text':
      // filter-eval compares a text column's number or boolean (a type it mistook) as String(x).
      return typeof value === 'string' ? value : typeof value === 'number' || typeof value === 'boolean' ? String(value) : undefined;
    case 'uuid':
      return typeof value === 'string' ? (canonicalUuid(value) ?? value) : undefined;
    case 'bool':
      return typeof value === 'boolean' ? String(value) : undefined;
    default:
      return undefined;
  }
}

/** The subject token of a row's route value: `=0` for NULL, `=n` when it cannot be routed. */
export function rowRouteToken(typeOid: number, value: unknown): string {
  const text = rowRouteText(typeOid, value);
  if (text === null) return CLUSTER_TOKENS.nullRoute;
  if (text === undefined) return CLUSTER_TOKENS.noRoute;
  return token(text);
}

/**
 * The canonical text of a filter literal (src/hub/filter-parse.ts: always a string) on a column of
 * this type; undefined when the literal equals no value of the type (compileFilter refuses it)
 * or the type is not routable.
 */
export function literalRouteText(typeOid: number, literal: string): string | undefined {
  switch (ROUTE_KINDS.get(typeOid)) {
    case 'int':
      return INTEGER.test(literal) ? BigInt(literal).toString() : undefined;
    case 'text':
      return literal;
    case 'uuid':
      return canonicalUuid(literal) ?? undefined;
    case 'bool': {
      const l = literal.toLowerCase();
      return l === 'true' || l === 't' ? 'true' : l === 'false' || l === 'f' ? 'false' : undefined;
    }
    default:
      return undefined;
  }
}

/**
 * The route tokens a filter term confines its subscription to: for `eq` and `in` on a routable
 * column, one token per distinct value (`in.()` gives none: it matches no row); `is.null` gives
 * `=0`, `is.true` / `is.false` on a bool column `true` / `false`; null for any other term, or another type: the subscription follows the whole table.
 */
export function termRouteTokens(typeOid: number, term: FilterTerm): string[] | null {
  if (!isRoutableType(typeOid)) return null;
  if (term.op === 'is_null') return [CLUSTER_TOKENS.nullRoute];
  if (term.op === 'is_true' || term.op === 'is_false') return ROUTE_KINDS.get(typeOid) === 'bool' ? [token(String(term.op === 'is_true'))] : null;
  if (term.op !== 'eq' && term.op !== 'in') return null;
  const out = new Set<string>();
  for (const v of term.values) {
    const text = literalRouteText(typeOid, v);
    if (text !== undefined) out.add(token(text));
  }
  return [...out];
}

/**
 * The route tokens a subscription is confined to: those of its first term on the table's
 * route_by column that names values (`eq`, `in`, `is`), null when it has none (or the table no
 * route_by): its node then follows the whole table. Terms are ANDed, so any one of them bounds
 * the rows the subscription can match.
 */
export function subscriptionRoutes(routeBy: string | null, columns: readonly ColumnInfo[], terms: readonly FilterTerm[]): string[] | null {
  if (!routeBy) return null;
  const col = columns.find((c) => c.name === routeBy);
  if (!col) return null;
  for (const term of terms) {
    if (term.column !== routeBy) continue;
    const tokens = termRouteTokens(col.typeOid, term);
    if (tokens) return tokens;
  }
  return null;
}
