// The bounded cache (src/util/lru.ts): never more than its bound, an entry not used lately goes
// (second chance), and entries in use outlive a flood of names used once.
import t from 'tap';
import { Lru } from '../../src/util/lru.js';

t.test('holds at most max entries; evicts the oldest not used since it was last at the front', async (t) => {
  const c = new Lru<string, number>(3);
  c.set('a', 1);
  c.set('b', 2);
  c.set('c', 3);
  t.equal(c.get('a'), 1, 'a used: it gets a second chance');
  c.set('d', 4);
  t.equal(c.size, 3);
  t.same([...c.keys()], ['c', 'a', 'd'], 'b, the oldest not used, went; a went to the back');
  c.set('e', 5);
  t.same([...c.keys()], ['a', 'd', 'e'], 'then c');
  c.set('f', 6);
  t.same([...c.keys()], ['d', 'e', 'f'], 'then a: not used since its second chance');
  c.get('e');
  c.set('g', 7);
  c.set('h', 8);
  t.same([...c.keys()], ['g', 'e', 'h'], 'd and f went; e, used, went to the back');
});

t.test('set on a present key replaces, get on a missing key is undefined', async (t) => {
  const c = new Lru<string, number>(2);
  c.set('a', 1);
  c.set('a', 2);
  t.equal(c.size, 1);
  t.equal(c.get('a'), 2);
  t.equal(c.get('zz'), undefined);
  t.ok(c.delete('a'));
  t.equal(c.size, 0);
  c.set('x', 1);
  c.clear();
  t.equal(c.size, 0);
});

t.test('a flood of keys used once keeps within the bound and spares the entries in use', async (t) => {
  const c = new Lru<string, string>(100);
  for (let i = 0; i < 10; i++) c.set(`hot${i}`, 'h');
  for (let i = 0; i < 100_000; i++) {
    c.set(`${'x'.repeat(200)}${i}`, 'cold');
    if (i % 50 === 0) for (let j = 0; j < 10; j++) c.get(`hot${j}`);
    if (c.size > 100) t.fail(`size ${c.size} over the bound`);
  }
  t.equal(c.size, 100, 'full, not over');
  for (let j = 0; j < 10; j++) t.equal(c.get(`hot${j}`), 'h', `hot${j} still there`);
});

t.test('a bound below 1 is refused', async (t) => {
  t.throws(() => new Lru(0), RangeError);
  t.throws(() => new Lru(Number.NaN), RangeError);
});
