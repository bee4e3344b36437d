// pgoutput messages built byte by byte as the protocol documents them, decoded and assembled.
// https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html
import t from 'tap';
import { TransactionAssembler } from '../../src/capture/assembler.js';
import { PgoutputDecoder, isoFromMicros } from '../../src/capture/pgoutput.js';
import { TypeRegistry } from '../../src/capture/types-registry.js';

class W {
  parts: Buffer[] = [];
  byte(c: string | number) {
    this.parts.push(Buffer.from([typeof c === 'string' ? c.charCodeAt(0) : c]));
    return this;
  }
  i16(n: number) {
    const b = Buffer.alloc(2);
    b.writeUInt16BE(n);
    this.parts.push(b);
    return this;
  }
  i32(n: number) {
    const b = Buffer.alloc(4);
    b.writeInt32BE(n);
    this.parts.push(b);
    return this;
  }
  i64(n: bigint) {
    const b = Buffer.alloc(8);
    b.writeBigInt64BE(n);
    this.parts.push(b);
    return this;
  }
  str(s: string) {
    this.parts.push(Buffer.from(s + '\0'));
    return this;
  }
  text(s: string) {
    const v = Buffer.from(s);
    return this.byte('t').i32(v.length).raw(v);
  }
  raw(b: Buffer) {
    this.parts.push(b);
    return this;
  }
  done() {
    return Buffer.concat(this.parts);
  }
}

const US_2000 = 946_684_800_000_000n;
const begin = (lsn: bigint, xid = 7) => new W().byte('B').i64(lsn).i64(1_000_000n).i32(xid).done();
const commit = (lsn: bigint, end: bigint) => new W().byte('C').byte(0).i64(lsn).i64(end).i64(1_000_000n).done();
// relation 16384 public.t (id int8 key, body text, tags int4[])
const relation = (cols: [string, number, boolean][] = [['id', 20, true], ['body', 25, false], ['tags', 1007, false]]) => {
  const w = new W().byte('R').i32(16384).str('public').str('t').byte('f').i16(cols.length);
  for (const [name, oid, key] of cols) w.byte(key ? 1 : 0).str(name).i32(oid).i32(-1);
  return w.done();
};

t.test('decodes relation, insert, update with unchanged TOAST, key-only delete, truncate, message', async (t) => {
  const d = new PgoutputDecoder(new TypeRegistry());
  const rel = d.decode(relation());
  t.equal(rel.tag, 'relation');
  const ins = d.decode(new W().byte('I').i32(16384).byte('N').i16(3).text('9007199254740993').text('héllo 🎉').text('{1,NULL,3}').done());
  t.same(ins, { index: -1, tag: 'insert', relation: d.relation(16384), new: { id: '9007199254740993', body: 'héllo 🎉', tags: [1, null, 3] } });
  const upd = d.decode(
    new W().byte('U').i32(16384).byte('O').i16(3).text('1').text('big value').byte('n')
      .byte('N').i16(3).text('1').byte('u').text('{2}').done(),
  );
  t.equal(upd.tag, 'update');
  if (upd.tag === 'update') {
    t.same(upd.new, { id: 1, body: 'big value', tags: [2] }, 'unchanged TOAST filled from the full old row');
    t.same(upd.old, { id: 1, body: 'big value', tags: null });
    t.equal(upd.unchangedToast, null);
  }
  const del = d.decode(new W().byte('D').i32(16384).byte('K').i16(3).text('5').byte('n').byte('n').done());
  t.same(del.tag === 'delete' && del.old, { id: 5 }, 'key-only old row has only key columns');
  const tr = d.decode(new W().byte('T').i32(1).byte(3).i32(16384).done());
  t.same(tr.tag === 'truncate' && [tr.cascade, tr.restartIdentity, tr.relations.length], [true, true, 1]);
  // Logical decoding messages are not requested; one arriving anyway is dropped unread.
  const msg = d.decode(new W().byte('M').byte(1).i64(99n).str('walcast').i32(2).raw(Buffer.from('hi')).done());
  t.same(msg, { tag: 'ignored', kind: 'message' }, 'a logical decoding message is dropped');
});

t.test('unchanged TOAST without a full old row is named, not nulled', async (t) => {
  const d = new PgoutputDecoder(new TypeRegistry());
  const w = new W().byte('R').i32(1).str('public').str('k').byte('d').i16(2);
  w.byte(1).str('id').i32(23).i32(-1).byte(0).str('doc').i32(25).i32(-1);
  d.decode(w.done());
  const upd = d.decode(new W().byte('U').i32(1).byte('N').i16(2).text('1').byte('u').done());
  t.same(upd.tag === 'update' && [upd.new, upd.unchangedToast], [{ id: 1 }, ['doc']]);
});

