// Wire bodies of changes, rendered once per change and shared by every subscriber: a delivery
// is `changePrefix(sub)` + body, the body starting with `,"pos":` and closing the object.
import type { Row } from '../capture/pgoutput.types.js';
import type { Change, Transaction } from '../capture/types.js';

export function changeBody(tx: Transaction, c: Change): string {
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
    case 'message':
      return `${head},"op":"message","prefix":${JSON.stringify(c.prefix)}}`;
  }
}

/** An update that took the row out of the subscription: the row as the subscriber last saw it. */
export function leaveBody(tx: Transaction, c: Change & { tag: 'update' }): string {
  return `,"pos":"${tx.lsnText}:${c.index}","commit_time":"${tx.commitTime}","op":"leave","table":${JSON.stringify(c.relation.qualified)},"old":${JSON.stringify(c.old)}}`;
}

/**
 * An update whose old row the subscriber may not read: the new row entering its view, as an
 * insert (no `old`, no `changed`: both would tell what the row was).
 */
export function enterBody(tx: Transaction, c: Change & { tag: 'update' }): string {
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

/** Bytes a transaction holds in memory, for the ring's bound; cheap, not exact. */
export function estimateBytes(tx: Transaction): number {
  // Calibrated with bench/ring-memory.ts (heap and Buffers after a full GC, within 5%); the
  // wire bodies are added as they are encoded (HistoryRing.addBody).
  let n = 420;
  for (const c of tx.changes) {
    n += 250;
    if (c.tag === 'insert' || c.tag === 'update') n += rowBytes(c.new);
    if ((c.tag === 'update' || c.tag === 'delete') && c.old) n += rowBytes(c.old);
  }
  return n;
}

function rowBytes(row: Row): number {
  let n = 16;
  for (const k in row) {
    const v = row[k];
    n += k.length + 16 + (typeof v === 'string' ? v.length : typeof v === 'object' && v !== null ? 64 : 8);
  }
  return n;
}
