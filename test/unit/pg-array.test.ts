import t from 'tap';
import { parseArray } from '../../src/capture/pg-array.js';
import { decodeInt, decodeInt8, decodeJson, decodeNumeric, decodeText, decodeTimestamptz } from '../../src/capture/values.js';

const text = decodeText;

t.test('flat arrays', async (t) => {
  t.same(parseArray('{1,2,3}', decodeInt), [1, 2, 3]);
  t.same(parseArray('{1,2,NULL}', decodeInt), [1, 2, null]);
  t.same(parseArray('{NULL}', decodeInt), [null]);
  t.same(parseArray('{-1,0,-2147483648}', decodeInt), [-1, 0, -2147483648]);
  t.same(parseArray('{a}', text), ['a']);
  t.same(parseArray('{null,Null}', text), [null, null], 'unquoted NULL in any case is null (array_in)');
  t.same(parseArray('{NULLX,NUL}', text), ['NULLX', 'NUL']);
});

t.test('empty arrays', async (t) => {
  t.same(parseArray('{}', decodeInt), []);
  t.same(parseArray('{{},{}}', decodeInt), [[], []]);
});

t.test('quoted elements and escapes', async (t) => {
  t.same(parseArray('{"a,b","c\\"d",NULL,"NULL"}', text), ['a,b', 'c"d', null, 'NULL'], 'quoted "NULL" is text');
  t.same(parseArray('{"",""}', text), ['', '']);
  t.same(parseArray('{" x ","a b"}', text), [' x ', 'a b'], 'whitespace inside quotes kept');
  t.same(parseArray('{"a\\\\b"}', text), ['a\\b'], 'escaped backslash');
  t.same(parseArray('{"\\\\x0102"}', text), ['\\x0102'], 'bytea[] element');
  t.same(parseArray('{"{}","{1,2}","}"}', text), ['{}', '{1,2}', '}'], 'braces inside quotes');
  t.same(parseArray('{"tab\there"}', text), ['tab\there']);
  t.same(parseArray('{"line\nbreak"}', text), ['line\nbreak']);
  t.same(parseArray('{"\\a\\b"}', text), ['ab'], 'backslash escapes any character');
  t.same(parseArray('{"ünïcødé 🎉","日本"}', text), ['ünïcødé 🎉', '日本']);
  t.same(parseArray('{"a",b,"c"}', text), ['a', 'b', 'c'], 'quoted and unquoted mixed');
  t.same(parseArray('{"1","2"}', decodeInt), [1, 2], 'quoted elements are decoded too');
});

t.test('nested arrays', async (t) => {
  t.same(parseArray('{{1,2},{3,4}}', decodeInt), [[1, 2], [3, 4]]);
  t.same(parseArray('{{1,NULL},{NULL,4}}', decodeInt), [[1, null], [null, 4]]);
  t.same(parseArray('{{{1}}}', decodeInt), [[[1]]]);
  t.same(parseArray('{{{1,2},{3,4}},{{5,6},{7,8}}}', decodeInt), [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]);
  t.same(parseArray('{{"a,b",NULL},{"c\\"d","NULL"}}', text), [['a,b', null], ['c"d', 'NULL']]);
  t.same(parseArray('{{"}"},{"{"}}', text), [['}'], ['{']]);
});

t.test('dimension decorations', async (t) => {
  t.same(parseArray('[0:1]={1,2}', decodeInt), [1, 2]);
  t.same(parseArray('[-2:-1]={1,2}', decodeInt), [1, 2]);
  t.same(parseArray('[1:1][0:1]={{1,2}}', decodeInt), [[1, 2]]);
  t.same(parseArray('[0:0]={"a=b"}', text), ['a=b']);
});

t.test('custom delimiter', async (t) => {
  t.same(parseArray('{(1,1),(0,0);(3,3),(2,2)}', text, ';'), ['(1,1),(0,0)', '(3,3),(2,2)'], 'box[]');
  t.same(parseArray('{(1,1),(0,0);NULL}', text, ';'), ['(1,1),(0,0)', null]);
  t.same(parseArray('{{a;b};{c;d}}', text, ';'), [['a', 'b'], ['c', 'd']]);
  t.same(parseArray('{"a;b";c}', text, ';'), ['a;b', 'c']);
});

t.test('element decoders', async (t) => {
  t.same(
    parseArray('{1,9007199254740991,9007199254740992,-9007199254740993,9223372036854775807}', decodeInt8),
    [1, 9007199254740991, '9007199254740992', '-9007199254740993', '9223372036854775807'],
    'int8 beyond the safe range stays text per element',
  );
  t.same(parseArray('{1.50,NaN,3.141592653589793238,NULL}', decodeNumeric), [1.5, 'NaN', '3.141592653589793238', null]);
  t.same(
    parseArray('{"{\\"a\\": 1}","[1, 2]","\\"s\\"",NULL}', decodeJson),
    [{ a: 1 }, [1, 2], 's', null],
    'jsonb[]',
  );
  // Verbatim array_out of array['{"k": "v,}\\\""}'::jsonb, 'null'::jsonb, NULL]: JSON null is
  // quoted (it spells NULL), SQL NULL is not.
  t.same(
    parseArray(String.raw`{"{\"k\": \"v,}\\\\\\\"\"}","null",NULL}`, decodeJson),
    [{ k: String.raw`v,}\"` }, null, null],
  );
  t.same(parseArray('{null}', decodeJson), [null], 'unquoted null is SQL NULL (array_in semantics)');
  t.same(
    parseArray('{"2024-01-02 03:04:05.5+00",infinity,NULL}', decodeTimestamptz),
    ['2024-01-02T03:04:05.5Z', 'infinity', null],
  );
});

t.test('tolerated whitespace (array_in accepts it, array_out never writes it)', async (t) => {
  t.same(parseArray('{ 1 , 2 }', decodeInt), [1, 2]);
  t.same(parseArray(' { {1} , {2} } ', decodeInt), [[1], [2]]);
  t.same(parseArray('{ "a" , NULL }', text), ['a', null]);
  t.same(parseArray('{a b}', text), ['a b'], 'inner whitespace of an unquoted element kept');
  t.same(parseArray('{a\\,b}', text), ['a,b'], 'escaped delimiter in unquoted element');
  t.same(parseArray('{a\\ }', text), ['a '], 'escaped trailing space kept');
  t.same(parseArray('{\\NULL}', text), ['NULL'], 'escaped NULL is text');
});

t.test('malformed input returns the raw text, never throws', async (t) => {
  const bad = [
    '',
    '1 2 3', // int2vector / oidvector text
    '{',
    '}',
    '{1,2',
    '{1,}',
    '{,1}',
    '{1,,2}',
    '{"abc}',
    '{"abc\\"}',
    '{1}}',
    '{1}x',
    '{{1}',
    '{1"a"}',
    '{"a"b}',
    '{a{b}',
    '[0:1]{1,2}',
    '[0:1]=1,2',
    'x={1}',
    '{a\\',
  ];
  for (const s of bad) t.equal(parseArray(s, text), s, JSON.stringify(s));
});
