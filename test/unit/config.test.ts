import t from 'tap';
import { resolveConfig, resolveDb } from '../../src/config.js';

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
