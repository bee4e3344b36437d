import t from 'tap';
import { effectiveLagBound } from '../../src/capture/lag-bound.js';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

t.test('the slot lag bound stays under max_slot_wal_keep_size', async (t) => {
  t.same(effectiveLagBound(GiB, null), { bytes: GiB, clamped: false }, 'unlimited (null, as read): the configured bound');
  t.same(effectiveLagBound(GiB, -1), { bytes: GiB, clamped: false }, 'unlimited (-1, as the server says it): the configured bound');
  t.same(effectiveLagBound(GiB, -1024), { bytes: GiB, clamped: false }, 'any negative: unlimited, never a negative bound');
  t.same(effectiveLagBound(GiB, 4096), { bytes: GiB, clamped: false }, '4 GB kept: 1 GiB fits');
  t.same(effectiveLagBound(GiB, 1024), { bytes: 768 * MiB, clamped: true }, '1 GB kept: 3/4 of it');
  t.same(effectiveLagBound(GiB, 0), { bytes: 0, clamped: true }, '0: keep nothing back');
});
