// `walcast status` (issue 6, item 4): the slot, its lag and WAL retention, the published tables,
// and a running daemon's clients, subscriptions and window; a table, or --json. Issue 12: every
// logical slot of the database, inactive ones holding WAL flagged, --slot narrowing to one.
import t from 'tap';
import { resolveServeConfig } from '../../src/config.js';
import { startDaemon } from '../../src/daemon.js';
import { silentLogger } from '../../src/log.js';
import { migrate } from '../../src/sql/migrate.js';
import { query } from '../helpers/capture.js';
import { runCli } from '../helpers/cli.js';
import { withPostgres } from '../helpers/pg.js';
import { freePort, WsClient } from '../helpers/ws.js';

const db = await withPostgres(t);
await migrate(db.url);
await query(db.url, "create table notes (id bigserial primary key, body text); select walcast.enable('notes')");

t.test('before a daemon ever ran: no slot, no daemon', async (t) => {
  const port = await freePort();
  const r = await runCli(['status', '--db', db.url, '--daemon', `http://127.0.0.1:${port}`, '--json']);
  t.equal(r.code, 0);
  const s = JSON.parse(r.lines[0]);
  t.match(s, { slot: { name: 'walcast', exists: false }, settings: { walLevel: 'logical' }, daemon: { reachable: false } });
  t.same(s.slots, [], 'no slots yet');
  t.same(s.otherSlots, { otherDatabases: 0, physical: 0, inactiveHoldingWal: 0, maxRetainedBytes: null });
  t.same(s.warnings, []);
  t.ok(s.publication.tables.includes('public.notes') && s.publication.tables.includes('walcast.casbin_rule'), 'the published tables');
  const human = await runCli(['status', '--db', db.url, '--daemon', `http://127.0.0.1:${port}`]);
  t.match(human.lines.join('\n'), /slot\s+walcast: not created/);
  t.match(human.lines.join('\n'), /daemon\s+http:\/\/127\.0\.0\.1:\d+: not reachable/);
});

t.test('with a daemon: the active slot, its lag, and the daemon\'s clients and window', async (t) => {
  const d = await startDaemon(resolveServeConfig({ db: db.url, port: '0', auth: false }, {}), silentLogger);
  t.teardown(() => d.stop());
  const c = await WsClient.connect(`ws://127.0.0.1:${d.port}/ws`);
  t.teardown(() => c.close());
  await c.subscribe({ id: 1, table: 'notes' });
  await query(db.url, "insert into notes (body) values ('x')");
  await c.waitChanges(1, 1);
  const r = await runCli(['status', '--db', db.url, '--daemon', `http://127.0.0.1:${d.port}`, '--json']);
  const s = JSON.parse(r.lines[0]);
  t.match(s.slot, { exists: true, active: true, walStatus: 'reserved' }, 'active and reserved');
  t.type(s.slot.lagBytes, 'number', 'lag in bytes');
  t.ok(s.slot.lagBytes >= 0);
  t.match(s.daemon, { reachable: true, status: { replication: 'streaming', clients: 1, subscriptions: 1, window: { transactions: 1 } } });
  t.equal(s.slots.length, 1, 'one slot in the list');
  // The test's role is a superuser: the walsender's START_REPLICATION (naming the publication) is readable.
  t.match(s.slots[0], { name: 'walcast', plugin: 'pgoutput', active: true, walcast: true, walcastFrom: 'walsender', inactiveHoldingWal: false });
  t.type(s.slots[0].retainedBytes, 'number', 'WAL retained in bytes');
  t.same(s.warnings, [], 'an active slot is no warning');
  const human = await runCli(['status', '--db', db.url, '--daemon', `http://127.0.0.1:${d.port}`]);
  t.match(human.lines.join('\n'), /slot\s+walcast \(active, pid \d+\)/);
  t.match(human.lines.join('\n'), /daemon\s+.*streaming, 1 clients, 1 subscriptions/);
  t.match(human.lines.join('\n'), /window\s+\S+ \.\. \S+: 1 transactions/);
});

