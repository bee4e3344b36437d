// Chaos, part 1 (issue 6): while a writer commits a steady stream and four clients with different
// policies resume on every disconnect, the daemon is killed with SIGKILL and started again,
// Postgres is restarted (fast, then immediate), and the walsender is terminated. After each
// fault every committed row reached every entitled client exactly once, in order, and no client
// got a row it may not read. None of these faults loses history: nobody is told `resync`.

import t from 'tap';
import { migrate } from '../../src/sql/migrate.js';
import { chaosWorld, steadyWriter } from '../helpers/chaos.js';
import { query, sleep, waitUntil } from '../helpers/capture.js';
import { withPostgres } from '../helpers/pg.js';

const db = await withPostgres(t);
await migrate(db.url);
t.teardown(() => {
  if (!t.passing()) t.comment(db.logTail(30));
});
const started = Date.now();
const w = await chaosWorld(t, db.url);
const writer = steadyWriter(db.url, 'items');
t.teardown(() => writer.stop());
const jitter = (ms: number) => sleep(ms + Math.floor(Math.random() * ms));

const walsender = async (): Promise<number | null> =>
  (await query<{ pid: number | null }>(db.url, "select active_pid as pid from pg_replication_slots where slot_name = 'chaos'"))[0]?.pid ?? null;

t.test('the daemon killed with SIGKILL and started again, twice', async (t) => {
  for (let k = 1; k <= 2; k++) {
    await jitter(600);
    t.equal(await w.serve.kill(), 'SIGKILL', `kill ${k}: died of SIGKILL`);
    await jitter(100);
    await w.serve.start();
    await w.checkpoint(t, `after SIGKILL ${k}`);
  }
  t.comment(`starts that waited for the slot: ${w.serve.slotBusy}`);
});

for (const mode of ['fast', 'immediate'] as const) {
  t.test(`Postgres restarted (${mode} shutdown)`, async (t) => {
    await jitter(500);
    const before = writer.failures;
    const restartAt = Date.now();
    await db.restart(mode);
    // A walsender waits at shutdown for its client's confirmation: the daemon must not hold it up.
    t.ok(Date.now() - restartAt < 15_000, `Postgres restarted in ${Date.now() - restartAt} ms`);
    await waitUntil(async () => (await walsender()) !== null, 20_000, () => 'the daemon streaming again');
    await jitter(300);
    t.ok(writer.failures > before, `the writer saw the restart (${writer.failures - before} failed transactions)`);
    await w.checkpoint(t, `after a ${mode} restart`);
  });
}

t.test('the walsender terminated with pg_terminate_backend, twice', async (t) => {
  for (let k = 1; k <= 2; k++) {
    await jitter(400);
    const pid = await walsender();
    t.ok(pid, `termination ${k}: the slot is in use`);
    const [r] = await query<{ ok: boolean }>(db.url, 'select pg_terminate_backend($1) as ok', [pid]);
    t.ok(r.ok, `termination ${k}: walsender ${pid} terminated`);
    await waitUntil(async () => ![null, pid].includes(await walsender()), 20_000, () => 'a new walsender');
    await w.checkpoint(t, `after termination ${k}`);
  }
});

t.test('at the end: nothing lost, nothing twice, nobody told resync, a clean stop', async (t) => {
  await jitter(300);
  await writer.stop();
  const rows = await w.checkpoint(t, 'at the end');
  t.ok(rows.length > 500, `${rows.length} rows committed (${writer.failures} transactions failed mid-restart)`);
  for (const { c } of w.clients) {
    t.same(c.resyncs, [], `${c.user}: no resync`);
    t.same(c.errors, [], `${c.user}: no error message`);
    t.ok(c.connections >= 3, `${c.user} reconnected after each daemon kill (${c.connections} connections)`);
  }
  t.equal(await w.serve.stop(), 0, 'SIGTERM: exit 0');
  t.comment(`took ${Date.now() - started} ms`);
});
