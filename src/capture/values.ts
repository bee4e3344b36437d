// Scalar decoders: pgoutput text values -> what a JSON client expects, never losing precision.
//
// Every decoder takes the type's text output exactly as the walsender rendered it under
// REPLICATION_SESSION_OPTIONS (DateStyle=ISO, TimeZone=UTC, IntervalStyle=iso_8601,
// extra_float_digits=3, bytea_output=hex). A decoder is picked once per column type (see
// types-registry.ts), so these run per value on the hot path: char-code checks instead of
// regexes, no allocation beyond the result, and no decoder ever throws. Whenever a value is not
// in the shape we expect (or would lose precision as a JS number) it is returned unchanged as
// the string Postgres wrote.

/** Turns one text-format value into its JSON-ready form. Never throws. */
export type Decoder = (text: string) => unknown;

const PLUS = 43; // +
const MINUS = 45; // -
const DOT = 46; // .
const COLON = 58; // :
const SPACE = 32;
const ZERO = 48;
const NINE = 57;
const LOWER_T = 116; // t
const LOWER_F = 102; // f

/** Values that need no conversion: text, varchar, bpchar, name, uuid, bytea (`\x..` hex), date,
 * time, timetz, interval (ISO 8601 under the session GUCs), money, enums, ranges, ... */
export const decodeText: Decoder = (text) => text;

/** bool: 't' / 'f'. */
export const decodeBool: Decoder = (text) => {
  if (text.length === 1) {
    const c = text.charCodeAt(0);
    if (c === LOWER_T) return true;
    if (c === LOWER_F) return false;
  }
  return text;
};

/** int2, int4, oid: always fit a double exactly. */
export const decodeInt: Decoder = (text) => {
  const n = Number(text);
  return Number.isInteger(n) ? n : text;
};

/** int8: a number only while it is a safe integer (|n| <= 2^53 - 1), else the digits as text.
 * An input beyond the safe range can only round to +-2^53 or further, which isSafeInteger
 * rejects, so no rounded value ever slips through as a number. */
export const decodeInt8: Decoder = (text) => {
  const n = Number(text);
  return Number.isSafeInteger(n) ? n : text;
};

/** float4, float8: a number; 'NaN', 'Infinity' and '-Infinity' stay strings (JSON has no such
 * numbers). extra_float_digits=3 makes Postgres print the shortest exact round-trip form, so
 * Number() recovers the stored double bit for bit. '-0' decodes to -0 (JSON.stringify prints 0). */
export const decodeFloat: Decoder = (text) => {
  const n = Number(text);
  return Number.isFinite(n) ? n : text;
};

/**
 * numeric: a number when it survives exactly, else the string. "Exactly" means the shortest
 * decimal the double prints as (what JSON.stringify emits) denotes the same value as the input;
 * trailing fraction zeros and a leading '+' do not count as a difference, so '1.50' -> 1.5 but
 * '0.1000000000000000001' and '12345678901234567890' stay strings. 'NaN', '+-Infinity' stay
 * strings. Zero in any spelling ('0.00', '-0') decodes to 0.
 */
export const decodeNumeric: Decoder = (text) => {
  // Fast path: a plain decimal of at most 15 digits always survives a double exactly (DBL_DIG is
  // 15), so the costly number-to-string check below is only needed for longer values.
  const len = text.length;
  if (len <= 17) {
    let i = text.charCodeAt(0) === MINUS ? 1 : 0;
    let digits = 0;
    let point = false;
    for (; i < len; i++) {
      const c = text.charCodeAt(i);
      if (isDigit(c)) digits++;
      else if (c === DOT && !point) point = true;
      else break;
    }
    if (i === len && digits > 0 && digits <= 15) {
      const v = Number(text);
      return v === 0 ? 0 : v; // '-0.00' -> 0
    }
  }
  const n = Number(text);
  if (!Number.isFinite(n)) return text; // NaN, +-Infinity, and anything Number() rejects
  if (n === 0) return isZeroLiteral(text) ? 0 : text; // also catches '' and underflow
  let start = 0;
  let end = text.length;
  if (text.charCodeAt(0) === PLUS) start = 1;
  if (text.indexOf('.', start) !== -1) {
    while (text.charCodeAt(end - 1) === ZERO) end--;
    if (text.charCodeAt(end - 1) === DOT) end--;
  }
  const printed = String(n);
  if (printed.length === end - start && text.startsWith(printed, start)) return n;
  // Doubles below 1e-6 or from 1e21 print with an exponent: compare by value instead.
  if (printed.indexOf('e') !== -1 && canonicalDecimal(printed) === canonicalDecimal(text)) return n;
  return text;
};

/**
 * json, jsonb: the parsed value; text that does not parse stays a string (never throws).
 * Precision caveat, accepted: JSON.parse turns every JSON number into a double, so a jsonb
 * number such as 12345678901234567890 or 0.1000000000000000001 arrives rounded. (Node 20 has no
 * JSON.parse source-text access to do better without a hand-written parser.)
 */
export const decodeJson: Decoder = (text) => {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
};

/** True when `text` is `YYYY-MM-DD HH:MM:SS` at its start (4-digit year, AD, not infinity). */
function hasIsoDateTimePrefix(text: string): boolean {
  return (
    text.length >= 19 &&
    text.charCodeAt(4) === MINUS &&
    text.charCodeAt(7) === MINUS &&
    text.charCodeAt(10) === SPACE &&
    text.charCodeAt(13) === COLON &&
    text.charCodeAt(16) === COLON
  );
}

function isDigit(c: number): boolean {
  return c >= ZERO && c <= NINE;
}

