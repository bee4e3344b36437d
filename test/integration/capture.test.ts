// Capture against a real Postgres: decoding of every common type, whole transactions in commit
// order, positions, TOAST, DDL mid-stream, resume filter and checkpointing of the slot.

import t from 'tap';
import { parseLsn } from '../../src/protocol/lsn.js';
import { compareWalPositions as comparePositions, parseWalPosition as parsePosition, type Position } from '../../src/protocol/position.js';
import { renderChange } from '../../src/capture/render.js';
import type { CapturedChange as Change, Transaction } from '../../src/capture/types.js';
import { migrate } from '../../src/sql/migrate.js';
import { createSlot, query, releasedSlot, slotInfo, sqlClient, startCollector, waitUntil } from '../helpers/capture.js';
import { withPostgres } from '../helpers/pg.js';

const db = await withPostgres(t);
await migrate(db.url);
const url = db.url;

/** Positions of a transaction's changes, as rendered for clients. */
const positions = (tx: Transaction): Position[] => tx.changes.map((c) => parsePosition(renderChange(tx, c).pos));

const tableChanges = (txs: Transaction[], table: string): Change[] =>
  txs.flatMap((tx) => tx.changes).filter((c) => c.relation.qualified === table);

/** The transactions that touch `table`. */
const txsOf = (txs: Transaction[], table: string): Transaction[] =>
  txs.filter((tx) => tx.changes.some((c) => c.relation.qualified === table));

const rowOf = (c: Change | undefined): Record<string, unknown> | undefined =>
  c && (c.tag === 'insert' || c.tag === 'update') ? c.new : undefined;

