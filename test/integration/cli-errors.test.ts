// The CLI's failures: each one ends with exactly one line on stderr naming the cause (and
// optionally one `  fix:` line), a non-zero exit code and no stack trace unless --verbose. And
// the clean endings: a reader closing the pipe early, SIGINT.

import net from 'node:net';
import pg from 'pg';
import t, { type Test } from 'tap';
import { migrate } from '../../src/sql/migrate.js';
import { runCli, spawnCli, type CliProcess, type CliResult } from '../helpers/cli.js';
import { query as sql } from '../helpers/capture.js';
import { withPostgres } from '../helpers/pg.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const STACK_LINE = /^\s+at /;


/** A TCP port on 127.0.0.1 that nothing listens on (bound then released). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** Exactly one `walcast: ` line naming the cause, optionally one `  fix: ` line, then the `  code: ` line; non-zero exit, no stack. */
function expectCleanError(t: Test, r: CliResult, cause: RegExp, fix?: RegExp): void {
  t.notOk(r.timedOut, 'exited by itself');
  t.equal(r.signal, null, 'not killed by a signal');
  t.ok(r.code !== null && r.code !== 0, `non-zero exit code (${r.code})`);
  const lines = r.stderrLines;
  const codeLine = /^ {2}code: [a-z_]+ \(docs\/errors\.md\)$/;
  const shapeOk = (lines.length === 2 && codeLine.test(lines[1])) || (lines.length === 3 && lines[1].startsWith('  fix: ') && codeLine.test(lines[2]));
  t.ok(shapeOk, `stderr is one line, at most one fix line, and the code line:\n${r.stderr}`);
  t.match(lines[0] ?? '', /^walcast: /, 'the line starts with "walcast: "');
  t.match(lines[0] ?? '', cause, 'the line names the cause');
  if (fix) t.match(lines[1] ?? '', fix, 'the fix line says what to do');
  t.notOk(lines.some((l) => STACK_LINE.test(l)), 'no stack trace');
  t.same(r.lines, [], 'nothing on stdout');
}

/** Waits until `slot` is held by a walsender, or fails if the process ends first. */
async function waitStreaming(db: { url: string }, p: CliProcess, slot: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const rows = await sql<{ active_pid: number | null }>(db.url, 'select active_pid from pg_replication_slots where slot_name = $1', [slot]);
    if (rows[0]?.active_pid != null) return;
    if (p.exited) throw new Error(`walcast exited before streaming:\n${(await p.closed).stderr}`);
    if (Date.now() > deadline) throw new Error(`slot ${slot} not streaming after ${timeoutMs} ms; stderr:\n${p.stderr}`);
    await sleep(25);
  }
}

// Two clusters at once: a logical one, and one whose wal_level is only 'replica'.
const [db, replica] = await Promise.all([withPostgres(t), withPostgres(t, { settings: { wal_level: 'replica' } })]);
await migrate(db.url);

