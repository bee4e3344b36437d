// Reading a JWT's `exp` without verifying it (the client only needs to know when to refresh;
// the server verifies). atob and TextDecoder exist in browsers and in Node 20 alike.

/** The `exp` claim (seconds since the epoch) of a JWT, or null when absent or unreadable. */
export function tokenExpiry(token: string): number | null {
  const parts = token.split('.');
  if (parts.length < 2) return null;
  try {
    const b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    const padded = b64 + '='.repeat((4 - (b64.length % 4)) % 4);
    const binary = atob(padded);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    const claims: unknown = JSON.parse(new TextDecoder().decode(bytes));
    if (!claims || typeof claims !== 'object') return null;
    const exp = (claims as { exp?: unknown }).exp;
    return typeof exp === 'number' && Number.isFinite(exp) ? exp : null;
  } catch {
    return null;
  }
}

/**
 * When to refresh a token expiring at `expMs` (ms since the epoch), seen at `now`: `leadMs`
 * before expiry, but never earlier than two thirds of the remaining lifetime (a 3 s token is
 * refreshed after 2 s), and not before `now`.
 */
export function refreshDelay(expMs: number, now: number, leadMs: number): number {
  const left = expMs - now;
  if (left <= 0) return 0;
  return Math.max(0, left - Math.min(leadMs, left / 3));
}
