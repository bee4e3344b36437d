// Supabase Realtime `postgres_changes` filters, as @supabase/realtime-js's postgresChangesFilter()
// writes them, translated to walcast's row filter model (src/hub/filter-parse.ts). The result is
// exactly what parseFilter gives for its own `text`.
//
//   filter  := cond ("," cond)*                  (AND; whitespace around a cond is ignored)
//   cond    := column "=" ["not."] op
//   column  := [\p{L}\p{N}_$]+  |  quoted
//   op      := ("eq"|"neq"|"lt"|"lte"|"gt"|"gte") "." value
//            | "in.(" [ member ("," member)* ] ")"
//            | "is." ("null"|"true"|"false"|"unknown")     (any case)
//   value   := quoted | unquoted text up to the next ",", trimmed
//   member  := quoted | unquoted text up to the next "," or ")", trimmed, not empty
//   quoted  := '"' ( any char but '"' and '\' | '\' any char )* '"'
//
// The client quotes every value holding , ( ) " \ or surrounding whitespace, so unquoted text
// holding one of , ( ) " \ is refused rather than guessed at (servers have read it differently).
// Members are strings like any value: an unquoted `null` member is the text "null".
//
// Negation is translated only where the walcast operator matches exactly the same rows under SQL
// three-valued logic: NOT (x = v) is x <> v; NOT (x < v) is x >= v (btree orders are total,
// float NaN included, and a NULL x satisfies neither side); NOT (x IN (a, b)) is x <> a AND
// x <> b (one neq term per member; NOT IN () matches every row: no term); NOT (x IS NULL) is
// x IS NOT NULL. NOT (x IS TRUE) also holds for NULL, which no walcast operator can say: refused.
import { BadFilterError } from '../errors.js';
import { FILTER_LIMITS, formatTerm, type Filter, type FilterOp, type FilterTerm } from '../hub/filter-parse.js';

type Comparison = 'eq' | 'neq' | 'lt' | 'lte' | 'gt' | 'gte';

/** A comparison, and the one its negation (`not.<op>`) translates to. */
const NEGATED: Readonly<Record<Comparison, Comparison>> = {
  eq: 'neq',
  neq: 'eq',
  lt: 'gte',
  lte: 'gt',
  gt: 'lte',
  gte: 'lt',
};

const IS_VALUES: Readonly<Record<string, FilterOp>> = {
  null: 'is_null',
  unknown: 'is_null', // IS UNKNOWN is IS NULL on the booleans it applies to
  true: 'is_true',
  false: 'is_false',
};

const SUPPORTED = 'walcast filters support eq, neq, lt, lte, gt, gte, in, is (and not. before them, but for not.is.true and not.is.false)';
const QUOTE_HINT = 'double-quote values holding , ( ) " or \\ (escaping " and \\ with \\), as postgresChangesFilter() does';

const QUOTE = 34;
const BACKSLASH = 92;
const COMMA = 44;
const LPAREN = 40;
const RPAREN = 41;
const DOT = 46;
const EQUALS = 61;

const BARE_COLUMN = /[\p{L}\p{N}_$]+/uy;
const OP_WORD = /[A-Za-z]*/y;
const SPACE = /\s/;

/** A Supabase postgres_changes filter (undefined/null/'' = none) as walcast's Filter; BadFilterError (message says which part and why) for what walcast cannot express. */
export function translateSupabaseFilter(filter: string | null | undefined): Filter {
  if (filter === undefined || filter === null) return { terms: [], text: '' };
  if (typeof filter !== 'string') throw new BadFilterError(`filter must be a string, not ${typeof filter}`);
  if (filter.length > FILTER_LIMITS.maxLength) {
    throw new BadFilterError(`filter is ${filter.length} characters long; the limit is ${FILTER_LIMITS.maxLength}`);
  }
  if (filter.trim() === '') return { terms: [], text: '' };
  const terms = new Translator(filter).translate();
  const text = terms.map(formatTerm).join('&');
  if (text.length > FILTER_LIMITS.maxLength) {
    throw new BadFilterError(`filter is ${text.length} characters long as a walcast filter (${text.slice(0, 40)}…); the limit is ${FILTER_LIMITS.maxLength}`);
  }
  return { terms, text };
}

