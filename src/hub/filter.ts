// Subscription row filters (docs/PROTOCOL.md §5 `subscribe`): parsed (filter-parse.ts) and evaluated
// (filter-eval.ts) in the daemon, never spliced into SQL. This module is the public face, plus
// the keys of the hub's hash index of equality filters (table → column → key).
import { decimalKey, decimalText, canonicalUuid, floatSpecial, parseDecimal, parseInstant, INSTANT } from './filter-values.js';

export { parseFilter, formatTerm, formatColumn, FILTER_LIMITS } from './filter-parse.js';
export type { Filter, FilterOp, FilterTerm } from './filter-parse.js';
export { compileFilter, eqIndexable } from './filter-eval.js';
export type { ColumnInfo, RowPredicate } from './filter-eval.js';

/**
 * Keys under which a subscription with `col=eq.<value>` is registered. Whenever the compiled
 * predicate finds a row value equal to `value` on a column for which eqIndexable() is true,
 * rowValueKey(row value) is one of these keys (extra keys only make extra candidates):
 * the raw literal; String(Number(value)) when it is a finite number and differs; the exact plain
 * decimal ('+007.50' → '7.5', '1e3' → '1000'); 'NaN' / 'Infinity' / '-Infinity' for their
 * spellings; 'true' / 'false' for t, f, true, false in any case; the canonical uuid; the string a
 * JSON string literal holds; and for an ISO date-time the texts Postgres gives that instant as a
 * timestamptz, timestamp and (at midnight) date.
 */
export function eqTermKeys(value: string): string[] {
  const keys = [value];
  const add = (k: string | null | undefined): void => {
    if (k !== null && k !== undefined && !keys.includes(k)) keys.push(k);
  };
  if (value.trim() !== '') {
    const n = Number(value);
    if (Number.isFinite(n)) add(String(n));
  }
  const dec = parseDecimal(value);
  // A plain literal's exponent is below its length (<= 2048); only written exponents go beyond,
  // and numeric rejects those past 1000, so skipping them loses no match.
  if (dec !== null && Math.abs(dec.exp) <= 2100) add(decimalText(dec));
  add(floatSpecial(value));
  const lower = value.toLowerCase();
  if (lower === 't' || lower === 'true') add('true');
  else if (lower === 'f' || lower === 'false') add('false');
  add(canonicalUuid(value));
  if (value.length >= 2 && value.startsWith('"')) {
    try {
      const parsed: unknown = JSON.parse(value);
      if (typeof parsed === 'string') add(parsed);
    } catch {
      // not a JSON string
    }
  }
  if (parseInstant(value)) {
    if (INSTANT.sec === Infinity) add('infinity');
    else if (INSTANT.sec === -Infinity) add('-infinity');
    else for (const t of instantTexts(INSTANT.sec, INSTANT.us) ?? []) add(t);
  }
  return keys;
}

/**
 * The key to look a row value up by: number → String(n); string → itself, except a plain decimal
 * not written canonically ('007', '1.50', '+5', '-0'), which maps to its exact plain decimal
 * (numeric text with scale padding, like '1.50', must find the subscribers of 'eq.1.5');
 * boolean → 'true' / 'false'; null, undefined and objects → null (no index hit).
 */
export function rowValueKey(value: unknown): string | null {
  switch (typeof value) {
    case 'number':
      return String(value);
    case 'string':
      return decimalKey(value);
    case 'boolean':
      return value ? 'true' : 'false';
    default:
      return null;
  }
}

const pad = (n: number, width: number): string => String(n).padStart(width, '0');

/** The ISO texts Postgres (through src/capture/values.ts) gives an instant in a row:
 * [timestamptz, timestamp, date or null when not midnight]; null outside years 1-9999. */
function instantTexts(sec: number, us: number): [string, string, string | null] | null {
  if (!Number.isFinite(sec)) return null;
  const days = Math.floor(sec / 86400);
  const rem = sec - days * 86400;
  // civil_from_days (H. Hinnant)
  const z = days + 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  const year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  if (year < 1 || year > 9999) return null;
  const date = pad(year, 4) + '-' + pad(month, 2) + '-' + pad(day, 2);
  let frac = '';
  if (us !== 0) frac = '.' + pad(us, 6).replace(/0+$/, '');
  const naive = date + 'T' + pad(Math.floor(rem / 3600), 2) + ':' + pad(Math.floor(rem / 60) % 60, 2) + ':' + pad(rem % 60, 2) + frac;
  return [naive + 'Z', naive, rem === 0 && us === 0 ? date : null];
}
