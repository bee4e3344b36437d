// What createClient() takes and what the client emits: the client's public types, apart from
// the connection logic (client.ts) that uses them.

import type { BackoffOptions } from './backoff.js';
import type { WalcastError, WebSocketConstructor } from './types.js';

export type TokenSource = string | (() => string | Promise<string>);

export interface ClientOptions {
  /** "ws://host:4000/ws" (wss:// behind TLS). */
  url: string;
  /**
   * A JWT, or a function returning one (called on every connect and before each expiry). Only a
   * function lets the client refresh and reconnect after the token expired. Absent: no token
   * (a server started with --no-auth).
   */
  token?: TokenSource;
  /** A WebSocket constructor where there is no global one: `WebSocket` of the `ws` package in Node 20. */
  WebSocket?: WebSocketConstructor;
  /** Reconnect delays: full jitter in [0, min(capMs, baseMs * 2^attempt)). Default 500 ms / 30 s. */
  backoff?: BackoffOptions;
  /** An application-level ping after this long without traffic; no reply within the next interval drops the connection. Default 20 s; 0 disables. */
  pingIntervalMs?: number;
  /** From opening the socket to `welcome`, at most this long (default 10 s). */
  connectTimeoutMs?: number;
  /** Refresh the token this long before `exp` (default 30 s; at most a third of the token's remaining life). */
  refreshLeadMs?: number;
  /** Consecutive 4001 closes (token refused) before the client gives up (default 3). */
  maxAuthFailures?: number;
}

export type ConnectionState = 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface DisconnectInfo {
  code: number;
  reason: string;
  /** Delay before the next attempt; null when the client stops. */
  retryInMs: number | null;
}

export interface ClosedInfo {
  code: number;
  reason: string;
  /** Why the client stopped on its own (a token problem); null after close(). */
  error: WalcastError | null;
}

export interface ClientEvents {
  state: [ConnectionState];
  /** `welcome` received: authenticated, subscriptions and channels re-sent. */
  open: [{ session: string; reconnect: boolean }];
  /** The connection dropped (and whether and when it is retried). */
  disconnect: [DisconnectInfo];
  /** A refreshed token was accepted. */
  authenticated: [{ expiresAt: string | null }];
  /** Connection-level `progress`: the positions of live subscriptions moved. */
  progress: [string];
  /** An error no subscription or channel took (or a token problem). */
  error: [WalcastError];
  /** The client stopped for good: close(), or a token problem it cannot get past. */
  closed: [ClosedInfo];
}
