// The lines `walcast tail` prints, gathered into writes of about 64 KiB: one write per change
// would be one system call per change, one string per transaction would be as large as the
// transaction. Flushed at each commit, before the transaction may be acknowledged.
import { renderChange } from '../capture/render.js';
import type { Change, TransactionHead } from '../capture/types.js';

const FLUSH_AT = 64 * 1024;

export class LineWriter {
  private pending = '';

  constructor(private readonly out: NodeJS.WritableStream) {}

  change = (head: TransactionHead, c: Change): void => {
    this.pending += JSON.stringify(renderChange(head, c)) + '\n';
    if (this.pending.length >= FLUSH_AT) this.flush();
  };

  flush = (): void => {
    if (this.pending === '') return;
    const text = this.pending;
    this.pending = '';
    this.out.write(text);
  };
}
