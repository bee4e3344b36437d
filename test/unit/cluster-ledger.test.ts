// The publisher's ledger (src/cluster/ledger.ts, docs/dev/cluster-plan.md §3.4): acked() is the
// last position of the gap-free PubAck'ed prefix whatever order PubAcks come in; hold() keeps
// the commit LSN of the oldest transaction not fully PubAck'ed or PubAck'ed less than the delay
// ago; the clock is injected.
import t from 'tap';
import { PublishLedger } from '../../src/cluster/ledger.js';
import { formatWalPosition, type Position } from '../../src/protocol/position.js';

const text = (p: Position | null) => (p === null ? null : formatWalPosition(p.lsn, p.index));
const msgs = (lsn: bigint, firstSeq: number, n: number) => Array.from({ length: n }, (_, i) => ({ seq: firstSeq + i, pos: { lsn, index: i } }));

t.test('acked(): the gap-free prefix, PubAcks out of order', async (t) => {
  const l = new PublishLedger();
  t.equal(l.acked(), null, 'nothing yet');
  l.append(0x100n, msgs(0x100n, 1, 3), 0); // seqs 1-3
  l.append(0x200n, msgs(0x200n, 4, 2), 0); // seqs 4-5
  t.equal(l.unacked(), 5);
  t.ok(l.ack(2, 10));
  t.ok(l.ack(4, 10));
  t.equal(l.acked(), null, 'seq 1 missing: nothing acked');
  t.ok(l.ack(1, 11));
  t.equal(text(l.acked()), '0/100:1', 'up to seq 2');
  t.ok(l.ack(3, 12));
  t.equal(text(l.acked()), '0/200:0', 'through seq 4 (acked earlier)');
  t.notOk(l.ack(3, 13), 'a second PubAck of the same seq changes nothing');
  t.notOk(l.ack(99, 13), 'an unknown seq changes nothing');
  t.equal(l.unacked(), 1);
  t.ok(l.ack(5, 14));
  t.equal(text(l.acked()), '0/200:1');
  t.equal(l.unacked(), 0);
  l.append(0x300n, msgs(0x300n, 6, 1), 20);
  t.equal(text(l.acked()), '0/200:1', 'a new message does not move it');
  l.ack(6, 21);
  t.equal(text(l.acked()), '0/300:0', 'the prefix resumes after being empty');
});

t.test('hold(): oldest transaction not PubAck\'ed, or PubAck\'ed less than the delay ago', async (t) => {
  const l = new PublishLedger();
  t.equal(l.hold(0, 1000), null, 'nothing held when empty');
  l.append(0x100n, msgs(0x100n, 1, 2), 0);
  l.append(0x200n, msgs(0x200n, 3, 1), 0);
  l.append(0x300n, msgs(0x300n, 4, 1), 0);
  t.equal(l.hold(5000, 1000), 0x100n, 'nothing acked: the first commit LSN');
  l.ack(3, 100); // tx 0x200 fully acked before tx 0x100
  l.ack(1, 100);
  t.equal(l.hold(5000, 1000), 0x100n, 'tx 0x100 half acked: still held');
  l.ack(2, 500);
  t.equal(l.hold(1499, 1000), 0x100n, 'acked 999 ms ago: held');
  t.equal(l.hold(1500, 1000), 0x300n, 'acked 1000 ms ago: released; 0x200 (acked at 100) too; 0x300 unacked');
  l.ack(4, 2000);
  t.equal(l.hold(2999, 1000), 0x300n);
  t.equal(l.hold(3000, 1000), null, 'everything released');
  t.equal(l.hold(0, 1000), null, 'released transactions are forgotten');
});

t.test('hold(): delay 0 trusts the PubAck alone; a transaction without messages is acked at once', async (t) => {
  const l = new PublishLedger();
  l.append(0x100n, msgs(0x100n, 1, 1), 0);
  l.append(0x150n, [], 0);
  t.equal(l.hold(0, 0), 0x100n);
  l.ack(1, 7);
  t.equal(l.hold(7, 0), null);
  l.append(0x180n, [], 50);
  l.append(0x190n, msgs(0x190n, 2, 1), 50);
  t.equal(l.hold(55, 10), 0x180n, 'the empty one waits out the delay too');
  t.equal(l.hold(60, 10), 0x190n);
});

t.test('covered(): the end of the last whole transaction or mark in the PubAck\'ed prefix', async (t) => {
  const l = new PublishLedger();
  t.equal(l.covered(), null, 'nothing yet');
  l.append(0x100n, msgs(0x100n, 1, 2), 0, 0x180n); // a transaction ending at 0/180
  l.append(null, [{ seq: 3, pos: { lsn: 0x1ffn, index: 2147483647 } }], 0, 0x200n); // a mark at 0/200
  l.append(0x300n, msgs(0x300n, 4, 2), 0, 0x380n);
  l.ack(1, 1);
  t.equal(l.covered(), null, 'half a transaction covers nothing');
  l.ack(3, 1);
  t.equal(l.covered(), null, 'a mark past a gap covers nothing');
  l.ack(2, 1);
  t.equal(l.covered(), 0x200n, 'the transaction and the mark after it');
  l.ack(5, 2);
  t.equal(l.covered(), 0x200n, 'the last message of a transaction alone does not count');
  l.ack(4, 2);
  t.equal(l.covered(), 0x380n);
  t.equal(l.hold(3, 0), null, 'marks hold no WAL; acked transactions are released');
});

t.test('hold(): a mark never holds, even unacked, but keeps its place', async (t) => {
  const l = new PublishLedger();
  l.append(null, [{ seq: 1, pos: { lsn: 0x10n, index: 2147483647 } }], 0, 0x11n);
  l.append(0x100n, msgs(0x100n, 2, 1), 0, 0x180n);
  t.equal(l.hold(0, 0), 0x100n, 'the transaction after the unacked mark is held');
  l.ack(2, 1);
  t.equal(l.hold(1, 0), null, 'acked: released although the mark before it is not');
});
