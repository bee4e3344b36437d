import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { resolveConfig, resolveDb, resolveLogLevel, resolvePolicyOptions, resolveServeConfig, resolveStatusOptions } from '../../src/config.js';

t.test('flag, then environment, then default', async (t) => {
  const env = { DATABASE_URL: 'postgres://env@h/db', WALCAST_SLOT: 'from_env' };
  t.equal(resolveConfig({ db: 'postgres://flag@h/db' }, env).db, 'postgres://flag@h/db', 'flag wins');
  t.equal(resolveConfig({}, env).db, 'postgres://env@h/db', 'DATABASE_URL next');
  t.equal(resolveConfig({}, { ...env, WALCAST_DB: 'postgres://walcast@h/db' }).db, 'postgres://walcast@h/db', 'WALCAST_DB before DATABASE_URL');
  t.equal(resolveConfig({}, env).slot, 'from_env');
  t.equal(resolveConfig({ slot: 'flag_slot' }, env).slot, 'flag_slot');
  t.equal(resolveConfig({}, { DATABASE_URL: env.DATABASE_URL }).slot, 'walcast', 'default slot');
  t.equal(resolveConfig({}, env).since, null);
  t.same(resolveConfig({ since: '0/16:2' }, env).since, { lsn: 0x16n, index: 2 });
  t.equal(resolveConfig({}, { ...env, WALCAST_LOG_LEVEL: 'warn' }).logLevel, 'warn');
  t.equal(resolveConfig({ verbose: true }, env).logLevel, 'debug');
});

t.test('typed errors for bad values', async (t) => {
  t.throws(() => resolveDb(undefined, {}), { code: 'bad_config' }, 'no database');
  t.throws(() => resolveDb('not a url', {}), { code: 'bad_url' });
  t.throws(() => resolveDb('mysql://x/y', {}), { code: 'bad_url' });
  const env = { DATABASE_URL: 'postgres://h/db' };
  t.throws(() => resolveConfig({ slot: 'Bad-Name' }, env), { code: 'bad_config' });
  t.throws(() => resolveConfig({ slot: 'x'.repeat(64) }, env), { code: 'bad_config' });
  t.throws(() => resolveConfig({ since: 'yesterday' }, env), { code: 'bad_position' });
});

