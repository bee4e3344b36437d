// walcast migrate against a real Postgres: idempotence, the SQL surface (README "SQL surface")
// (publication, walcast.enable / walcast.disable), atomic failures, checksums, concurrency.

import { createHash } from 'node:crypto';
import t from 'tap';
import { MigrationError } from '../../src/errors.js';
import { loadMigrations, migrate, type Migration } from '../../src/sql/migrate.js';
import { query, sqlClient } from '../helpers/capture.js';
import { withPostgres } from '../helpers/pg.js';

const db = await withPostgres(t);

function migration(version: number, name: string, sql: string): Migration {
  return { version, name, sql, checksum: createHash('sha256').update(sql).digest('hex') };
}

const files = loadMigrations();
const labels = files.map((m) => `${String(m.version).padStart(3, '0')}_${m.name}`);

t.test('migrate applies every file once; a second run applies nothing', async (t) => {
  t.ok(files.length >= 1, 'there are migrations');
  t.ok(labels.includes('001_init'), '001_init is one of them');

  const first = await migrate(db.url);
  t.same(first.applied, labels, 'first run applies all files in order');
  t.same(first.alreadyApplied, []);

  const second = await migrate(db.url);
  t.same(second.applied, [], 'second run applies nothing');
  t.same(second.alreadyApplied, labels);

  const rows = await query<{ version: number; name: string; checksum: string }>(db.url, 'select version, name, checksum from walcast.migrations order by version');
  t.same(
    rows.map((r) => ({ version: r.version, name: r.name, checksum: r.checksum })),
    files.map((m) => ({ version: m.version, name: m.name, checksum: m.checksum })),
    'one row per file, with its checksum',
  );

  const pubs = await query<{ pubname: string }>(db.url, `select pubname from pg_publication where pubname = 'walcast'`);
  t.equal(pubs.length, 1, 'publication walcast exists');
  const fns = await query<{ proname: string }>(
    db.url,
    `select p.proname from pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname = 'walcast' order by 1`,
  );
  t.ok(fns.some((f) => f.proname === 'enable') && fns.some((f) => f.proname === 'disable'), 'walcast.enable and walcast.disable exist');
  const sigs = await query<{ f: string }>(
    db.url,
    `select p.oid::regprocedure::text as f from pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname = 'walcast' order by 1`,
  );
  t.same(
    sigs.map((r) => r.f),
    [
      'walcast.broadcast(text,text,jsonb)',
      'walcast.disable(regclass)',
      'walcast.enable(regclass)',
      'walcast.enable(regclass,name)',
      'walcast.enabled(regclass)',
      'walcast.notify_policy()',
      'walcast.routable_type(regtype)',
      'walcast.snapshot_mark(text)',
    ],
    'the functions of the SQL surface',
  );
  const own = await query<{ t: string }>(db.url, `select tablename as t from pg_publication_tables where pubname = 'walcast' and schemaname = 'walcast' order by 1`);
  t.same(own.map((r) => r.t), ['broadcasts', 'casbin_rule', 'routes', 'snapshot_marks'], 'walcast\'s own published tables');
});

t.test('walcast.enable / walcast.disable', async (t) => {
  const c = await sqlClient(t, db.url);
  await c.query(`create table "Mixed Case" (id int primary key, v text)`);
  await c.query('create table plain (id int primary key)');
  await c.query('create view plain_v as select * from plain');

  const replident = async (rel: string): Promise<string> =>
    (await c.query<{ r: string }>('select relreplident::text as r from pg_class where oid = $1::regclass', [rel])).rows[0].r;
  const published = async (): Promise<string[]> =>
    // walcast's own policy table is always published (002_casbin_rule): list the others.
    (await c.query<{ t: string }>(`select schemaname || '.' || tablename as t from pg_publication_tables where pubname = 'walcast' and schemaname <> 'walcast' order by 1`)).rows.map((r) => r.t);

  t.equal(await replident('plain'), 'd', 'default replica identity before');
  await c.query(`select walcast.enable('plain')`);
  t.equal(await replident('plain'), 'f', 'enable sets REPLICA IDENTITY FULL');
  t.same(await published(), ['public.plain'], 'enable adds the table to the publication');

  await c.query(`select walcast.enable('plain')`);
  t.same(await published(), ['public.plain'], 'enable twice is fine and adds nothing');

  await c.query(`select walcast.enable('"Mixed Case"')`);
  t.equal(await replident('"Mixed Case"'), 'f', 'REPLICA IDENTITY FULL on the mixed-case table too');
  t.same(await published(), ['public.Mixed Case', 'public.plain'], 'a quoted, mixed-case name works');

  t.equal((await c.query(`select walcast.enabled('plain') as e`)).rows[0].e, true, 'walcast.enabled says so');
  await c.query(`select walcast.disable('plain')`);
  t.same(await published(), ['public.Mixed Case'], 'disable removes it');
  t.equal((await c.query(`select walcast.enabled('plain') as e`)).rows[0].e, false, 'walcast.enabled follows');
  t.equal(await replident('plain'), 'f', 'disable leaves the replica identity as it was');
  await c.query(`select walcast.disable('plain')`);
  t.same(await published(), ['public.Mixed Case'], 'disable twice is fine');

  await t.rejects(c.query(`select walcast.enable('plain_v')`), { code: '42809' }, 'enable on a view raises wrong_object_type');
  t.same(await published(), ['public.Mixed Case'], 'the view was not added');
  await t.rejects(c.query(`select walcast.enable('no_such_table')`), { code: '42P01' }, 'enable on a missing table raises');
  await t.rejects(c.query(`select walcast.disable('walcast.routes')`), { code: '42809' }, 'walcast.routes stays in the publication');
});