class Translator {
  private pos = 0;
  private condStart = 0;
  private readonly terms: FilterTerm[] = [];

  constructor(private readonly src: string) {}

  translate(): FilterTerm[] {
    for (;;) {
      this.condStart = this.pos;
      this.cond();
      if (this.pos >= this.src.length) return this.terms;
      this.pos++; // ',': cond() stops only at ',' or the end
    }
  }

  private cond(): void {
    const src = this.src;
    this.skipSpace();
    if (this.pos >= src.length || src.charCodeAt(this.pos) === COMMA) {
      this.fail(`empty condition at character ${this.pos + 1} (two "," in a row, or a leading or trailing ",")`);
    }
    const column = src.charCodeAt(this.pos) === QUOTE ? this.quoted('column name') : this.bareColumn();
    if (column === '') this.fail('empty column name');
    this.skipSpace();
    if (src.charCodeAt(this.pos) !== EQUALS) this.fail(this.pos >= src.length || src.charCodeAt(this.pos) === COMMA ? 'missing "="' : 'invalid column name (column names are letters, digits, _ and $; double-quote others)');
    this.pos++;
    let op = this.opWord();
    const negated = op === 'not';
    if (negated) op = this.opWord();
    if (op === 'not') this.fail('"not." may appear only once');
    if (op === 'in') {
      const values = this.list();
      if (negated) for (const v of values) this.push({ column, op: 'neq', values: [v] });
      else this.push({ column, op: 'in', values });
    } else if (op === 'is') {
      this.push({ column, op: this.isValue(negated), values: [] });
    } else {
      const value = this.value();
      this.push({ column, op: negated ? NEGATED[op] : op, values: [value] });
    }
    this.skipSpace();
    if (this.pos < src.length && src.charCodeAt(this.pos) !== COMMA) {
      // unquoted values and "is" words run to the next ",": only ")" and closing quotes get here
      this.fail(op === 'in' ? 'unexpected text after ")"' : 'unexpected text after the quoted value');
    }
  }

  /** An operator name and its ".", leaving pos after the dot; refuses what walcast cannot do. */
  private opWord(): 'not' | Comparison | 'in' | 'is' {
    OP_WORD.lastIndex = this.pos;
    const word = (OP_WORD.exec(this.src) as RegExpExecArray)[0];
    this.pos += word.length;
    if (word === '') this.fail('missing operator');
    if (word !== 'not' && word !== 'in' && word !== 'is' && !Object.hasOwn(NEGATED, word)) {
      this.fail(`unsupported operator ${JSON.stringify(word)}: ${SUPPORTED}`);
    }
    if (this.src.charCodeAt(this.pos) !== DOT) this.fail(`missing "." after ${JSON.stringify(word)}`);
    this.pos++;
    return word as 'not' | Comparison | 'in' | 'is';
  }

  private bareColumn(): string {
    BARE_COLUMN.lastIndex = this.pos;
    const m = BARE_COLUMN.exec(this.src);
    if (m === null) {
      this.fail(this.src.charCodeAt(this.pos) === EQUALS ? 'missing column name' : 'invalid column name (column names are letters, digits, _ and $; double-quote others)');
    }
    this.pos += m[0].length;
    return m[0];
  }

  /** A comparison's value: quoted, or unquoted up to the next "," and trimmed. */
  private value(): string {
    this.skipSpace();
    if (this.src.charCodeAt(this.pos) === QUOTE) return this.quoted('value');
    return this.unquoted('value', false);
  }

  /** `(a,"b,c",d)` after `in.`; leaves pos after ')'. */
  private list(): string[] {
    const src = this.src;
    this.skipSpace();
    if (src.charCodeAt(this.pos) !== LPAREN) this.fail('"in" needs a parenthesised list, as in.(a,b)');
    this.pos++;
    this.skipSpace();
    const values: string[] = [];
    if (src.charCodeAt(this.pos) === RPAREN) {
      this.pos++;
      return values;
    }
    for (;;) {
      if (values.length === FILTER_LIMITS.maxInValues) this.fail(`"in" list too long: at most ${FILTER_LIMITS.maxInValues} values`);
      this.skipSpace();
      if (src.charCodeAt(this.pos) === QUOTE) {
        values.push(this.quoted('list member'));
        this.skipSpace();
      } else {
        const v = this.unquoted('list member', true);
        if (v === '') this.fail('empty list member (write "" for the empty string)');
        values.push(v);
      }
      if (this.pos >= src.length) this.fail('unterminated list (missing ")")');
      const c = src.charCodeAt(this.pos);
      this.pos++;
      if (c === RPAREN) return values;
      if (c !== COMMA) {
        this.pos--;
        this.fail('unexpected text after a quoted list member');
      }
    }
  }

