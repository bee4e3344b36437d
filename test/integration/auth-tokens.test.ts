// JWT authentication of WebSocket clients, end to end: real daemons (HS256 secret; JWKS file with
// RS256 and ES256 keys, issuer and audience) against a real Postgres, real WebSocket clients.
// Tokens by ?token= and by `auth` message; every kind of bad token closes 4001; nothing but
// ping before authentication; the auth timeout; expiry at exp and in-band refresh; and the
// same through `walcast serve` flags.

import { rmSync } from 'node:fs';
import { dirname } from 'node:path';
import t, { type Test } from 'tap';
import { resolveServeConfig, type ServeConfig, type ServeFlags } from '../../src/config.js';
import { startDaemon, type Daemon } from '../../src/daemon.js';
import { silentLogger } from '../../src/log.js';
import { migrate } from '../../src/sql/migrate.js';
import { query } from '../helpers/capture.js';
import { runCli, spawnCli } from '../helpers/cli.js';
import { withPostgres } from '../helpers/pg.js';
import { hsToken, inSeconds, noneToken, SECRET, signingKey, writeJwks } from '../helpers/tokens.js';
import { connectWs, servedPort, WsClient, type CloseInfo } from '../helpers/ws.js';

const db = await withPostgres(t);
await migrate(db.url);
const url = db.url;
t.teardown(() => {
  if (!t.passing()) t.comment(db.logTail(30));
});

await query(url, 'create table items (id bigserial primary key, v text)');
await query(url, "select walcast.enable('items')");
// Anyone with a valid token may read items: these tests are about tokens, not policies.
await query(url, "insert into walcast.casbin_rule (ptype, v0, v1, v2, v3, v4) values ('p', '*', 'table', 'public.items', 'read', 'true')");

const ISSUER = 'https://issuer.test/';
const AUDIENCE = 'walcast-tests';
const rsa = await signingKey('RS256');
const es = await signingKey('ES256');
const jwksFile = writeJwks([rsa.jwk, es.jwk]);
t.teardown(() => rmSync(dirname(jwksFile), { recursive: true, force: true }));

const AUTH_TIMEOUT_MS = 1_500;

async function daemonWith(flags: ServeFlags, over: Partial<ServeConfig> = {}): Promise<Daemon> {
  const cfg = { ...resolveServeConfig({ db: url, port: '0', ...flags }, {}), ...over };
  const d = await startDaemon(cfg, silentLogger);
  t.teardown(() => d.stop());
  return d;
}

const hsDaemon = await daemonWith({ jwtSecret: SECRET, slot: 'auth_hs' }, { authTimeoutMs: AUTH_TIMEOUT_MS });
const jwDaemon = await daemonWith({ jwks: jwksFile, jwtIssuer: ISSUER, jwtAudience: AUDIENCE, slot: 'auth_jwks' });
const HS = `ws://127.0.0.1:${hsDaemon.port}/ws`;
const JW = `ws://127.0.0.1:${jwDaemon.port}/ws`;
const withToken = (base: string, token: string) => `${base}?token=${encodeURIComponent(token)}`;
const jw = { issuer: ISSUER, audience: AUDIENCE };

/** Inserts a row and waits until `c` has it on subscription `sub`. */
async function delivered(c: WsClient, sub: string, v: string): Promise<void> {
  await query(url, 'insert into items (v) values ($1)', [v]);
  await c.next((m) => m.type === 'change' && m.sub === sub && (m.new as { v?: string })?.v === v, 10_000, `the change ${v}`);
}

/** A token in the URL that must be refused: close 4001, no welcome. */
async function refusedByQuery(t: Test, base: string, token: string, reason: RegExp): Promise<CloseInfo> {
  const c = await connectWs(t, withToken(base, token), { welcome: false });
  const info = await c.waitClose();
  t.equal(info.code, 4001, `close 4001 (${info.reason})`);
  t.match(info.reason, reason, 'the reason says why');
  t.notOk(c.messages.some((m) => m.type === 'welcome'), 'no welcome');
  return info;
}

/** A token in an `auth` message that must be refused: error unauthorized (with ref), close 4001. */
async function refusedByMessage(t: Test, base: string, token: string, reason: RegExp): Promise<void> {
  const c = await connectWs(t, base);
  const reply = await c.request({ type: 'auth', token });
  t.match(reply, { type: 'error', code: 'unauthorized', message: reason }, `error unauthorized echoing ref (${reply.message})`);
  const info = await c.waitClose();
  t.equal(info.code, 4001, 'close 4001');
  t.match(info.reason, reason, 'the close reason says why too');
}

