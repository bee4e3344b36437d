// Demo identities for `walcast dev`: a random HS256 key per run (never a fixed key, so a token
// minted by one run means nothing to any other), short-lived tokens for the demo users only.
import { randomBytes } from 'node:crypto';
import { SignJWT } from 'jose';
import { createVerifier, type TokenVerifier } from '../auth/jwt.js';

/** Lifetime of a demo token; the client SDK refreshes it in-band before it expires. */
export const DEMO_TOKEN_TTL_SEC = 3600;

export interface DemoKeys {
  /** The HS256 secret the daemon verifies with (43 base64url characters, 32 random bytes). */
  readonly secret: string;
  mint(user: string): Promise<{ token: string; expiresAt: number }>;
  /** The same verification as the daemon's (jose, HS256 only, `sub` required). */
  readonly verify: TokenVerifier;
}

export function createDemoKeys(ttlSec = DEMO_TOKEN_TTL_SEC): DemoKeys {
  const secret = randomBytes(32).toString('base64url');
  const key = new TextEncoder().encode(secret);
  return {
    secret,
    async mint(user) {
      const exp = Math.floor(Date.now() / 1000) + ttlSec;
      const token = await new SignJWT({ name: user }).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setSubject(user).setIssuedAt().setExpirationTime(exp).sign(key);
      return { token, expiresAt: exp * 1000 };
    },
    verify: createVerifier({ secret }),
  };
}
