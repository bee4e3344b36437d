// Capture's interest table (src/cluster/interest-table.ts) and the interest keys
// (src/cluster/interest-keys.ts): key parsing (bad keys ignored and counted), whole-table and
// route followers united, the spread tokens (=n, =t, =x), deletes, dropped incarnations, answers
// as snapshots rebuilt after a change, the applied revision only growing.
import t from 'tap';
import { dataInterestKey, isIncarnation, newIncarnation, parseInterestKey, presenceKey } from '../../src/cluster/interest-keys.js';
import { InterestTable, type InterestEntry } from '../../src/cluster/interest-table.js';
import { token } from '../../src/cluster/subjects.js';
import { CLUSTER_TOKENS as TOK } from '../../src/constants.js';

const A = 'aaaaaaaa';
const B = 'bbbbbbbb';
const C = 'cccccccc';

/** A table fed entries with increasing revisions. */
function rig() {
  const table = new InterestTable(3);
  let rev = 0;
  const feed = (key: string, operation: InterestEntry['operation'] = 'PUT', value?: string) => table.apply({ key, operation, revision: ++rev, value });
  const put = (inc: string, tbl: string, route: string | null) => feed(dataInterestKey(inc, 'public', tbl, route));
  const del = (inc: string, tbl: string, route: string | null) => feed(dataInterestKey(inc, 'public', tbl, route), 'DEL');
  const incs = (tbl: string, route: string) => [...table.incsFor('d', 'public', tbl, route)].sort();
  return { table, feed, put, del, incs, rev: () => rev };
}

t.test('incarnation ids: 8 of [a-z0-9], distinct', async (t) => {
  const seen = new Set<string>();
  const bad: string[] = [];
  for (let i = 0; i < 1000; i++) {
    const inc = newIncarnation();
    if (!isIncarnation(inc)) bad.push(inc);
    seen.add(inc);
  }
  t.same(bad, [], 'each one matches [a-z0-9]{8}');
  t.equal(seen.size, 1000, 'no repeats');
});

t.test('keys: formatted and parsed back; anything else is not a key', async (t) => {
  t.equal(dataInterestKey(A, 'public', 'rooms', '42'), `${A}.d.public.rooms.42`);
  t.equal(dataInterestKey(A, 'public', 'rooms', null), `${A}.d.public.rooms.=a`);
  t.equal(presenceKey(A), `${A}.node`);
  t.same(parseInterestKey(`${A}.d.public.rooms.42`), { kind: 'data', inc: A, schema: 'public', table: 'rooms', route: '42' });
  t.same(parseInterestKey(`${A}.d.public.rooms.=a`), { kind: 'data', inc: A, schema: 'public', table: 'rooms', route: null });
  t.same(parseInterestKey(`${A}.d.public.rooms.=0`), { kind: 'data', inc: A, schema: 'public', table: 'rooms', route: '=0' });
  const hashed = token('a room');
  t.same(parseInterestKey(`${A}.d.public.${hashed}.${token('x y')}`), { kind: 'data', inc: A, schema: 'public', table: hashed, route: token('x y') });
  t.same(parseInterestKey(`${A}.node`), { kind: 'node', inc: A });
  for (const bad of [
    'capture',
    `${A}`,
    `AAAAAAAA.d.public.rooms.42`, // upper case
    `aaaaaaa.d.public.rooms.42`, // 7 characters
    `${A}.a.public.rooms.42`, // area a: nobody keys it
    `${A}.d.public.rooms`, // no route
    `${A}.d.public.rooms.42.x`,
    `${A}.d.public.rooms.=n`, // reserved, not followable
    `${A}.d.public.rooms.=t`,
    `${A}.d.public.rooms.=x`,
    `${A}.d.=zz.rooms.42`,
    `${A}.nodes`,
    `${A}.x.chan`,
  ]) {
    t.equal(parseInterestKey(bad), null, bad);
  }
});

t.test('whole-table and route followers are united per route', async (t) => {
  const { table, put, incs } = rig();
  put(A, 'rooms', null);
  put(B, 'rooms', '1');
  put(C, 'rooms', '2');
  put(C, 'rooms', '1');
  t.same(incs('rooms', '1'), [A, B, C]);
  t.same(incs('rooms', '2'), [A, C]);
  t.same(incs('rooms', '3'), [A], 'a route nobody follows: the whole-table followers');
  t.same(incs('rooms', TOK.nullRoute), [A]);
  put(B, 'rooms', TOK.nullRoute);
  t.same(incs('rooms', TOK.nullRoute), [A, B], 'NULL is a route like another');
  t.same(incs('other', '1'), [], 'a table nobody follows');
  for (const spread of [TOK.noRoute, TOK.truncate, TOK.oversize]) t.same(incs('rooms', spread), [A, B, C], `${spread}: everyone following the table`);
  t.same([...table.incsFor('d', 'public', 'other', TOK.truncate)], []);
  t.same(table.stats(), { incs: 3, tables: 1, routeKeys: 4, wholeKeys: 1, badKeys: 0, stale: 0, ofDropped: 0 });
});

