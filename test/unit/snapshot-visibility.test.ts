// SnapshotVisibility (src/pg/snapshot-visibility.ts): which committed transactions a snapshot
// already holds, from pg_current_snapshot()'s text and pgoutput's 32-bit xids.
import t from 'tap';
import { PositionError } from '../../src/errors.js';
import { SnapshotVisibility } from '../../src/pg/snapshot-visibility.js';

const U32 = 2 ** 32;

t.test('parse: the text of pg_current_snapshot()', async (t) => {
  const v = SnapshotVisibility.parse('100:110:102,105');
  t.equal(v.xmin, 100n);
  t.equal(v.xmax, 110n);
  t.same([...v.inProgress()].sort((a, b) => a - b), [102, 105]);

  const empty = SnapshotVisibility.parse('7:7:');
  t.equal(empty.xmin, 7n, 'no transaction in progress: empty xip');
  t.equal(empty.xmax, 7n);
  t.equal(empty.inProgress().size, 0);

  const big = SnapshotVisibility.parse(`${U32 * 5 + 3}:${U32 * 5 + 9}:${U32 * 5 + 4}`);
  t.equal(big.xmin, BigInt(U32 * 5 + 3), '64-bit xids (with epoch) are read exactly');
  t.same([...big.inProgress()], [4], 'inProgress: the 32-bit xids pgoutput carries');

  for (const bad of ['', '1:2', '1:2:3:4', 'a:b:', '1:2:,', '1:2:3,', '1:2:3,,4', ' 1:2:', '1:2: 3', '-1:2:', '1.0:2:', '1:2:x', '1:2:\n', `1:${'9'.repeat(21)}:`]) {
    t.throws(() => SnapshotVisibility.parse(bad), PositionError, `refused: ${JSON.stringify(bad)}`);
  }
  t.throws(() => SnapshotVisibility.parse('11:10:'), PositionError, 'xmin after xmax');
  t.doesNotThrow(() => SnapshotVisibility.parse('10:10:'), 'xmin = xmax is a snapshot with nothing in progress');
});

t.test('contains: before xmin, in [xmin, xmax) in or out of xip, from xmax on', async (t) => {
  const v = SnapshotVisibility.parse('100:110:102,105');
  t.ok(v.contains(1), 'long committed');
  t.ok(v.contains(99), 'just before xmin');
  t.ok(v.contains(100), 'xmin itself, not in progress (it would be in xip)');
  t.notOk(v.contains(102), 'in progress when taken: not in the snapshot');
  t.ok(v.contains(103), 'between, committed before the snapshot');
  t.notOk(v.contains(105));
  t.ok(v.contains(109), 'just before xmax');
  t.notOk(v.contains(110), 'xmax: started after the snapshot');
  t.notOk(v.contains(111));
  t.notOk(v.contains(100_000_000), 'far in the future (within 2^31)');

  // xmin = xmax: every xid before is in, none from it on.
  const e = SnapshotVisibility.parse('500:500:');
  t.ok(e.contains(499));
  t.notOk(e.contains(500));
  const f = e.contains; // handed around as a callback (the catch-up's skip test)
  t.ok(f(1), 'contains works unbound');
});

t.test('32-bit xids widened across an epoch boundary', async (t) => {
  // xmax just above 2^32 (epoch 1); xids just below 2^32 are epoch 0, just above epoch 1.
  const xmin = U32 - 20;
  const xmax = U32 + 10;
  const v = SnapshotVisibility.parse(`${xmin}:${xmax}:${U32 - 5},${U32 + 2}`);
  t.equal(v.widen(U32 - 1), BigInt(U32 - 1), 'just below 2^32: epoch 0');
  t.equal(v.widen(3), BigInt(U32 + 3), 'just above 2^32: epoch 1');
  t.ok(v.contains(U32 - 30), 'epoch 0, before xmin');
  t.ok(v.contains(U32 - 20), 'epoch 0, xmin');
  t.notOk(v.contains(U32 - 5), 'epoch 0, in progress');
  t.ok(v.contains(U32 - 1), 'epoch 0, last xid, committed before');
  t.ok(v.contains(0), 'epoch 1, first xid');
  t.notOk(v.contains(2), 'epoch 1, in progress');
  t.ok(v.contains(9), 'epoch 1, just before xmax');
  t.notOk(v.contains(10), 'epoch 1, xmax');
  t.notOk(v.contains(11), 'epoch 1, after xmax');
  t.same([...v.inProgress()].sort((a, b) => a - b), [2, U32 - 5], 'inProgress as pgoutput would carry them');

  // Far away, within 2^31 of xmax, on either side of the boundary.
  const far = 2 ** 31 - 1000;
  t.ok(v.contains((xmax - far) % U32), 'far in the past (2^31 - 1000 before xmax): contained');
  t.equal(v.widen((xmax - far) % U32), BigInt(xmax - far));
  t.notOk(v.contains((xmax + far) % U32), 'far in the future: not contained');
  t.equal(v.widen((xmax + far) % U32), BigInt(xmax + far));

  // xmax just below 2^32: a new transaction's xid wraps to a small number, in epoch 1.
  const w = SnapshotVisibility.parse(`${U32 - 10}:${U32 - 3}:`);
  t.equal(w.widen(5), BigInt(U32 + 5));
  t.notOk(w.contains(5), 'after the wrap: not contained');
  t.ok(w.contains(U32 - 4), 'before xmax, epoch 0');
  t.notOk(w.contains(U32 - 3), 'xmax, epoch 0');
  t.ok(w.contains(U32 - 2 ** 31 + 10), 'far in the past');

  // Many epochs in: the same arithmetic.
  const e7 = 7 * U32;
  const m = SnapshotVisibility.parse(`${e7 - 2}:${e7 + 2}:${e7 - 1}`);
  t.ok(m.contains(U32 - 2));
  t.notOk(m.contains(U32 - 1), 'in progress, epoch 6');
  t.ok(m.contains(0));
  t.ok(m.contains(1));
  t.notOk(m.contains(2));
  t.same([...m.inProgress()], [U32 - 1]);
});

t.test('inProgress is a fresh set each call', async (t) => {
  const v = SnapshotVisibility.parse('1:9:3,4');
  const a = v.inProgress();
  a.add(8);
  t.same([...v.inProgress()].sort(), [3, 4]);
  t.notOk(v.contains(3));
});
