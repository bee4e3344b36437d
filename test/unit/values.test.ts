import t from 'tap';
import {
  decodeBool,
  decodeFloat,
  decodeInt,
  decodeInt8,
  decodeJson,
  decodeNumeric,
  decodeText,
  decodeTimestamp,
  decodeTimestamptz,
} from '../../src/capture/values.js';
import { TypeRegistry, TYPE_INFO_SQL, ALL_TYPES_SQL, type PgTypeInfo } from '../../src/capture/types-registry.js';

t.test('bool', async (t) => {
  t.equal(decodeBool('t'), true);
  t.equal(decodeBool('f'), false);
  t.equal(decodeBool('x'), 'x', 'unexpected text is kept');
  t.equal(decodeBool(''), '');
  t.equal(decodeBool('true'), 'true');
});

t.test('int2 / int4 / oid', async (t) => {
  t.equal(decodeInt('0'), 0);
  t.equal(decodeInt('42'), 42);
  t.equal(decodeInt('-32768'), -32768);
  t.equal(decodeInt('2147483647'), 2147483647);
  t.equal(decodeInt('-2147483648'), -2147483648);
  t.equal(decodeInt('4294967295'), 4294967295, 'largest oid');
  t.equal(decodeInt('abc'), 'abc', 'never NaN');
});

t.test('int8', async (t) => {
  t.equal(decodeInt8('0'), 0);
  t.equal(decodeInt8('-1'), -1);
  t.equal(decodeInt8('9007199254740991'), Number.MAX_SAFE_INTEGER, '2^53-1 is a number');
  t.equal(decodeInt8('-9007199254740991'), Number.MIN_SAFE_INTEGER, '-(2^53-1) is a number');
  t.equal(decodeInt8('9007199254740992'), '9007199254740992', '2^53 stays a string');
  t.equal(decodeInt8('9007199254740993'), '9007199254740993', '2^53+1 stays a string');
  t.equal(decodeInt8('-9007199254740992'), '-9007199254740992', '-2^53 stays a string');
  t.equal(decodeInt8('-9007199254740993'), '-9007199254740993');
  t.equal(decodeInt8('9223372036854775807'), '9223372036854775807');
  t.equal(decodeInt8('-9223372036854775808'), '-9223372036854775808');
});

t.test('numeric', async (t) => {
  const cases: Array<[string, unknown]> = [
    ['0', 0],
    ['1', 1],
    ['-1', -1],
    ['1.50', 1.5],
    ['1.5000000000', 1.5],
    ['100', 100],
    ['100.00', 100],
    ['-100.00', -100],
    ['0.1', 0.1],
    ['-0.1', -0.1],
    ['+1.25', 1.25],
    ['123.45', 123.45],
    ['123456789012345', 123456789012345], // 15 digits: fast path
    ['1234567890.12345', 1234567890.12345],
    ['1234567890.123456', 1234567890.123456], // 16 digits: checked by printing
    ['99999999999999999', '99999999999999999'], // 17 nines round to 1e17
    ['-12345678901234567', '-12345678901234567'],
    ['.5', 0.5], // not numeric_out's spelling, but the value is exact
    ['-007.50', -7.5],
    ['0.00', 0],
    ['-0', 0],
    ['-0.000', 0],
    ['9007199254740991', 9007199254740991],
    ['9007199254740992', 9007199254740992], // 2^53 is exactly representable and prints as itself
    ['9007199254740993', '9007199254740993'],
    ['12345678901234567890', '12345678901234567890'],
    ['3.141592653589793238', '3.141592653589793238'],
    ['3.141592653589793', 3.141592653589793],
    ['0.30000000000000004', 0.30000000000000004],
    ['0.3000000000000000444', '0.3000000000000000444'],
    ['0.1000000000000000001', '0.1000000000000000001'],
    ['1234567890.123456789', '1234567890.123456789'],
    ['0.0000001', 1e-7, ], // prints as 1e-7: compared by value
    ['0.00000012345', 1.2345e-7],
    ['-0.0000001000', -1e-7],
    ['1000000000000000000000', 1e21],
    ['1000000000000000000001', '1000000000000000000001'],
    ['123000000000000000000000', 1.23e23],
    ['0.' + '0'.repeat(400) + '1', '0.' + '0'.repeat(400) + '1'], // underflows to 0: not zero
    ['1' + '0'.repeat(400), '1' + '0'.repeat(400)], // overflows to Infinity
    ['NaN', 'NaN'],
    ['Infinity', 'Infinity'],
    ['-Infinity', '-Infinity'],
    ['', ''],
    ['abc', 'abc'],
    ['0x10', '0x10'],
    ['1e5', '1e5'], // numeric never prints exponents; unexpected spellings stay strings
  ];
  for (const [input, want] of cases) t.same(decodeNumeric(input), want, JSON.stringify(input));
  t.equal(Object.is(decodeNumeric('-0'), 0), true, "'-0' decodes to +0");
});

