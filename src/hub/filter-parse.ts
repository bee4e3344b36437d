// Row filter syntax (docs/PROTOCOL.md §5 `subscribe`): PostgREST-style `col=op.value` terms joined by `&` (AND).
// Parsed here into terms and a canonical text; bound to a table's column types and evaluated in
// filter-eval.ts. Filters are never spliced into SQL.
//
//   term    := column "=" op
//   column  := [A-Za-z_][A-Za-z0-9_$]*  |  quoted
//   op      := ("eq"|"neq"|"lt"|"lte"|"gt"|"gte") "." value
//            | "in.(" [ member ("," member)* ] ")"
//            | "is." ("null"|"not_null"|"true"|"false")        (any case)
//   value   := quoted | any text up to the next "&"
//   member  := quoted | any text up to the next "," or ")" (an "&" ends the term)
//   quoted  := '"' ( any char but '"' and '\' | '\"' | '\\' )* '"'
//
// Values are literal: no percent-decoding, no trimming. `in.()` is an empty list (matches no
// row); `in.("")` is a list holding the empty string.
import { BadFilterError } from '../errors.js';

export type FilterOp = 'eq' | 'neq' | 'lt' | 'lte' | 'gt' | 'gte' | 'in' | 'is_null' | 'is_not_null' | 'is_true' | 'is_false';

export interface FilterTerm {
  column: string;
  op: FilterOp;
  /** Raw literal(s): one for comparisons, the members for `in`, none for `is.*`. */
  values: string[];
}

export interface Filter {
  terms: FilterTerm[];
  /** Canonical text form: parses back to the same terms; '' for no filter. */
  text: string;
}

export const FILTER_LIMITS = {
  /** Characters (UTF-16 code units) in the whole filter. */
  maxLength: 2048,
  maxTerms: 16,
  maxInValues: 100,
} as const;

const COMPARISONS: ReadonlySet<string> = new Set(['eq', 'neq', 'lt', 'lte', 'gt', 'gte']);
const IS_OPS: Readonly<Record<string, FilterOp>> = {
  null: 'is_null',
  not_null: 'is_not_null',
  true: 'is_true',
  false: 'is_false',
};

const AMP = 38;
const QUOTE = 34;
const BACKSLASH = 92;
const COMMA = 44;
const LPAREN = 40;
const RPAREN = 41;
const DOT = 46;
const EQUALS = 61;

const IDENT = /^[A-Za-z_][A-Za-z0-9_$]*$/;

function isIdentStart(c: number): boolean {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95;
}

function isIdentPart(c: number): boolean {
  return isIdentStart(c) || (c >= 48 && c <= 57) || c === 36;
}

/** Parses a filter; undefined, null, '' and whitespace-only mean "no filter" (no terms). */
export function parseFilter(text: string | undefined | null): Filter {
  if (text === undefined || text === null) return { terms: [], text: '' };
  if (typeof text !== 'string') throw new BadFilterError(`filter must be a string, not ${typeof text}`);
  if (text.length > FILTER_LIMITS.maxLength) {
    throw new BadFilterError(`filter is ${text.length} characters long; the limit is ${FILTER_LIMITS.maxLength}`);
  }
  if (text.trim() === '') return { terms: [], text: '' };
  const terms = new Parser(text).parse();
  return { terms, text: terms.map(formatTerm).join('&') };
}

class Parser {
  private pos = 0;
  private termStart = 0;

  constructor(private readonly src: string) {}

  parse(): FilterTerm[] {
    const terms: FilterTerm[] = [];
    for (;;) {
      this.termStart = this.pos;
      if (terms.length === FILTER_LIMITS.maxTerms) {
        throw new BadFilterError(`too many terms: at most ${FILTER_LIMITS.maxTerms} are allowed`);
      }
      terms.push(this.term());
      if (this.pos >= this.src.length) return terms;
      this.pos++; // '&': term() stops only at '&' or the end
    }
  }

  private term(): FilterTerm {
    const src = this.src;
    const c = src.charCodeAt(this.pos);
    if (this.pos >= src.length || c === AMP) {
      throw new BadFilterError(`empty term at character ${this.pos + 1} (two "&" in a row, or a leading or trailing "&")`);
    }
    const column = c === QUOTE ? this.quoted('column name') : this.ident();
    const next = src.charCodeAt(this.pos);
    if (next !== EQUALS) {
      if (this.pos >= src.length || next === AMP) this.fail('missing "="');
      this.fail(c === QUOTE ? 'unexpected text after the quoted column name' : 'invalid column name (column names are [A-Za-z_][A-Za-z0-9_$]*; double-quote others)');
    }
    this.pos++;
    const opStart = this.pos;
    while (this.pos < src.length && isIdentStart(src.charCodeAt(this.pos))) this.pos++;
    const op = src.slice(opStart, this.pos);
    if (op === '') this.fail('missing operator');
    if (!COMPARISONS.has(op) && op !== 'in' && op !== 'is') {
      this.fail(`unknown operator ${JSON.stringify(op)}` + (op === 'not' ? ' (negation is not supported: use neq, or is.not_null)' : ''));
    }
    if (src.charCodeAt(this.pos) !== DOT) this.fail(`missing "." after ${JSON.stringify(op)}`);
    this.pos++;
    if (op === 'in') return { column, op: 'in', values: this.list() };
    if (op === 'is') {
      let end = src.indexOf('&', this.pos);
      if (end < 0) end = src.length;
      const word = src.slice(this.pos, end);
      const isOp = Object.hasOwn(IS_OPS, word.toLowerCase()) ? IS_OPS[word.toLowerCase()] : undefined;
      if (isOp === undefined) this.fail(`unknown "is" value ${JSON.stringify(word)} (expected null, not_null, true or false)`);
      this.pos = end;
      return { column, op: isOp, values: [] };
    }
    let value: string;
    if (src.charCodeAt(this.pos) === QUOTE) {
      value = this.quoted('value');
      if (this.pos < src.length && src.charCodeAt(this.pos) !== AMP) this.fail('unexpected text after the quoted value');
    } else {
      let end = src.indexOf('&', this.pos);
      if (end < 0) end = src.length;
      value = src.slice(this.pos, end);
      this.pos = end;
    }
    return { column, op: op as FilterOp, values: [value] };
  }

