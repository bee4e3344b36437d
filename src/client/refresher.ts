// Refreshing the token in-band before it expires: when the server holds a token, plan a call of
// the token function ahead of its `exp`, and send what it returns as an `auth` message. Tied to
// one connection at a time: a refresh planned on a connection that has gone does nothing.

import { refreshDelay, tokenExpiry } from './jwt.js';
import type { TokenSource } from './options.js';
import { WalcastError } from './types.js';

/** setTimeout's longest delay; longer waits re-arm. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** What the refresher needs from its client. @internal */
export interface RefresherHost {
  /** The token option: only a function can be asked for a fresh token. */
  readonly source: TokenSource | undefined;
  /** Refresh this long before `exp` (at most a third of the remaining life). */
  readonly leadMs: number;
  /** Whether `conn` is still the client's current connection. */
  isCurrent(conn: number): boolean;
  /** Sends `{type: "auth", token}` on the current connection. */
  sendAuth(token: string): void;
  unhandled(err: WalcastError): void;
}

/** @internal */
export class TokenRefresher {
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(private readonly host: RefresherHost) {}

  /** The server holds `token` on connection `conn` now: plan its refresh. */
  accepted(token: string, conn: number): void {
    this.stop();
    const exp = tokenExpiry(token);
    if (typeof this.host.source !== 'function' || exp === null) return;
    this.arm(exp * 1000, conn);
  }

  /** The connection is gone (or the client stopped): no refresh planned. */
  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private arm(expMs: number, conn: number): void {
    const delay = refreshDelay(expMs, Date.now(), this.host.leadMs);
    this.timer = setTimeout(() => {
      this.timer = null;
      if (!this.host.isCurrent(conn)) return;
      if (delay > MAX_TIMER_MS) this.arm(expMs, conn);
      else void this.refresh(conn, expMs);
    }, Math.min(delay, MAX_TIMER_MS));
  }

  private async refresh(conn: number, expMs: number): Promise<void> {
    const source = this.host.source;
    if (typeof source !== 'function') return;
    let token: string;
    try {
      token = await source();
      if (typeof token !== 'string' || token === '') throw new TypeError(`the token function returned ${JSON.stringify(token)}, not a token`);
    } catch (err) {
      if (!this.host.isCurrent(conn)) return;
      this.host.unhandled(new WalcastError('token_failed', `could not refresh the token: ${(err as Error)?.message ?? String(err)}`, { cause: err }));
      // Try again while the current token lasts; when it lapses the server closes 4001 and the
      // reconnect asks the function again.
      const left = expMs - Date.now();
      if (left > 1_000) {
        this.timer = setTimeout(() => {
          this.timer = null;
          if (this.host.isCurrent(conn)) void this.refresh(conn, expMs);
        }, Math.min(left / 2, 5_000));
      }
      return;
    }
    if (!this.host.isCurrent(conn)) return;
    const exp = tokenExpiry(token);
    if (exp !== null && exp * 1000 <= expMs) return; // no fresher: let this one lapse, reconnect asks again
    this.host.sendAuth(token);
  }
}
