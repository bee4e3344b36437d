// Whether a subscription missed changes of an oversized transaction (src/hub/oversize.ts): asked
// when one arrives (live subscriptions) and by catch-up when it crosses its marker in the window.
// Apart from oversize.ts so that catch-up needs neither it nor, through it, the Hub.
import type { Transaction } from '../capture/types.js';
import { compareWalPositions } from '../protocol/position.js';
import type { HubSubscription } from './subscriptions.js';

/** Whether a subscription (live, or catching up from `sub.after`) missed changes of this oversized transaction. */
export function crossesOversized(tx: Transaction, sub: HubSubscription): boolean {
  const o = tx.oversize;
  if (!o || !o.tables.includes(sub.table)) return false;
  return compareWalPositions(sub.after, { lsn: tx.lsn, index: Math.max(0, o.changes - 1) }) < 0;
}
