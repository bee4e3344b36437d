// Exponential backoff with full jitter: a uniformly random delay in [0, min(cap, base * 2^n)),
// so that the many clients a restarting server drops do not all come back at once.

export interface BackoffOptions {
  /** The ceiling of the first delay (default 500 ms). */
  baseMs?: number;
  /** The largest ceiling (default 30 s). */
  capMs?: number;
}

export const DEFAULT_BACKOFF = { baseMs: 500, capMs: 30_000 } as const;

export class Backoff {
  private attempt = 0;
  private readonly baseMs: number;
  private readonly capMs: number;

  constructor(o: BackoffOptions = {}, private readonly random: () => number = Math.random) {
    this.baseMs = Math.max(0, o.baseMs ?? DEFAULT_BACKOFF.baseMs);
    this.capMs = Math.max(this.baseMs, o.capMs ?? DEFAULT_BACKOFF.capMs);
  }

  /** The next delay; each call doubles the ceiling, up to the cap. */
  next(): number {
    const ceiling = Math.min(this.capMs, this.baseMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    return Math.floor(this.random() * ceiling);
  }

  get attempts(): number {
    return this.attempt;
  }

  reset(): void {
    this.attempt = 0;
  }
}
