// Exponential backoff with full jitter for the daemon's reconnects. One implementation serves
// both sides: the client SDK's (src/client/backoff.ts, which must load in a browser on its own).
import { Backoff as JitterBackoff } from '../client/backoff.js';

export class Backoff extends JitterBackoff {
  constructor(baseMs: number, capMs: number, random: () => number = Math.random) {
    super({ baseMs, capMs }, random);
  }
}
