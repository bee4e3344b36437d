// JWTs for tests, signed with jose: HS256 with a shared secret, RS/ES keys published in a JWKS
// file, and the bad kinds a server must refuse (alg none, no sub, garbage).

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, SignJWT, UnsecuredJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose';

/** An HS256 secret long enough for walcast (32+ bytes). */
export const SECRET = 'walcast-test-secret-0123456789-abcdefghijklmnop';

export interface TokenOptions {
  /** Expiry: seconds since the epoch, or a jose time span ("1h", "3s"); null for none. Default "1h". */
  exp?: number | string | null;
  /** Extra header fields (kid, typ). */
  header?: Record<string, unknown>;
  issuer?: string;
  audience?: string;
}

function build(claims: JWTPayload, o: TokenOptions, alg: string): SignJWT {
  const jwt = new SignJWT(claims).setProtectedHeader({ ...o.header, alg }).setIssuedAt();
  const exp = o.exp === undefined ? '1h' : o.exp;
  if (exp !== null) jwt.setExpirationTime(exp);
  if (o.issuer) jwt.setIssuer(o.issuer);
  if (o.audience) jwt.setAudience(o.audience);
  return jwt;
}

/** An HS256 token (signed with SECRET unless `secret` is given). */
export function hsToken(claims: JWTPayload, o: TokenOptions & { secret?: string } = {}): Promise<string> {
  return build(claims, o, 'HS256').sign(new TextEncoder().encode(o.secret ?? SECRET));
}

/** Seconds since the epoch, `s` seconds from now (rounded up: a JWT's exp is whole seconds). */
export function inSeconds(s: number): number {
  return Math.ceil(Date.now() / 1000 + s);
}

/** An `alg: none` token: unsigned, and never to be accepted. */
export function noneToken(claims: JWTPayload): string {
  return new UnsecuredJWT(claims).setIssuedAt().setExpirationTime('1h').encode();
}

export interface SigningKey {
  alg: string;
  kid: string;
  privateKey: CryptoKey;
  /** The public key as published in a JWKS (with kid, alg, use). */
  jwk: JWK;
  sign(claims: JWTPayload, o?: TokenOptions): Promise<string>;
}

/** A fresh key pair (RS256, ES256, ...) whose public half goes into a JWKS. */
export async function signingKey(alg: string, kid = `${alg.toLowerCase()}-key`): Promise<SigningKey> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  const jwk: JWK = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return {
    alg,
    kid,
    privateKey,
    jwk,
    sign: (claims, o = {}) => build(claims, { ...o, header: { kid, ...o.header } }, alg).sign(privateKey),
  };
}

/** Writes {"keys":[...]} to a new temporary directory; returns the file's path. */
export function writeJwks(keys: JWK[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'walcast-jwks-'));
  const file = join(dir, 'jwks.json');
  writeFileSync(file, JSON.stringify({ keys }));
  return file;
}
