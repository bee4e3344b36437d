// snapshotQuery (src/snapshot/query.ts): the SQL of a snapshot. Identifiers quoted, client
// literals only ever as parameters, and only the terms Postgres evaluates at least as loosely
// as the daemon pushed into the WHERE clause. (That pushdown is never stricter than the daemon
// is checked against a real Postgres in test/integration/snapshot-query-pg.test.ts.)
import t from 'tap';
import { parseFilter, type ColumnInfo, type FilterTerm } from '../../src/hub/filter.js';
import { snapshotQuery, type SnapshotQueryInput } from '../../src/snapshot/query.js';

const COLUMNS: ColumnInfo[] = [
  { name: 'id', typeOid: 20 },
  { name: 'i2', typeOid: 21 },
  { name: 'i4', typeOid: 23 },
  { name: 'o', typeOid: 26 },
  { name: 'n', typeOid: 1700 },
  { name: 'b', typeOid: 16 },
  { name: 't', typeOid: 25 },
  { name: 'v', typeOid: 1043 },
  { name: 'c', typeOid: 1042 }, // bpchar: blank-padded comparison
  { name: 'f4', typeOid: 700 },
  { name: 'f8', typeOid: 701 },
  { name: 'ts', typeOid: 1184 },
  { name: 'tsl', typeOid: 1114 },
  { name: 'd', typeOid: 1082 },
  { name: 'j', typeOid: 114 },
  { name: 'jb', typeOid: 3802 },
  { name: 'u', typeOid: 2950 },
  { name: 'arr', typeOid: 1009 },
  { name: 'enum_or_composite', typeOid: 16500 }, // a user type: the OID alone does not say which
];

function input(terms: FilterTerm[], extra: Partial<SnapshotQueryInput> = {}): SnapshotQueryInput {
  return { schema: 'public', name: 'items', select: COLUMNS, columns: COLUMNS, terms, order: null, ...extra };
}

const term = (column: string, op: FilterTerm['op'], ...values: string[]): FilterTerm => ({ column, op, values });

/** The WHERE clause of the query for these terms ('' when none was pushed). */
function where(...terms: FilterTerm[]): { where: string; values: unknown[]; pushed: number } {
  const q = snapshotQuery(input(terms));
  const i = q.text.indexOf(' where ');
  return { where: i < 0 ? '' : q.text.slice(i + 7), values: q.values, pushed: q.pushed };
}

t.test('the select list and the table: every identifier quoted', async (t) => {
  const cols: ColumnInfo[] = [
    { name: 'plain', typeOid: 23 },
    { name: 'say "hi"', typeOid: 25 },
    { name: 'a.b', typeOid: 23 },
    { name: 'with space', typeOid: 23 },
    { name: 'Upper', typeOid: 23 },
    { name: 'x"; drop table t; --', typeOid: 25 },
  ];
  const q = snapshotQuery({ schema: 'my "schema"', name: 'dots.and spaces', select: cols, columns: cols, terms: [], order: null });
  t.equal(
    q.text,
    'select "plain", "say ""hi""", "a.b", "with space", "Upper", "x""; drop table t; --" from "my ""schema"""."dots.and spaces"',
  );
  t.same(q.values, []);
  t.equal(q.pushed, 0);

  const sel = snapshotQuery({ schema: 's', name: 't', select: [cols[0]], columns: cols, terms: [term('a.b', 'eq', '1'), term('say "hi"', 'is_null')], order: { column: 'with space', desc: true } });
  t.equal(sel.text, 'select "plain" from "s"."t" where "a.b" = $1 and "say ""hi""" is null order by "with space" desc', 'filter and order columns quoted too');
  t.same(sel.values, ['1']);
});

t.test('zero columns: a valid select of no column (a row per table row)', async (t) => {
  const q = snapshotQuery({ schema: 'public', name: 'empty', select: [], columns: [], terms: [], order: null });
  t.equal(q.text, 'select  from "public"."empty"');
  t.same(q.values, []);
});

