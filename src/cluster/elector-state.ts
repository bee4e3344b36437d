// The states of an Elector (the capture lease, docs/dev/cluster-plan.md §4) and the only changes
// between them.
//
//   new ──start()──► candidate ──CAS won (create of a free key, update of an expired one)──► leader
//                     ▲     ▲                                                                  │
//                     │     └──── renew lost its CAS / no successful renew for staleMs ────────┤
//                     │                                                                        │
//                     └──── cooldownMs passed ──── cooldown ◄──────────── resign() ────────────┘
//
//   any but stopped ──stop()──► stopped   (terminal)
//
// onElected fires on entering `leader`, onDeposed on leaving it, and `leader` never moves to
// itself: the two callbacks strictly alternate, starting with onElected.

export type ElectorState = 'new' | 'candidate' | 'leader' | 'cooldown' | 'stopped';

export const ELECTOR_TRANSITIONS: Readonly<Record<ElectorState, readonly ElectorState[]>> = {
  new: ['candidate', 'stopped'],
  candidate: ['leader', 'stopped'],
  leader: ['candidate', 'cooldown', 'stopped'],
  cooldown: ['candidate', 'stopped'],
  stopped: [],
};

/** Whether the table lists from → to. */
export function canElectorMove(from: ElectorState, to: ElectorState): boolean {
  return ELECTOR_TRANSITIONS[from].includes(to);
}

/** Why a leader stopped being one (onDeposed's reason). */
export const DEPOSED = {
  /** A renew's CAS failed: someone else wrote the key. */
  lost: 'lost',
  /** No successful renew for staleMs (NATS unreachable, or this process was frozen). */
  stale: 'stale',
  resigned: 'resigned',
  stopped: 'stopped',
} as const;
export type DeposedReason = (typeof DEPOSED)[keyof typeof DEPOSED];