  /** Text up to "," (or ")" in a list) or the end, trimmed; refuses the characters that need quotes. */
  private unquoted(what: string, member: boolean): string {
    const src = this.src;
    const start = this.pos;
    for (; this.pos < src.length; this.pos++) {
      const c = src.charCodeAt(this.pos);
      if (c === COMMA || (member && c === RPAREN)) break;
      if (c === QUOTE || c === BACKSLASH || c === LPAREN || c === RPAREN) {
        this.fail(`unquoted ${what} holds ${JSON.stringify(src[this.pos])}: ${QUOTE_HINT}`);
      }
    }
    return src.slice(start, this.pos).trim();
  }

  /** The word after `is.` (pos is there) as a walcast operator, negated when `not.is`. */
  private isValue(negated: boolean): FilterOp {
    const src = this.src;
    let end = src.indexOf(',', this.pos);
    if (end < 0) end = src.length;
    const word = src.slice(this.pos, end).trim();
    const lower = word.toLowerCase();
    const op = Object.hasOwn(IS_VALUES, lower) ? IS_VALUES[lower] : undefined;
    if (op === undefined) this.fail(`unknown "is" value ${JSON.stringify(word)} (expected null, true, false or unknown)`);
    this.pos = end;
    if (!negated) return op;
    if (op === 'is_null') return 'is_not_null';
    this.fail(`not.is.${lower} is not supported: IS NOT ${lower.toUpperCase()} also matches NULL, which no walcast operator expresses (neq.${lower} and is.${lower === 'true' ? 'false' : 'true'} leave out NULL rows)`);
  }

  /** A double-quoted string at pos, `\` escaping any char; leaves pos after the closing quote. */
  private quoted(what: string): string {
    const src = this.src;
    let out = '';
    let chunk = ++this.pos;
    for (;;) {
      if (this.pos >= src.length) this.fail(`unterminated quote in ${what}`);
      const c = src.charCodeAt(this.pos);
      if (c === QUOTE) break;
      if (c === BACKSLASH) {
        if (this.pos + 1 >= src.length) this.fail(`unterminated quote in ${what}`);
        out += src.slice(chunk, this.pos);
        chunk = this.pos + 1; // keep the escaped char
        this.pos += 2;
        continue;
      }
      this.pos++;
    }
    out += src.slice(chunk, this.pos);
    this.pos++;
    return out;
  }

  private push(term: FilterTerm): void {
    if (this.terms.length === FILTER_LIMITS.maxTerms) {
      this.fail(`too many conditions: at most ${FILTER_LIMITS.maxTerms} walcast terms are allowed (a not.in makes one per member)`);
    }
    this.terms.push(term);
  }

  private skipSpace(): void {
    while (this.pos < this.src.length && SPACE.test(this.src[this.pos])) this.pos++;
  }

  /** Throws, naming the condition being read (at most 80 chars of it). */
  private fail(problem: string): never {
    let cond = this.src.slice(this.condStart, this.condEnd()).trim();
    if (cond.length > 80) cond = cond.slice(0, 79) + '…';
    throw new BadFilterError(`${problem} in ${JSON.stringify(cond)}`);
  }

  /** Where the condition at condStart ends: its first "," outside quotes and parentheses. */
  private condEnd(): number {
    const src = this.src;
    let depth = 0;
    let quoted = false;
    for (let i = this.condStart; i < src.length; i++) {
      const c = src.charCodeAt(i);
      if (quoted) {
        if (c === BACKSLASH) i++;
        else if (c === QUOTE) quoted = false;
      } else if (c === QUOTE) {
        quoted = true;
      } else if (c === LPAREN) {
        depth++;
      } else if (c === RPAREN) {
        depth = Math.max(depth - 1, 0);
      } else if (c === COMMA && depth === 0) {
        return i;
      }
    }
    return src.length;
  }
}