t.test('insert, update, delete and truncate with the right types, old rows and positions', async (t) => {
  const c = await sqlClient(t, url);
  // Custom types that exist before capture starts.
  await c.query(`create type color as enum ('red', 'green', 'blue')`);
  await c.query(`create domain amount as numeric(10, 2) check (value >= 0)`);
  await c.query(`create table typed (
    id int4 primary key,
    i2 int2, i4 int4, i8_small int8, i8_big int8,
    n_small numeric, n_big numeric, f8 float8, f8_nan float8,
    b bool, txt text, bin bytea, js json, jsb jsonb,
    ints int[], texts text[], tstz timestamptz, ts timestamp, d date, u uuid,
    col color, amt amount, nothing text)`);
  await c.query(`select walcast.enable('typed')`);

  const cap = await startCollector(t, { url, slot: 'types' });

  const unicode = 'héllo wörld — 日本語 🎉👩‍👩‍👧 "q" \\ \'';
  await c.query(
    `insert into typed values (1, 32767, -2147483648, 42, 9007199254740993,
      1.50, 12345678901234567890.12345, 1.5, 'NaN',
      true, $1, '\\xdeadbeef00', '{"a": [1, {"b": null}], "s": "x"}', '{"k": {"nested": [true, 2.5, "z"]}, "e": []}',
      '{1,NULL,3}', array['a,b', 'c"d', null, 'NULL', 'back\\slash', '', 'plain'],
      '2024-01-02 03:04:05.123456+02', '2024-01-02 03:04:05.5', '2024-02-29', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
      'green', 12.5, null)`,
    [unicode],
  );
  await c.query(`begin`);
  await c.query(`update typed set txt = 'changed', i4 = 7, jsb = '[1, "two", {"three": 3}]' where id = 1`);
  await c.query(`insert into typed (id, b, f8) values (2, false, -0.25)`);
  await c.query(`insert into typed (id) values (3)`);
  await c.query(`commit`);
  await c.query(`delete from typed where id = 1`);
  await c.query(`truncate typed`);

  await cap.waitFor((txs) => tableChanges(txs, 'public.typed').length === 6, 10_000, '6 changes of typed');
  const txs = txsOf(cap.txs, 'public.typed');
  t.equal(txs.length, 4, 'four transactions');
  t.same(txs.map((tx) => tx.changes.map((ch) => ch.tag)), [['insert'], ['update', 'insert', 'insert'], ['delete'], ['truncate']], 'tags in order');

  const ins = txs[0].changes[0];
  t.equal(ins.tag, 'insert');
  if (ins.tag !== 'insert') return;
  t.equal(ins.relation.qualified, 'public.typed');
  t.equal(ins.relation.schema, 'public');
  t.equal(ins.relation.name, 'typed');
  const expected = {
    id: 1,
    i2: 32767,
    i4: -2147483648,
    i8_small: 42,
    i8_big: '9007199254740993',
    n_small: 1.5,
    n_big: '12345678901234567890.12345',
    f8: 1.5,
    f8_nan: 'NaN',
    b: true,
    txt: unicode,
    bin: '\\xdeadbeef00',
    js: { a: [1, { b: null }], s: 'x' },
    jsb: { k: { nested: [true, 2.5, 'z'] }, e: [] },
    ints: [1, null, 3],
    texts: ['a,b', 'c"d', null, 'NULL', 'back\\slash', '', 'plain'],
    tstz: '2024-01-02T01:04:05.123456Z',
    ts: '2024-01-02T03:04:05.5',
    d: '2024-02-29',
    u: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
    col: 'green',
    amt: 12.5,
    nothing: null,
  };
  t.strictSame(ins.new, expected, 'every column decoded to its JSON form');
  t.equal(typeof ins.new.i8_small, 'number');
  t.equal(typeof ins.new.i8_big, 'string', 'int8 beyond 2^53 stays an exact string');
  t.equal(Object.keys(ins.new).join(','), Object.keys(expected).join(','), 'columns in table order');

  const [upd, ins2, ins3] = txs[1].changes;
  t.equal(upd.tag, 'update');
  if (upd.tag !== 'update') return;
  t.equal(upd.relation.qualified, 'public.typed');
  t.strictSame(upd.old, expected, 'REPLICA IDENTITY FULL: old is the whole old row');
  t.strictSame(upd.new, { ...expected, txt: 'changed', i4: 7, jsb: [1, 'two', { three: 3 }] }, 'new is the whole new row');
  t.notOk(upd.unchangedToast, 'no unchanged TOAST columns');
  const nulls = Object.fromEntries(Object.keys(expected).map((k) => [k, null]));
  t.strictSame(rowOf(ins2), { ...nulls, id: 2, b: false, f8: -0.25 }, 'second insert, NULLs as null');
  t.strictSame(rowOf(ins3), { ...nulls, id: 3 }, 'third insert, all NULL but id');

  const del = txs[2].changes[0];
  t.equal(del.tag, 'delete');
  if (del.tag !== 'delete') return;
  t.strictSame(del.old, { ...expected, txt: 'changed', i4: 7, jsb: [1, 'two', { three: 3 }] }, 'delete carries the whole old row');
  t.notOk('new' in del, 'a delete has no new row');

  const tr = txs[3].changes[0];
  t.equal(tr.tag, 'truncate');
  if (tr.tag === 'truncate') t.equal(tr.relation.qualified, 'public.typed');

  // Positions: one commit LSN per transaction, indexes 0..n-1, later transactions greater.
  let prev: Position | null = null;
  for (const tx of txs) {
    const pos = positions(tx);
    t.ok(pos.every((p) => p.lsn === tx.lsn), `all changes of ${tx.lsnText} carry its commit LSN`);
    t.same(pos.map((p) => p.index), tx.changes.map((_, i) => i), 'indexes 0..n-1');
    t.equal(renderChange(tx, tx.changes[0]).pos, `${tx.lsnText}:0`, 'rendered as "<commit LSN>:<index>"');
    t.ok(tx.endLsn > tx.lsn, 'the commit record ends after it starts');
    t.match(tx.commitTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/, 'commit time is ISO 8601 with microseconds');
    for (const p of pos) {
      if (prev) t.ok(comparePositions(p, prev) > 0, 'positions strictly increase');
      prev = p;
    }
  }
  const rendered = renderChange(txs[1], upd);
  t.equal(rendered.op, 'update');
  t.equal(rendered.table, 'public.typed');
  t.same(JSON.parse(JSON.stringify(rendered.new)), upd.new, 'the rendered change is plain JSON');
  t.equal(cap.fatal.length, 0, 'no fatal errors');
});