t.test('walcast.enable(rel, route_by => column)', async (t) => {
  const c = await sqlClient(t, db.url);
  await c.query('create domain room_key as int8');
  await c.query(`create table msgs (id int primary key, room_id int4, room room_key, "Room Name" text, score float8, body text)`);
  await c.query('create table other (id int primary key)');
  const routes = async (): Promise<Array<{ rel: string; route_by: string }>> =>
    (await c.query<{ rel: string; route_by: string }>(`select rel::text as rel, route_by::text as route_by from walcast.routes order by 1`)).rows;
  const published = async (): Promise<string[]> =>
    (await c.query<{ t: string }>(`select tablename as t from pg_publication_tables where pubname = 'walcast' and schemaname = 'public' order by 1`)).rows.map((r) => r.t);

  await c.query(`select walcast.enable('msgs', route_by => 'room_id')`);
  t.same(await routes(), [{ rel: 'msgs', route_by: 'room_id' }], 'the route is recorded');
  t.ok((await published()).includes('msgs'), 'and the table published');
  t.equal((await c.query<{ r: string }>(`select relreplident::text as r from pg_class where oid = 'msgs'::regclass`)).rows[0].r, 'f', 'with REPLICA IDENTITY FULL');

  await c.query(`select walcast.enable('msgs', route_by => 'room_id')`);
  t.same(await routes(), [{ rel: 'msgs', route_by: 'room_id' }], 'enabling twice changes nothing');
  await c.query(`select walcast.enable('msgs', route_by => 'Room Name')`);
  t.same(await routes(), [{ rel: 'msgs', route_by: 'Room Name' }], 'another column replaces it (names as they are, not quoted)');
  await c.query(`select walcast.enable('msgs', 'room')`);
  t.same(await routes(), [{ rel: 'msgs', route_by: 'room' }], 'a domain over a routable type, by position');

  await t.rejects(c.query(`select walcast.enable('msgs', route_by => 'nope')`), { code: '42703', message: /msgs has no column nope/ }, 'a missing column');
  await t.rejects(c.query(`select walcast.enable('msgs', route_by => 'score')`), { code: '42804', message: /score of msgs is of type double precision, which cannot route/ }, 'a type that cannot route');
  await t.rejects(c.query(`select walcast.enable('other', route_by => 'ctid')`), { code: '42703' }, 'a system column');
  t.same(await routes(), [{ rel: 'msgs', route_by: 'room' }], 'refused calls change nothing');
  t.notOk((await published()).includes('other'), 'nor publish the table');

  await c.query(`select walcast.enable('other', route_by => 'id')`);
  await c.query(`select walcast.enable('msgs')`);
  t.same(await routes(), [{ rel: 'other', route_by: 'id' }], 'enable without route_by removes the route');
  t.ok((await published()).includes('msgs'), 'the table stays published');

  await c.query(`select walcast.disable('other')`);
  t.same(await routes(), [], 'disable removes the route');
  t.notOk((await published()).includes('other'), 'and the table');

  await c.query(`select walcast.enable('other', route_by => 'id')`);
  await c.query('drop table other');
  await c.query(`select walcast.enable('msgs', route_by => 'room_id')`);
  t.same(await routes(), [{ rel: 'msgs', route_by: 'room_id' }], 'a dropped table\'s route is cleared by the next enable');
});