t.test('a good token by ?token=: welcome, then subscribe and changes', async (t) => {
  const c = await connectWs(t, withToken(HS, await hsToken({ sub: 'alice', role: 'member' })));
  t.equal(c.messages[0].type, 'welcome', 'welcome first');
  await c.subscribe({ id: 'a', table: 'items' });
  await delivered(c, 'a', 'q1');
  t.pass('a change is delivered');
});

t.test('messages sent before the ?token= is verified wait for it, in order', async (t) => {
  const c = await connectWs(t, withToken(HS, await hsToken({ sub: 'alice' })), { welcome: false });
  c.send({ type: 'ping', ref: 'p1' });
  c.send({ type: 'subscribe', id: 'early', table: 'items', ref: 's' });
  c.send({ type: 'ping', ref: 'p2' });
  await c.next((m) => m.ref === 's');
  await c.next((m) => m.ref === 'p2');
  // (A subscribe's reply waits for a catalog lookup, so a later ping may overtake it.)
  t.same(c.messages.slice(0, 2).map((m) => `${m.type}:${m.ref ?? ''}`), ['welcome:', 'pong:p1'], 'welcome first, then the replies');
  t.equal(c.messages.find((m) => m.ref === 's')?.type, 'subscribed', 'the early subscribe succeeded');
});

t.test('a good token by auth message: authenticated with expires_at and ref; pipelined subscribe', async (t) => {
  const c = await connectWs(t, HS);
  t.equal(c.messages[0].type, 'welcome', 'welcome at once without ?token=');
  const exp = inSeconds(3600);
  const reply = await c.request({ type: 'auth', token: await hsToken({ sub: 'alice' }, { exp }) });
  t.equal(reply.type, 'authenticated', 'authenticated');
  t.equal(reply.expires_at, new Date(exp * 1000).toISOString(), 'expires_at is the token exp, ISO 8601');
  await c.subscribe({ id: 'a', table: 'items' });
  await delivered(c, 'a', 'm1');

  // auth and subscribe sent together: the subscribe waits for the verification.
  const c2 = await connectWs(t, HS);
  c2.send({ type: 'auth', token: await hsToken({ sub: 'bob' }), ref: 'auth' });
  c2.send({ type: 'subscribe', id: 'b', table: 'items', ref: 'sub' });
  await c2.next((m) => m.ref === 'sub');
  t.same(c2.messages.map((m) => `${m.type}:${m.ref ?? ''}`), ['welcome:', 'authenticated:auth', 'subscribed:sub'], 'in order');

  // A token without exp: authenticated without expires_at.
  const c3 = await connectWs(t, HS);
  const noExp = await c3.request({ type: 'auth', token: await hsToken({ sub: 'carol' }, { exp: null }) });
  t.same(Object.keys(noExp).sort(), ['ref', 'type'], 'no expires_at for a token without exp');
});

t.test('HS256 server refuses bad tokens, by ?token= and by auth message', async (t) => {
  const cases: Array<[string, () => Promise<string> | string, RegExp]> = [
    ['forged signature', () => hsToken({ sub: 'mallory' }, { secret: 'another-secret-that-is-long-enough-for-hs256-!!' }), /signature/],
    ['expired', () => hsToken({ sub: 'alice' }, { exp: inSeconds(-60) }), /expired/],
    ['RS256 token to an HS256 server', () => rsa.sign({ sub: 'alice' }), /algorithm/],
    ['alg none', () => noneToken({ sub: 'alice' }), /algorithm|malformed|not valid/],
    ['no sub', () => hsToken({ role: 'admin' }), /sub/],
    ['garbage', () => 'not-a-jwt', /malformed/],
    ['three dots of garbage', () => 'a.b.c', /malformed|not valid/],
  ];
  for (const [what, make, reason] of cases) {
    await t.test(what, async (t) => {
      await refusedByQuery(t, HS, await make(), reason);
      await refusedByMessage(t, HS, await make(), reason);
    });
  }
});