t.test('policy and relation changes concern every known incarnation, presence alone too', async (t) => {
  const { table, feed, put } = rig();
  feed(presenceKey(A), 'PUT', JSON.stringify({ node: 'n1', started: '2026-01-01T00:00:00Z' }));
  put(B, 'rooms', '1');
  t.same([...table.incsFor('a', 'walcast', 'casbin_rule', TOK.noRoute)].sort(), [A, B]);
  t.same([...table.everyInc()].sort(), [A, B]);
  t.equal(table.nodeOf(A), 'n1');
  t.equal(table.nodeOf(B), null, 'no presence key: node unknown');
  t.same(table.incsOfNode('n1'), [A]);
  t.same(table.keysOf(A), [presenceKey(A)]);
});

t.test('a moved row concerns the followers of both routes', async (t) => {
  const { table, put } = rig();
  put(A, 'rooms', '1');
  put(B, 'rooms', '2');
  put(C, 'rooms', null);
  t.same([...table.incsForMove('d', 'public', 'rooms', '1', '2')].sort(), [A, B, C]);
  t.same([...table.incsForMove('d', 'public', 'rooms', '1', '1')].sort(), [A, C]);
  t.same([...table.incsForMove('d', 'public', 'rooms', '3', '4')].sort(), [C], 'neither followed: the whole table');
  t.same([...table.incsForMove('d', 'public', 'rooms', TOK.nullRoute, '2')].sort(), [B, C]);
  t.same([...table.incsForMove('d', 'public', 'other', '1', '2')], []);
});

t.test('deletes: keys go, and an incarnation with no key left is gone', async (t) => {
  const { table, put, del, incs, feed } = rig();
  put(A, 'rooms', '1');
  put(A, 'rooms', null);
  put(B, 'rooms', '1');
  del(A, 'rooms', null);
  t.same(incs('rooms', '1'), [A, B]);
  t.same(incs('rooms', '2'), []);
  del(A, 'rooms', '1');
  t.same(incs('rooms', '1'), [B]);
  t.same([...table.everyInc()], [B], 'A had nothing left');
  feed(dataInterestKey(B, 'public', 'rooms', '1'), 'PURGE');
  t.same(incs('rooms', '1'), []);
  t.same(table.stats().tables, 0, 'the table entry is gone');
  t.same([...table.everyInc()], []);
  del(C, 'rooms', '1'); // a key never seen
  t.same(table.stats(), { incs: 0, tables: 0, routeKeys: 0, wholeKeys: 0, badKeys: 0, stale: 0, ofDropped: 0 });
});

t.test('a key put twice counts once', async (t) => {
  const { table, put, del, incs } = rig();
  put(A, 'rooms', '1');
  put(A, 'rooms', '1');
  del(A, 'rooms', '1');
  t.same(incs('rooms', '1'), []);
  t.equal(table.stats().routeKeys, 0);
});

t.test('bad keys are counted and ignored, the revision still applied', async (t) => {
  const { table, feed, put, incs } = rig();
  put(A, 'rooms', '1');
  feed('capture');
  feed(`${A}.d.public.rooms.=n`);
  feed(`xyz.d.public.rooms.1`, 'DEL');
  t.same(incs('rooms', '1'), [A]);
  t.equal(table.stats().badKeys, 3);
  t.equal(table.appliedRevision, 4);
});

