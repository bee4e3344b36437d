import t from 'tap';
import { formatLsn, parseLsn } from '../../src/protocol/lsn.js';
import { compareWalPositions as comparePositions, formatWalPosition as formatPosition, parseWalPosition as parsePosition } from '../../src/protocol/position.js';

t.test('LSN round trip in Postgres text form', async (t) => {
  t.equal(parseLsn('16/B374D848'), (0x16n << 32n) | 0xb374d848n);
  t.equal(formatLsn(parseLsn('16/B374D848')), '16/B374D848');
  t.equal(formatLsn(parseLsn('0/0')), '0/0');
  t.equal(formatLsn(parseLsn('00000001/0000000a')), '1/A', 'padding and case normalised');
  t.equal(formatLsn(parseLsn('FFFFFFFF/FFFFFFFF')), 'FFFFFFFF/FFFFFFFF');
  t.throws(() => parseLsn('16B374D848'), { code: 'bad_position' });
  t.throws(() => parseLsn('1/123456789'), { code: 'bad_position' });
  t.throws(() => parseLsn('g/0'), { code: 'bad_position' });
});

t.test('positions parse, format and order', async (t) => {
  const p = parsePosition('16/B374D848:3');
  t.equal(p.index, 3);
  t.equal(parsePosition('0/10:2147483647').index, 2147483647, 'the largest index');
  t.equal(formatPosition(p.lsn, p.index), '16/B374D848:3');
  t.ok(comparePositions(parsePosition('0/10:5'), parsePosition('0/11:0')) < 0, 'LSN orders first');
  t.ok(comparePositions(parsePosition('0/11:2'), parsePosition('0/11:1')) > 0, 'then the index');
  t.equal(comparePositions(parsePosition('0/11:2'), parsePosition('0/11:2')), 0);
  t.ok(comparePositions(parsePosition('1/0:0'), parsePosition('0/FFFFFFFF:9')) > 0, 'high word counts');
  for (const bad of ['', '0/10', '0/10:', '0/10:-1', '0/10:1.5', ':1', 'x/1:1', 42, null, '0/10:2147483648', '0/10:12345678901']) {
    t.throws(() => parsePosition(bad), { code: 'bad_position' }, `rejects ${JSON.stringify(bad)}`);
  }
});
