// The history window's byte count (walcast_history_bytes, what --history-bytes bounds) against
// the memory the window really holds (issue #11, item 4): large text and jsonb rows, and SQL
// broadcasts (which the window must not hold at all). "Really holds" is measured as what a full
// GC gives back once the window is emptied, in this process, where the daemon runs.

import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import t from 'tap';
import { resolveServeConfig } from '../../src/config.js';
import { startDaemon } from '../../src/daemon.js';
import { silentLogger } from '../../src/log.js';
import { migrate } from '../../src/sql/migrate.js';
import { query, waitUntil } from '../helpers/capture.js';
import { withPostgres } from '../helpers/pg.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const db = await withPostgres(t);
await migrate(db.url);
const url = db.url;
await query(
  url,
  `create table docs (id bigserial primary key, body text, doc jsonb);
   select walcast.enable('docs');`,
);
const daemon = await startDaemon(resolveServeConfig({ db: url, port: '0', auth: false }, {}), silentLogger);
t.teardown(() => daemon.stop());
const ring = daemon.hub.ring;

function heap(): number {
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
}

/** Runs `write`, waits for `txs` more transactions in the window; then what the window held. */
async function measure(write: () => Promise<void>, txs: number): Promise<{ real: number; estimate: number }> {
  // A small transaction after the measured ones, so that nothing of theirs is still referenced
  // by the stream's decoder; then the window is emptied, and what that frees is what it held.
  const start = ring.stats().transactions;
  await write();
  await query(url, "insert into docs (body) values ('end')");
  await waitUntil(() => ring.stats().transactions >= start + txs + 1, 30_000, () => `the window has ${ring.stats().transactions - start} of ${txs + 1} transactions`);
  const estimate = ring.stats().bytes;
  const full = heap();
  ring.reset(ring.head);
  const real = full - heap();
  return { real, estimate };
}

t.test('large text and jsonb rows: the estimate within a factor of 2 of the memory held', async (t) => {
  ring.reset(ring.head);
  // Per row: 256 KiB of text and a jsonb object of 20,000 distinct keys (some 340 KiB of JSON).
  const { real, estimate } = await measure(async () => {
    for (let i = 0; i < 8; i++) {
      await query(
        url,
        `insert into docs (body, doc)
         select repeat(md5($1::text), 8192), jsonb_object_agg('key-' || $1 || '-' || g, case when g % 2 = 0 then to_jsonb(g) else to_jsonb(md5(g::text)) end)
           from generate_series(1, 20000) g`,
        [String(i)],
      );
    }
  }, 8);
  t.comment(`held ${(real / 2 ** 20).toFixed(1)} MiB, estimated ${(estimate / 2 ** 20).toFixed(1)} MiB (real/estimate ${(real / estimate).toFixed(2)})`);
  t.ok(real > 8 * 256 * 1024, `the rows are held (${real} bytes)`);
  t.ok(estimate >= real / 2, `not under half (real ${real}, estimate ${estimate})`);
  t.ok(estimate <= real * 2, `not over twice (real ${real}, estimate ${estimate})`);
});

t.test('SQL broadcasts: not held by the window, and what is held is counted', async (t) => {
  ring.reset(ring.head);
  const payload = JSON.stringify({ blob: 'b'.repeat(30_000) });
  const { real, estimate } = await measure(async () => {
    for (let i = 0; i < 100; i++) await query(url, "select walcast.broadcast('room:1', 'big', $1::jsonb)", [payload]);
  }, 100);
  t.comment(`100 broadcasts of 30 KB: held ${real} bytes, estimated ${estimate}`);
  t.ok(real < 1024 * 1024, `the window holds less than 1 MiB for 3 MB of broadcasts (${real} bytes)`);
  t.ok(estimate >= real / 2, `and counts it (real ${real}, estimate ${estimate})`);
});
