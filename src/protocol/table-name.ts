// The `table` of a subscribe message: "schema.table" or "table", identifiers as Postgres reads
// them, to the names it stores.
import { LIMITS } from './limits.js';
import type { TableName, WireContext } from './types.js';
import { badRequest, clip } from './wire-errors.js';

/**
 * "schema.table" or "table" (schema public), each identifier unquoted (letters, digits, _ and $,
 * not starting with a digit or $; ASCII letters folded to lower case, as Postgres does) or
 * double-quoted with "" standing for a quote. No whitespace outside quotes.
 * Throws BadRequestError.
 */
export function parseTableName(text: string): TableName {
  return tableName(text, {});
}

const UNQUOTED = /[A-Za-z_\u0080-\uffff][A-Za-z0-9_$\u0080-\uffff]*/y;

/** parseTableName, with `ctx` attached to the error. */
export function tableName(text: string, ctx: WireContext): TableName {
  function bad(why: string): never {
    badRequest(`subscribe.table ${JSON.stringify(clip(text))} is not "schema.table" or "table": ${why}`, ctx);
  }
  if (text.length > LIMITS.tableLength) badRequest(`subscribe.table is longer than ${LIMITS.tableLength} characters`, ctx);
  const parts: string[] = [];
  let i = 0;
  for (;;) {
    let ident: string;
    if (text.charCodeAt(i) === 0x22 /* " */) {
      ident = '';
      let j = i + 1;
      for (;;) {
        const q = text.indexOf('"', j);
        if (q < 0) bad('unterminated quoted identifier');
        ident += text.slice(j, q);
        if (text.charCodeAt(q + 1) === 0x22) {
          ident += '"';
          j = q + 2;
        } else {
          i = q + 1;
          break;
        }
      }
      if (ident.length === 0) bad('zero-length quoted identifier');
    } else {
      UNQUOTED.lastIndex = i;
      const m = UNQUOTED.exec(text);
      if (!m) bad(i >= text.length ? 'missing identifier' : `unexpected ${JSON.stringify(text[i])} at ${i}`);
      ident = m[0].replace(/[A-Z]+/g, (s) => s.toLowerCase());
      i += m[0].length;
    }
    if (Buffer.byteLength(ident, 'utf8') > LIMITS.identifierBytes) {
      bad(`identifier longer than ${LIMITS.identifierBytes} bytes`);
    }
    parts.push(ident);
    if (i === text.length) break;
    if (text.charCodeAt(i) !== 0x2e /* . */) bad(`unexpected ${JSON.stringify(text[i])} at ${i}`);
    if (parts.length === 2) bad('too many dots');
    i++;
  }
  const [schema, name] = parts.length === 2 ? (parts as [string, string]) : ['public', parts[0]!];
  return { schema, name, qualified: `${schema}.${name}` };
}
