// What the hub asks of authorization (docs/AUTHORIZATION.md). Implemented by src/auth/authorizer.ts; absent
// under --no-auth, where every client may read everything.
import type { Position } from '../protocol/position.js';
import type { Row } from '../capture/pgoutput.types.js';
import type { CapturedChange } from '../capture/types.js';
import type { Identity } from './jwt.js';

/** Whether a user could see a row, asked "at" a position: the policies in force at that commit. */
export interface Authorizer {
  /**
   * Whether some row of `table` could be readable by this identity under the policies in force
   * at some point from `since` (a resume position; null: now) on: false means a subscribe is
   * answered `forbidden`.
   */
  mayEverRead(identity: Identity, table: string, since?: Position | null): boolean;
  /**
   * Whether the identity may act on a non-row object now: {kind: "channel", name} with "join",
   * "broadcast" or "presence" (docs/AUTHORIZATION.md §2).
   */
  mayAct(identity: Identity, kind: string, name: string, act: string): boolean;
  /** False while the policies are being read (at start, after the slot was recreated): every decision is deny. */
  readonly ready: boolean;
  /** Resolves once they are read. */
  whenReady(): Promise<void>;
  /** Changes whenever a policy or relation change is applied: cached decisions are stale. */
  readonly epoch: number;
  /** Whether the identity may read this row of `table` under the policies in force at `at` (null: now). */
  mayRead(identity: Identity, table: string, row: Row, at: Position | null): boolean;
  /**
   * The user ids that may read this row at the current position, when the policies of the table
   * bound them (relations, owners, roles), or null when anyone could (then every candidate is
   * checked with mayRead). Lets a change cost the subscribers it can reach, not all of them.
   */
  reach(table: string, row: Row): ReadonlySet<string> | null;
  /**
   * Applies a change of the policy table or of a declared relation table, in commit order;
   * false for every other change. `xid` tells changes already in the loaded state apart.
   */
  apply(c: CapturedChange, lsn: bigint, xid: number): boolean;
  /** History older than this position is no longer asked about (the ring's floor moved). */
  forget(before: Position): void;
}