t.test('types created after capture started decode correctly', async (t) => {
  const c = await sqlClient(t, url);
  const cap = await startCollector(t, { url, slot: 'late_types' });
  await c.query(`create type mood as enum ('sad', 'ok', 'happy')`);
  await c.query(`create domain posint as int check (value > 0)`);
  await c.query(`create table moods (id int primary key, m mood, p posint, ps posint[], ms mood[])`);
  await c.query(`select walcast.enable('moods')`);
  await c.query(`insert into moods values (1, 'happy', 5, '{1,2,3}', '{sad,happy}'), (2, null, null, '{}', null)`);
  // A second type created later still, used by a column added afterwards.
  await c.query(`create domain price as numeric check (value >= 0)`);
  await c.query(`alter table moods add column pr price`);
  await c.query(`insert into moods values (3, 'sad', 7, '{4,NULL}', '{ok}', 19.99)`);

  await cap.waitFor((txs) => tableChanges(txs, 'public.moods').length === 3, 10_000, 'three inserts into moods');
  const rows = tableChanges(cap.txs, 'public.moods').map(rowOf);
  t.strictSame(rows[0], { id: 1, m: 'happy', p: 5, ps: [1, 2, 3], ms: ['sad', 'happy'] }, 'enum as string, domain over int as number, array of domain as numbers');
  t.strictSame(rows[1], { id: 2, m: null, p: null, ps: [], ms: null });
  t.strictSame(rows[2], { id: 3, m: 'sad', p: 7, ps: [4, null], ms: ['ok'], pr: 19.99 }, 'a domain over numeric created later');
  t.equal(cap.fatal.length, 0);
});

t.test('a 100k-row transaction arrives as one transaction in index order', async (t) => {
  const c = await sqlClient(t, url);
  await c.query('create table bulk (id int primary key, v text)');
  await c.query(`select walcast.enable('bulk')`);
  const cap = await startCollector(t, { url, slot: 'bulk' });
  const started = Date.now();
  await c.query(`insert into bulk select g, 'row ' || g from generate_series(1, 100000) g`);
  await c.query(`insert into bulk values (0, 'after')`);
  await cap.waitFor(() => cap.rows('public.bulk') >= 100001, 30_000, '100001 inserts');
  t.comment(`100k rows captured in ${Date.now() - started} ms`);
  const txs = txsOf(cap.txs, 'public.bulk');
  t.equal(cap.rows('public.bulk'), 100001, 'exactly 100001 row changes');
  t.equal(txs.length, 2, 'two transactions');
  const big = txs[0];
  t.equal(big.changes.length, 100000, 'one transaction with 100000 changes');
  let inOrder = true;
  for (let i = 0; i < big.changes.length; i++) {
    const ch = big.changes[i];
    if (ch.index !== i || ch.tag !== 'insert' || ch.new.id !== i + 1 || ch.new.v !== `row ${i + 1}`) {
      inOrder = false;
      t.fail(`change ${i} out of order: ${JSON.stringify({ index: ch.index, tag: ch.tag, row: rowOf(ch) })}`);
      break;
    }
  }
  t.ok(inOrder, 'changes in index order, rows in insertion order');
  t.strictSame(rowOf(txs[1].changes[0]), { id: 0, v: 'after' }, 'the next transaction follows');
  t.ok(txs[1].lsn > big.lsn);
});

