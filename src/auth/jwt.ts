// Identities from JWTs, verified with jose: HS256 with a shared secret, or RS*/ES*/PS*/EdDSA
// with keys from a JWKS file or URL. `alg: none` and algorithm confusion are refused by
// construction: each key source accepts only its own family of algorithms.
import { createSecretKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createLocalJWKSet, createRemoteJWKSet, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { AuthConfigError, AuthError } from '../errors.js';

/** The Casbin subject (docs/AUTHORIZATION.md §1): the claims, with `id` set to `sub`. */
export type Identity = JWTPayload & { id: string };

export interface VerifiedToken {
  identity: Identity;
  /** Milliseconds since the epoch when the token expires, null when it has no `exp`. */
  expiresAt: number | null;
}

/**
 * Verifies a token. With `anonymous`, one without `sub` is accepted when it has a `role` (as
 * Supabase's anon key has): its identity's id is `anon:<role>` (ANONYMOUS_ID_PREFIX). Having a
 * ':', that id is a group name to the authorizer, never a user (src/auth/store.ts): no relation
 * or rule naming a user matches it; policies address anonymous clients by their claims
 * (`r.sub.role == "anon"`). walcast's own protocol requires `sub`; the Supabase endpoint does not.
 */
export type TokenVerifier = (token: string, opts?: { anonymous?: boolean }) => Promise<VerifiedToken>;

/** The id of an anonymous identity (a token with a `role` and no `sub`): this, then the role. */
export const ANONYMOUS_ID_PREFIX = 'anon:';

/**
 * Whether an identity is anonymous (an anon key's): everyone holding the key shares its id, so
 * what walcast keeps per user (presence keys, broadcast budgets) is kept per connection for it.
 */
export function isAnonymous(identity: Identity): boolean {
  return identity.sub === undefined && identity.id.startsWith(ANONYMOUS_ID_PREFIX);
}

export interface VerifierOptions {
  /** HS256 shared secret. */
  secret?: string;
  /** A JWKS: a file path or an http(s) URL. */
  jwks?: string;
  issuer?: string;
  audience?: string;
  /** Seconds of clock skew tolerated for exp/nbf. */
  clockToleranceSec?: number;
}

const ASYMMETRIC = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'];
/** HS256 secrets shorter than this are refused: they can be brute-forced offline. */
const MIN_SECRET_BYTES = 32;

export function createVerifier(o: VerifierOptions): TokenVerifier {
  if (o.secret && o.jwks) throw new AuthConfigError('both a JWT secret and a JWKS were given', 'pass one of --jwt-secret or --jwks');
  let key: KeyObject | JWTVerifyGetKey;
  let algorithms: string[];
  if (o.secret) {
    const bytes = new TextEncoder().encode(o.secret);
    if (bytes.length < MIN_SECRET_BYTES) {
      throw new AuthConfigError(`the JWT secret is ${bytes.length} bytes; at least ${MIN_SECRET_BYTES} are needed`, 'use a long random secret, e.g. openssl rand -base64 48');
    }
    // A KeyObject made once: raw bytes would be imported again on every verification.
    key = createSecretKey(bytes);
    algorithms = ['HS256'];
  } else if (o.jwks) {
    key = loadJwks(o.jwks);
    algorithms = ASYMMETRIC;
  } else {
    throw new AuthConfigError('no key to verify tokens with', 'pass --jwt-secret S or --jwks FILE_OR_URL (or --no-auth for development)');
  }
  const verifyOpts = { algorithms, issuer: o.issuer, audience: o.audience, clockTolerance: o.clockToleranceSec ?? 5 };
  return async (token: string, opts?: { anonymous?: boolean }) => {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, key as KeyObject, verifyOpts));
    } catch (err) {
      throw new AuthError(describe(err), undefined, { cause: err });
    }
    const expiresAt = typeof payload.exp === 'number' ? payload.exp * 1000 : null;
    if (typeof payload.sub === 'string' && payload.sub !== '') return { identity: { ...payload, id: payload.sub }, expiresAt };
    if (payload.sub === undefined && opts?.anonymous && typeof payload.role === 'string' && payload.role !== '') {
      return { identity: { ...payload, id: ANONYMOUS_ID_PREFIX + payload.role }, expiresAt };
    }
    throw new AuthError(opts?.anonymous ? 'the token has neither a "sub" nor a "role" claim' : 'the token has no "sub" claim');
  };
}

function loadJwks(source: string): JWTVerifyGetKey {
  if (/^https?:\/\//i.test(source)) return createRemoteJWKSet(new URL(source));
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(source, 'utf8'));
  } catch (err) {
    throw new AuthConfigError(`cannot read the JWKS at ${source}: ${(err as Error).message}`, 'pass a JSON Web Key Set file ({"keys":[...]}) or an https URL', { cause: err });
  }
  if (!parsed || typeof parsed !== 'object' || !Array.isArray((parsed as { keys?: unknown }).keys)) {
    throw new AuthConfigError(`${source} is not a JSON Web Key Set`, 'a JWKS looks like {"keys":[{"kty":"RSA",...}]}');
  }
  return createLocalJWKSet(parsed as Parameters<typeof createLocalJWKSet>[0]);
}

/** jose's error codes in words a client developer can act on. */
function describe(err: unknown): string {
  const code = (err as { code?: string })?.code;
  switch (code) {
    case 'ERR_JWT_EXPIRED':
      return 'the token has expired';
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return 'the token signature does not verify';
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
      return 'the token algorithm is not accepted';
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      return `a token claim is not valid: ${(err as Error).message}`;
    case 'ERR_JWKS_NO_MATCHING_KEY':
      return 'no key in the JWKS matches the token';
    case 'ERR_JWS_INVALID':
    case 'ERR_JWT_INVALID':
      return 'the token is malformed';
    default:
      return `the token is not valid (${code ?? (err as Error)?.message ?? 'unknown error'})`;
  }
}
