import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, SignJWT, UnsecuredJWT } from 'jose';
import t from 'tap';
import { createVerifier } from '../../src/auth/jwt.js';

const SECRET = 'a-test-secret-that-is-long-enough-to-be-accepted-by-walcast';
const hs = (claims: Record<string, unknown>, secret = SECRET, exp: string | number = '1h') =>
  new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuedAt().setExpirationTime(exp).sign(new TextEncoder().encode(secret));

t.test('HS256: a good token gives the claims with id = sub', async (t) => {
  const verify = createVerifier({ secret: SECRET });
  const { identity, expiresAt } = await verify(await hs({ sub: 'alice', role: 'member' }));
  t.equal(identity.id, 'alice');
  t.equal(identity.role, 'member');
  t.ok(expiresAt && expiresAt > Date.now(), 'expiry in milliseconds');
});

t.test('refused: forged, expired, alg none, no sub, garbage', async (t) => {
  const verify = createVerifier({ secret: SECRET });
  await t.rejects(verify(await hs({ sub: 'mallory' }, 'another-secret-of-sufficient-length-for-hs256!!')), { code: 'unauthorized', message: /signature/ }, 'forged');
  await t.rejects(verify(await hs({ sub: 'alice' }, SECRET, Math.floor(Date.now() / 1000) - 60)), { code: 'unauthorized', message: /expired/ }, 'expired');
  const none = new UnsecuredJWT({ sub: 'alice' }).setExpirationTime('1h').encode();
  await t.rejects(verify(none), { code: 'unauthorized' }, 'alg: none');
  await t.rejects(verify(await hs({ role: 'x' })), { code: 'unauthorized', message: /sub/ }, 'no sub');
  await t.rejects(verify('not.a.jwt'), { code: 'unauthorized', message: /malformed/ }, 'garbage');
});

t.test('JWKS file: ES256 accepted; HS256 with the public key as secret refused (algorithm confusion)', async (t) => {
  const { publicKey, privateKey } = await generateKeyPair('ES256');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' };
  const dir = mkdtempSync(join(tmpdir(), 'walcast-jwks-'));
  const file = join(dir, 'jwks.json');
  writeFileSync(file, JSON.stringify({ keys: [jwk] }));
  const verify = createVerifier({ jwks: file });
  const good = await new SignJWT({ sub: 'bob' }).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setExpirationTime('1h').sign(privateKey);
  t.equal((await verify(good)).identity.id, 'bob');
  const confused = await hs({ sub: 'bob' }, JSON.stringify(jwk));
  await t.rejects(verify(confused), { code: 'unauthorized' }, 'an HS256 token against a JWKS');
  const hsVerify = createVerifier({ secret: SECRET });
  await t.rejects(hsVerify(good), { code: 'unauthorized', message: /algorithm/ }, 'an ES256 token against a secret');
});

t.test('bad configuration is refused at start', async (t) => {
  t.throws(() => createVerifier({}), { code: 'auth_config' }, 'no key');
  t.throws(() => createVerifier({ secret: 'short' }), { code: 'auth_config', message: /32/ }, 'short secret');
  t.throws(() => createVerifier({ secret: SECRET, jwks: 'x.json' }), { code: 'auth_config' }, 'both');
  t.throws(() => createVerifier({ jwks: '/nonexistent/jwks.json' }), { code: 'auth_config' }, 'missing file');
  const dir = mkdtempSync(join(tmpdir(), 'walcast-jwks-'));
  writeFileSync(join(dir, 'bad.json'), '{"nokeys":true}');
  t.throws(() => createVerifier({ jwks: join(dir, 'bad.json') }), { code: 'auth_config', message: /not a JSON Web Key Set/ });
});