t.test('an update leaving a TOASTed column untouched carries the full value', async (t) => {
  const c = await sqlClient(t, url);
  await c.query('create table toasty (id int primary key, big text, n int)');
  await c.query('alter table toasty alter column big set storage external');
  await c.query(`select walcast.enable('toasty')`);
  const cap = await startCollector(t, { url, slot: 'toast' });
  await c.query(`insert into toasty select 1, string_agg(md5(i::text), ''), 0 from generate_series(1, 3200) i`);
  const { rows } = await c.query<{ big: string }>('select big from toasty where id = 1');
  const big = rows[0].big;
  t.equal(big.length, 102400, 'a 100 KB value');
  const toast = await c.query<{ toast: string }>(`select reltoastrelid::regclass::text as toast from pg_class where oid = 'toasty'::regclass`);
  const chunks = await c.query<{ n: number }>(`select count(*)::int as n from ${toast.rows[0].toast}`);
  t.ok(chunks.rows[0].n > 10, `stored out of line in the TOAST table (${chunks.rows[0].n} chunks)`);
  await c.query('update toasty set n = n + 1 where id = 1');
  await c.query('update toasty set n = n + 1 where id = 1');
  await c.query('delete from toasty where id = 1');

  await cap.waitFor((txs) => tableChanges(txs, 'public.toasty').length === 4, 10_000, 'insert, 2 updates, delete');
  const [ins, u1, u2, del] = tableChanges(cap.txs, 'public.toasty');
  t.equal(rowOf(ins)?.big, big, 'insert carries the value');
  for (const [u, n] of [[u1, 1], [u2, 2]] as const) {
    t.equal(u.tag, 'update');
    if (u.tag !== 'update') continue;
    const v = u.new.big as string;
    t.equal(typeof v, 'string', 'new.big present');
    t.equal(v?.length, big.length, 'full length');
    t.ok(v === big, 'identical to the stored value');
    t.equal(u.new.n, n);
    t.equal(u.old?.big, big, 'old row carries it too');
    t.notOk(u.unchangedToast, 'unchangedToast is absent');
    const txOf = cap.txs.find((tx) => tx.changes.includes(u)) as Transaction;
    t.notOk('unchanged_toast' in renderChange(txOf, u), 'rendered without unchanged_toast');
  }
  t.equal(del.tag === 'delete' ? del.old.big : undefined, big, 'delete old row carries it');
});

t.test('ALTER TABLE mid-stream: every change has the columns of its commit', async (t) => {
  const c = await sqlClient(t, url);
  await c.query('create table evolving (id int primary key, some_col text, other int)');
  await c.query(`select walcast.enable('evolving')`);
  const cap = await startCollector(t, { url, slot: 'ddl' });
  await c.query(`insert into evolving values (1, 'a', 10)`);
  await c.query(`alter table evolving add column extra text default 'x'`);
  await c.query(`insert into evolving (id, some_col, other) values (2, 'b', 20)`);
  await c.query(`update evolving set other = 11 where id = 1`);
  await c.query(`alter table evolving drop column some_col`);
  await c.query(`insert into evolving (id, other, extra) values (3, 30, 'y')`);
  await c.query(`alter table evolving alter column other type bigint`);
  await c.query(`insert into evolving values (4, 9007199254740993, 'z')`);

  await cap.waitFor((txs) => tableChanges(txs, 'public.evolving').length === 5, 10_000, '5 changes of evolving');
  const ch = tableChanges(cap.txs, 'public.evolving');
  t.strictSame(rowOf(ch[0]), { id: 1, some_col: 'a', other: 10 }, 'before ADD COLUMN');
  t.strictSame(rowOf(ch[1]), { id: 2, some_col: 'b', other: 20, extra: 'x' }, 'after ADD COLUMN, default filled');
  t.strictSame(rowOf(ch[2]), { id: 1, some_col: 'a', other: 11, extra: 'x' }, 'update of a row written before ADD COLUMN');
  t.strictSame(ch[2].tag === 'update' ? ch[2].old : null, { id: 1, some_col: 'a', other: 10, extra: 'x' }, 'its old row');
  t.strictSame(rowOf(ch[3]), { id: 3, other: 30, extra: 'y' }, 'after DROP COLUMN');
  t.strictSame(rowOf(ch[4]), { id: 4, other: '9007199254740993', extra: 'z' }, 'after ALTER TYPE to bigint');
  t.equal(cap.fatal.length, 0);
});

