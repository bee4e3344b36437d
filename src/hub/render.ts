// Wire bodies of changes, rendered once per change and shared by every subscriber: a delivery
// is `changePrefix(sub)` + body, the body starting with `,"pos":` and closing the object.
import type { Row } from '../capture/pgoutput.types.js';
import type { CapturedChange, Transaction } from '../capture/types.js';

export function changeBody(tx: Transaction, c: CapturedChange): string {
  const head = `,"pos":"${tx.lsnText}:${c.index}","commit_time":"${tx.commitTime}"`;
  switch (c.tag) {
    case 'insert':
      return `${head},"op":"insert","table":${JSON.stringify(c.relation.qualified)},"new":${JSON.stringify(c.new)}}`;
    case 'update': {
      let s = `${head},"op":"update","table":${JSON.stringify(c.relation.qualified)},"new":${JSON.stringify(c.new)}`;
      if (c.old && c.relation.replicaIdentity === 'full') s += `,"old":${JSON.stringify(c.old)},"changed":${JSON.stringify(changedColumns(c.old, c.new))}`;
      return s + '}';
    }
    case 'delete':
      return `${head},"op":"delete","table":${JSON.stringify(c.relation.qualified)},"old":${JSON.stringify(c.old)}}`;
    case 'truncate':
      return `${head},"op":"truncate","table":${JSON.stringify(c.relation.qualified)}}`;
  }
}

/** An update that took the row out of the subscription: the row as the subscriber last saw it. */
export function leaveBody(tx: Transaction, c: CapturedChange & { tag: 'update' }): string {
  return `,"pos":"${tx.lsnText}:${c.index}","commit_time":"${tx.commitTime}","op":"leave","table":${JSON.stringify(c.relation.qualified)},"old":${JSON.stringify(c.old)}}`;
}

/**
 * An update whose old row the subscriber may not read: the new row entering its view, as an
 * insert (no `old`, no `changed`: both would tell what the row was).
 */
export function enterBody(tx: Transaction, c: CapturedChange & { tag: 'update' }): string {
  return `,"pos":"${tx.lsnText}:${c.index}","commit_time":"${tx.commitTime}","op":"insert","table":${JSON.stringify(c.relation.qualified)},"new":${JSON.stringify(c.new)}}`;
}

/** Columns whose values differ between the old and the new row. */
export function changedColumns(old: Row, row: Row): string[] {
  const out: string[] = [];
  for (const k in row) {
    const a = row[k];
    const b = old[k];
    if (a === b) continue;
    if (a !== null && b !== null && typeof a === 'object' && typeof b === 'object' && JSON.stringify(a) === JSON.stringify(b)) continue;
    out.push(k);
  }
  return out;
}

/**
 * A body to keep in the history window. Not from Buffer's shared 8 KiB pool: a long-lived slice
 * would keep its whole slab, and the short-lived frames allocated beside it, for the window's
 * lifetime (the soak measured the window's Buffers at 2-3 times their bytes that way).
 */
export function encodeBody(text: string): Buffer {
  const body = Buffer.allocUnsafeSlow(Buffer.byteLength(text));
  body.write(text);
  return body;
}

/**
 * Bytes a transaction holds in memory, for the ring's bound: every value the window keeps, large
 * text and json/jsonb documents (walked) included. Cheap, not exact:
 * calibrated with bench/ring-memory.ts (heap and memory outside it after a full GC); the wire
 * bodies are added as they are encoded (HistoryRing.addBody).
 */
export function estimateBytes(tx: Transaction): number {
  let n = 580;
  for (const c of tx.changes) {
    n += 350;
    switch (c.tag) {
      case 'insert':
        n += rowBytes(c.new, null);
        break;
      case 'update':
        // Unchanged TOAST values of the new row are the old row's own strings, held once.
        n += rowBytes(c.new, c.old ? c.unchangedToast : null);
        if (c.old) n += rowBytes(c.old, null);
        break;
      case 'delete':
        if (c.old) n += rowBytes(c.old, null);
        break;
    }
  }
  return n;
}

function rowBytes(row: Row, shared: readonly string[] | null): number {
  let n = 16;
  for (const k in row) {
    n += k.length + 16;
    if (shared && shared.includes(k)) continue;
    const v = row[k];
    n += typeof v === 'string' ? textBytes(v) : typeof v === 'object' && v !== null ? documentBytes(v) : 8;
  }
  return n;
}

/** V8 keeps a string at one byte per character, or two when it has one beyond Latin-1. */
function textBytes(s: string): number {
  // Pure ASCII is one byte per character; anything else is counted at two (Latin-1 text is
  // overcounted, harmlessly). Short strings are not worth the look.
  return s.length > 32 && Buffer.byteLength(s, 'utf8') !== s.length ? 2 * s.length : s.length;
}

/**
 * A parsed json/jsonb value or an array, walked without recursion (a document may nest deeper
 * than the stack). Per object, array, member and element: what V8 takes for them, roughly; an
 * object's keys are counted in each object though V8 shares those repeated across objects
 * (overcounting documents of many small alike objects, undercounting maps of distinct keys,
 * each by less than 2: bench/ring-memory.ts).
 */
function documentBytes(doc: object): number {
  let n = 0;
  const stack: unknown[] = [doc];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v === 'string') n += 16 + textBytes(v);
    else if (typeof v === 'number') n += 8;
    else if (Array.isArray(v)) {
      n += 48 + 8 * v.length;
      for (let i = 0; i < v.length; i++) if (typeof v[i] !== 'boolean' && v[i] !== null) stack.push(v[i]);
    } else if (typeof v === 'object' && v !== null) {
      n += 32;
      const o = v as Record<string, unknown>;
      for (const k in o) {
        n += 32 + k.length;
        const x = o[k];
        if (typeof x !== 'boolean' && x !== null) stack.push(x);
      }
    }
  }
  return n;
}
