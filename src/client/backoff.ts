// The client's reconnect backoff: full jitter (./jitter.ts) with the client's defaults.
import { JitterBackoff } from './jitter.js';

export interface BackoffOptions {
  /** The ceiling of the first delay (default 500 ms). */
  baseMs?: number;
  /** The largest ceiling (default 30 s). */
  capMs?: number;
}

export const DEFAULT_BACKOFF = { baseMs: 500, capMs: 30_000 } as const;

export class Backoff extends JitterBackoff {
  constructor(o: BackoffOptions = {}, random: () => number = Math.random) {
    super(o.baseMs ?? DEFAULT_BACKOFF.baseMs, o.capMs ?? DEFAULT_BACKOFF.capMs, random);
  }
}