t.test('TRUNCATE of two tables in one statement', async (t) => {
  const c = await sqlClient(t, url);
  await c.query('create table tr_a (id serial primary key)');
  await c.query('create table tr_b (id int primary key)');
  await c.query('create table tr_unpublished (id int)');
  await c.query(`select walcast.enable('tr_a')`);
  await c.query(`select walcast.enable('tr_b')`);
  await c.query('insert into tr_a default values');
  await c.query('insert into tr_b values (1)');
  const cap = await startCollector(t, { url, slot: 'truncate' });
  await c.query('truncate tr_a, tr_b, tr_unpublished restart identity');
  await c.query('insert into tr_b values (2)');
  await cap.waitFor((txs) => tableChanges(txs, 'public.tr_b').length === 2, 10_000, 'truncate and insert');
  const tx = txsOf(cap.txs, 'public.tr_a')[0];
  t.ok(tx, 'a transaction with the truncate');
  t.equal(tx.changes.length, 2, 'one change per truncated published table');
  t.same(tx.changes.map((ch) => ch.tag), ['truncate', 'truncate']);
  t.same(tx.changes.map((ch) => (ch.tag === 'truncate' ? ch.relation.qualified : '')).sort(), ['public.tr_a', 'public.tr_b']);
  t.same(tx.changes.map((ch) => ch.index), [0, 1], 'indexed 0, 1');
  t.ok(tx.changes.every((ch) => ch.tag === 'truncate' && ch.restartIdentity && !ch.cascade), 'RESTART IDENTITY flag, no CASCADE');
  t.equal(tableChanges(cap.txs, 'public.tr_unpublished').length, 0, 'an unpublished table is not reported');
});

t.test('interleaved transactions are handed on in commit order', async (t) => {
  const a = await sqlClient(t, url);
  const b = await sqlClient(t, url);
  await a.query('create table inter (id int primary key, who text)');
  await a.query(`select walcast.enable('inter')`);
  const cap = await startCollector(t, { url, slot: 'interleave' });
  await a.query('begin');
  await b.query('begin');
  await a.query(`insert into inter values (1, 'A')`);
  await b.query(`insert into inter values (2, 'B')`);
  await a.query(`insert into inter values (3, 'A')`);
  await b.query(`insert into inter values (4, 'B')`);
  await b.query('commit');
  await a.query('commit');
  await cap.waitFor((txs) => tableChanges(txs, 'public.inter').length === 4, 10_000, 'four inserts');
  const txs = txsOf(cap.txs, 'public.inter');
  t.equal(txs.length, 2);
  t.same(txs[0].changes.map((ch) => rowOf(ch)?.who), ['B', 'B'], 'B, committed first, comes first');
  t.same(txs[1].changes.map((ch) => rowOf(ch)?.who), ['A', 'A'], 'then A, whole');
  t.same(txs[1].changes.map((ch) => rowOf(ch)?.id), [1, 3]);
  t.ok(txs[1].lsn > txs[0].lsn, 'A commits at a later LSN');
  t.ok(txs[0].xid > txs[1].xid, 'although A began first (smaller xid)');
});