t.test('numeric round-trips every double and rejects one more digit', async (t) => {
  let seed = 42;
  const rand = (): number => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
  let checked = 0;
  for (let k = 0; k < 5000; k++) {
    const x = (rand() - 0.5) * 10 ** Math.floor(rand() * 40 - 20);
    if (x === 0) continue;
    const s = String(x);
    if (s.includes('e')) continue; // numeric_out never writes exponents
    const got = decodeNumeric(s);
    if (got !== x) t.fail(`${s} -> ${String(got)}`);
    // A shortest round-trip form never has more than 17 significant digits: this one has > 20.
    const longer = (s.includes('.') ? s : s + '.') + '00000000000000000001';
    if (decodeNumeric(longer) !== longer) t.fail(`${longer} should stay a string`);
    const padded = (s.includes('.') ? s : s + '.') + '000';
    if (decodeNumeric(padded) !== x) t.fail(`${padded} should decode to ${s}`);
    checked++;
  }
  t.ok(checked > 1000, `checked ${checked} doubles`);
});

t.test('float4 / float8', async (t) => {
  t.equal(decodeFloat('1.5'), 1.5);
  t.equal(decodeFloat('0.1'), 0.1);
  t.equal(decodeFloat('-2.25'), -2.25);
  t.equal(decodeFloat('1e-07'), 1e-7);
  t.equal(decodeFloat('1e+21'), 1e21);
  t.equal(decodeFloat('1.5e+300'), 1.5e300);
  t.equal(decodeFloat('3.4e+38'), 3.4e38);
  t.equal(decodeFloat('0.30000000000000004'), 0.30000000000000004);
  t.ok(Object.is(decodeFloat('-0'), -0), "'-0' is -0");
  t.equal(JSON.stringify(decodeFloat('-0')), '0');
  t.equal(decodeFloat('NaN'), 'NaN');
  t.equal(decodeFloat('Infinity'), 'Infinity');
  t.equal(decodeFloat('-Infinity'), '-Infinity');
});

t.test('json / jsonb', async (t) => {
  t.same(decodeJson('{"a": 1, "b": [true, null, "x"]}'), { a: 1, b: [true, null, 'x'] });
  t.same(decodeJson('[1, 2]'), [1, 2]);
  t.equal(decodeJson('"s"'), 's');
  t.equal(decodeJson('null'), null, 'JSON null (not SQL NULL)');
  t.equal(decodeJson('12.5'), 12.5);
  t.equal(decodeJson('{bad'), '{bad', 'unparsable text stays a string, no throw');
  t.equal(decodeJson(''), '');
  // Documented limitation: JSON.parse rounds numbers beyond double precision.
  t.equal(decodeJson('12345678901234567890'), 12345678901234567000);
});

