// Parser of Postgres array literals as array_out writes them: `{1,2,NULL}`,
// `{"a,b","c\"d",NULL,"NULL"}`, `{{1,2},{3,4}}`, `{}`, `[0:1]={1,2}`, and custom delimiters
// (`{(1,1),(0,0);(3,3),(2,2)}` for box[]). One pass, char-code checks, no regex, no throw.

import type { Decoder } from './values.js';

const OPEN = 123; // {
const CLOSE = 125; // }
const QUOTE = 34; // "
const BACKSLASH = 92; // \
const LBRACKET = 91; // [
const RBRACKET = 93; // ]

function isSpace(c: number): boolean {
  return c === 32 || (c >= 9 && c <= 13);
}

/**
 * Parses an array literal into nested JS arrays. Unquoted NULL (any case) becomes null; every
 * other element, quoted or not, is unescaped and passed to `decodeElement` (so the quoted
 * string "NULL" reaches the decoder as the text NULL). Dimension decorations such as
 * `[0:1]=` are accepted and dropped: JSON arrays always start at index 0.
 *
 * Postgres output is always well-formed, but if anything is off the raw `text` is returned
 * instead of throwing. Exceptions thrown by `decodeElement` itself are not caught.
 */
export function parseArray(text: string, decodeElement: Decoder, delim = ','): unknown[] | string {
  const len = text.length;
  const d = delim.charCodeAt(0);
  let i = 0;
  if (text.charCodeAt(0) === LBRACKET) {
    const eq = text.indexOf('=');
    if (eq < 0 || text.charCodeAt(eq - 1) !== RBRACKET) return text;
    i = eq + 1;
  }
  while (i < len && isSpace(text.charCodeAt(i))) i++;
  if (text.charCodeAt(i) !== OPEN) return text;
  i++;

  const root: unknown[] = [];
  const parents: unknown[][] = [];
  let cur = root;
  let expectItem = true; // after '{' or a delimiter
  let mayClose = true; // '}' allowed while expecting an item: only right after '{'

  for (;;) {
    if (i >= len) return text;
    const c = text.charCodeAt(i);
    if (isSpace(c)) {
      i++;
      continue;
    }
    if (expectItem) {
      if (c === OPEN) {
        const child: unknown[] = [];
        cur.push(child);
        parents.push(cur);
        cur = child;
        mayClose = true;
        i++;
        continue;
      }
      if (c === QUOTE) {
        let j = i + 1;
        let seg = j;
        let out = '';
        for (;;) {
          if (j >= len) return text;
          const ch = text.charCodeAt(j);
          if (ch === QUOTE) break;
          if (ch === BACKSLASH) {
            out += text.slice(seg, j);
            seg = j + 1; // keep the escaped char as the start of the next segment
            j += 2;
            continue;
          }
          j++;
        }
        out += text.slice(seg, j);
        cur.push(decodeElement(out));
        i = j + 1;
        expectItem = false;
        continue;
      }
      if (c === CLOSE) {
        if (!mayClose) return text; // '{1,}'
      } else if (c === d) {
        return text; // '{,1}'
      } else {
        // Unquoted element: runs to the delimiter or '}'; array_out never leaves whitespace or
        // backslashes in one, but array_in allows both, so handle them anyway.
        let j = i;
        let escaped = false;
        for (;;) {
          if (j >= len) return text;
          const ch = text.charCodeAt(j);
          if (ch === d || ch === CLOSE) break;
          if (ch === OPEN || ch === QUOTE) return text;
          if (ch === BACKSLASH) {
            escaped = true;
            j += 2;
            continue;
          }
          j++;
        }
        let end = j;
        while (isSpace(text.charCodeAt(end - 1)) && text.charCodeAt(end - 2) !== BACKSLASH) end--;
        const raw = text.slice(i, end);
        if (escaped) cur.push(decodeElement(unescape(raw)));
        else if (raw.length === 4 && (raw === 'NULL' || raw.toUpperCase() === 'NULL')) cur.push(null);
        else cur.push(decodeElement(raw));
        i = j;
        expectItem = false;
        continue;
      }
    } else if (c === d) {
      expectItem = true;
      mayClose = false;
      i++;
      continue;
    } else if (c !== CLOSE) {
      return text; // junk after an element
    }

    // c === CLOSE: finish the current array
    i++;
    const parent = parents.pop();
    if (parent === undefined) {
      while (i < len && isSpace(text.charCodeAt(i))) i++;
      return i === len ? root : text;
    }
    cur = parent;
    expectItem = false;
  }
}

function unescape(s: string): string {
  let out = '';
  let seg = 0;
  for (let j = 0; j < s.length; j++) {
    if (s.charCodeAt(j) === BACKSLASH) {
      out += s.slice(seg, j);
      seg = ++j;
    }
  }
  return out + s.slice(seg);
}
