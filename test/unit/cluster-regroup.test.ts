// Stream messages back into transactions (src/cluster/regroup.ts): whole at the last-marked
// change, split where something else comes first, positions only forward, drops and resets.
import t from 'tap';
import type { CapturedChange, Transaction } from '../../src/capture/types.js';
import type { Relation } from '../../src/capture/pgoutput.types.js';
import { Regrouper } from '../../src/cluster/regroup.js';
import { formatLsn } from '../../src/protocol/lsn.js';

const relation = { oid: 1, schema: 'public', name: 't', qualified: 'public.t', replicaIdentity: 'full', columns: [], decoders: [] } as unknown as Relation;
const head = (lsn: bigint) => ({ xid: Number(lsn), lsn, lsnText: formatLsn(lsn), endLsn: lsn + 0x40n, commitTime: '2026-12-03T00:00:00.000000Z' });
const ins = (index: number): CapturedChange => ({ index, tag: 'insert', relation, new: { id: index } });
const view = (txs: Transaction[]) => txs.map((tx) => `${tx.lsnText}:[${tx.changes.map((c) => c.index).join(',')}]${tx.oversize ? 'x' : ''}`);

function rig() {
  const out: Transaction[] = [];
  return { r: new Regrouper((tx) => out.push(tx)), out };
}

t.test('a transaction is handed on at its last change, whole', async (t) => {
  const { r, out } = rig();
  r.change(head(0x100n), ins(0), false);
  r.change(head(0x100n), ins(1), false);
  t.same(out, [], 'nothing before the last');
  r.change(head(0x100n), ins(2), true);
  t.same(view(out), ['0/100:[0,1,2]']);
  t.equal(out[0].endLsn, 0x140n, 'the end LSN carried');
  t.same(r.last, { lsn: 0x100n, index: 2 });
});

t.test('without the last mark: another commit LSN, or a control message, hands the part on', async (t) => {
  const { r, out } = rig();
  r.change(head(0x100n), ins(0), false);
  r.change(head(0x100n), ins(1), false);
  r.change(head(0x200n), ins(0), true); // a failover cut 0/100 short
  t.same(view(out), ['0/100:[0,1]', '0/200:[0]']);
  r.change(head(0x300n), ins(0), false);
  r.flush(); // an epoch marker
  r.change(head(0x300n), ins(1), true); // the rest, in the next epoch
  t.same(view(out), ['0/100:[0,1]', '0/200:[0]', '0/300:[0]', '0/300:[1]'], 'the two parts, in order, each change once');
});

t.test('positions only move forward: changes re-read are skipped', async (t) => {
  const { r, out } = rig();
  r.change(head(0x100n), ins(0), false);
  r.change(head(0x100n), ins(1), true);
  r.change(head(0x100n), ins(1), true);
  r.change(head(0x080n), ins(5), true);
  t.equal(r.skipped, 2);
  r.change(head(0x100n), ins(2), true); // a failover re-published past what was stored
  t.same(view(out), ['0/100:[0,1]', '0/100:[2]']);
});

t.test('oversize markers: a transaction without changes, in order, once', async (t) => {
  const { r, out } = rig();
  r.change(head(0x100n), ins(0), false);
  const m = { xid: 9, lsn: 0x200n, end: 0x280n, t: 'now', tables: ['public.t'], changes: 70_000, bytes: 1e8 };
  r.oversize(m);
  r.oversize(m);
  t.same(view(out), ['0/100:[0]', '0/200:[]x'], 'the open part first, the marker once');
  t.same(out[1].oversize, { tables: ['public.t'], changes: 70_000, bytes: 1e8 });
  t.equal(r.skipped, 1);
  r.change(head(0x200n), ins(3), true);
  t.equal(r.skipped, 2, 'a change of the oversized transaction after its marker: skipped');
});

t.test('drop() forgets a part whose rest is lost; resetTo() moves the floor', async (t) => {
  const { r, out } = rig();
  r.change(head(0x100n), ins(0), false);
  r.drop();
  r.flush();
  t.same(out, [], 'the dropped part is never handed on');
  r.resetTo({ lsn: 0x500n, index: 2147483647 });
  r.change(head(0x400n), ins(0), true);
  t.same(out, [], 'before the new floor: skipped');
  r.change(head(0x600n), ins(0), true);
  t.same(view(out), ['0/600:[0]']);
});