t.test('order: asc, desc, none', async (t) => {
  t.match(snapshotQuery(input([], { order: { column: 'id', desc: false } })).text, / order by "id" asc$/);
  t.match(snapshotQuery(input([], { order: { column: 'id', desc: true } })).text, / order by "id" desc$/);
  t.notMatch(snapshotQuery(input([])).text, /order by/);
  const both = snapshotQuery(input([term('i4', 'eq', '3')], { order: { column: 'ts', desc: true } }));
  t.match(both.text, / where "i4" = \$1 order by "ts" desc$/, 'order after the where clause');
});

t.test('pushed: int, numeric, bool and text equality and in; int and numeric ranges; is null', async (t) => {
  t.same(where(term('id', 'eq', '42')), { where: '"id" = $1', values: ['42'], pushed: 1 });
  t.same(where(term('i2', 'eq', '-7')), { where: '"i2" = $1', values: ['-7'], pushed: 1 });
  t.same(where(term('i4', 'eq', '+007')), { where: '"i4" = $1', values: ['+007'], pushed: 1 }, 'sign and leading zeros: Postgres reads them the same');
  t.same(where(term('o', 'eq', '4294967295')), { where: '"o" = $1', values: ['4294967295'], pushed: 1 });
  t.same(where(term('n', 'eq', '1.50')), { where: '"n" = $1', values: ['1.50'], pushed: 1 });
  t.same(where(term('n', 'eq', '-12')), { where: '"n" = $1', values: ['-12'], pushed: 1 });
  t.same(where(term('b', 'eq', 'true')), { where: '"b" = $1', values: ['true'], pushed: 1 });
  t.same(where(term('t', 'eq', 'hello world')), { where: '"t" = $1', values: ['hello world'], pushed: 1 });
  t.same(where(term('v', 'eq', '')), { where: '"v" = $1', values: [''], pushed: 1 }, 'the empty string');

  t.same(where(term('i4', 'in', '1', '2', '3')), { where: '"i4" = any($1)', values: [['1', '2', '3']], pushed: 1 }, 'in: one array parameter');
  t.same(where(term('n', 'in', '1.5', '2')), { where: '"n" = any($1)', values: [['1.5', '2']], pushed: 1 });
  t.same(where(term('t', 'in', 'a', 'b,c', '"q"')), { where: '"t" = any($1)', values: [['a', 'b,c', '"q"']], pushed: 1 });
  t.same(where(term('b', 'in', 'true', 'false')), { where: '"b" = any($1)', values: [['true', 'false']], pushed: 1 });
  t.same(where(term('i4', 'in')), { where: '"i4" = any($1)', values: [[]], pushed: 1 }, 'in.(): no row, in SQL as in the daemon');

  for (const [op, sql] of [['lt', '<'], ['lte', '<='], ['gt', '>'], ['gte', '>=']] as const) {
    t.same(where(term('id', op, '10')), { where: `"id" ${sql} $1`, values: ['10'], pushed: 1 }, `int ${op}`);
    t.same(where(term('n', op, '2.25')), { where: `"n" ${sql} $1`, values: ['2.25'], pushed: 1 }, `numeric ${op}`);
  }
  t.same(where(term('i4', 'neq', '5')), { where: '"i4" <> $1', values: ['5'], pushed: 1 }, 'neq on int');
  t.same(where(term('n', 'neq', '5.0')), { where: '"n" <> $1', values: ['5.0'], pushed: 1 }, 'neq on numeric');
  t.same(where(term('b', 'neq', 'false')), { where: '"b" <> $1', values: ['false'], pushed: 1 }, 'neq on bool');

  t.same(where(term('b', 'is_true')), { where: '"b" is true', values: [], pushed: 1 });
  t.same(where(term('b', 'is_false')), { where: '"b" is false', values: [], pushed: 1 });
  for (const col of ['id', 'n', 'b', 't', 'v', 'c', 'f8', 'ts', 'tsl', 'd', 'u', 'arr']) {
    t.same(where(term(col, 'is_null')), { where: `"${col}" is null`, values: [], pushed: 1 }, `${col} is null`);
    t.same(where(term(col, 'is_not_null')), { where: `"${col}" is not null`, values: [], pushed: 1 }, `${col} is not null`);
  }

  t.same(where(term('jb', 'is_not_null')), { where: '"jb" is not null', values: [], pushed: 1 }, 'jsonb is not null: looser in SQL (a JSON null passes), so pushed');
  t.same(where(term('j', 'is_not_null')), { where: '"j" is not null', values: [], pushed: 1 });

  const many = where(term('id', 'gte', '1'), term('id', 'lt', '100'), term('t', 'eq', 'x'), term('b', 'is_true'));
  t.equal(many.where, '"id" >= $1 and "id" < $2 and "t" = $3 and "b" is true', 'several terms: and, parameters numbered in order');
  t.same(many.values, ['1', '100', 'x']);
  t.equal(many.pushed, 4);
});