t.test('dropInc: its keys leave the answers, its late writes are ignored', async (t) => {
  const { table, put, feed, incs } = rig();
  feed(presenceKey(A), 'PUT', JSON.stringify({ node: 'n1', started: 'x' }));
  put(A, 'rooms', null);
  put(A, 'rooms', '1');
  put(B, 'rooms', '1');
  const before = table.incsFor('d', 'public', 'rooms', '1');
  table.dropInc(A);
  t.same(incs('rooms', '1'), [B]);
  t.same(incs('rooms', '2'), []);
  t.same([...table.everyInc()], [B]);
  t.same([...before].sort(), [A, B], 'a set handed out before is a snapshot: unchanged');
  t.ok(table.isDropped(A));
  put(A, 'rooms', '2');
  t.same(incs('rooms', '2'), [], 'a late put of a dropped incarnation');
  t.equal(table.stats().ofDropped, 1);
  t.equal(table.appliedRevision, 5);
  t.same(table.stats().routeKeys, 1);
  t.same(table.stats().wholeKeys, 0);
  // Remembered up to the bound (3 here): the oldest is forgotten first.
  for (const inc of ['dddddddd', 'eeeeeeee', 'ffffffff']) table.dropInc(inc);
  t.notOk(table.isDropped(A));
  t.ok(table.isDropped('ffffffff'));
});

t.test('answers are cached until their table changes, then rebuilt', async (t) => {
  const { table, put, del } = rig();
  put(A, 'rooms', null);
  put(B, 'rooms', '1');
  put(C, 'users', '1');
  const r1 = table.incsFor('d', 'public', 'rooms', '1');
  const w = table.incsFor('d', 'public', 'rooms', '9');
  const all = table.everyInc();
  t.equal(table.incsFor('d', 'public', 'rooms', '1'), r1, 'the same set object: cached');
  t.equal(table.incsFor('d', 'public', 'rooms', '8'), w, 'unfollowed routes share the whole-table set');
  put(C, 'users', '2'); // another table
  t.equal(table.incsFor('d', 'public', 'rooms', '1'), r1, 'a change elsewhere keeps this table\'s answers');
  t.equal(table.everyInc(), all, 'no new incarnation: everyInc kept');
  put(C, 'rooms', '1');
  const r2 = table.incsFor('d', 'public', 'rooms', '1');
  t.not(r2, r1, 'rebuilt after a change to the table');
  t.same([...r1].sort(), [A, B], 'the old answer unchanged');
  t.same([...r2].sort(), [A, B, C]);
  del(A, 'rooms', null);
  t.same([...table.incsFor('d', 'public', 'rooms', '9')], [], 'the whole-table answer rebuilt too');
  t.same([...w], [A]);
  t.not(table.everyInc(), all, 'A left: everyInc rebuilt');
  t.same([...table.everyInc()].sort(), [B, C]);
});

t.test('the applied revision only grows; replays are ignored', async (t) => {
  const table = new InterestTable();
  const k = dataInterestKey(A, 'public', 'rooms', '1');
  table.apply({ key: k, operation: 'PUT', revision: 5 });
  table.apply({ key: k, operation: 'DEL', revision: 9 });
  t.equal(table.appliedRevision, 9);
  table.apply({ key: k, operation: 'PUT', revision: 5 }); // a replay of an older entry
  t.equal(table.appliedRevision, 9);
  t.same([...table.incsFor('d', 'public', 'rooms', '1')], [], 'the delete stands');
  table.apply({ key: k, operation: 'PUT', revision: 9 });
  t.equal(table.stats().stale, 2);
  table.apply({ key: k, operation: 'PUT', revision: 10 });
  t.same([...table.incsFor('d', 'public', 'rooms', '1')], [A]);
  t.equal(table.appliedRevision, 10);
});

t.test('a new incarnation of a node drops the earlier one (it died without cleaning up), keys handed for deletion', async (t) => {
  const drops: [string, string[]][] = [];
  const table = new InterestTable(10, (inc, keys) => drops.push([inc, keys.sort()]));
  let rev = 0;
  const feed = (key: string, value?: string) => table.apply({ key, operation: 'PUT', revision: ++rev, value });
  feed(presenceKey(A), JSON.stringify({ node: 'n1', started: '1' }));
  feed(dataInterestKey(A, 'public', 'rooms', null));
  feed(presenceKey(B), JSON.stringify({ node: 'n2', started: '1' }));
  t.same([...table.everyInc()].sort(), [A, B]);
  feed(presenceKey(C), JSON.stringify({ node: 'n1', started: '2' })); // n1 restarted as C
  t.same([...table.everyInc()].sort(), [B, C], 'A is gone');
  t.same([...table.incsFor('d', 'public', 'rooms', '=n')], [], 'with its interests');
  t.same(drops, [[A, [dataInterestKey(A, 'public', 'rooms', null), presenceKey(A)].sort()]], 'its keys handed on once');
  feed(dataInterestKey(A, 'public', 'rooms', null));
  t.same([...table.everyInc()].sort(), [B, C], 'a late write of the dropped one is ignored');
  t.equal(drops.length, 1);
});