t.test('bad input raises pgoutput_decode, never a crash', async (t) => {
  const d = new PgoutputDecoder(new TypeRegistry());
  t.throws(() => d.decode(Buffer.from('Z')), { code: 'pgoutput_decode' }, 'unknown message type');
  t.throws(() => d.decode(new W().byte('I').i32(42).byte('N').i16(0).done()), { code: 'pgoutput_decode' }, 'unknown relation');
  d.decode(relation());
  t.throws(() => d.decode(new W().byte('I').i32(16384).byte('N').i16(1).byte('x').done()), { code: 'pgoutput_decode' }, 'bad tuple kind');
  t.throws(() => d.decode(new W().byte('R').i32(1).raw(Buffer.from('no-terminator')).done()), { code: 'pgoutput_decode' });
  const col = new W().byte('R').i32(2).str('s').str('x').byte('f').i16(1).byte(0).str('__proto__').i32(25).i32(-1).done();
  d.decode(col);
  const odd = d.decode(new W().byte('I').i32(2).byte('N').i16(1).text('polluted?').done());
  t.equal(odd.tag === 'insert' && Object.getPrototypeOf(odd.new), Object.prototype, 'a column named __proto__ is a plain property');
  t.same(odd.tag === 'insert' && Object.keys(odd.new), ['__proto__']);
});

t.test('assembler: indexes, one change per truncated table, resume filter, replays skipped', async (t) => {
  const d = new PgoutputDecoder(new TypeRegistry());
  const a = new TransactionAssembler({ after: { lsn: 0x200n, index: 0 } });
  const feed = (b: Buffer) => a.push(d.decode(b));
  feed(relation([['id', 23, true]]));
  const row = (id: number) => new W().byte('I').i32(16384).byte('N').i16(1).text(String(id)).done();
  // A transaction before the resume position: skipped entirely.
  feed(begin(0x100n));
  feed(row(1));
  t.equal(feed(commit(0x100n, 0x108n)), null, 'before the resume position');
  // The transaction of the resume position: only changes after index 0.
  feed(begin(0x200n));
  feed(row(2));
  feed(row(3));
  t.ok(a.inTransaction);
  const tx = feed(commit(0x200n, 0x208n));
  t.same(tx?.changes.map((c) => c.index), [1], 'only index 1 remains');
  t.equal(tx?.lsnText, '0/200');
  t.equal(tx?.commitTime, isoFromMicros(1_000_000n + US_2000));
  // Replay of the same transaction after a reconnect: skipped.
  feed(begin(0x200n));
  feed(row(2));
  t.equal(feed(commit(0x200n, 0x208n)), null, 'replay skipped');
  feed(begin(0x300n));
  feed(row(4));
  feed(new W().byte('T').i32(2).byte(0).i32(16384).i32(16384).done());
  const tx3 = feed(commit(0x300n, 0x308n));
  t.same(tx3?.changes.map((c) => [c.tag, c.index]), [['insert', 0], ['truncate', 1], ['truncate', 2]]);
  a.reset();
  t.notOk(a.inTransaction);
  t.throws(() => a.push(d.decode(row(5))), { code: 'pgoutput_decode' }, 'a change outside a transaction');
  t.throws(() => a.push(d.decode(commit(0x400n, 0x408n))), { code: 'pgoutput_decode' }, 'commit without begin');
});

t.test('assembler: a single change past maxBytes is never decoded (one huge row)', async (t) => {
  const d = new PgoutputDecoder(new TypeRegistry());
  const a = new TransactionAssembler({ maxBytes: 1000 });
  let decoded = 0;
  // As Capture does: asked before decoding, with the message's size.
  const feed = (b: Buffer) => {
    if (a.oversized || (b[0] === 0x49 && a.overflowsWith(b.length))) {
      const rels = d.relationsOf(b);
      if (rels) return a.skip(rels, b.length);
    }
    decoded++;
    return a.push(d.decode(b), b.length);
  };
  feed(relation([['id', 23, true]]));
  const row = (text: string) => new W().byte('I').i32(16384).byte('N').i16(1).text(text).done();
  feed(begin(0x100n));
  feed(row('1'));
  t.notOk(a.overflowsWith(10), 'a small change fits');
  const before = decoded;
  feed(row('9'.repeat(5000)));
  t.equal(decoded, before, 'the huge row was not decoded');
  t.ok(a.oversized);
  const tx = feed(commit(0x100n, 0x108n));
  t.same(tx?.changes, [], 'nothing kept, not even the small row before it');
  t.same(tx?.oversize?.tables, ['public.t']);
  t.equal(tx?.oversize?.changes, 2);
  feed(begin(0x200n));
  t.notOk(a.overflowsWith(10), 'the next transaction starts afresh');
});