t.test('serve: JWT key, issuer, audience, model, relations (flag, then environment)', async (t) => {
  const db = 'postgres://h/db';
  const secret = 'x'.repeat(40);
  const base = resolveServeConfig({ db, jwtSecret: secret }, {});
  t.equal(base.jwtSecret, secret);
  t.equal(base.jwks, undefined);
  t.equal(base.noAuth, false);
  t.equal(base.model, undefined, 'default model: undefined (the shipped one)');
  t.same(base.relations, []);
  t.equal(base.authTimeoutMs, 10_000, 'auth timeout 10 s');

  const env = {
    WALCAST_JWKS: 'https://idp.example/jwks.json',
    WALCAST_JWT_ISSUER: 'https://idp.example/',
    WALCAST_JWT_AUDIENCE: 'app',
    WALCAST_RELATIONS: 'public.members(room_id,user_id); ;public.friends(a,b)',
  };
  const fromEnv = resolveServeConfig({ db }, env);
  t.equal(fromEnv.jwks, env.WALCAST_JWKS, 'WALCAST_JWKS');
  t.equal(fromEnv.jwtIssuer, env.WALCAST_JWT_ISSUER);
  t.equal(fromEnv.jwtAudience, 'app');
  t.same(fromEnv.relations, ['public.members(room_id,user_id)', 'public.friends(a,b)'], "WALCAST_RELATIONS split on ';', blanks dropped");
  const flags = resolveServeConfig({ db, jwks: './keys.json', jwtIssuer: 'me', relation: ['a(b,c)', 'd(e,f)'] }, env);
  t.equal(flags.jwks, './keys.json', 'flag over environment');
  t.equal(flags.jwtIssuer, 'me');
  t.same(flags.relations, ['a(b,c)', 'd(e,f)'], '--relation repeated, instead of the environment');
  t.equal(resolveServeConfig({ db }, { WALCAST_JWT_SECRET: secret }).jwtSecret, secret, 'WALCAST_JWT_SECRET');

  const dir = mkdtempSync(join(tmpdir(), 'walcast-config-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const model = join(dir, 'model.conf');
  writeFileSync(model, '[request_definition]\n');
  t.equal(resolveServeConfig({ db, jwtSecret: secret, model }, {}).model, model, '--model');
  t.equal(resolveServeConfig({ db, jwtSecret: secret }, { WALCAST_MODEL: model }).model, model, 'WALCAST_MODEL');
  t.throws(() => resolveServeConfig({ db, jwtSecret: secret, model: join(dir, 'nope.conf') }, {}), { code: 'bad_config', message: /no Casbin model file/ }, 'a missing model file');
  t.throws(() => resolveServeConfig({ db, jwtSecret: secret, model: dir }, {}), { code: 'bad_config' }, 'a directory is not a model file');
});

t.test('serve: a key is required unless --no-auth, and only one', async (t) => {
  const db = 'postgres://h/db';
  t.throws(() => resolveServeConfig({ db }, {}), { code: 'auth_config', message: 'no key to verify client tokens with', hint: /--jwt-secret.*--jwks.*--no-auth/ }, 'no key');
  t.throws(() => resolveServeConfig({ db, jwtSecret: '' }, {}), { code: 'auth_config' }, 'an empty secret is no key');
  t.throws(() => resolveServeConfig({ db, jwtSecret: 'x'.repeat(40) }, { WALCAST_JWKS: 'k.json' }), { code: 'auth_config', message: /both/ }, 'secret and JWKS');
  t.throws(() => resolveServeConfig({ db, auth: false, jwtSecret: 'x'.repeat(40) }, {}), { code: 'auth_config', message: /--no-auth/ }, '--no-auth with a key');
  t.equal(resolveServeConfig({ db, auth: false }, {}).noAuth, true, '--no-auth without a key');
  t.equal(resolveServeConfig({ db }, { WALCAST_NO_AUTH: '1' }).noAuth, true, 'WALCAST_NO_AUTH=1');
});

t.test('log level: flag, then WALCAST_LOG_LEVEL, then the default; a pino level or a typed error', async (t) => {
  const env = { DATABASE_URL: 'postgres://h/db' };
  t.equal(resolveConfig({}, env).logLevel, 'info', 'default info');
  t.equal(resolveConfig({ logLevel: 'error' }, { ...env, WALCAST_LOG_LEVEL: 'warn' }).logLevel, 'error', 'flag over environment');
  t.equal(resolveConfig({}, { ...env, WALCAST_LOG_LEVEL: '' }).logLevel, 'info', 'an empty variable is not given');
  t.equal(resolveLogLevel('WARN', {}), 'warn', 'any case');
  t.equal(resolveLogLevel(undefined, {}, 'debug'), 'debug', "the command's default");
  for (const level of ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']) t.equal(resolveLogLevel(level, {}), level);
  t.throws(() => resolveLogLevel('loud', {}), { code: 'bad_config', message: 'bad --log-level "loud"', hint: /trace, debug, info, warn, error, fatal, silent/ });
  t.throws(() => resolveConfig({}, { ...env, WALCAST_LOG_LEVEL: 'verbose' }), { code: 'bad_config', message: 'bad WALCAST_LOG_LEVEL "verbose"' }, 'the variable named');
});

t.test('serve: --idle-timeout 0 is never; otherwise 8s to 16m', async (t) => {
  const base = { db: 'postgres://h/db', auth: false };
  t.equal(resolveServeConfig(base, {}).idleTimeoutSec, 60, 'default 60 s');
  for (const zero of ['0', '0s', '0ms', '00', '0.0', ' 0 m']) t.equal(resolveServeConfig({ ...base, idleTimeout: zero }, {}).idleTimeoutSec, 0, `${JSON.stringify(zero)}: never`);
  t.equal(resolveServeConfig(base, { WALCAST_IDLE_TIMEOUT: '0' }).idleTimeoutSec, 0, 'WALCAST_IDLE_TIMEOUT=0');
  t.equal(resolveServeConfig({ ...base, idleTimeout: '8s' }, {}).idleTimeoutSec, 8);
  t.equal(resolveServeConfig({ ...base, idleTimeout: '16m' }, {}).idleTimeoutSec, 960);
  t.equal(resolveServeConfig({ ...base, idleTimeout: '2m' }, { WALCAST_IDLE_TIMEOUT: '0' }).idleTimeoutSec, 120, 'flag over environment');
  for (const bad of ['7s', '500ms', '17m', '0x', '-1', 'never']) {
    t.throws(() => resolveServeConfig({ ...base, idleTimeout: bad }, {}), { code: 'bad_config' }, `${JSON.stringify(bad)} refused`);
  }
  t.throws(() => resolveServeConfig({ ...base, idleTimeout: '5s' }, {}), { message: /0 \(never\), or 8s to 16m/ });
});

t.test('status: --slot narrows, WALCAST_SLOT names the daemon\'s slot, --daemon checked', async (t) => {
  const env = { DATABASE_URL: 'postgres://h/db' };
  t.same(resolveStatusOptions({}, env), { db: 'postgres://h/db', walcastSlot: 'walcast', only: null, daemon: 'http://127.0.0.1:4000', cluster: null }, 'defaults: every slot, no cluster');
  t.match(resolveStatusOptions({}, { ...env, WALCAST_SLOT: 'walcast_a' }), { walcastSlot: 'walcast_a', only: null }, 'the environment does not narrow');
  t.match(resolveStatusOptions({ slot: 'x', daemon: 'http://h:9/' }, { ...env, WALCAST_SLOT: 'walcast_a' }), { walcastSlot: 'walcast_a', only: 'x', daemon: 'http://h:9' });
  t.throws(() => resolveStatusOptions({ slot: 'Bad-Name' }, env), { code: 'bad_config' });
  t.same(resolveStatusOptions({ nats: 'nats://a:1,nats://b:2' }, env).cluster, { servers: ['nats://a:1', 'nats://b:2'], tls: false, namespace: 'walcast' }, '--nats: the cluster named after the slot');
  t.same(resolveStatusOptions({ nats: 'tls://a:1', cluster: 'c1' }, env).cluster, { servers: ['tls://a:1'], tls: true, namespace: 'c1' }, '--cluster names it');
  t.equal(resolveStatusOptions({}, { ...env, WALCAST_NATS: 'nats://a:1', WALCAST_CLUSTER: 'c2' }).cluster?.namespace, 'c2', 'from the environment');
  t.throws(() => resolveStatusOptions({ cluster: 'c1' }, env), { code: 'bad_config' }, '--cluster without --nats');
  t.throws(() => resolveStatusOptions({ nats: 'http://a:1' }, env), { code: 'bad_config' }, 'a bad --nats URL');
  t.throws(() => resolveStatusOptions({}, { ...env, WALCAST_SLOT: 'no good' }), { code: 'bad_config' });
  t.throws(() => resolveStatusOptions({ daemon: 'localhost:4000' }, env), { code: 'bad_config', message: /--daemon/ }, 'not an http(s) URL');
  t.throws(() => resolveStatusOptions({}, {}), { code: 'bad_config', message: 'no database given' });
});

t.test('policy: --model, then WALCAST_MODEL, checked as serve checks it', async (t) => {
  t.same(resolvePolicyOptions({}, {}), { model: undefined }, 'the shipped model');
  t.same(resolvePolicyOptions({}, { WALCAST_MODEL: '' }), { model: undefined }, 'an empty variable is not given');
  const dir = mkdtempSync(join(tmpdir(), 'walcast-config-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const model = join(dir, 'model.conf');
  writeFileSync(model, '[request_definition]\n');
  t.same(resolvePolicyOptions({}, { WALCAST_MODEL: model }), { model }, 'WALCAST_MODEL');
  t.same(resolvePolicyOptions({ model }, { WALCAST_MODEL: join(dir, 'nope.conf') }), { model }, 'flag over environment');
  t.throws(() => resolvePolicyOptions({}, { WALCAST_MODEL: join(dir, 'nope.conf') }), { code: 'bad_config', message: /no Casbin model file/ });
});