t.test('timestamptz', async (t) => {
  const cases: Array<[string, string]> = [
    ['2024-01-02 03:04:05+00', '2024-01-02T03:04:05Z'],
    ['2024-01-02 03:04:05.123456+00', '2024-01-02T03:04:05.123456Z'],
    ['2024-01-02 03:04:05.5+00', '2024-01-02T03:04:05.5Z'],
    ['2024-01-02 03:04:05.123456+05:30', '2024-01-02T03:04:05.123456+05:30'],
    ['2024-01-02 03:04:05+05:30', '2024-01-02T03:04:05+05:30'],
    ['2024-01-02 03:04:05-08', '2024-01-02T03:04:05-08:00'],
    ['2024-01-02 03:04:05.25-08', '2024-01-02T03:04:05.25-08:00'],
    ['2024-01-02 03:04:05+14', '2024-01-02T03:04:05+14:00'],
    ['2024-01-02 03:04:05-03:30', '2024-01-02T03:04:05-03:30'],
    ['0001-01-01 00:00:00+00', '0001-01-01T00:00:00Z'],
    ['0044-03-15 12:00:00+00', '0044-03-15T12:00:00Z'],
    ['9999-12-31 23:59:59.999999+00', '9999-12-31T23:59:59.999999Z'],
    // Offsets with seconds (local mean time) have no ISO spelling: shifted to UTC exactly.
    ['1900-01-01 05:21:10+05:21:10', '1900-01-01T00:00:00Z'],
    ['1900-01-01 00:19:32.5+00:19:32', '1900-01-01T00:00:00.5Z'],
    ['1900-01-01 00:00:00-00:19:32', '1900-01-01T00:19:32Z'],
    ['2024-01-02 03:04:05.123456+05:30:15', '2024-01-01T21:33:50.123456Z'],
    ['0050-01-01 00:00:00+00:00:01', '0049-12-31T23:59:59Z'],
    // kept as Postgres wrote them
    ['0001-01-01 00:00:00+00:00:01', '0001-01-01 00:00:00+00:00:01'], // would be 1 BC
    ['infinity', 'infinity'],
    ['-infinity', '-infinity'],
    ['12000-01-01 00:00:00+00', '12000-01-01 00:00:00+00'],
    ['294276-12-31 23:59:59.999999+00', '294276-12-31 23:59:59.999999+00'],
    ['0044-03-15 12:00:00+00 BC', '0044-03-15 12:00:00+00 BC'],
    ['2024-01-02 03:04:05', '2024-01-02 03:04:05'], // no offset: not ours to guess
    ['2024-01-02 03:04:05+5', '2024-01-02 03:04:05+5'],
    ['', ''],
  ];
  for (const [input, want] of cases) t.equal(decodeTimestamptz(input), want, input);
  // The Z results parse to the same instant in JS (to the millisecond).
  t.equal(
    new Date(decodeTimestamptz('2024-01-02 03:04:05.123+05:30') as string).toISOString(),
    '2024-01-01T21:34:05.123Z',
  );
});

t.test('timestamp', async (t) => {
  t.equal(decodeTimestamp('2024-01-02 03:04:05'), '2024-01-02T03:04:05');
  t.equal(decodeTimestamp('2024-01-02 03:04:05.5'), '2024-01-02T03:04:05.5');
  t.equal(decodeTimestamp('2024-01-02 03:04:05.123456'), '2024-01-02T03:04:05.123456');
  t.equal(decodeTimestamp('0001-01-01 00:00:00'), '0001-01-01T00:00:00');
  t.equal(decodeTimestamp('infinity'), 'infinity');
  t.equal(decodeTimestamp('-infinity'), '-infinity');
  t.equal(decodeTimestamp('0044-03-15 12:00:00 BC'), '0044-03-15 12:00:00 BC');
  t.equal(decodeTimestamp('12000-01-01 00:00:00'), '12000-01-01 00:00:00');
  t.equal(decodeTimestamp(''), '');
});

t.test('strings left as written', async (t) => {
  for (const s of ['2024-01-02', '03:04:05.5', '03:04:05.5+05:30', 'P1Y2M3DT4H5M6.7S', '\\x0102ff', '$12.50',
    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'hello', 'padded  ', '', '101']) {
    t.equal(decodeText(s), s);
  }
});

const domain = (oid: number, name: string, base: number): PgTypeInfo =>
  ({ oid, name, typtype: 'd', category: 'N', elem: 0, base, delim: ',' });
const arrayOf = (oid: number, name: string, elem: number): PgTypeInfo =>
  ({ oid, name, typtype: 'b', category: 'A', elem, base: 0, delim: ',' });

