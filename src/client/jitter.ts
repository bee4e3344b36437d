// Exponential backoff with full jitter: a uniformly random delay in [0, min(cap, base * 2^n)),
// so that the many clients a restarting server drops do not all come back at once.
// Pure and dependency-free: the client's Backoff and the daemon's RetryBackoff
// (src/util/backoff.ts) share it. It lives in src/client/ because the client's modules must
// load in a browser from their own directory (dist/src/client/ served as it is).

/** The delay before retry number `attempt` (from 0): the ceiling doubles each attempt, up to `capMs`. */
export function fullJitterDelay(attempt: number, baseMs: number, capMs: number, random: () => number): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

/** Successive full-jitter delays, from `reset()` on. */
export class JitterBackoff {
  private attempt = 0;
  private readonly baseMs: number;
  private readonly capMs: number;

  constructor(baseMs: number, capMs: number, private readonly random: () => number = Math.random) {
    this.baseMs = Math.max(0, baseMs);
    this.capMs = Math.max(this.baseMs, capMs);
  }

  /** The next delay; each call doubles the ceiling, up to the cap. */
  next(): number {
    return fullJitterDelay(this.attempt++, this.baseMs, this.capMs, this.random);
  }

  /** Delays handed out since the last reset. */
  get attempts(): number {
    return this.attempt;
  }

  reset(): void {
    this.attempt = 0;
  }
}
