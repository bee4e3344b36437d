// What the hub needs of a connected client, implemented by the server's sessions.
import type { Position } from '../protocol/position.js';
import type { Identity } from '../auth/jwt.js';
import type { CapturedChange, Transaction } from '../capture/types.js';

export interface Peer {
  readonly id: string;
  readonly closed: boolean;
  /** Queue a frame; frames go out at flush(), corked together. */
  push(frame: string): void;
  /** Queue a whole encoded frame (changes: built once per distinct prefix, see PrefixTable). */
  pushFrame(frame: Buffer): void;
  /** Send what push() queued; closes the socket with 4008 when past its backpressure limit. */
  flush(): void;
  /** Bytes the socket has not yet written. */
  backlog(): number;
  /**
   * Who the client is (verified JWT claims, `id` = `sub`); null before authentication and under
   * --no-auth. Replaced by an in-band `auth` refresh, after which the hub is told (reauthorize).
   */
  identity: Identity | null;
  /** The greatest position sent to this client (change or progress), for `progress`. */
  lastPos: Position | null;
}

export type HubSubscriptionState = 'catching_up' | 'live' | 'ended';

/** What one change is to one subscription (delivery.ts): as it is, leaving its view, or entering it. */
export type DeliveryKind = 'change' | 'leave' | 'enter';

/**
 * Change frames of another wire format (the Supabase endpoint, src/supabase/): a subscription
 * with one gets its frames from it instead of walcast's `change` frames. It is told only what the
 * subscription may see; returning null sends nothing.
 */
export interface ChangeRender {
  /** Leaves reach subscriptions that want deletes (sent as deletes), not those that want only updates. */
  readonly leavesAsDeletes: boolean;
  frame(tx: Transaction, c: CapturedChange, kind: DeliveryKind, live: boolean, stamp: number): Buffer | null;
}