t.test('TypeRegistry builtins need no rows', async (t) => {
  const r = new TypeRegistry();
  const dec = (oid: number, text: string): unknown => r.decoder(oid)(text);
  t.equal(dec(16, 't'), true);
  t.equal(dec(17, '\\x01'), '\\x01');
  t.equal(dec(18, 'a'), 'a');
  t.equal(dec(19, 'pg_class'), 'pg_class');
  t.equal(dec(20, '9007199254740993'), '9007199254740993');
  t.equal(dec(20, '-42'), -42);
  t.equal(dec(21, '7'), 7);
  t.equal(dec(23, '-7'), -7);
  t.equal(dec(25, 'x'), 'x');
  t.equal(dec(26, '16384'), 16384);
  t.same(dec(114, '{"a":1}'), { a: 1 });
  t.equal(dec(142, '<a/>'), '<a/>');
  t.equal(dec(700, '1.5'), 1.5);
  t.equal(dec(701, 'NaN'), 'NaN');
  t.equal(dec(790, '$1.00'), '$1.00');
  t.equal(dec(1042, 'ab  '), 'ab  ');
  t.equal(dec(1043, 'v'), 'v');
  t.equal(dec(1082, '2024-01-02'), '2024-01-02');
  t.equal(dec(1083, '03:04:05'), '03:04:05');
  t.equal(dec(1114, '2024-01-02 03:04:05'), '2024-01-02T03:04:05');
  t.equal(dec(1184, '2024-01-02 03:04:05+00'), '2024-01-02T03:04:05Z');
  t.equal(dec(1186, 'P1D'), 'P1D');
  t.equal(dec(1266, '03:04:05+00'), '03:04:05+00');
  t.equal(dec(1560, '101'), '101');
  t.equal(dec(1562, '1'), '1');
  t.equal(dec(1700, '1.50'), 1.5);
  t.equal(dec(2950, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'), 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11');
  t.same(dec(3802, '[1, "x"]'), [1, 'x']);

  t.same(dec(1000, '{t,f,NULL}'), [true, false, null]);
  t.same(dec(1001, '{"\\\\x0102",NULL}'), ['\\x0102', null]);
  t.same(dec(1005, '{1,-2}'), [1, -2]);
  t.same(dec(1007, '{{1,2},{3,NULL}}'), [[1, 2], [3, null]]);
  t.same(dec(1009, '{"a,b","c\\"d",NULL,"NULL"}'), ['a,b', 'c"d', null, 'NULL']);
  t.same(dec(1015, '{x,""}'), ['x', '']);
  t.same(dec(1016, '{1,9007199254740993,-9223372036854775808}'), [1, '9007199254740993', '-9223372036854775808']);
  t.same(dec(1021, '{1.5,NaN,-Infinity}'), [1.5, 'NaN', '-Infinity']);
  t.same(dec(1022, '{0.1,1e+21}'), [0.1, 1e21]);
  t.same(dec(1115, '{"2024-01-02 00:00:00"}'), ['2024-01-02T00:00:00']);
  t.same(dec(1182, '{2024-01-02,infinity}'), ['2024-01-02', 'infinity']);
  t.same(dec(1185, '{"2024-01-02 03:04:05.5+00",infinity,"0044-03-15 12:00:00+00 BC"}'),
    ['2024-01-02T03:04:05.5Z', 'infinity', '0044-03-15 12:00:00+00 BC']);
  t.same(dec(1231, '{1.50,NaN,12345678901234567890}'), [1.5, 'NaN', '12345678901234567890']);
  t.same(dec(2951, '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}'), ['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11']);
  t.same(dec(3807, '{"{\\"a\\": 1}","[1, 2]","\\"s\\"",null,NULL}'), [{ a: 1 }, [1, 2], 's', null, null]);
  t.same(dec(199, '{"{\\"a\\":[1,{\\"b\\":\\"}\\"}]}"}'), [{ a: [1, { b: '}' }] }]);
  t.same(dec(1020, '{(1,1),(0,0);(3,3),(2,2)}'), ['(1,1),(0,0)', '(3,3),(2,2)'], 'box[] uses ;');
  t.same(dec(1017, '{"(1,2)","(3,4)"}'), ['(1,2)', '(3,4)']);

  for (const oid of [16, 17, 18, 19, 20, 21, 23, 25, 26, 114, 142, 700, 701, 790, 1042, 1043, 1082, 1083, 1114, 1184,
    1186, 1266, 1560, 1562, 1700, 2950, 3802, 1000, 1001, 1005, 1007, 1009, 1015, 1016, 1021, 1022, 1115, 1182, 1185,
    1231, 2951, 3807, 199]) {
    t.ok(r.has(oid), `has ${oid}`);
  }
});

t.test('TypeRegistry unknown oids and caching', async (t) => {
  const r = new TypeRegistry();
  t.equal(r.has(99999), false);
  t.equal(r.decoder(99999)('{1,2}'), '{1,2}', 'unknown oid keeps the text');
  t.equal(r.decoder(23), r.decoder(23), 'decoder is cached');
  t.equal(r.decoder(1007), r.decoder(1007), 'array decoder is cached');
});

t.test('TypeRegistry domains, enums and arrays of them', async (t) => {
  const r = new TypeRegistry();
  // domain over numeric, and its array type
  r.add(domain(50001, 'price', 1700));
  r.add(arrayOf(50002, '_price', 50001));
  t.ok(r.has(50001));
  t.equal(r.decoder(50001)('1.50'), 1.5);
  t.equal(r.decoder(50001)('12345678901234567890.5'), '12345678901234567890.5');
  t.same(r.decoder(50002)('{1.50,NULL,0.1000000000000000001}'), [1.5, null, '0.1000000000000000001']);

  // domain over a domain over int8
  r.add(domain(50003, 'id', 20));
  r.add(domain(50004, 'user_id', 50003));
  t.equal(r.decoder(50004)('9007199254740993'), '9007199254740993');
  t.equal(r.decoder(50004)('12'), 12);

  // domain over an array type, and an array of that domain (nested text arrays)
  r.add({ oid: 50005, name: 'ints', typtype: 'd', category: 'A', elem: 0, base: 1007, delim: ',' });
  r.add(arrayOf(50006, '_ints', 50005));
  t.same(r.decoder(50005)('{1,2}'), [1, 2]);
  t.same(r.decoder(50006)('{"{1,2}",NULL,"{}"}'), [[1, 2], null, []]);

  // enum stays a string, as do its arrays
  r.add({ oid: 50007, name: 'mood', typtype: 'e', category: 'E', elem: 0, base: 0, delim: ',' });
  r.add(arrayOf(50008, '_mood', 50007));
  t.equal(r.decoder(50007)('happy'), 'happy');
  t.same(r.decoder(50008)('{happy,"very sad"}'), ['happy', 'very sad']);

  // array of a type we know nothing about: split, elements kept as text
  r.add(arrayOf(50009, '_mystery', 77777));
  t.same(r.decoder(50009)('{1,x}'), ['1', 'x']);

  // a domain whose base is unknown keeps the text
  r.add(domain(50010, 'orphan', 88888));
  t.equal(r.decoder(50010)('1.5'), '1.5');

  // a cycle in bad rows does not recurse forever
  r.add(domain(50011, 'a', 50012));
  r.add(domain(50012, 'b', 50011));
  t.equal(r.decoder(50011)('x'), 'x');
});

t.test('TypeRegistry.add invalidates cached decoders', async (t) => {
  const r = new TypeRegistry();
  t.equal(r.decoder(50001)('1.5'), '1.5', 'unknown yet: text');
  t.equal(r.decoder(50002)('{1.5}'), '{1.5}');
  r.add(domain(50001, 'price', 1700));
  t.equal(r.decoder(50001)('1.5'), 1.5);
  t.equal(r.decoder(50002)('{1.5}'), '{1.5}', 'array type still unknown');
  r.add(arrayOf(50002, '_price', 50001));
  t.same(r.decoder(50002)('{1.5}'), [1.5]);
});

t.test('TypeRegistry constructor rows and builtin rows from pg_type', async (t) => {
  // ALL_TYPES_SQL also returns builtin rows; adding them must not change builtin decoding.
  const r = new TypeRegistry([
    { oid: 1700, name: 'numeric', typtype: 'b', category: 'N', elem: 0, base: 0, delim: ',' },
    { oid: 600, name: 'point', typtype: 'b', category: 'G', elem: 701, base: 0, delim: ',' },
    { oid: 22, name: 'int2vector', typtype: 'b', category: 'A', elem: 21, base: 0, delim: ',' },
    domain(50001, 'price', 1700),
  ]);
  t.equal(r.decoder(1700)('2.50'), 2.5);
  t.equal(r.decoder(600)('(1,2)'), '(1,2)', 'point has a typelem but is not an array');
  t.equal(r.decoder(22)('1 2 3'), '1 2 3', 'int2vector text is not an array literal: kept');
  t.equal(r.decoder(50001)('2.50'), 2.5);
});

t.test('SQL text', async (t) => {
  for (const sql of [TYPE_INFO_SQL, ALL_TYPES_SQL]) {
    for (const col of ['oid', 'name', 'typtype', 'category', 'elem', 'base', 'delim']) {
      t.match(sql, new RegExp(`\\b${col}\\b`), `selects ${col}`);
    }
  }
  t.match(TYPE_INFO_SQL, /\$1::oid\[\]/);
});