t.test('not pushed: what Postgres could judge more strictly than the daemon', async (t) => {
  const none = (why: string, ...terms: FilterTerm[]) => {
    const w = where(...terms);
    t.same(w, { where: '', values: [], pushed: 0 }, why);
  };
  for (const op of ['lt', 'lte', 'gt', 'gte'] as const) {
    none(`text ${op} (the database's collation orders text, the daemon code units)`, term('t', op, 'm'));
    none(`varchar ${op}`, term('v', op, 'm'));
    none(`float ${op}`, term('f8', op, '1.5'));
    none(`timestamptz ${op}`, term('ts', op, '2024-01-01T00:00:00Z'));
    none(`bool ${op}`, term('b', op, 'true'));
  }
  none('text neq (a nondeterministic collation makes <> stricter)', term('t', 'neq', 'x'));
  none('float eq', term('f8', 'eq', '1.5'));
  none('float4 eq', term('f4', 'eq', '0.1'));
  none('timestamptz eq (the session time zone)', term('ts', 'eq', '2024-01-01T00:00:00Z'));
  none('timestamp eq', term('tsl', 'eq', '2024-01-01T00:00:00'));
  none('date eq', term('d', 'eq', '2024-01-01'));
  none('json eq', term('j', 'eq', '{"a":1}'));
  none('jsonb eq', term('jb', 'eq', '1'));
  none('jsonb in', term('jb', 'in', '1', '2'));
  none('uuid eq (the daemon canonicalizes)', term('u', 'eq', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'));
  none('bpchar eq (blank-padded)', term('c', 'eq', 'ab'));
  none('array eq', term('arr', 'eq', '{a,b}'));
  none('a user type eq', term('enum_or_composite', 'eq', 'x'));
  none('is.true on a non-bool column', term('i4', 'is_true'));
  none('is.false on a non-bool column', term('t', 'is_false'));
  // is null: a jsonb 'null' is decoded to null (the daemon's is.null matches it, SQL's not), and
  // IS NOT NULL on a composite is false when any field is null (the daemon's is true).
  none('json is null (JSON null)', term('j', 'is_null'));
  none('jsonb is null (JSON null)', term('jb', 'is_null'));
  none('a user type is not null (maybe a composite)', term('enum_or_composite', 'is_not_null'));
  none('a user type is null (maybe a composite)', term('enum_or_composite', 'is_null'));

  // Literals Postgres would read differently, or not at all: the daemon alone judges them.
  none('numeric 1e5', term('n', 'eq', '1e5'));
  none('numeric NaN', term('n', 'eq', 'NaN'));
  none('numeric Infinity', term('n', 'gt', 'Infinity'));
  none('numeric .5', term('n', 'eq', '.5'));
  none('numeric 5.', term('n', 'eq', '5.'));
  none('numeric with spaces', term('n', 'eq', ' 5'));
  none('numeric in with one 1e5', term('n', 'in', '1', '1e5'));
  none('int 1.0', term('i4', 'eq', '1.0'));
  none('int 1e3', term('i4', 'eq', '1e3'));
  none('int with a space', term('i4', 'eq', '1 '));
  none('int with an underscore (Postgres 16 reads 1_000)', term('i4', 'eq', '1_000'));
  none('int, unicode digits', term('i4', 'eq', '\u0661'));
  none('int, hex', term('i4', 'eq', '0x10'));
  none('int range, non-integer literal', term('id', 'lt', '1.5'));
  none('bool t', term('b', 'eq', 't'));
  none('bool TRUE', term('b', 'eq', 'TRUE'));
  none('bool in with f', term('b', 'in', 'true', 'f'));
  none('bool neq t', term('b', 'neq', 't'));
  none('text with NUL', term('t', 'eq', 'a\u0000b'));
  none('text in with a NUL member', term('t', 'in', 'a', '\u0000'));
  none('a column the table does not have', term('nope', 'eq', '1'));

  const mixed = where(term('t', 'lt', 'm'), term('i4', 'eq', '3'), term('f8', 'gt', '0'), term('n', 'eq', 'NaN'), term('b', 'is_false'));
  t.same(mixed, { where: '"i4" = $1 and "b" is false', values: ['3'], pushed: 2 }, 'only the exact terms of a mix');
});

t.test('no client text in the SQL: literals are parameters, names quoted', async (t) => {
  const evil = ["'; drop table items; --", '$1', 'x" or "1"="1', '\\', '1) or (1=1', 'é😀', '\n', "e'\\x00'"];
  const cols: ColumnInfo[] = [...COLUMNS, ...evil.map((name) => ({ name, typeOid: 25 }))];
  for (const v of evil) {
    for (const col of ['t', 'v', 'i4', 'n', 'b', 'f8', 'ts', 'jb']) {
      for (const op of ['eq', 'neq', 'lt', 'gte', 'in'] as const) {
        const q = snapshotQuery({ ...input([term(col, op, v, v)]), columns: cols });
        // The placeholders aside ('$1' is one of the values tried), the text holds no value.
        t.notOk(q.text.replace(/\$\d+/g, '').includes(v), `${col} ${op} ${JSON.stringify(v)}: not in the SQL text`);
        t.equal((q.text.match(/\$/g) ?? []).length, q.values.length, 'one $ per parameter, no other');
        if (!t.passing()) return;
      }
    }
    // As a column name: only ever inside double quotes, doubled.
    const q = snapshotQuery({ ...input([term(v, 'eq', 'x'), term(v, 'is_null')]), columns: cols, order: { column: v, desc: false } });
    const quoted = `"${v.replace(/"/g, '""')}"`;
    t.equal(q.text.split(quoted).length - 1, 3, `${JSON.stringify(v)} as a name: quoted each time (where twice, order once)`);
    t.same(q.values, ['x']);
  }
  // A filter parsed from text, the way a subscribe's arrives.
  const f = parseFilter(`t=eq."a\\"b'c"&i4=in.(1,2)&n=lt.3&"we\\"ird"=is.null&t=gt.zz`);
  const q = snapshotQuery({ ...input(f.terms), columns: [...COLUMNS, { name: 'we"ird', typeOid: 25 }] });
  t.equal(q.text, `select ${COLUMNS.map((c) => `"${c.name}"`).join(', ')} from "public"."items" where "t" = $1 and "i4" = any($2) and "n" < $3 and "we""ird" is null`);
  t.same(q.values, [`a"b'c`, ['1', '2'], '3']);
  t.equal(q.pushed, 4);
  // Whatever the terms, the SQL has one $n per parameter and the text carries none of the values.
  t.equal((q.text.match(/\$\d+/g) ?? []).length, q.values.length);
});
