// Exponential backoff with full jitter for the daemon's reconnects. The delay computation is the
// client SDK's (src/client/jitter.ts: pure, no imports), not its Backoff class.
import { fullJitterDelay } from '../client/jitter.js';

export class RetryBackoff {
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
