// Snapshot rows as `change.new` renders them: decodeRow builds the same object capture builds,
// and rowJsonWriter writes exactly what JSON.stringify writes of it (key order included:
// integer-like column names come first in JavaScript objects), for odd names and values.
import t from 'tap';
import { TypeRegistry } from '../../src/capture/types-registry.js';
import { decodeRow, rowJsonWriter } from '../../src/snapshot/decode.js';

const registry = new TypeRegistry();

t.test('rowJsonWriter = JSON.stringify of the decoded row', async (t) => {
  const columns = [
    { name: 'id', typeOid: 20 },
    { name: '2', typeOid: 25 },
    { name: '__proto__', typeOid: 25 },
    { name: 'we"ird\\name', typeOid: 25 },
    { name: '10', typeOid: 23 },
    { name: 'doc', typeOid: 3802 },
    { name: 'tags', typeOid: 1009 },
    { name: 'at', typeOid: 1184 },
    { name: 'ok', typeOid: 16 },
  ];
  const decoders = columns.map((c) => registry.decoder(c.typeOid));
  const write = rowJsonWriter(columns);
  const rows: (string | null)[][] = [
    ['1', 'two', 'proto', 'q"uote\u2028', '10', '{"a": [1, {"b": null}], "é": "\\u0000"}', '{a,"b c",NULL}', '2026-01-01 10:00:00.123456+00', 't'],
    ['9007199254740993', null, null, null, null, 'null', '{}', null, 'f'],
    ['-5', '', '', '', '-2147483648', '"str"', '{"\\\\"}', 'infinity', null],
  ];
  for (const values of rows) {
    const row = decodeRow(columns, decoders, values);
    t.equal(write(row), JSON.stringify(row), `row ${values[0]}`);
    t.same(JSON.parse(write(row)), row, 'parses back to the row');
  }
  t.equal(Object.keys(JSON.parse(write(decodeRow(columns, decoders, rows[0]))))[0], '2', 'integer-like names first, as in the object');
  t.equal(rowJsonWriter([])({}), '{}', 'no column');
});