  private ident(): string {
    const src = this.src;
    const start = this.pos;
    if (!isIdentStart(src.charCodeAt(start))) {
      this.fail(src.charCodeAt(start) === EQUALS ? 'missing column name' : 'invalid column name (column names are [A-Za-z_][A-Za-z0-9_$]*; double-quote others)');
    }
    this.pos++;
    while (this.pos < src.length && isIdentPart(src.charCodeAt(this.pos))) this.pos++;
    return src.slice(start, this.pos);
  }

  /** `(a,"b,c",d)` after `in.`; stops after ')'. */
  private list(): string[] {
    const src = this.src;
    if (src.charCodeAt(this.pos) !== LPAREN) this.fail('"in" needs a parenthesised list, as in.(a,b)');
    this.pos++;
    const values: string[] = [];
    if (src.charCodeAt(this.pos) === RPAREN) {
      this.pos++;
    } else {
      for (;;) {
        if (values.length === FILTER_LIMITS.maxInValues) this.fail(`"in" list too long: at most ${FILTER_LIMITS.maxInValues} values`);
        if (src.charCodeAt(this.pos) === QUOTE) {
          values.push(this.quoted('list member'));
        } else {
          const start = this.pos;
          for (; this.pos < src.length; this.pos++) {
            const c = src.charCodeAt(this.pos);
            if (c === COMMA || c === RPAREN || c === AMP) break;
          }
          values.push(src.slice(start, this.pos));
        }
        const c = src.charCodeAt(this.pos);
        this.pos++;
        if (c === COMMA) continue;
        if (c === RPAREN) break;
        this.pos--;
        if (this.pos >= src.length || c === AMP) this.fail('unterminated list (missing ")")');
        this.fail('unexpected text after a quoted list member');
      }
    }
    if (this.pos < src.length && src.charCodeAt(this.pos) !== AMP) this.fail('unexpected text after ")"');
    return values;
  }

  /** A double-quoted string at pos; leaves pos after the closing quote. */
  private quoted(what: string): string {
    const src = this.src;
    let out = '';
    let chunk = ++this.pos;
    for (;;) {
      if (this.pos >= src.length) this.fail(`unterminated quote in ${what}`);
      const c = src.charCodeAt(this.pos);
      if (c === QUOTE) break;
      if (c === BACKSLASH) {
        const e = src.charCodeAt(this.pos + 1);
        if (e !== QUOTE && e !== BACKSLASH) {
          this.fail(`bad escape ${JSON.stringify(src.slice(this.pos, this.pos + 2))} in ${what} (only \\" and \\\\ are escapes)`);
        }
        out += src.slice(chunk, this.pos);
        chunk = this.pos + 1; // keep the escaped char
        this.pos += 2;
        continue;
      }
      this.pos++;
    }
    out += src.slice(chunk, this.pos);
    this.pos++;
    if (what === 'column name' && out === '') this.fail('empty column name');
    return out;
  }

  /** Throws, naming the term being parsed (up to the next "&" after the error, at most 80 chars). */
  private fail(problem: string): never {
    let end = this.src.indexOf('&', Math.max(this.pos, this.termStart + 1));
    if (end < 0) end = this.src.length;
    let term = this.src.slice(this.termStart, end);
    if (term.length > 80) term = term.slice(0, 79) + '…';
    throw new BadFilterError(`${problem} in ${JSON.stringify(term)}`);
  }
}

function quote(s: string): string {
  return '"' + s.replace(/[\\"]/g, '\\$&') + '"';
}

/** A column name as filter text: bare when it is an identifier, else quoted. */
export function formatColumn(name: string): string {
  return IDENT.test(name) ? name : quote(name);
}

function formatValue(v: string, member: boolean): string {
  const needsQuote =
    v.charCodeAt(0) === QUOTE || v.includes('&') || (member && (v === '' || v.includes(',') || v.includes(')')));
  return needsQuote ? quote(v) : v;
}

/** One term in canonical text form (quoting only where needed, `is` words lower case). */
export function formatTerm(t: FilterTerm): string {
  const head = formatColumn(t.column) + '=';
  switch (t.op) {
    case 'in':
      return head + 'in.(' + t.values.map((v) => formatValue(v, true)).join(',') + ')';
    case 'is_null':
      return head + 'is.null';
    case 'is_not_null':
      return head + 'is.not_null';
    case 'is_true':
      return head + 'is.true';
    case 'is_false':
      return head + 'is.false';
    default:
      return head + t.op + '.' + formatValue(t.values[0] ?? '', false);
  }
}