/**
 * timestamp: `2024-01-02 03:04:05.5` -> `2024-01-02T03:04:05.5` (all fraction digits kept).
 * 'infinity', '-infinity', years beyond 9999 and ' BC' values stay as Postgres wrote them.
 */
export const decodeTimestamp: Decoder = (text) => {
  if (!hasIsoDateTimePrefix(text) || !isDigit(text.charCodeAt(text.length - 1))) return text;
  return text.slice(0, 10) + 'T' + text.slice(11);
};

/**
 * timestamptz -> ISO 8601 with all fraction digits kept:
 * `2024-01-02 03:04:05.123456+00` -> `2024-01-02T03:04:05.123456Z`,
 * `...+05:30` -> `...T...+05:30`, `...-08` -> `...T...-08:00`.
 * An offset with seconds (`+05:21:10`, only for pre-1900-ish local mean time zones, never under
 * TimeZone=UTC) has no ISO 8601 / RFC 3339 spelling, so such a value is shifted to UTC exactly
 * and written with `Z`. 'infinity', '-infinity', years beyond 9999 and ' BC' stay as written.
 */
export const decodeTimestamptz: Decoder = (text) => {
  const len = text.length;
  if (!hasIsoDateTimePrefix(text)) return text;
  // Fast path: the replication session runs with TimeZone=UTC, so nearly everything ends '+00'.
  if (
    text.charCodeAt(len - 3) === PLUS &&
    text.charCodeAt(len - 2) === ZERO &&
    text.charCodeAt(len - 1) === ZERO
  ) {
    return text.slice(0, 10) + 'T' + text.slice(11, len - 3) + 'Z';
  }
  // Find the offset sign after seconds and an optional fraction.
  let i = 19;
  if (text.charCodeAt(i) === DOT) {
    i++;
    while (i < len && isDigit(text.charCodeAt(i))) i++;
  }
  const sign = text.charCodeAt(i);
  if (sign !== PLUS && sign !== MINUS) return text;
  const rest = len - i - 1; // 2: HH, 5: HH:MM, 8: HH:MM:SS
  if (!isDigit(text.charCodeAt(i + 1)) || !isDigit(text.charCodeAt(i + 2))) return text;
  const local = text.slice(0, 10) + 'T' + text.slice(11, i);
  if (rest === 2) return local + text.slice(i) + ':00';
  if (text.charCodeAt(i + 3) !== COLON || !isDigit(text.charCodeAt(i + 4)) || !isDigit(text.charCodeAt(i + 5))) {
    return text;
  }
  if (rest === 5) return local + text.slice(i);
  if (rest === 8 && text.charCodeAt(i + 6) === COLON && isDigit(text.charCodeAt(i + 7)) && isDigit(text.charCodeAt(i + 8))) {
    return shiftToUtc(text, i);
  }
  return text;
};

/** Rare path of decodeTimestamptz: apply an offset with seconds, keeping the fraction text. */
function shiftToUtc(text: string, signAt: number): string {
  const num = (from: number, to: number): number => Number(text.slice(from, to));
  const offset =
    (text.charCodeAt(signAt) === MINUS ? -1 : 1) *
    (num(signAt + 1, signAt + 3) * 3600 + num(signAt + 4, signAt + 6) * 60 + num(signAt + 7, signAt + 9));
  const d = new Date(0);
  d.setUTCFullYear(num(0, 4), num(5, 7) - 1, num(8, 10)); // setUTCFullYear keeps years 0-99 as is
  d.setUTCHours(num(11, 13), num(14, 16), num(17, 19) - offset, 0);
  const year = d.getUTCFullYear();
  if (!(year >= 1 && year <= 9999)) return text; // would need a BC or 5-digit year: leave it
  const two = (v: number): string => (v < 10 ? '0' : '') + v;
  return (
    String(year).padStart(4, '0') +
    '-' + two(d.getUTCMonth() + 1) +
    '-' + two(d.getUTCDate()) +
    'T' + two(d.getUTCHours()) +
    ':' + two(d.getUTCMinutes()) +
    ':' + two(d.getUTCSeconds()) +
    text.slice(19, signAt) + // '.ffffff' or ''
    'Z'
  );
}

/** '0', '-0', '+0.000', '00.0': only zero digits (at least one), signs and a point. */
function isZeroLiteral(text: string): boolean {
  let zeros = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === ZERO) zeros++;
    else if (!((c === PLUS || c === MINUS) && i === 0) && c !== DOT) return false;
  }
  return zeros > 0;
}

/**
 * A decimal (plain or with exponent) as `[-]<significant digits>e<exponent>` meaning
 * 0.<digits> x 10^exponent, so equal values give equal strings. Undefined for non-decimals.
 */
function canonicalDecimal(s: string): string | undefined {
  let i = 0;
  let neg = false;
  const first = s.charCodeAt(0);
  if (first === MINUS || first === PLUS) {
    neg = first === MINUS;
    i = 1;
  }
  let digits = '';
  let point = -1;
  let exp = 0;
  for (; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (isDigit(c)) digits += s[i];
    else if (c === DOT && point < 0) point = digits.length;
    else if (c === 101 /* e */ || c === 69 /* E */) {
      exp = Number(s.slice(i + 1));
      if (!Number.isInteger(exp) || i + 1 === s.length) return undefined;
      break;
    } else return undefined;
  }
  if (digits.length === 0) return undefined;
  if (point < 0) point = digits.length;
  let lead = 0;
  while (lead < digits.length && digits.charCodeAt(lead) === ZERO) lead++;
  let trail = digits.length;
  while (trail > lead && digits.charCodeAt(trail - 1) === ZERO) trail--;
  if (lead === trail) return '0';
  return (neg ? '-' : '') + digits.slice(lead, trail) + 'e' + (point - lead + exp);
}
