// Exponential backoff with full jitter for the daemon's reconnects: the pure, dependency-free
// module the client SDK's Backoff also builds on (src/client/jitter.ts), not the SDK itself.
export { JitterBackoff as RetryBackoff } from '../client/jitter.js';
