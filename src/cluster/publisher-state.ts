// The states of a Publisher and the only changes between them (docs/dev/cluster-plan.md §3.2).
//
//   open ──10071 (wrong last sequence: another writer appended)──► fenced   (terminal)
//     │
//     ├───(no PubAck after one retry, no responders, odd PubAck)───► failed   (terminal)
//     │
//     └───close()─────────────────────────────────────────────────► closed   (terminal)
//
// Leaving `open` stops sending: what is queued is dropped and its publish() calls reject with
// the error; what is in flight still settles and its PubAcks still count in the ledger, so the
// owner (takeover, 3b) knows what is stored before it re-fences under a new epoch.

export type PublisherState = 'open' | 'fenced' | 'failed' | 'closed';

export const PUBLISHER_TRANSITIONS: Readonly<Record<PublisherState, readonly PublisherState[]>> = {
  open: ['fenced', 'failed', 'closed'],
  fenced: [],
  failed: [],
  closed: [],
};

/** Whether the table lists from → to. */
export function canPublisherMove(from: PublisherState, to: PublisherState): boolean {
  return PUBLISHER_TRANSITIONS[from].includes(to);
}