t.test('bad URLs', async (t) => {
  const [notUrl, mysql] = await Promise.all([runCli(['tail', '--db', 'not-a-url']), runCli(['tail', '--db', 'mysql://x'])]);
  await t.test('not a URL', async (t) => expectCleanError(t, notUrl, /malformed database URL: \(not shown: it has no postgres:\/\/ scheme/, /--db postgres:\/\//));
  await t.test('mysql://', async (t) => expectCleanError(t, mysql, /must start with postgres:\/\/.*mysql:/, /--db postgres:\/\//));
});

t.test('migrate with no --db and no DATABASE_URL', async (t) => {
  const r = await runCli(['migrate'], { env: { DATABASE_URL: undefined, WALCAST_DB: undefined } });
  expectCleanError(t, r, /no database given/, /DATABASE_URL/);
});

t.test('unreachable server', async (t) => {
  const port = await freePort();
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  const r = await runCli(['tail', '--db', url]);
  expectCleanError(t, r, new RegExp(`cannot reach Postgres at 127\\.0\\.0\\.1:${port}`));
  t.ok(r.ms < 5_000, `fails fast when refused (${r.ms} ms)`);

  await t.test('--verbose adds the stack trace', async (t) => {
    const v = await runCli(['tail', '--db', url, '--verbose']);
    t.ok(v.code !== 0, 'non-zero exit');
    t.match(v.stderrLines[0] ?? '', /^walcast: cannot reach Postgres/, 'same first line');
    t.ok(v.stderrLines.some((l) => STACK_LINE.test(l)), `a stack trace follows:\n${v.stderr}`);
    const v2 = await runCli(['--verbose', 'tail', '--db', url]);
    t.ok(v2.stderrLines.some((l) => STACK_LINE.test(l)), '--verbose before the command works too');
  });
});

t.test('wal_level is not logical', async (t) => {
  const [{ wal_level }] = await sql<{ wal_level: string }>(replica.url, 'show wal_level');
  t.equal(wal_level, 'replica', 'startThrowawayPostgres applies a user wal_level over its default');
  const m = await runCli(['migrate', '--db', replica.url]);
  t.equal(m.code, 0, `migrate works on wal_level=replica: ${m.stderr}`);
  t.match(m.lines.join('\n'), /applied 001_init/);
  const r = await runCli(['tail', '--db', replica.url]);
  expectCleanError(t, r, /wal_level = replica.*wal_level = logical/, /wal_level = 'logical'/);
});

t.test('a role without REPLICATION', async (t) => {
  await sql(db.url, 'create role norep login');
  const r = await runCli(['tail', '--db', db.urlFor({ user: 'norep' })]);
  expectCleanError(t, r, /role "norep" has no REPLICATION privilege/, /WITH REPLICATION/);
});

t.test('a slot already in use', async (t) => {
  const first = spawnCli(['tail', '--db', db.url, '--slot', 'busy']);
  t.teardown(() => first.kill('SIGKILL'));
  await waitStreaming(db, first, 'busy');
  const second = await runCli(['tail', '--db', db.url, '--slot', 'busy']);
  expectCleanError(t, second, /slot "busy" is in use/, /--slot/);
  t.notOk(first.exited, 'the first tail is unaffected');
  first.kill('SIGINT');
  const r = await first.wait();
  t.equal(r.code, 0, 'the first exits 0 on SIGINT');
  t.equal(r.stderr, '', 'and quietly');
});

t.test('migrations not applied', async (t) => {
  await sql(db.url, 'create database fresh');
  const r = await runCli(['tail', '--db', db.urlFor({ database: 'fresh' })]);
  expectCleanError(t, r, /publication "walcast" does not exist/, /walcast migrate/);
});

t.test('--since garbage', async (t) => {
  const r = await runCli(['tail', '--db', db.url, '--since', 'garbage']);
  expectCleanError(t, r, /position.*"garbage"|"garbage".*position/);
});

t.test('unknown role, unknown database, a slot that is not walcast\'s', async (t) => {
  await sql(db.url, "select pg_create_physical_replication_slot('phys')");
  const [role, database, phys] = await Promise.all([
    runCli(['tail', '--db', db.urlFor({ user: 'nosuch' })]),
    runCli(['tail', '--db', db.urlFor({ database: 'nosuch' })]),
    runCli(['tail', '--db', db.url, '--slot', 'phys']),
  ]);
  await t.test('unknown role', async (t) => expectCleanError(t, role, /refused the login.*role "nosuch" does not exist/, /user and password/));
  await t.test('unknown database', async (t) => expectCleanError(t, database, /database "nosuch" does not exist/, /create the database/));
  await t.test('a physical slot of the same name', async (t) => {
    expectCleanError(t, phys, /replication slot "phys" exists but is a physical slot/, /--slot NAME/);
    t.notMatch(phys.stderrLines[0] ?? '', /another database/, 'a physical slot is not said to belong to another database');
  });
});

t.test('a temporary tail whose walsender is terminated ends with one line', async (t) => {
  const p = spawnCli(['tail', '--db', db.url]);
  t.teardown(() => p.kill('SIGKILL'));
  const slot = `walcast_tail_${p.pid}`;
  await waitStreaming(db, p, slot);
  await sql(db.url, 'select pg_terminate_backend(active_pid) from pg_replication_slots where slot_name = $1', [slot]);
  const r = await p.wait(10_000);
  expectCleanError(t, r, /replication connection lost.*terminat.*temporary slot cannot resume/, /--slot NAME/);
});

t.test('clean endings', async (t) => {
  await sql(db.url, 'create table ends (id bigserial primary key, v text)');
  await sql(db.url, "select walcast.enable('ends')");

  await t.test('a reader that closes the pipe early: exit 0, no error output', async (t) => {
    const p = spawnCli(['tail', '--db', db.url]);
    t.teardown(() => p.kill('SIGKILL'));
    await waitStreaming(db, p, `walcast_tail_${p.pid}`);
    const writes = (async () => {
      let i = 0;
      const c = new pg.Client({ connectionString: db.url });
      await c.connect();
      try {
        // Keep committing until the tail has gone, so that it writes into the closed pipe.
        while (!p.exited && i < 2000) {
          await c.query("insert into ends (v) values ('x')");
          i++;
          await sleep(10);
        }
      } finally {
        await c.end();
      }
      return i;
    })();
    await p.waitForLines(1);
    p.closeStdout();
    const r = await p.wait(10_000);
    const n = await writes;
    t.notOk(r.timedOut, `exited by itself after the pipe closed (${n} rows written)`);
    t.equal(r.code, 0, 'exit code 0');
    t.equal(r.signal, null, 'not killed by a signal (SIGPIPE)');
    t.equal(r.stderr, '', 'no error output');
    t.ok(r.lines.length >= 1, 'the reader got its line');
  });

  await t.test('SIGINT: exit 0', async (t) => {
    const p = spawnCli(['tail', '--db', db.url]);
    t.teardown(() => p.kill('SIGKILL'));
    const slot = `walcast_tail_${p.pid}`;
    await waitStreaming(db, p, slot);
    await sql(db.url, "insert into ends (v) values ('before sigint')");
    await p.waitFor(() => p.lines.some((l) => l.includes('before sigint')), 'the row');
    p.kill('SIGINT');
    const r = await p.wait(10_000);
    t.equal(r.code, 0, 'exit code 0');
    t.equal(r.signal, null, 'exited, not killed');
    t.equal(r.stderr, '', 'no error output');
    const rows = await sql(db.url, 'select 1 from pg_replication_slots where slot_name = $1', [slot]);
    t.same(rows, [], 'its temporary slot is gone');
  });
});

t.test('SIGINT while still starting: exit 0', async (t) => {
  // Hold the tail in its preflight: checkServer reads pg_publication, locked here.
  const locker = new pg.Client({ connectionString: db.url });
  await locker.connect();
  t.teardown(() => locker.end().catch(() => {}));
  await locker.query('begin');
  await locker.query('lock table pg_catalog.pg_publication in access exclusive mode');
  const p = spawnCli(['tail', '--db', db.url]);
  t.teardown(() => p.kill('SIGKILL'));
  for (let i = 0; ; i++) {
    const [{ n }] = await sql<{ n: number }>(db.url, "select count(*)::int as n from pg_stat_activity where wait_event_type = 'Lock' and query like '%pg_publication%'");
    if (n > 0) break;
    if (i > 400 || p.exited) throw new Error(`the tail never waited on the lock: ${p.stderr}`);
    await sleep(25);
  }
  p.kill('SIGINT');
  await sleep(200);
  await locker.query('rollback');
  const r = await p.wait(3_000);
  t.notOk(r.timedOut, 'exits after SIGINT');
  t.equal(r.code, 0, 'exit code 0');
});
