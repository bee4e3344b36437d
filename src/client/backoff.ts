// The client's reconnect backoff: full jitter (./jitter.ts) with the client's defaults.
import { fullJitterDelay } from './jitter.js';

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
    return fullJitterDelay(this.attempt++, this.baseMs, this.capMs, this.random);
  }

  get attempts(): number {
    return this.attempt;
  }

  reset(): void {
    this.attempt = 0;
  }
}