t.test('assembler: past maxBytes a transaction keeps only its tables and counts; messages are not changes', async (t) => {
  const d = new PgoutputDecoder(new TypeRegistry());
  const a = new TransactionAssembler({ maxBytes: 100 });
  const feed = (b: Buffer) => {
    // As Capture does: once oversized, row changes are counted from their relation alone.
    if (a.oversized) {
      const rels = d.relationsOf(b);
      if (rels) return a.skip(rels, b.length);
    }
    return a.push(d.decode(b), b.length);
  };
  feed(relation([['id', 23, true]]));
  feed(new W().byte('R').i32(2).str('public').str('other').byte('d').i16(1).byte(1).str('id').i32(23).i32(-1).done());
  const row = (rel: number, id: number) => new W().byte('I').i32(rel).byte('N').i16(1).text(String(id)).done();
  const message = new W().byte('M').byte(1).i64(99n).str('x').i32(0).done();
  // Small: kept whole, messages in between are not changes.
  feed(begin(0x100n));
  feed(row(16384, 1));
  feed(message);
  feed(row(16384, 2));
  const small = feed(commit(0x100n, 0x108n));
  t.same(small?.changes.map((c) => c.index), [0, 1], 'messages take no index');
  t.equal(small?.oversize, undefined);
  // Large: past 100 bytes, only tables and counts.
  feed(begin(0x200n));
  for (let i = 0; i < 20; i++) feed(row(16384, i));
  t.ok(a.oversized, 'oversized once past the bound');
  feed(row(2, 99));
  feed(new W().byte('T').i32(1).byte(0).i32(2).done());
  for (let i = 0; i < 1000; i++) feed(message);
  const big = feed(commit(0x200n, 0x208n));
  t.same(big?.changes, [], 'no changes kept');
  t.same(big?.oversize?.tables.sort(), ['public.other', 'public.t']);
  t.equal(big?.oversize?.changes, 22, '20 inserts, 1 insert, 1 truncated table');
  t.ok((big?.oversize?.bytes ?? 0) > 100);
  t.equal(big?.lsnText, '0/200');
  t.notOk(a.oversized, 'the next transaction starts afresh');
  feed(begin(0x300n));
  feed(row(16384, 1));
  t.same(feed(commit(0x300n, 0x308n))?.changes.length, 1);
});

t.test('assembler streaming: changes handed on as decoded, resume filter per change, replays skipped', async (t) => {
  const d = new PgoutputDecoder(new TypeRegistry());
  const seen: string[] = [];
  const a = new TransactionAssembler({ after: { lsn: 0x200n, index: 0 }, maxBytes: 1, onChange: (h, c) => seen.push(`${h.lsnText}:${c.index}`) });
  const feed = (b: Buffer) => a.push(d.decode(b), b.length);
  feed(relation([['id', 23, true]]));
  const row = (id: number) => new W().byte('I').i32(16384).byte('N').i16(1).text(String(id)).done();
  feed(begin(0x100n));
  feed(row(1));
  t.equal(feed(commit(0x100n, 0x108n)), null);
  feed(begin(0x200n));
  feed(row(2));
  feed(row(3));
  feed(row(4));
  t.same(seen, ['0/200:1', '0/200:2'], 'streamed before the commit, after the resume position');
  // The stream broke before the commit: the transaction comes again, printed changes are not.
  a.reset();
  feed(begin(0x200n));
  for (let i = 2; i <= 5; i++) feed(row(i));
  t.equal(feed(commit(0x200n, 0x208n)), null, 'commits hand on nothing');
  t.same(seen, ['0/200:1', '0/200:2', '0/200:3'], 'no duplicate after the replay; no bound');
});

t.test('commit time keeps microseconds', async (t) => {
  t.equal(isoFromMicros(1_700_000_000_123_456n), '2023-11-14T22:13:20.123456Z');
  t.equal(isoFromMicros(1_700_000_000_000_001n), '2023-11-14T22:13:20.000001Z');
});
