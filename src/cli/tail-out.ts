// The lines `walcast tail` prints, gathered into writes of about 64 KiB: one write per change
// would be one system call per change, one string per transaction would be as large as the
// transaction. Flushed at each commit, before the transaction may be acknowledged. A full
// output (a pipe to a slow reader) holds the replication socket until it drained.
import { renderChange } from '../capture/render.js';
import type { CapturedChange, TransactionHead } from '../capture/types.js';

const FLUSH_AT = 64 * 1024;

export class LineWriter {
  private pending = '';

  private held = false;

  constructor(
    private readonly out: NodeJS.WritableStream,
    private readonly hold: (held: boolean) => void,
  ) {}

  change = (head: TransactionHead, c: CapturedChange): void => {
    this.pending += JSON.stringify(renderChange(head, c)) + '\n';
    if (this.pending.length >= FLUSH_AT) this.flush();
  };

  flush = (): void => {
    if (this.pending === '') return;
    const text = this.pending;
    this.pending = '';
    if (this.out.write(text) || this.held) return;
    this.held = true;
    this.hold(true);
    this.out.once('drain', () => {
      this.held = false;
      this.hold(false);
    });
  };
}
