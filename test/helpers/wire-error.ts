// The WireError a call throws (protocol parsing tests).
import { WireError } from '../../src/errors.js';

/** The error thrown for a frame, with its code, message and context. */
export function errorOf(fn: () => unknown): WireError & { ref?: unknown; id?: unknown } {
  try {
    fn();
  } catch (err) {
    if (err instanceof WireError) return err;
    throw err;
  }
  throw new Error('expected a WireError, nothing was thrown');
}
