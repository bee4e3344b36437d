// Who may open a WebSocket: at most `maxConnections` at once, and at most `maxPendingAuth` of
// them connected without a token and not authenticated yet. Decided at the HTTP upgrade, before
// uWS makes a WebSocket of the socket, so that a refusal is a plain 503 and its descriptor is
// freed at once (issue #11 item 9). An upgrade with `?token=` (what the client SDK sends) is
// not held to the pending cap: its token is checked at once and a bad one closes it, so sockets
// lingering without a token cannot lock out the clients that bring one.

export type RefusalReason = 'max_connections' | 'max_pending_auth';

export interface AdmissionLimits {
  maxConnections: number;
  maxPendingAuth: number;
  /** False under --no-auth: nobody waits to authenticate. */
  authRequired: boolean;
}

export class Admission {
  /** Open WebSockets. */
  open = 0;
  /** Open WebSockets without an accepted token yet (always 0 when auth is not required). */
  pending = 0;
  readonly refused: Record<RefusalReason, number> = { max_connections: 0, max_pending_auth: 0 };

  constructor(readonly limits: AdmissionLimits) {}

  /** Null: let it in (the caller then calls opened()); else why not (counted). */
  check(withToken: boolean): RefusalReason | null {
    let reason: RefusalReason | null = null;
    if (this.open >= this.limits.maxConnections) reason = 'max_connections';
    else if (this.limits.authRequired && !withToken && this.pending >= this.limits.maxPendingAuth) reason = 'max_pending_auth';
    if (reason) this.refused[reason]++;
    return reason;
  }

  /** A socket was let in; true when it now counts as waiting to authenticate. */
  opened(withToken: boolean): boolean {
    this.open++;
    if (!this.limits.authRequired || withToken) return false;
    this.pending++;
    return true;
  }

  authenticated(): void {
    this.pending--;
  }

  closed(wasPending: boolean): void {
    this.open--;
    if (wasPending) this.pending--;
  }
}

/** The body of a refusal (HTTP 503): what was hit and what to do. */
export function refusalText(reason: RefusalReason, limits: AdmissionLimits): string {
  return reason === 'max_connections'
    ? `walcast: too many connections (max_connections: ${limits.maxConnections}); retry later\n`
    : `walcast: too many connections waiting to authenticate (max_pending_auth: ${limits.maxPendingAuth}); retry later\n`;
}
