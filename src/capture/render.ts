// A change as one JSON object, the shape `walcast tail` prints (and the wire protocol reuses).
import type { CapturedChange, Transaction, TransactionHead } from './types.js';

export interface RenderedChange {
  pos: string;
  commit_time: string;
  op: string;
  table?: string;
  new?: Record<string, unknown>;
  old?: Record<string, unknown> | null;
  unchanged_toast?: string[];
  prefix?: string;
  content?: string;
}

export function renderChange(tx: Pick<TransactionHead, 'lsnText' | 'commitTime'>, c: CapturedChange): RenderedChange {
  const base = { pos: `${tx.lsnText}:${c.index}`, commit_time: tx.commitTime };
  switch (c.tag) {
    case 'insert':
      return { ...base, op: 'insert', table: c.relation.qualified, new: c.new };
    case 'update': {
      const out: RenderedChange = { ...base, op: 'update', table: c.relation.qualified, new: c.new, old: c.old };
      if (c.unchangedToast) out.unchanged_toast = c.unchangedToast;
      return out;
    }
    case 'delete':
      return { ...base, op: 'delete', table: c.relation.qualified, old: c.old };
    case 'truncate':
      return { ...base, op: 'truncate', table: c.relation.qualified };
  }
}

/** One JSON line per change, the whole transaction in one string (`walcast tail` prints change by change instead). */
export function renderLines(tx: Transaction): string {
  let out = '';
  for (const c of tx.changes) out += JSON.stringify(renderChange(tx, c)) + '\n';
  return out;
}
