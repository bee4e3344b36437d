import t from 'tap';
import type { Relation } from '../../src/capture/pgoutput.types.js';
import type { Transaction } from '../../src/capture/types.js';
import { HistoryRing, LAST_INDEX } from '../../src/history/ring.js';

let clock = 1_000_000;
const now = () => clock;
// The ring only counts and orders changes: a truncate is the smallest one to fill it with.
const relation = { oid: 1, schema: 'public', name: 't', qualified: 'public.t', replicaIdentity: 'default', columns: [], decoders: [] } as unknown as Relation;
const tx = (lsn: bigint, n: number, time = clock): Transaction => ({
  xid: 1,
  lsn,
  lsnText: `0/${lsn.toString(16).toUpperCase()}`,
  endLsn: lsn + 8n,
  commitTime: new Date(time).toISOString(),
  changes: Array.from({ length: n }, (_, index) => ({ index, tag: 'truncate' as const, relation, cascade: false, restartIdentity: false })),
});

t.test('append, look up by position, head and floor', async (t) => {
  const ring = new HistoryRing({ maxBytes: 1e9, maxAgeMs: 60_000, now });
  ring.reset({ lsn: 0xffn, index: LAST_INDEX });
  t.ok(ring.covers({ lsn: 0xffn, index: LAST_INDEX }), 'the floor itself is resumable');
  t.notOk(ring.covers({ lsn: 0xfen, index: 5 }), 'before the floor is not');
  ring.appendTransaction(tx(0x100n, 3), 100);
  ring.appendTransaction(tx(0x200n, 1), 100);
  t.same(ring.head, { lsn: 0x200n, index: 0 });
  t.equal(ring.oldestLsn(), 0x100n, 'the slot is held at the oldest commit LSN');
  t.equal(ring.seqAfter({ lsn: 0xffn, index: LAST_INDEX }), 0, 'from the floor: everything');
  t.equal(ring.seqAfter({ lsn: 0x100n, index: 1 }), 0, 'mid-transaction: that transaction again');
  t.equal(ring.seqAfter({ lsn: 0x100n, index: 2 }), 1, 'its last change: the next one');
  t.equal(ring.seqAfter({ lsn: 0x200n, index: 0 }), 2, 'the head: nothing');
  t.equal(ring.get(1)?.lsn, 0x200n);
  t.equal(ring.get(2), undefined);
});

t.test('marks move the head while idle; stale marks are ignored', async (t) => {
  const ring = new HistoryRing({ maxBytes: 1e9, maxAgeMs: 60_000, now });
  ring.appendTransaction(tx(0x100n, 1), 100);
  t.ok(ring.appendMark(0x180n));
  t.same(ring.head, { lsn: 0x17fn, index: LAST_INDEX }, 'a mark covers everything before its LSN');
  t.equal(ring.appendMark(0x150n), null, 'a mark behind the head adds nothing');
  t.equal(ring.oldestLsn(), 0x100n);
});

t.test('eviction by age and by bytes moves the floor; the newest entry stays', async (t) => {
  const ring = new HistoryRing({ maxBytes: 250, maxAgeMs: 10_000, now });
  ring.appendTransaction(tx(0x100n, 2), 100);
  ring.appendTransaction(tx(0x200n, 1), 100);
  ring.appendTransaction(tx(0x300n, 1), 100); // 300 bytes > 250: the oldest goes
  t.equal(ring.startSeq, 1);
  t.same(ring.floor, { lsn: 0x100n, index: 1 }, 'floor: the last position of the evicted transaction');
  t.notOk(ring.covers({ lsn: 0x100n, index: 0 }));
  t.ok(ring.covers({ lsn: 0x100n, index: 1 }));
  t.equal(ring.get(0), undefined, 'evicted entries are gone');
  clock += 20_000;
  ring.evict();
  t.equal(ring.stats().entries, 1, 'aged out but the newest');
  t.equal(ring.oldestLsn(), 0x300n);
  t.same(ring.floor, { lsn: 0x200n, index: 0 });
  ring.appendMark(0x400n);
  clock += 20_000;
  ring.evict();
  t.equal(ring.oldestLsn(), 0x400n, 'an idle window keeps moving through marks');
  t.equal(ring.stats().transactions, 0);
  t.same(ring.floor, { lsn: 0x300n, index: 0 });
});

t.test('sequence numbers survive compaction', async (t) => {
  const ring = new HistoryRing({ maxBytes: 10 * 64, maxAgeMs: 1e9, now });
  for (let i = 1; i <= 5000; i++) ring.appendMark(BigInt(i * 16));
  t.equal(ring.endSeq, 5000);
  t.equal(ring.stats().entries, 10);
  t.equal(ring.get(4999)?.lsn, 5000n * 16n);
  t.equal(ring.get(4990)?.lsn, 4991n * 16n);
  t.equal(ring.get(4989), undefined);
});

t.test('the WAL bound: entries holding WAL before minLsn go, the floor follows, the newest stays', async (t) => {
  const ring = new HistoryRing({ maxBytes: 1e9, maxAgeMs: 60_000, now });
  ring.reset({ lsn: 0xffn, index: LAST_INDEX });
  ring.appendTransaction(tx(0x100n, 2), 10);
  ring.appendTransaction(tx(0x200n, 1), 10);
  ring.appendMark(0x300n);
  t.equal(ring.evict(0x100n), 0, 'nothing before 0x100: nothing dropped');
  t.equal(ring.evict(0x250n), 2, 'the two transactions before 0x250 dropped');
  t.equal(ring.oldestLsn(), 0x300n, 'the slot may now be acknowledged up to the mark');
  t.notOk(ring.covers({ lsn: 0x100n, index: 1 }), 'a position before the last dropped change: resync');
  t.same(ring.floor, { lsn: 0x200n, index: 0 }, 'the last dropped change is the new floor');
  t.ok(ring.covers(ring.floor), 'and resumable');
  t.equal(ring.evict(0x10000n), 0, 'the newest entry always stays');
  t.equal(ring.stats().entries, 1);
});

t.test('wire bodies count against the byte bound, also when added late; not after eviction', async (t) => {
  const ring = new HistoryRing({ maxBytes: 1000, maxAgeMs: 60_000, now });
  const a = ring.appendTransaction(tx(0x100n, 1), 100);
  const b = ring.appendTransaction(tx(0x200n, 1), 100);
  ring.addBody(a, 0, Buffer.alloc(500));
  t.ok(ring.stats().bytes > 700, `the body is counted (${ring.stats().bytes})`);
  t.equal(a.bodies?.[0]?.length, 500, 'and kept for catch-ups');
  ring.addBody(b, 0, Buffer.alloc(500));
  ring.evict();
  t.equal(ring.oldestLsn(), 0x200n, 'over the bound: the oldest entry went');
  const held = ring.stats().bytes;
  ring.addBody(a, 0, Buffer.alloc(500));
  t.equal(ring.stats().bytes, held, 'a body added to an evicted entry is not counted');
});