t.test('JWKS server: RS256 and ES256 accepted; HS256, wrong issuer/audience, unknown key refused', async (t) => {
  const a = await connectWs(t, withToken(JW, await rsa.sign({ sub: 'bob' }, jw)));
  await a.subscribe({ id: 'r', table: 'items' });
  const b = await connectWs(t, JW);
  t.equal((await b.request({ type: 'auth', token: await es.sign({ sub: 'bob' }, jw) })).type, 'authenticated', 'ES256 by auth message');
  await b.subscribe({ id: 'e', table: 'items' });
  await query(url, "insert into items (v) values ('jw')");
  await a.next((m) => m.type === 'change' && m.sub === 'r');
  await b.next((m) => m.type === 'change' && m.sub === 'e');
  t.pass('both deliver');

  // HS256 signed with the public key as the secret: the classic algorithm confusion.
  await refusedByQuery(t, JW, await hsToken({ sub: 'bob', iss: ISSUER, aud: AUDIENCE }, { secret: JSON.stringify(rsa.jwk) }), /algorithm/);
  await refusedByMessage(t, JW, await hsToken({ sub: 'bob' }, jw), /algorithm/);
  await refusedByQuery(t, JW, noneToken({ sub: 'bob', iss: ISSUER, aud: AUDIENCE }), /algorithm|malformed|not valid/);
  await refusedByQuery(t, JW, await rsa.sign({ sub: 'bob' }, { issuer: 'https://evil.test/', audience: AUDIENCE }), /iss/);
  await refusedByMessage(t, JW, await es.sign({ sub: 'bob' }, { issuer: ISSUER, audience: 'someone-else' }), /aud/);
  const stranger = await signingKey('RS256', 'stranger');
  await refusedByQuery(t, JW, await stranger.sign({ sub: 'bob' }, jw), /no key|signature/);
  // The right kid, signed by another key.
  const impostor = await signingKey('ES256', es.kid);
  await refusedByMessage(t, JW, await impostor.sign({ sub: 'bob' }, jw), /signature/);
});

t.test('before authentication: ping is answered; anything else closes 4001', async (t) => {
  const c = await connectWs(t, HS);
  t.equal((await c.request({ type: 'ping' })).type, 'pong', 'ping is answered');
  c.send({ type: 'subscribe', id: 'x', table: 'items' });
  const info = await c.waitClose();
  t.equal(info.code, 4001, 'subscribe before auth: close 4001');
  t.match(info.reason, /authenticate first/);
  t.notOk(c.messages.some((m) => m.type === 'subscribed'), 'not subscribed');

  const u = await connectWs(t, HS);
  u.send({ type: 'unsubscribe', id: 'x' });
  t.equal((await u.waitClose()).code, 4001, 'unsubscribe before auth: close 4001');

  // A malformed frame is only a bad_request, as after authentication.
  const m = await connectWs(t, HS);
  m.sendRaw('{nope');
  t.match(await m.next((x) => x.type === 'error'), { code: 'bad_request' }, 'bad_request');
  t.ok(m.isOpen, 'still open');
});

t.test('no token within the auth timeout: close 4001', async (t) => {
  const t0 = Date.now();
  const c = await connectWs(t, HS);
  const info = await c.waitClose(AUTH_TIMEOUT_MS + 3_000);
  const ms = Date.now() - t0;
  t.equal(info.code, 4001, `close 4001 (${info.reason})`);
  t.match(info.reason, /no valid token/);
  t.ok(ms >= AUTH_TIMEOUT_MS - 50 && ms < AUTH_TIMEOUT_MS + 1_500, `after the timeout (${ms} ms)`);

  // Authenticated in time: the timeout no longer applies.
  const ok = await connectWs(t, HS);
  await ok.request({ type: 'auth', token: await hsToken({ sub: 'alice' }) });
  await new Promise((r) => setTimeout(r, AUTH_TIMEOUT_MS + 500));
  t.ok(ok.isOpen, 'an authenticated connection stays open past the timeout');
});

t.test('expiry: the socket is closed with 4001 at exp', async (t) => {
  const exp = inSeconds(2);
  const c = await connectWs(t, withToken(HS, await hsToken({ sub: 'alice' }, { exp })));
  await c.subscribe({ id: 'a', table: 'items' });
  const info = await c.waitClose(6_000);
  const late = Date.now() - exp * 1000;
  t.equal(info.code, 4001, 'close 4001');
  t.equal(info.reason, 'token expired');
  t.ok(late >= -50 && late < 1_500, `at exp (${late} ms after it)`);
});

