// The states of a Capture and the only changes between them. Capture.setState checks every
// change against this table; a change it does not list is a bug (CaptureStateError).
//
//   idle ─start()─► connecting ──started──► streaming
//                    │  ▲   │                 │
//                    │  │   └──(stream lost)──┴──► backoff ─┐
//                    │  └──── full-jitter delay ◄───────────┘
//                    │
//   connecting, streaming, backoff ──(fatal error)──► failed          (terminal)
//   idle, connecting, streaming, backoff ──stop()──► stopping ──► stopped   (terminal)
//
// A fatal error (a failed start-up check, a temporary slot lost, downstream refusing a
// transaction) goes to `failed` at once and the stream is released afterwards: `failed` is what
// /status and the health check report while the owner shuts down. stop() after that releases
// what is left and leaves the state `failed`; stop() while stopping waits for the same release.
import type { CaptureState } from './types.js';

export const TRANSITIONS: Readonly<Record<CaptureState, readonly CaptureState[]>> = {
  idle: ['connecting', 'stopping'],
  connecting: ['streaming', 'backoff', 'failed', 'stopping'],
  streaming: ['backoff', 'failed', 'stopping'],
  backoff: ['connecting', 'failed', 'stopping'],
  stopping: ['stopped'],
  stopped: [],
  failed: [],
};

/** Every state, in the table's order. */
export const CAPTURE_STATES = Object.keys(TRANSITIONS) as CaptureState[];

/** Whether the table lists from → to. Staying in a state is not a change and is not listed. */
export function canMove(from: CaptureState, to: CaptureState): boolean {
  return TRANSITIONS[from].includes(to);
}

/** No change leaves it: the capture is done. */
export function isTerminal(state: CaptureState): boolean {
  return TRANSITIONS[state].length === 0;
}