t.test('rolled-back work never arrives', async (t) => {
  const c = await sqlClient(t, url);
  await c.query('create table rb (id int primary key)');
  await c.query(`select walcast.enable('rb')`);
  const cap = await startCollector(t, { url, slot: 'rollback' });
  await c.query('begin');
  await c.query('insert into rb values (1)');
  await c.query('rollback');
  await c.query('begin');
  await c.query('insert into rb values (2)');
  await c.query('savepoint s');
  await c.query('insert into rb values (3)');
  await c.query('rollback to savepoint s');
  await c.query('insert into rb values (4)');
  await c.query('commit');
  await c.query('insert into rb values (5)');
  await cap.waitFor((txs) => tableChanges(txs, 'public.rb').some((ch) => rowOf(ch)?.id === 5), 10_000, 'row 5');
  t.same(tableChanges(cap.txs, 'public.rb').map((ch) => rowOf(ch)?.id), [2, 4, 5], 'neither the rolled-back transaction nor the rolled-back savepoint');
  t.same(txsOf(cap.txs, 'public.rb').map((tx) => tx.changes.map((ch) => ch.index)), [[0, 1], [0]], 'indexes have no gaps');
});

t.test('resume filter `after`', async (t) => {
  const c = await sqlClient(t, url);
  await c.query('create table resume (id int primary key)');
  await c.query(`select walcast.enable('resume')`);
  await createSlot(t, url, 'resume');
  const probe = await startCollector(t, { url, slot: 'resume_probe' });
  await c.query('insert into resume values (1)'); // before the known transaction
  await c.query('begin');
  await c.query('insert into resume values (10), (11), (12)');
  await c.query('commit');
  await c.query('insert into resume values (20)');
  await c.query('insert into resume values (30), (31)');
  await probe.waitFor((txs) => tableChanges(txs, 'public.resume').length === 7, 10_000, 'probe sees 7 inserts');
  const known = txsOf(probe.txs, 'public.resume')[1];
  t.equal(known.changes.length, 3, 'the known 3-change transaction');
  const after: Position = parsePosition(renderChange(known, known.changes[1]).pos);
  t.same(after, { lsn: known.lsn, index: 1 });

  const cap = await startCollector(t, { url, slot: 'resume', after });
  await cap.waitFor((txs) => tableChanges(txs, 'public.resume').some((ch) => rowOf(ch)?.id === 31), 10_000, 'row 31');
  const got = cap.txs.flatMap((tx) => positions(tx).map((p, i) => ({ p, id: rowOf(tx.changes[i])?.id })));
  t.same(got.map((g) => g.id), [12, 20, 30, 31], 'only index 2 of the known transaction and later ones');
  t.ok(got.every((g) => comparePositions(g.p, after) > 0), 'every position is greater than `after`');
  const first = cap.txs[0];
  t.equal(first.lsn, known.lsn, 'the known transaction, same commit LSN');
  t.same(first.changes.map((ch) => ch.index), [2], 'keeps its original index 2');
  t.same(positions(cap.txs[1]).map((p) => p.index), [0], 'later transactions from index 0');
  t.same(positions(cap.txs[2]).map((p) => p.index), [0, 1]);
});

t.test('checkpointing: the slot is acknowledged up to what was processed', async (t) => {
  const c = await sqlClient(t, url);
  await c.query('create table ck (id int primary key)');
  await c.query(`select walcast.enable('ck')`);
  // No periodic status update within the test: the acknowledgement must come from stop().
  const cap = await startCollector(t, { url, slot: 'ck', statusIntervalMs: 60_000 });
  const before = (await slotInfo(url, 'ck')).confirmedFlush;
  for (let i = 1; i <= 3; i++) await c.query('insert into ck values ($1)', [i]);
  await cap.waitFor((txs) => txsOf(txs, 'public.ck').length === 3, 10_000, 'three transactions');
  const last = txsOf(cap.txs, 'public.ck')[2];
  await cap.stop();
  const after = await releasedSlot(url, 'ck');
  t.ok(after.confirmedFlush > before, 'confirmed_flush_lsn moved');
  t.ok(after.confirmedFlush >= last.endLsn, `confirmed_flush_lsn ${after.confirmedFlush} >= end of the last transaction ${last.endLsn}`);

  // Nothing is sent again after a restart.
  await c.query('insert into ck values (4)');
  const again = await startCollector(t, { url, slot: 'ck' });
  await again.waitFor((txs) => txsOf(txs, 'public.ck').length >= 1, 10_000, 'the new insert');
  t.same(tableChanges(again.txs, 'public.ck').map((ch) => rowOf(ch)?.id), [4], 'a restart replays nothing already acknowledged');
  await again.stop();
});