t.test('refresh: a new token before exp keeps the socket open past the first exp', async (t) => {
  const exp1 = inSeconds(2);
  const c = await connectWs(t, HS);
  await c.request({ type: 'auth', token: await hsToken({ sub: 'alice', role: 'a' }, { exp: exp1 }) });
  await c.subscribe({ id: 'a', table: 'items' });
  await new Promise((r) => setTimeout(r, 800));
  const exp2 = inSeconds(3600);
  const reply = await c.request({ type: 'auth', token: await hsToken({ sub: 'alice', role: 'b' }, { exp: exp2 }) });
  t.match(reply, { type: 'authenticated', expires_at: new Date(exp2 * 1000).toISOString() }, 'refreshed');
  await new Promise((r) => setTimeout(r, Math.max(0, exp1 * 1000 - Date.now()) + 1_000));
  t.ok(c.isOpen, 'open a second past the first token exp');
  t.equal((await c.request({ type: 'ping' })).type, 'pong', 'still answering');
  await delivered(c, 'a', 'after-refresh');
  t.pass('the subscription survived the refresh');
});

t.test('refresh refused: another user, expired, forged → error unauthorized, close 4001', async (t) => {
  const refreshWith = async (token: string, reason: RegExp) => {
    const c = await connectWs(t, HS);
    await c.request({ type: 'auth', token: await hsToken({ sub: 'alice' }) });
    await c.subscribe({ id: 'a', table: 'items' });
    const reply = await c.request({ type: 'auth', token });
    t.match(reply, { type: 'error', code: 'unauthorized', message: reason }, `error (${reply.message})`);
    t.equal((await c.waitClose()).code, 4001, 'close 4001');
  };
  await refreshWith(await hsToken({ sub: 'bob' }), /another user/);
  await refreshWith(await hsToken({ sub: 'alice' }, { exp: inSeconds(-60) }), /expired/);
  // Past exp by less than the verifier's clock tolerance: still refused, the session cannot outlive exp.
  await refreshWith(await hsToken({ sub: 'alice' }, { exp: inSeconds(-2) }), /expired/);
  await refreshWith(await hsToken({ sub: 'alice' }, { secret: 'another-secret-that-is-long-enough-for-hs256-!!' }), /signature/);
});

t.test('walcast serve: key flags and environment; bad key configuration refused at start', async (t) => {
  const short = await runCli(['serve', '--db', url, '--port', '0', '--jwt-secret', 'short'], { timeoutMs: 20_000 });
  t.equal(short.code, 1, 'a short secret: exit 1');
  t.match(short.stderr, /walcast: the JWT secret is 5 bytes; at least 32/, short.stderr);
  t.notMatch(short.stderr, /\n\s+at /, 'no stack trace');

  const both = await runCli(['serve', '--db', url, '--port', '0', '--jwks', jwksFile], { env: { WALCAST_JWT_SECRET: SECRET }, timeoutMs: 20_000 });
  t.equal(both.code, 1, 'a secret and a JWKS: exit 1');
  t.match(both.stderr, /both a JWT secret and a JWKS/);

  const noModel = await runCli(['serve', '--db', url, '--port', '0', '--jwt-secret', SECRET, '--model', '/nonexistent/model.conf'], { timeoutMs: 20_000 });
  t.equal(noModel.code, 1, 'a missing model file: exit 1');
  t.match(noModel.stderr, /no Casbin model file at \/nonexistent\/model.conf/);

  const badJwks = await runCli(['serve', '--db', url, '--port', '0', '--jwks', '/nonexistent/jwks.json'], { timeoutMs: 20_000 });
  t.equal(badJwks.code, 1, 'an unreadable JWKS: exit 1');
  t.match(badJwks.stderr, /cannot read the JWKS/);

  // A working serve with --jwks, the issuer and audience from the environment.
  const proc = spawnCli(['serve', '--db', url, '--port', '0', '--slot', 'auth_cli', '--jwks', jwksFile], {
    env: { WALCAST_JWT_ISSUER: ISSUER, WALCAST_JWT_AUDIENCE: AUDIENCE },
    timeoutMs: 40_000,
  });
  t.teardown(() => proc.kill('SIGKILL'));
  await proc.waitFor(() => servedPort(proc.stderr) !== null, 'serving line');
  t.notMatch(proc.stderr, /WARNING/, 'no --no-auth warning');
  const base = `ws://127.0.0.1:${servedPort(proc.stderr)}/ws`;
  const c = await connectWs(t, withToken(base, await es.sign({ sub: 'dora' }, jw)));
  await c.subscribe({ id: 'd', table: 'items' });
  await delivered(c, 'd', 'cli');
  await refusedByQuery(t, base, await es.sign({ sub: 'dora' }, { issuer: ISSUER }), /aud/);
  await refusedByQuery(t, base, await hsToken({ sub: 'dora' }, jw), /algorithm/);
  await c.close();
  proc.kill('SIGTERM');
  t.equal((await proc.wait(15_000)).code, 0, 'exit 0 on SIGTERM');
});