t.test('a failing migration leaves nothing half-applied', async (t) => {
  const good = migration(900, 'good', 'create table mig_900 (id int)');
  const bad = migration(901, 'bad', 'create table mig_901 (id int); insert into mig_901 values (1); select 1 / 0;');
  const err = await migrate(db.url, [...files, good, bad]).then(
    () => null,
    (e: unknown) => e,
  );
  t.ok(err instanceof MigrationError, 'rejects with a MigrationError');
  t.equal((err as MigrationError).code, 'migration_failed');
  t.match((err as Error).message, /901_bad/, 'the message names the failing migration');

  const tables = await query<{ relname: string }>(db.url, `select relname from pg_class where relname in ('mig_900', 'mig_901') order by 1`);
  t.same(tables.map((r) => r.relname), ['mig_900'], 'the 900 table exists, the 901 table does not');
  const versions = await query<{ version: number }>(db.url, 'select version from walcast.migrations where version >= 900 order by 1');
  t.same(versions.map((r) => r.version), [900], 'version 900 is recorded, 901 is not');

  // Fixed, the next run applies only 901.
  const fixed = migration(901, 'bad', 'create table mig_901 (id int)');
  const r = await migrate(db.url, [...files, good, fixed]);
  t.same(r.applied, ['901_bad'], 'after the fix only 901 is applied');
});

t.test('a changed checksum of an applied migration is refused', async (t) => {
  const before = await query<{ n: number }>(db.url, 'select count(*)::int as n from walcast.migrations');
  const changed = migration(900, 'good', 'create table mig_900 (id int, extra text)');
  await t.rejects(migrate(db.url, [...files, changed]), { code: 'migration_failed', message: /checksum/ });
  const changedFirst = { ...files[0], sql: files[0].sql + '\n-- edited', checksum: 'not-the-same' };
  await t.rejects(migrate(db.url, [changedFirst]), { code: 'migration_failed' }, 'also for a shipped file');
  const after = await query<{ n: number }>(db.url, 'select count(*)::int as n from walcast.migrations');
  t.equal(after[0].n, before[0].n, 'nothing was recorded');
  const cols = await query<{ n: number }>(db.url, `select count(*)::int as n from pg_attribute where attrelid = 'mig_900'::regclass and attname = 'extra'`);
  t.equal(cols[0].n, 0, 'the changed SQL was not run');
});

t.test('two concurrent migrate() runs both succeed and apply once', async (t) => {
  await query(db.url, 'create database concurrent');
  const url = db.urlFor({ database: 'concurrent' });
  const [a, b] = await Promise.all([migrate(url), migrate(url)]);
  t.same([...a.applied, ...b.applied].sort(), [...labels].sort(), 'every file applied exactly once between the two');
  t.same([...a.alreadyApplied, ...b.alreadyApplied].sort(), [...labels].sort(), 'and found applied by the other');
  const rows = await query<{ n: number }>(url, 'select count(*)::int as n from walcast.migrations');
  t.equal(rows[0].n, files.length, 'one row per file');
  const pubs = await query<{ n: number }>(url, `select count(*)::int as n from pg_publication where pubname = 'walcast'`);
  t.equal(pubs[0].n, 1, 'one publication');
});

// A partitioned table's rows live in its partitions, and WAL (with its old rows) is written per
// partition: enable must give every partition REPLICA IDENTITY FULL, or without a primary key
// every UPDATE/DELETE of the table fails ("does not have a replica identity").
t.test('walcast.enable on a partitioned table', async (t) => {
  const c = await sqlClient(t, db.url);
  await c.query('create table parted (id int, v text) partition by list (id)');
  await c.query('create table parted_1 partition of parted for values in (1)');
  await c.query('create table parted_2 partition of parted for values in (2, 3) partition by list (id)');
  await c.query('create table parted_2a partition of parted_2 for values in (2)');
  await c.query(`select walcast.enable('parted')`);
  await c.query(`insert into parted values (1, 'a'), (2, 'b')`);
  const { rows } = await c.query<{ relname: string; r: string }>(
    `select relname, relreplident::text as r from pg_class where relname like 'parted%' and relkind in ('r', 'p') order by 1`,
  );
  t.same(rows, ['parted', 'parted_1', 'parted_2', 'parted_2a'].map((relname) => ({ relname, r: 'f' })), 'the table and every partition have REPLICA IDENTITY FULL');
  await t.resolves(c.query(`update parted set v = v || '!'`), 'the application can still update the table');
  await t.resolves(c.query('delete from parted'), 'and delete from it');
});