t.test('checkpointing: hold() keeps the oldest needed transaction', async (t) => {
  const c = await sqlClient(t, url);
  await c.query('create table held (id int primary key)');
  await c.query(`select walcast.enable('held')`);
  let firstTx: Transaction | null = null;
  const cap = await startCollector(t, {
    url,
    slot: 'held',
    statusIntervalMs: 200,
    hold: () => firstTx?.lsn ?? null,
    onTransaction: (tx) => {
      if (!firstTx && txsOf([tx], 'public.held').length) firstTx = tx;
    },
  });
  for (let i = 1; i <= 3; i++) await c.query('insert into held values ($1)', [i]);
  await cap.waitFor((txs) => txsOf(txs, 'public.held').length === 3, 10_000, 'three transactions');
  const first = firstTx as Transaction | null;
  if (!first) throw new Error('the first transaction was not seen');
  // More WAL, the last of it a transaction of its own: once the capture has processed that one,
  // everything before is processed too, and without the hold the slot would be acknowledged
  // past it.
  await c.query('create table held_noise (id int)');
  await c.query(`select walcast.enable('held_noise')`);
  await c.query('insert into held_noise select generate_series(1, 1000)');
  await cap.waitFor((txs) => txsOf(txs, 'public.held_noise').length === 1, 10_000, 'the noise transaction');
  const noise = txsOf(cap.txs, 'public.held_noise')[0];
  await waitUntil(() => cap.capture.lsns.processed > noise.lsn, 10_000, () => `the noise processed (at ${cap.capture.status.processed})`);
  // The slot moves, up to the hold and no further: a running capture acknowledges exactly the
  // held commit LSN (it started below it).
  let live = await slotInfo(url, 'held');
  await waitUntil(async () => (live = await slotInfo(url, 'held')).confirmedFlush >= first.lsn, 10_000, () => `confirmed_flush_lsn ${live.confirmedFlush} to reach the held ${first.lsn}`);
  t.equal(live.confirmedFlush, first.lsn, 'while running, confirmed_flush_lsn moved up to the held commit LSN, not past it');
  t.equal(cap.capture.lsns.acked, first.lsn, `acknowledged: the hold, though processed up to ${cap.capture.status.processed}`);
  // stop() sends a last acknowledgement of what was processed: the hold still wins.
  await cap.stop();
  const after = await releasedSlot(url, 'held');
  t.equal(after.confirmedFlush, first.lsn, `after stop, confirmed_flush_lsn ${after.confirmedFlush} is the held ${first.lsn}`);

  const replay = await startCollector(t, { url, slot: 'held' });
  await replay.waitFor((txs) => txsOf(txs, 'public.held').length === 3, 10_000, 'three transactions again');
  const again = txsOf(replay.txs, 'public.held');
  t.equal(again[0].lsn, first.lsn, 'the held transaction is sent again, same commit LSN');
  t.strictSame(again[0].changes.map(rowOf), first.changes.map(rowOf), 'with the same changes');
  t.same(again.map((tx) => rowOf(tx.changes[0])?.id), [1, 2, 3], 'and everything after it');
});

