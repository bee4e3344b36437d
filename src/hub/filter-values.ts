// Value helpers of the row filters (filter-eval.ts, filter.ts): exact decimals, instants, uuids
// and canonical JSON. The hot-path ones (compareDecimal, parseInstant) work on char codes with
// no regex; parseInstant writes its result into a shared scratch object instead of allocating.

const PLUS = 43;
const MINUS = 45;
const DOT = 46;
const COLON = 58;
const SPACE = 32;
const ZERO = 48;
const NINE = 57;

function isDigit(c: number): boolean {
  return c >= ZERO && c <= NINE;
}

/** An exact finite decimal: sign x 0.<digits> x 10^exp; `digits` has no leading or trailing
 * zeros, so equal values have equal fields (zero: sign 0, digits ''). */
export interface Decimal {
  readonly sign: -1 | 0 | 1;
  readonly digits: string;
  readonly exp: number;
}

const DECIMAL_ZERO: Decimal = { sign: 0, digits: '', exp: 0 };

/** Parses `[+-]?(d+(.d*)?|.d+)([eE][+-]?d+)?` (the exponent only when `allowExponent`); null
 * for anything else. Exponents beyond +-1e9 are clamped (they are rejected elsewhere). */
export function parseDecimal(text: string, allowExponent = true): Decimal | null {
  const len = text.length;
  let i = 0;
  let sign: -1 | 1 = 1;
  const c0 = text.charCodeAt(0);
  if (c0 === PLUS || c0 === MINUS) {
    sign = c0 === MINUS ? -1 : 1;
    i = 1;
  }
  const start = i;
  let point = -1;
  let anyDigit = false;
  for (; i < len; i++) {
    const c = text.charCodeAt(i);
    if (isDigit(c)) anyDigit = true;
    else if (c === DOT && point < 0) point = i;
    else break;
  }
  if (!anyDigit) return null;
  const mantissaEnd = i;
  let exp = 0;
  if (i < len) {
    const c = text.charCodeAt(i);
    if (!allowExponent || (c !== 101 && c !== 69)) return null; // e E
    i++;
    let expSign = 1;
    const s = text.charCodeAt(i);
    if (s === PLUS || s === MINUS) {
      expSign = s === MINUS ? -1 : 1;
      i++;
    }
    if (i >= len) return null;
    for (; i < len; i++) {
      const d = text.charCodeAt(i);
      if (!isDigit(d)) return null;
      if (exp < 1e9) exp = exp * 10 + (d - ZERO);
    }
    exp *= expSign;
  }
  const intPart = text.slice(start, point < 0 ? mantissaEnd : point);
  const all = point < 0 ? intPart : intPart + text.slice(point + 1, mantissaEnd);
  let lead = 0;
  while (lead < all.length && all.charCodeAt(lead) === ZERO) lead++;
  let trail = all.length;
  while (trail > lead && all.charCodeAt(trail - 1) === ZERO) trail--;
  if (lead === trail) return DECIMAL_ZERO;
  return { sign, digits: all.slice(lead, trail), exp: intPart.length + exp - lead };
}

/** Exact order of two decimals: -1, 0 or 1. */
export function compareDecimal(a: Decimal, b: Decimal): number {
  if (a.sign !== b.sign) return a.sign < b.sign ? -1 : 1;
  if (a.sign === 0) return 0;
  // Same sign: with normalised digits, magnitude orders by exponent, then digits as text.
  let mag: number;
  if (a.exp !== b.exp) mag = a.exp < b.exp ? -1 : 1;
  else mag = a.digits < b.digits ? -1 : a.digits > b.digits ? 1 : 0;
  return a.sign < 0 ? -mag : mag;
}

/** Plain decimal text, no exponent, no redundant zeros: '-12.5', '0.001', '1000', '0'. */
export function decimalText(d: Decimal): string {
  if (d.sign === 0) return '0';
  const { digits, exp } = d;
  let body: string;
  if (exp <= 0) body = '0.' + '0'.repeat(-exp) + digits;
  else if (exp >= digits.length) body = digits + '0'.repeat(exp - digits.length);
  else body = digits.slice(0, exp) + '.' + digits.slice(exp);
  return d.sign < 0 ? '-' + body : body;
}

/** A plain decimal (`[+-]?d*(.d*)?`, no exponent) as decimalText writes it; any other string
 * as it is. No allocation when `s` is already canonical or not a decimal: for per-row use. */
