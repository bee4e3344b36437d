// What a Capture is given (src/capture/capture.ts).
import type { Logger } from '../log.js';
import type { Position } from '../protocol/position.js';
import type { CapturedChange, Transaction, TransactionHead } from './types.js';

export interface CaptureOptions {
  url: string;
  slot: string;
  publication: string;
  /** A temporary slot, created on the replication connection and gone with it (tail). */
  temporary?: boolean;
  /** Hand on only changes after this position. */
  after?: Position | null;
  /**
   * Start the stream here when it is past the slot's confirmed position (pair it with `after`):
   * Postgres skips the commits before it. A cluster capture starts at what the stream holds.
   */
  startLsn?: bigint;
  /** Downstream. A returned promise holds the next transaction (and the socket) until it settles. */
  onTransaction?: (tx: Transaction) => void | Promise<void>;
  /**
   * Instead of onTransaction: each change as it is decoded, nothing kept (`walcast tail`). Only
   * committed transactions are sent, so this never sees a change that is rolled back; a
   * transaction counts as processed (may be acknowledged) once its commit arrived.
   */
  onChange?: (head: TransactionHead, c: CapturedChange) => void;
  /** With onChange: a transaction's commit arrived (after its last change, before it may be acknowledged). */
  onCommit?: () => void;
  /** Bytes of change messages past which a transaction is handed on as `oversize`, its changes dropped. */
  maxTransactionBytes?: number;
  /** Commit LSN of the oldest transaction downstream still needs, or null for none. */
  hold?: () => bigint | null;
  logger?: Logger;
  backoffBaseMs?: number;
  backoffCapMs?: number;
  statusIntervalMs?: number;
  maxPendingTransactions?: number;
  /** Silence after which a status update asks the server to answer, and after which the stream is declared dead. */
  pingAfterMs?: number;
  deadAfterMs?: number;
}
