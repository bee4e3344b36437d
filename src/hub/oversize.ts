// Transactions past --max-transaction-bytes reach the hub without their changes (see
// src/capture/assembler.ts). What they did cannot be delivered, so whoever could have been
// concerned is told to refetch instead:
//   - live subscriptions of a table it changed get `resync` transaction_too_large at once;
//   - it stays in the history window as a marker, and a catch-up that crosses it for one of its
//     tables gets the same resync (Hub.catchUp asks crossesOversized);
//   - when it changed the policy table or a declared relation table, authorization missed
//     changes: the window starts afresh after it, every subscription gets resync, and the
//     policies are read anew.
// The marker holds no WAL on the slot (HistoryRing.appendTransaction), so it is acknowledged and
// never replayed into the same skip after a restart.
import type { Transaction } from '../capture/types.js';
import { BROADCASTS_TABLE } from '../constants.js';
import type { Logger } from '../log.js';
import { MAX_POSITION_INDEX } from '../protocol/position.js';
import type { Hub } from './hub.js';
import { crossesOversized } from './oversize-crossing.js';

/** Estimated bytes of a marker in the window, beyond its table names. */
const MARKER_BYTES = 512;

export interface OversizeOptions {
  /** Tables authorization follows (the policy table and the declared relation tables). */
  authTables: ReadonlySet<string>;
  /** Reads the policies anew, denying until done. */
  reloadPolicies: () => void;
  log: Logger;
}

/** Capture's onTransaction for a daemon: oversized transactions here, the others to the hub. */
export function oversizeAware(hub: Hub, o: OversizeOptions): (tx: Transaction) => void {
  return (tx) => (tx.oversize ? skipOversized(hub, tx, o) : hub.onTransaction(tx));
}

function skipOversized(hub: Hub, tx: Transaction, o: OversizeOptions): void {
  const over = tx.oversize;
  if (!over) return;
  hub.counters.transactionsIn++;
  hub.counters.oversized++;
  const policies = over.tables.some((t) => o.authTables.has(t));
  // Its walcast.broadcast() calls were not kept either: they are lost, and counted as dropped.
  const broadcasts = over.tables.includes(BROADCASTS_TABLE);
  if (broadcasts && hub.sqlBroadcasts) hub.sqlBroadcasts.dropped++;
  o.log.warn(
    { lsn: tx.lsnText, changes: over.changes, bytes: over.bytes, tables: over.tables.slice(0, 20), policies, broadcastsLost: broadcasts },
    'transaction larger than --max-transaction-bytes skipped; subscriptions of its tables get resync',
  );
  if (policies) {
    hub.reset({ lsn: tx.lsn, index: MAX_POSITION_INDEX }, 'transaction_too_large');
    o.reloadPolicies();
    return;
  }
  let bytes = MARKER_BYTES;
  for (const t of over.tables) bytes += 64 + t.length;
  hub.ring.appendTransaction(tx, bytes);
  hub.resyncAll('transaction_too_large', (sub) => crossesOversized(tx, sub));
}
