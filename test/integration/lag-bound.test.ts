// The slot lag bound against a real Postgres (src/capture/lag-bound.ts): max_slot_wal_keep_size
// as pg_settings reports it. -1, the default, means no limit: readWalKeepSize gives null and
// the configured bound stands; a size clamps it to 3/4; a reload back to -1 lifts the clamp
// again at the guard's next reread (src/history/lag-guard.ts).

import pg from 'pg';
import t from 'tap';
import { effectiveLagBound, readWalKeepSize } from '../../src/capture/lag-bound.js';
import { LagGuard } from '../../src/history/lag-guard.js';
import { HistoryRing } from '../../src/history/ring.js';
import { silentLogger } from '../../src/log.js';
import { query, waitUntil } from '../helpers/capture.js';
import { withPostgres } from '../helpers/pg.js';

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;

const db = await withPostgres(t);
const pool = new pg.Pool({ connectionString: db.url, max: 1 });
pool.on('error', () => {});
t.teardown(() => pool.end());

/** Sets max_slot_wal_keep_size and waits until the pool's connection reads it. */
async function keepSize(value: string, mb: number | null): Promise<void> {
  await query(db.url, `alter system set max_slot_wal_keep_size = '${value}'`);
  await query(db.url, 'select pg_reload_conf()');
  let now: number | null = null;
  await waitUntil(async () => (now = await readWalKeepSize(pool)) === mb, 10_000, () => `max_slot_wal_keep_size ${value} read as ${mb} (is ${now})`);
}

t.test('-1 (unlimited): null, and the configured bound stands', async (t) => {
  const [{ setting }] = await query<{ setting: string }>(db.url, "select setting from pg_settings where name = 'max_slot_wal_keep_size'");
  t.equal(setting, '-1', 'the default as pg_settings reports it');
  const mb = await readWalKeepSize(pool);
  t.equal(mb, null, '-1 is read as no limit');
  t.same(effectiveLagBound(GiB, mb), { bytes: GiB, clamped: false }, 'not clamped');
});

t.test('a size clamps the bound; back to -1 the guard lifts the clamp at its reread', async (t) => {
  await keepSize('1GB', 1024);
  const guard = await LagGuard.start({ configured: GiB, log: silentLogger, ring: new HistoryRing({ maxBytes: 64 * MiB, maxAgeMs: 60_000 }), received: () => 0n, evict: () => false }, pool);
  t.equal(guard.bytes, 768 * MiB, '1 GB kept: 3/4 of it');
  await keepSize('-1', null);
  guard.reread(pool);
  await waitUntil(() => guard.bytes === GiB, 10_000, () => `the guard's bound back to 1 GiB (is ${guard.bytes})`);
  t.equal(guard.bytes, GiB, '-1 again: the configured bound');
});