t.test('checkpointing: an idle slot keeps advancing', async (t) => {
  const c = await sqlClient(t, url);
  await c.query('create table idle_unpublished (id int, pad text)');
  const cap = await startCollector(t, { url, slot: 'idle', statusIntervalMs: 200 });
  const start = (await slotInfo(url, 'idle')).confirmedFlush;
  await c.query(`insert into idle_unpublished select g, repeat('x', 100) from generate_series(1, 5000) g`);
  await c.query('select pg_switch_wal()');
  await c.query(`insert into idle_unpublished values (0, 'last')`);
  const target = parseLsn((await c.query<{ lsn: string }>('select pg_current_wal_lsn()::text as lsn')).rows[0].lsn);
  t.ok(target > start, 'WAL moved past the slot');
  let now = start;
  await waitUntil(
    async () => (now = (await slotInfo(url, 'idle')).confirmedFlush) >= target,
    8_000,
    () => `confirmed_flush_lsn stuck at ${now}, WAL at ${target}`,
  ).then(
    () => t.pass('confirmed_flush_lsn caught up with the WAL written to an unpublished table'),
    (err: Error) => t.fail(err.message),
  );
  t.equal(cap.txs.length, 0, 'nothing was handed on');
  const rows = await query<{ retained: string }>(url, `select pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::text as retained from pg_replication_slots where slot_name = 'idle'`);
  t.comment(`WAL retained by the idle slot: ${rows[0].retained} bytes`);
});

// With a key replica identity (not FULL: an identity changed after walcast.enable), pgoutput
// sends the old key tuple with every non-key column as null: those are unknown, not NULL, so
// they are left out rather than reported as null.
t.test('a key-only old row does not invent NULLs', async (t) => {
  const c = await sqlClient(t, url);
  await c.query('create table keyonly (id int primary key, owner text not null)');
  await c.query(`select walcast.enable('keyonly')`);
  await c.query('alter table keyonly replica identity default');
  const cap = await startCollector(t, { url, slot: 'keyonly' });
  await c.query(`insert into keyonly values (1, 'alice'), (2, 'bob')`);
  await c.query(`update keyonly set id = 3 where id = 2`);
  await c.query('delete from keyonly where id = 1');
  await cap.waitFor((txs) => tableChanges(txs, 'public.keyonly').length === 4, 10_000, 'inserts, update and delete');
  const [, , upd, del] = tableChanges(cap.txs, 'public.keyonly');
  t.strictSame(upd.tag === 'update' ? upd.old : undefined, { id: 2 }, 'update that changed the key: old has the key only');
  t.strictSame(upd.tag === 'update' ? upd.new : undefined, { id: 3, owner: 'bob' }, 'and new the whole row');
  t.strictSame(del.tag === 'delete' ? del.old : undefined, { id: 1 }, `delete: the key only, owner (NOT NULL, was 'alice') is not reported as null`);
});

// Changes of partitions are reported under the partitioned table that was enabled (the name
// clients subscribe to), with whole old rows.
t.test('a partitioned table', async (t) => {
  const c = await sqlClient(t, url);
  await c.query('create table events (id int, kind text, payload text) partition by list (kind)');
  await c.query(`create table events_a partition of events for values in ('a')`);
  await c.query(`create table events_b partition of events for values in ('b')`);
  await c.query(`select walcast.enable('events')`);
  const cap = await startCollector(t, { url, slot: 'parted' });
  await c.query(`insert into events values (1, 'a', 'x'), (2, 'b', 'y')`);
  await c.query(`update events set payload = 'z' where id = 2`);
  await c.query(`delete from events where id = 1`);
  await cap.waitFor(() => cap.rows() >= 4, 10_000, 'four changes');
  const ch = cap.changes();
  t.same(ch.map((x) => `${x.tag} ${x.relation.qualified}`), [
    'insert public.events',
    'insert public.events',
    'update public.events',
    'delete public.events',
  ], 'reported as changes of public.events, not of its partitions');
  t.strictSame(ch[2].tag === 'update' ? ch[2].old : undefined, { id: 2, kind: 'b', payload: 'y' }, 'whole old row on update');
  t.strictSame(ch[3].tag === 'delete' ? ch[3].old : undefined, { id: 1, kind: 'a', payload: 'x' }, 'whole old row on delete');
});