t.test('every logical slot of the database; an inactive one holding WAL flagged; --slot narrows', async (t) => {
  // The daemon of the test before has stopped: its slot is inactive now too.
  await query(db.url, "select pg_create_logical_replication_slot('other_pgoutput', 'pgoutput')");
  let decoding = 'other_decoding';
  try {
    await query(db.url, "select pg_create_logical_replication_slot('other_decoding', 'test_decoding')");
  } catch (err) {
    t.comment(`no test_decoding here (${(err as Error).message}): a second pgoutput slot instead`);
    decoding = 'other_pgoutput_2';
    await query(db.url, "select pg_create_logical_replication_slot('other_pgoutput_2', 'pgoutput')");
  }
  // A slot of another database: not listed, but counted (it holds WAL on the same disk).
  await query(db.url, 'create database elsewhere');
  await query(db.urlFor({ database: 'elsewhere' }), "select pg_create_logical_replication_slot('in_elsewhere', 'pgoutput')");
  t.teardown(async () => {
    for (const name of ['other_pgoutput', decoding]) await query(db.url, 'select pg_drop_replication_slot($1)', [name]);
    await query(db.urlFor({ database: 'elsewhere' }), "select pg_drop_replication_slot('in_elsewhere')");
  });
  await query(db.url, "insert into notes (body) select 'wal ' || g from generate_series(1, 200) g");

  const port = await freePort();
  const daemon = `http://127.0.0.1:${port}`;
  const r = await runCli(['status', '--db', db.url, '--daemon', daemon, '--json']);
  t.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.lines[0]);
  t.same(s.slots.map((x: { name: string }) => x.name), [decoding, 'other_pgoutput', 'walcast'].sort(), 'every logical slot of this database, by name');
  const byName = new Map<string, Record<string, unknown>>(s.slots.map((x: { name: string }) => [x.name, x]));
  for (const [name, x] of byName) {
    t.match(x, { active: false, pid: null, inactiveHoldingWal: true, walStatus: 'reserved' }, `${name}: inactive and holding WAL`);
    t.ok((x.retainedBytes as number) > 0, `${name}: retains WAL`);
    t.type(x.confirmedFlush, 'string', `${name}: confirmed_flush_lsn`);
  }
  t.match(byName.get('walcast'), { walcast: true, walcastFrom: 'config' }, "walcast's by its configured name (no daemon, no walsender)");
  t.match(byName.get('other_pgoutput'), { walcast: null, walcastFrom: null }, 'a pgoutput slot nothing reads: publication unknown');
  if (decoding === 'other_decoding') t.match(byName.get('other_decoding'), { plugin: 'test_decoding', walcast: false, walcastFrom: 'plugin' }, 'not pgoutput: not walcast');
  t.match(s.otherSlots, { otherDatabases: 1, physical: 0, inactiveHoldingWal: 1 }, 'the slot of the other database counted');
  t.ok(s.otherSlots.maxRetainedBytes > 0);
  t.equal(s.warnings.length, 4, 'a warning for each inactive slot holding WAL, and one for the other database');
  t.match(s.warnings.join('\n'), /slot other_pgoutput is inactive and holds .* of WAL.*pg_drop_replication_slot\('other_pgoutput'\)/);
  t.match(s.warnings.join('\n'), /1 slot\(s\) outside this database are inactive and hold WAL/);

  const human = (await runCli(['status', '--db', db.url, '--daemon', daemon])).lines.join('\n');
  t.match(human, /slots\s+3 logical in this database; elsewhere: 1 logical in other databases, 0 physical/);
  t.match(human, /^ {2}other_pgoutput\s+pgoutput, inactive, holds .* of WAL, lag .*, reserved; publication unknown$/m);
  t.match(human, /^ {2}walcast\s+pgoutput, inactive, .*; walcast \(the daemon's slot name here\)$/m);
  t.match(human, /^WARNING\s+slot other_pgoutput is inactive and holds/m, 'a warning line');

  const one = JSON.parse((await runCli(['status', '--db', db.url, '--daemon', daemon, '--slot', 'other_pgoutput', '--json'])).lines[0]);
  t.same(one.slots.map((x: { name: string }) => x.name), ['other_pgoutput'], '--slot narrows the list');
  t.match(one.slot, { name: 'other_pgoutput', exists: true, plugin: 'pgoutput', active: false, inactiveHoldingWal: true }, 'and shows it in detail');
  t.equal(one.otherSlots, null, 'nothing about other slots');
  t.equal(one.warnings.length, 1, 'its warning only');
  const oneHuman = (await runCli(['status', '--db', db.url, '--daemon', daemon, '--slot', 'other_pgoutput'])).lines.join('\n');
  t.match(oneHuman, /slot\s+other_pgoutput \(inactive: nothing is reading it\)/);
  t.notMatch(oneHuman, /walcast\s+pgoutput/, 'no other slot listed');
  const none = JSON.parse((await runCli(['status', '--db', db.url, '--daemon', daemon, '--slot', 'nosuch', '--json'])).lines[0]);
  t.match(none, { slot: { name: 'nosuch', exists: false }, slots: [], otherSlots: null });
  const bad = await runCli(['status', '--db', db.url, '--slot', 'Bad-Name']);
  t.equal(bad.code, 1, 'a name Postgres cannot have: refused');
  t.match(bad.stderr, /bad slot name "Bad-Name"[\s\S]*code: bad_config/);
});
