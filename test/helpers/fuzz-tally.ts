// What the protocol fuzz (test/integration/fuzz.test.ts) counts while it runs, and the problems it
// found: one FuzzLog shared by every fuzzer, read by the assertions at the end.

export class Tally {
  readonly counts = new Map<string, number>();
  add(key: string, n = 1): void {
    this.counts.set(key, (this.counts.get(key) ?? 0) + n);
  }
  get(key: string): number {
    return this.counts.get(key) ?? 0;
  }
  toString(): string {
    return [...this.counts].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k}: ${n}`).join(', ') || '(none)';
  }
}

/** Where a problem was seen: a connection's name and the frames it sent last. */
export interface ProblemSource {
  readonly name: string;
  readonly recent: readonly string[];
}

export function hex(b: Buffer | string, max = 48): string {
  const buf = typeof b === 'string' ? Buffer.from(b) : b;
  return `${buf.subarray(0, max).toString('hex')}${buf.length > max ? '…' : ''} (${buf.length} B)`;
}

export class FuzzLog {
  readonly sentFrames = new Tally();
  readonly replies = new Tally();
  readonly closes = new Tally();
  readonly closeReasons = new Tally();
  readonly clientErrors = new Tally();
  readonly handshakes = new Tally();
  readonly probes = new Tally();
  readonly connections = new Tally();
  /** How the connections whose token expired ended. */
  readonly expiries = new Tally();
  bytesSent = 0;
  /** Problems by category, each with a few examples (connection, detail, the frames sent last). */
  readonly problems = new Map<string, string[]>();

  problem(category: string, conn: ProblemSource | null, detail: string): void {
    const list = this.problems.get(category) ?? [];
    this.problems.set(category, list);
    if (list.length < 3) list.push(`${conn ? `${conn.name}: ` : ''}${detail.slice(0, 400)}${conn ? `; last frames sent: ${conn.recent.join(' | ')}` : ''}`);
    else list.push('');
  }
}