export function decimalKey(s: string): string {
  const len = s.length;
  const c0 = s.charCodeAt(0);
  let i = c0 === MINUS || c0 === PLUS ? 1 : 0;
  const intStart = i;
  while (i < len && isDigit(s.charCodeAt(i))) i++;
  const intLen = i - intStart;
  let fracLen = -1; // -1: no point
  if (i < len && s.charCodeAt(i) === DOT) {
    const from = ++i;
    while (i < len && isDigit(s.charCodeAt(i))) i++;
    fracLen = i - from;
  }
  if (i !== len || intLen + Math.max(fracLen, 0) === 0) return s; // not a plain decimal
  const canonical =
    c0 !== PLUS &&
    intLen > 0 &&
    fracLen !== 0 &&
    !(intLen > 1 && s.charCodeAt(intStart) === ZERO) && // leading zero
    !(fracLen > 0 && s.charCodeAt(len - 1) === ZERO) && // trailing fraction zero
    !(c0 === MINUS && fracLen < 0 && intLen === 1 && s.charCodeAt(intStart) === ZERO); // '-0'
  return canonical ? s : decimalText(parseDecimal(s, false) ?? DECIMAL_ZERO);
}

/** Float specials as Postgres float8in / numeric_in accept them (any case), canonicalised as
 * they print: 'NaN', 'Infinity', '-Infinity'; null for anything else. */
export function floatSpecial(s: string): 'NaN' | 'Infinity' | '-Infinity' | null {
  if (s.length < 3 || s.length > 9) return null;
  const l = s.toLowerCase();
  if (l === 'nan') return 'NaN';
  if (l === 'infinity' || l === '+infinity' || l === 'inf' || l === '+inf') return 'Infinity';
  if (l === '-infinity' || l === '-inf') return '-Infinity';
  return null;
}

/** Orders a row float (number, or the text 'NaN' / 'Infinity' / '-Infinity') against `d` as
 * Postgres does: NaN equals NaN and sorts above everything; NaN (incomparable) for other values. */
export function floatCmp(v: unknown, d: number): number {
  let x: number;
  if (typeof v === 'number') x = v;
  else if (typeof v === 'string' && v.length > 0) {
    x = Number(v); // 'NaN', 'Infinity', '-Infinity' as Postgres prints them
    if (x !== x && v !== 'NaN') return NaN;
  } else return NaN;
  if (x !== x) return d !== d ? 0 : 1;
  if (d !== d) return -1;
  return x < d ? -1 : x > d ? 1 : 0;
}

/** Output of parseInstant: whole seconds since the epoch (+-Infinity for +-infinity) and
 * microseconds within the second (0..999999). */
export const INSTANT = { sec: 0, us: 0 };

function twoDigits(s: string, i: number): number {
  const a = s.charCodeAt(i);
  const b = s.charCodeAt(i + 1);
  return isDigit(a) && isDigit(b) ? (a - ZERO) * 10 + (b - ZERO) : -1;
}

/** Days since 1970-01-01 of a proleptic Gregorian date (astronomical year). */
export function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (month > 2 ? month - 3 : month + 9) + 2) / 5) + day - 1;
  return era * 146097 + yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy - 719468;
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28;
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
}

/**
 * Parses an ISO 8601 date or date-time as Postgres writes and accepts it into INSTANT; false if
 * it is not one. `YYYY-MM-DD` (4-6 digit year), then optionally `T`/`t`/space `HH:MM[:SS[.f]]`
 * and a zone `Z` / `+HH` / `+HH:MM` / `+HHMM` / `+HH:MM:SS` (none means UTC), then optionally
 * ` BC`. Also 'infinity', '+infinity', '-infinity' (any case). Fractions beyond microseconds
 * round half up, as Postgres rounds them.
 */
