// Positions in the client (src/client/position.ts): parsing, ordering as 64-bit LSN then index,
// and agreement with the server's own bigint implementation.
import t from 'tap';
import { compareWalPositions as serverCompare, parseWalPosition as serverParse } from '../../src/protocol/position.js';
import { comparePositions, formatPosition, isPosition, maxPosition, MAX_INDEX, parsePosition, tryParsePosition } from '../../src/client/position.js';

t.test('parse and format', async (t) => {
  t.same(parsePosition('16/B374D848:3'), { hi: 0x16, lo: 0xb374d848, index: 3 });
  t.same(parsePosition('0/0:0'), { hi: 0, lo: 0, index: 0 });
  t.same(parsePosition('ffffffff/ffffffff:2147483647'), { hi: 0xffffffff, lo: 0xffffffff, index: MAX_INDEX }, 'lower case, the largest words and index');
  t.equal(formatPosition(parsePosition('16/b374d848:3')), '16/B374D848:3', 'formatted as the server writes it');
  for (const bad of ['', '16/B374D848', '16:3', '16/B374D848:', '16/B374D848:-1', '16/B374D848:2147483648', '123456789/0:0', '0/123456789:0', 'G/0:0', ' 0/0:0', '0/0:0 ', '0/0:1.5', '0/0:00000000001']) {
    t.equal(tryParsePosition(bad), null, `not a position: ${JSON.stringify(bad)}`);
    t.notOk(isPosition(bad));
  }
  for (const bad of [null, undefined, 3, {}]) t.equal(tryParsePosition(bad), null, `not a string: ${JSON.stringify(bad)}`);
  t.throws(() => parsePosition('nope'), TypeError);
});

t.test('order: the LSN as a 64-bit number, then the index', async (t) => {
  const cmp = (a: string, b: string) => Math.sign(comparePositions(a, b));
  t.equal(cmp('0/10:0', '0/9:0'), 1, 'hex words compare as numbers, not text ("10" > "9")');
  t.equal(cmp('0/A:0', '0/9:5'), 1, 'hex A after 9');
  t.equal(cmp('1/0:0', '0/FFFFFFFF:2147483647'), 1, 'the high word first');
  t.equal(cmp('16/B374D848:3', '16/b374d848:3'), 0, 'case does not matter');
  t.equal(cmp('16/B374D848:3', '16/B374D848:10'), -1, 'index as a number');
  t.equal(cmp('16/B374D848:3', '16/B374D848:3'), 0);
  t.equal(cmp('0/1:0', '0/01:0'), 0, 'leading zeros');
  t.equal(maxPosition(null, '0/1:0'), '0/1:0');
  t.equal(maxPosition('0/1:0', null), '0/1:0');
  t.equal(maxPosition('0/2:0', '0/1:9'), '0/2:0');
  t.equal(maxPosition('0/1:0', '0/1:1'), '0/1:1');
  t.equal(maxPosition(null, null), null);
});

t.test('agrees with the server on random positions', async (t) => {
  const word = () => (Math.random() < 0.3 ? [0, 1, 0xffffffff, 0x7fffffff][Math.floor(Math.random() * 4)] : Math.floor(Math.random() * 2 ** 32));
  const pos = () => `${word().toString(16)}/${word().toString(16)}:${Math.random() < 0.2 ? MAX_INDEX : Math.floor(Math.random() * 5)}`;
  let checked = 0;
  for (let i = 0; i < 5000; i++) {
    const a = pos();
    const b = Math.random() < 0.1 ? a : pos();
    const mine = Math.sign(comparePositions(a, b));
    const theirs = Math.sign(serverCompare(serverParse(a), serverParse(b)));
    if (mine !== theirs) t.fail(`${a} vs ${b}: client ${mine}, server ${theirs}`);
    checked++;
  }
  t.equal(checked, 5000, 'every pair ordered as the server orders it');
});
