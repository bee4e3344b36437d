// Issue 11 item 5: no crash loop from the slot. A LOGIN-only role floods one transaction with
// logical decoding messages; a legitimate transaction is larger than --max-transaction-bytes;
// `walcast tail --slot` reads a large transaction. Each time the process runs with a small heap
// (node --max-old-space-size), stays up, moves the slot past the transaction, and goes on.

import { readFileSync } from 'node:fs';
import t from 'tap';
import { parseLsn } from '../../src/protocol/lsn.js';
import { migrate } from '../../src/sql/migrate.js';
import { query, slotInfo, sqlClient, waitUntil } from '../helpers/capture.js';
import { spawnCli, type CliProcess } from '../helpers/cli.js';
import { ServeChild } from '../helpers/chaos.js';
import { withPostgres } from '../helpers/pg.js';
import { connectWs, freePort, servedPort, type ChangeMsg } from '../helpers/ws.js';

const db = await withPostgres(t);
await migrate(db.url);
const url = db.url;
t.teardown(() => {
  if (!t.passing()) t.comment(db.logTail(30));
});
for (const name of ['big', 'other']) {
  await query(url, `create table ${name} (id bigserial primary key, v int)`);
  await query(url, `select walcast.enable('${name}')`);
}
// Can log in, nothing more: no USAGE on schema walcast, no table privileges.
await query(url, 'create role mallory login');

/** Resident set size of a process, in MiB (Linux). */
function rssMiB(pid: number | undefined): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** WAL position after everything committed so far. */
async function walNow(): Promise<bigint> {
  return parseLsn((await query<{ l: string }>(url, 'select pg_current_wal_lsn()::text as l'))[0].l);
}

/**
 * Inserts n rows into `big` in one transaction; returns the WAL insert position just before its
 * commit record, so that a slot acknowledged past it will not send the transaction again.
 */
async function bigInsert(n: number): Promise<bigint> {
  const c = await sqlClient(t, url);
  await c.query('begin');
  await c.query(`insert into big (v) select g from generate_series(1, ${n}) g`);
  const { rows } = await c.query<{ l: string }>('select pg_current_wal_insert_lsn()::text as l');
  await c.query('commit');
  await c.end();
  return parseLsn(rows[0].l);
}

async function slotPast(slot: string, lsn: bigint, what: string): Promise<void> {
  await waitUntil(async () => (await slotInfo(url, slot)).confirmedFlush > lsn, 30_000, () => `the slot ${slot} acknowledged past ${what}`);
}