export function parseInstant(s: string): boolean {
  const len = s.length;
  let i = 0;
  let year = 0;
  while (i < len && i < 7 && isDigit(s.charCodeAt(i))) year = year * 10 + (s.charCodeAt(i++) - ZERO);
  if (i < 4 || i > 6) return parseInfinity(s);
  if (s.charCodeAt(i) !== MINUS || s.charCodeAt(i + 3) !== MINUS) return false;
  const month = twoDigits(s, i + 1);
  const day = twoDigits(s, i + 4);
  i += 6;
  let h = 0;
  let mi = 0;
  let sec = 0;
  let us = 0;
  let offset = 0;
  const sep = s.charCodeAt(i);
  if (i < len && (sep === 84 || sep === 116 || sep === SPACE) && isDigit(s.charCodeAt(i + 1))) {
    h = twoDigits(s, i + 1);
    if (s.charCodeAt(i + 3) !== COLON) return false;
    mi = twoDigits(s, i + 4);
    i += 6;
    if (s.charCodeAt(i) === COLON) {
      sec = twoDigits(s, i + 1);
      i += 3;
      if (s.charCodeAt(i) === DOT) {
        i++;
        const from = i;
        while (i < len && isDigit(s.charCodeAt(i))) {
          const n = i - from;
          const d = s.charCodeAt(i) - ZERO;
          if (n < 6) us = us * 10 + d;
          else if (n === 6 && d >= 5) us++;
          i++;
        }
        const n = i - from;
        if (n === 0) return false;
        for (let k = n; k < 6; k++) us *= 10;
      }
    }
    if (h < 0 || mi < 0 || sec < 0 || h > 24 || mi > 59 || sec > 60) return false;
    if (h === 24 && (mi !== 0 || sec !== 0 || us !== 0)) return false;
    const z = s.charCodeAt(i);
    if (z === 90 || z === 122) i++; // Z z
    else if (z === PLUS || z === MINUS) {
      const oh = twoDigits(s, i + 1);
      let om = 0;
      let os = 0;
      i += 3;
      if (s.charCodeAt(i) === COLON) i++;
      if (isDigit(s.charCodeAt(i))) {
        om = twoDigits(s, i);
        i += 2;
        if (s.charCodeAt(i) === COLON) {
          os = twoDigits(s, i + 1);
          i += 3;
        }
      }
      if (oh < 0 || om < 0 || os < 0 || oh > 15 || om > 59 || os > 59) return false;
      offset = (z === MINUS ? -1 : 1) * (oh * 3600 + om * 60 + os);
    }
  }
  if (i + 3 === len && s.charCodeAt(i) === SPACE && s.slice(i + 1).toUpperCase() === 'BC') {
    if (year === 0) return false;
    year = 1 - year; // 1 BC is year 0
    i = len;
  }
  if (i !== len || month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return false;
  INSTANT.sec = daysFromCivil(year, month, day) * 86400 + h * 3600 + mi * 60 + sec - offset;
  INSTANT.us = us;
  if (us === 1_000_000) {
    INSTANT.sec++;
    INSTANT.us = 0;
  }
  return true;
}

function parseInfinity(s: string): boolean {
  if (s.length < 8 || s.length > 9) return false;
  const l = s.toLowerCase();
  if (l === 'infinity' || l === '+infinity') INSTANT.sec = Infinity;
  else if (l === '-infinity') INSTANT.sec = -Infinity;
  else return false;
  INSTANT.us = 0;
  return true;
}

/** A uuid in any form Postgres accepts commonly (any case, hyphens or none, braces) as Postgres
 * prints it (lower case, 8-4-4-4-12); null when `s` is not one. */
export function canonicalUuid(s: string): string | null {
  let t = s.startsWith('{') && s.endsWith('}') ? s.slice(1, -1) : s;
  if (t.length === 36) {
    if (t[8] !== '-' || t[13] !== '-' || t[18] !== '-' || t[23] !== '-') return null;
    t = t.slice(0, 8) + t.slice(9, 13) + t.slice(14, 18) + t.slice(19, 23) + t.slice(24);
  }
  if (t.length !== 32 || !/^[0-9a-fA-F]{32}$/.test(t)) return null;
  t = t.toLowerCase();
  return `${t.slice(0, 8)}-${t.slice(8, 12)}-${t.slice(12, 16)}-${t.slice(16, 20)}-${t.slice(20)}`;
}

/** JSON text with object keys sorted, so equal values give equal text whatever their key order. */
export function canonicalJson(v: unknown): string {
  if (v === null || typeof v !== 'object') {
    if (typeof v === 'bigint') return v.toString();
    return JSON.stringify(v) ?? 'null';
  }
  if (Array.isArray(v)) return '[' + v.map(canonicalJson).join(',') + ']';
  const o = v as Record<string, unknown>;
  return '{' + Object.keys(o).sort().map((k) => JSON.stringify(k) + ':' + canonicalJson(o[k])).join(',') + '}';
}
