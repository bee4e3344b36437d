// Control messages of the cluster's stream (src/cluster/ctl.ts): each type survives a round trip,
// malformed or foreign ones are refused with ClusterMessageError, and tailEnd (takeover.ts) reads
// how far the stream's last message covers the WAL.
import t from 'tap';
import { encodeChange, relationRef } from '../../src/cluster/codec.js';
import { decodeCtl, encodeCtl, readPositionHeader, type CtlMessage } from '../../src/cluster/ctl.js';
import { tailEnd } from '../../src/cluster/takeover.js';
import type { Relation } from '../../src/capture/pgoutput.types.js';
import { ClusterMessageError } from '../../src/errors.js';

const samples: CtlMessage[] = [
  { type: 'epoch', epoch: 7, node: 'n1', after: { lsn: 0x16b374d848n, index: 3 }, end: 0x16b374d900n },
  { type: 'epoch', epoch: 1, node: 'n2', after: null, end: null },
  { type: 'mark', wal: 0x1000n },
  { type: 'reset', floor: { lsn: 0xffn, index: 2147483647 }, reason: 'slot_recreated' },
  { type: 'reset', floor: { lsn: 0x1ffn, index: 4 }, reason: 'position_outside_window' },
  { type: 'oversize', xid: 42, lsn: 0x500n, end: 0x580n, t: '2026-12-03T00:00:00.000000Z', tables: ['public.a', 'public.b'], changes: 90_000, bytes: 70_000_000 },
];

t.test('round trip', async (t) => {
  for (const m of samples) t.same(decodeCtl(encodeCtl(m)), m, m.type);
});

t.test('refused: not JSON, other versions, unknown types, bad fields', async (t) => {
  const bad = (s: string) => Buffer.from(s, 'utf8');
  for (const s of [
    'nope',
    '[]',
    '{"v":2,"type":"mark","wal":"0/10"}',
    '{"v":1,"type":"what"}',
    '{"v":1,"type":"mark","wal":"zz"}',
    '{"v":1,"type":"mark"}',
    '{"v":1,"type":"epoch","epoch":-1,"node":"n","after":null}',
    '{"v":1,"type":"epoch","epoch":1,"node":5,"after":null}',
    '{"v":1,"type":"epoch","epoch":1,"node":"n","after":"0/1"}',
    '{"v":1,"type":"reset","floor":"0/1:0","reason":"why"}',
    '{"v":1,"type":"oversize","xid":1,"lsn":"0/1","end":"0/2","t":"x","tables":[1],"changes":1,"bytes":1}',
    '{"v":1,"type":"oversize","xid":1.5,"lsn":"0/1","end":"0/2","t":"x","tables":[],"changes":1,"bytes":1}',
  ]) {
    t.throws(() => decodeCtl(bad(s)), ClusterMessageError, s);
  }
});

t.test('readPositionHeader: null for absent or malformed', async (t) => {
  t.equal(readPositionHeader(undefined), null);
  t.equal(readPositionHeader('0/10'), null);
  t.equal(readPositionHeader('0/10:x'), null);
  t.same(readPositionHeader('0/10:2'), { lsn: 0x10n, index: 2 });
});

t.test('tailEnd: how far the last message covers the WAL', async (t) => {
  const relation = { oid: 16384, schema: 'public', name: 'items', replicaIdentity: 'default', columns: [{ name: 'id', key: true, typeOid: 23, typeMod: -1 }], qualified: 'public.items', decoders: [] } as unknown as Relation;
  const data = encodeChange({ xid: 5, lsnText: '0/500', endLsn: 0x580n, commitTime: 'now' }, { index: 1, tag: 'insert', relation, new: { id: 1 } }, relationRef(relation));
  const pos = { lsn: 0x500n, index: 1 };
  t.equal(tailEnd('walcast.n.s.d.public.items.=n', data, pos, true), 0x580n, 'the last change of a transaction: its end');
  t.equal(tailEnd('walcast.n.s.d.public.items.=n', data, pos, false), 0x500n, 'a transaction cut short: its commit LSN only');
  t.equal(tailEnd('walcast.n.s.ctl', encodeCtl(samples[2]), { lsn: 0xfffn, index: 2147483647 }, false), 0x1000n, 'a mark: its WAL end');
  t.equal(tailEnd('walcast.n.s.ctl', encodeCtl(samples[5]), { lsn: 0x500n, index: 2147483647 }, false), 0x580n, 'an oversize marker: its end');
  t.equal(tailEnd('walcast.n.s.ctl', encodeCtl(samples[0]), samples[0].type === 'epoch' && samples[0].after ? samples[0].after : pos, false), 0x16b374d900n, 'an epoch marker: the end it carried over');
  t.equal(tailEnd('walcast.n.s.ctl', encodeCtl(samples[1]), pos, false), 0x500n, 'an epoch marker without an end: its position');
});