async function metric(port: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

const alive = (p: CliProcess | null): boolean => !!p && p.child.exitCode === null && p.child.signalCode === null;

t.test('300k logical messages of another prefix in one transaction from a LOGIN-only role', async (t) => {
  // A short window: its oldest entry (an idle mark) does not hold the slot back for long.
  const serve = spawnCli(['serve', '--db', url, '--no-auth', '--port', '0', '--slot', 'flood', '--history-age', '1s'], { nodeArgs: ['--max-old-space-size=48'], timeoutMs: 120_000 });
  t.teardown(() => serve.kill('SIGKILL'));
  await serve.waitFor(() => servedPort(serve.stderr) !== null, 'the serving line');
  const port = servedPort(serve.stderr) as number;
  const c = await connectWs(t, `ws://127.0.0.1:${port}/ws`);
  await c.subscribe({ id: 'o', table: 'other' });
  const before = rssMiB(serve.child.pid);

  await query(
    db.urlFor({ user: 'mallory' }),
    `do $$ begin perform pg_logical_emit_message(true, 'anything', '') from generate_series(1, 300000); end $$`,
  );
  const after = await walNow();
  await query(url, 'insert into other (v) values (1)');
  const [ch] = await c.waitChanges('o', 1, 30_000);
  t.equal(ch.new?.v, 1, 'a later change is delivered');
  await slotPast('flood', after, 'the flood');
  t.ok(alive(serve), 'the daemon is up');
  const rss = rssMiB(serve.child.pid);
  t.ok(rss < before + 64, `RSS ${before.toFixed(0)} → ${rss.toFixed(0)} MiB`);
  t.comment(`walcast serve (heap limit 48 MiB): RSS ${before.toFixed(0)} MiB before, ${rss.toFixed(0)} MiB after 300k messages`);
});

t.test('a transaction past --max-transaction-bytes: resync for its table only, the slot moves on, restarts do not loop', async (t) => {
  const port = await freePort();
  // --max-slot-lag: entries before the large transaction leave the window once it is written,
  // so that what holds the slot back is the large transaction's own marker (which holds none).
  const serve = new ServeChild(['--db', url, '--no-auth', '--port', String(port), '--slot', 'oversize', '--max-transaction-bytes', '1MiB', '--max-slot-lag', '1MiB']);
  t.teardown(() => serve.kill());
  await serve.start();
  const ws = `ws://127.0.0.1:${port}/ws`;
  const a = await connectWs(t, ws);
  const b = await connectWs(t, ws);
  await a.subscribe({ id: 'big', table: 'big' });
  await b.subscribe({ id: 'other', table: 'other' });
  await query(url, 'insert into big (v) values (0)');
  await a.waitChanges('big', 1);

  const past = await bigInsert(200_000);
  const r = await a.next((m) => m.type === 'resync', 30_000, 'resync');
  t.same(r, { type: 'resync', sub: 'big', reason: 'transaction_too_large' }, 'the subscriber of the table is told to refetch');
  await query(url, 'insert into other (v) values (1)');
  const [o] = await b.waitChanges('other', 1, 30_000);
  t.equal(o.new?.v, 1, 'the subscriber of another table gets its later change');
  t.same(b.messages.filter((m) => m.type === 'resync'), [], 'and no resync');
  t.equal(a.messages.filter((m) => m.type === 'change').length, 1, 'none of the 200k rows was delivered');
  // (A catch-up across it gets resync too: test/unit/oversize.test.ts, where the window is exact.)
  t.equal(await metric(port, 'walcast_oversized_transactions_total'), 1, 'counted');
  await slotPast('oversize', past, 'the large transaction');
  t.ok(alive(serve.proc), 'the daemon is up');

  // SIGKILL, then a large transaction while it is down: the restart replays it from the slot.
  t.equal(await serve.kill(), 'SIGKILL');
  const replayed = await bigInsert(200_000);
  await serve.start();
  const c = await connectWs(t, ws);
  await c.subscribe({ id: 'big', table: 'big' });
  await c.subscribe({ id: 'other', table: 'other' });
  await slotPast('oversize', replayed, 'the replayed large transaction');
  await waitUntil(async () => (await metric(port, 'walcast_oversized_transactions_total')) === 1, 10_000, () => 'the replay skipped');
  await query(url, 'insert into other (v) values (2)');
  await query(url, 'insert into big (v) values (-1)');
  const [o2] = await c.waitChanges('other', 1, 30_000);
  const [b2] = await c.waitChanges('big', 1, 30_000);
  t.same([o2.new?.v, b2.new?.v], [2, -1], 'later changes of both tables delivered after the restart');
  t.same(c.messages.filter((m) => m.type === 'resync'), [], 'a replay is history: subscribers from now are not told resync');

  // Once more: the slot is past it, nothing is replayed.
  t.equal(await serve.kill(), 'SIGKILL');
  await serve.start();
  const d = await connectWs(t, ws);
  await d.subscribe({ id: 'other', table: 'other' });
  await query(url, 'insert into other (v) values (3)');
  const [o3] = (await d.waitChanges('other', 1, 30_000)) as ChangeMsg[];
  t.equal(o3.new?.v, 3, 'delivered after a second restart');
  t.equal(await metric(port, 'walcast_oversized_transactions_total'), 0, 'nothing replayed into another skip');
  t.ok(alive(serve.proc), 'up');
});

t.test('walcast tail --slot prints every change of a large transaction with a small heap', async (t) => {
  const N = 150_000;
  const tail = spawnCli(['tail', '--db', url, '--slot', 'tailbig'], { nodeArgs: ['--max-old-space-size=32'], timeoutMs: 120_000 });
  t.teardown(() => tail.kill('SIGKILL'));
  await waitUntil(async () => (await query(url, "select 1 from pg_replication_slots where slot_name = 'tailbig' and active")).length === 1, 15_000, () => 'tail streaming');
  await query(url, `insert into other (v) select g from generate_series(1, ${N}) g`);
  await query(url, 'insert into big (v) values (7)');
  await tail.waitFor(() => tail.lines.length >= N + 1, `${N + 1} lines`, 60_000);
  const last = JSON.parse(tail.lines[N]) as { table: string; new: { v: number } };
  t.same([last.table, last.new.v], ['public.big', 7], 'the change after it too');
  let seen = 0;
  for (let i = 0; i < N; i++) {
    const l = JSON.parse(tail.lines[i]) as { table: string; pos: string; new: { v: number } };
    if (l.table === 'public.other' && l.new.v === i + 1 && l.pos.endsWith(`:${i}`)) seen++;
  }
  t.equal(seen, N, 'every change of the large transaction, in order, one line each');
  t.ok(alive(tail), 'tail is up');
  tail.kill('SIGTERM');
  t.equal((await tail.wait()).code, 0, 'SIGTERM: exit 0');
});
