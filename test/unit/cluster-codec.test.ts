// The cluster's change payload (src/cluster/codec.ts): for random changes of every kind capture
// produces, decode(encode(change)) renders byte-identical frames through src/hub/render.ts; the
// relation metadata round-trips and its reference follows its shape; anything malformed is a
// ClusterMessageError (an unknown version a ClusterMessageVersionError), never another throw.
import t from 'tap';
import type { Relation, RelationColumn, Row } from '../../src/capture/pgoutput.types.js';
import type { CapturedChange, Transaction } from '../../src/capture/types.js';
import { TypeRegistry } from '../../src/capture/types-registry.js';
import { decodeChange, decodeRelation, encodeChange, encodeRelation, relationRef, toCaptured } from '../../src/cluster/codec.js';
import { ClusterMessageError, ClusterMessageVersionError } from '../../src/errors.js';
import { changeBody, enterBody, leaveBody } from '../../src/hub/render.js';
import { formatLsn } from '../../src/protocol/lsn.js';
import { Rng } from '../helpers/fuzz-gen.js';

const types = new TypeRegistry();

// Column types with a generator of values as capture decodes them (src/capture/values.ts).
const TEXTS = ['', 'a', 'héllo wörld', '日本語', '😀 emoji', 'quote " and \\ backslash', 'line\nbreak\ttab', '\u2028\u2029', '\u0001\u001f', 'a.b*c>d', ' '.repeat(3), 'x'.repeat(300)];
const KINDS: Array<[number, (r: Rng) => unknown]> = [
  [23, (r) => r.int(-2147483648, 2147483647)],
  [21, (r) => r.int(-32768, 32767)],
  [20, (r) => (r.chance(0.5) ? r.int(-1e15, 1e15) : r.pick(['9007199254740993', '-9223372036854775808', '9223372036854775807']))],
  [701, (r) => r.pick<unknown>([0, -0, 1.5, -2.25e-300, 1.7976931348623157e308, 5e-324, 0.1, 'NaN', 'Infinity', '-Infinity', r.next()])],
  [1700, (r) => r.pick<unknown>([1.5, 0, '12345678901234567890', '0.1000000000000000001', 'NaN', '-Infinity', 1e21])],
  [16, (r) => r.chance(0.5)],
  [25, (r) => r.pick(TEXTS)],
  [2950, () => '0b0a2c5e-8f3e-4f7a-9a57-1e6a3c2b9d10'],
  [1184, (r) => r.pick(['2024-01-02T03:04:05.123456Z', 'infinity', '-infinity', '0044-03-15T00:00:00Z', '2024-01-02 03:04:05 BC'])],
  [17, () => '\\x00ff10'],
  [3802, (r) => json(r, 0)],
  [114, (r) => r.pick<unknown>(['not json kept as text', json(r, 0)])],
  [1007, (r) => r.pick<unknown>([[], [1, null, 3], [[1, 2], [3, 4]]])],
  [1009, (r) => [r.pick(TEXTS), null, 'NULL']],
];

function json(r: Rng, depth: number): unknown {
  const k = depth > 3 ? r.int(0, 3) : r.int(0, 5);
  switch (k) {
    case 0:
      return r.pick<unknown>([0, -1, 3.25, 1e300, 12345678901234567000]);
    case 1:
      return r.pick(TEXTS);
    case 2:
      return r.pick<unknown>([true, false, null]);
    case 3:
      return r.pick(['🙂', 'ünïcödé']);
    case 4:
      return Array.from({ length: r.int(0, 4) }, () => json(r, depth + 1));
    default: {
      const o: Record<string, unknown> = {};
      for (const key of ['b', 'a', '1', 'ключ', '__proto__', ''].slice(0, r.int(0, 6))) {
        Object.defineProperty(o, key, { value: json(r, depth + 1), enumerable: true, writable: true, configurable: true });
      }
      return o;
    }
  }
}

const NAMES = ['id', 'body', 'Mixed Case', '1', '__proto__', 'naïve', 'a.b', 'x'.repeat(63), 'room_id'];

function relation(r: Rng, oid: number): Relation {
  const columns: RelationColumn[] = [];
  const n = r.int(1, NAMES.length);
  for (let i = 0; i < n; i++) columns.push({ name: NAMES[i], key: i === 0, typeOid: r.pick(KINDS)[0], typeMod: r.pick([-1, 4, 68]) });
  const schema = r.pick(['public', 'Schéma', 'app']);
  const name = r.pick(['t', 'notes', 'Table "quoted"', '表']);
  return {
    oid,
    schema,
    name,
    qualified: `${schema}.${name}`,
    replicaIdentity: r.pick(['full', 'full', 'default', 'index', 'nothing'] as const),
    columns,
    decoders: columns.map((c) => types.decoder(c.typeOid)),
  };
}

const GEN = new Map(KINDS);

function row(r: Rng, rel: Relation, keyOnly = false, skip: readonly string[] = []): Row {
  const out: Row = {};
  for (const c of rel.columns) {
    if ((keyOnly && !c.key) || skip.includes(c.name)) continue;
    const v = r.chance(0.15) ? null : (GEN.get(c.typeOid) as (r: Rng) => unknown)(r);
    Object.defineProperty(out, c.name, { value: v, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

function change(r: Rng, rel: Relation, index: number): CapturedChange {
  switch (r.int(0, 3)) {
    case 0:
      return { index, tag: 'insert', relation: rel, new: row(r, rel) };
    case 1: {
      const toast = r.chance(0.3) ? rel.columns.filter(() => r.chance(0.4)).map((c) => c.name) : [];
      const oldRow = rel.replicaIdentity === 'full' ? row(r, rel) : r.chance(0.5) ? row(r, rel, true) : null;
      const newRow = row(r, rel, false, toast);
      // Some columns unchanged (the same value, even the same object), as capture fills in TOAST.
      if (oldRow) for (const c of rel.columns) if (r.chance(0.4) && c.name in oldRow && c.name in newRow) newRow[c.name] = oldRow[c.name];
      return { index, tag: 'update', relation: rel, old: oldRow, new: newRow, unchangedToast: toast.length > 0 ? toast : null };
    }
    case 2:
      return { index, tag: 'delete', relation: rel, old: row(r, rel, rel.replicaIdentity !== 'full') };
    default:
      return { index, tag: 'truncate', relation: rel, cascade: r.chance(0.5), restartIdentity: r.chance(0.5) };
  }
}

function frames(tx: Transaction, c: CapturedChange): string[] {
  const out = [changeBody(tx, c)];
  if (c.tag === 'update') {
    out.push(enterBody(tx, c));
    if (c.old) out.push(leaveBody(tx, c));
  }
  return out;
}

t.test('decode(encode(change)) renders the same frames, for random changes', async (t) => {
  const r = new Rng(0xc0dec);
  let checked = 0;
  let mismatches = 0;
  const ops = new Set<string>();
  for (let i = 0; i < 2_000; i++) {
    const rel = relation(r, r.int(1, 4_000_000_000));
    const ref = relationRef(rel);
    const decodedRel = decodeRelation(encodeRelation(rel));
    const lsn = (BigInt(r.int(0, 0xffff)) << 32n) | BigInt(r.int(0, 0xffffffff));
    const tx: Transaction = {
      xid: r.int(0, 4_294_967_295),
      lsn,
      lsnText: formatLsn(lsn),
      endLsn: lsn + BigInt(r.int(1, 100)),
      commitTime: '2024-05-06T07:08:09.123456Z',
      changes: [],
    };
    const c = change(r, rel, r.pick([0, 1, 7, 2_147_483_646]));
    ops.add(c.tag);
    const payload = encodeChange(tx, c, ref);
    const m = decodeChange(payload);
    t.equal(m.rel, ref);
    const { head, change: back } = toCaptured(m, decodedRel);
    const tx2: Transaction = { ...head, changes: [back] };
    t.equal(head.endLsn, tx.endLsn);
    t.equal(head.xid, tx.xid);
    const a = frames(tx, c);
    const b = frames(tx2, back);
    checked += a.length;
    if (a.length !== b.length || a.some((f, k) => f !== b[k])) {
      mismatches++;
      if (mismatches <= 3) t.same(b, a, `frames of change ${i} (${c.tag})`);
    }
    if (c.tag === 'update') t.same(back.tag === 'update' && back.unchangedToast, c.unchangedToast, 'unchanged_toast kept');
    if (c.tag === 'truncate' && back.tag === 'truncate') t.same([back.cascade, back.restartIdentity], [c.cascade, c.restartIdentity]);
  }
  t.equal(mismatches, 0, `${checked} frames identical`);
  t.same([...ops].sort(), ['delete', 'insert', 'truncate', 'update'], 'every op was tried');
});

t.test('relation metadata: round trip, reference follows the shape', async (t) => {
  const r = new Rng(7);
  const rel = relation(r, 16384);
  const back = decodeRelation(encodeRelation(rel));
  t.same(
    { ...back, decoders: back.decoders.length },
    { ...rel, decoders: rel.decoders.length },
    'the same relation',
  );
  t.equal(back.decoders[0], rel.decoders[0], 'decoders of the builtin types');
  t.match(relationRef(rel), /^16384\.[A-Za-z0-9_-]{12}$/);
  t.equal(relationRef(rel), relationRef({ ...rel, columns: rel.columns.map((c) => ({ ...c })) }), 'stable');
  const retyped = { ...rel, columns: rel.columns.map((c, i) => (i === 0 ? { ...c, typeOid: c.typeOid === 20 ? 23 : 20 } : c)) };
  t.not(relationRef(retyped), relationRef(rel), 'a column type changes it');
  t.not(relationRef({ ...rel, name: rel.name + '2' }), relationRef(rel), 'a rename changes it');
  t.not(relationRef({ ...rel, replicaIdentity: rel.replicaIdentity === 'full' ? 'default' : 'full' }), relationRef(rel), 'the replica identity changes it');

  const msg = JSON.parse(encodeRelation(rel).toString()) as Record<string, unknown>;
  t.throws(() => decodeRelation(JSON.stringify({ ...msg, name: 'other' })), ClusterMessageError, 'a ref that is not the content\'s hash');
  t.throws(() => decodeRelation(JSON.stringify({ ...msg, columns: [['a', true, 'int', -1]] })), ClusterMessageError, 'a bad column');
  t.throws(() => decodeRelation(JSON.stringify({ ...msg, type: 'change' })), ClusterMessageError, 'another message type');
});

t.test('a change with another relation than it names is refused', async (t) => {
  const r = new Rng(3);
  const rel = relation(r, 100);
  const other = relation(r, 200);
  const tx = { xid: 1, lsnText: '0/10', endLsn: 0x20n, commitTime: 'x' };
  const m = decodeChange(encodeChange(tx, { index: 0, tag: 'insert', relation: rel, new: { id: 1 } }, relationRef(rel)));
  t.throws(() => toCaptured(m, other), ClusterMessageError);
});

t.test('malformed payloads are ClusterMessageError, unknown versions ClusterMessageVersionError', async (t) => {
  const good = { v: 1, pos: '16/B374D848:3', end: '16/B374D900', xid: 5, t: '2024-01-01T00:00:00Z', op: 'insert', rel: '16384.AAAAAAAAAAAA', new: { id: 1 } };
  t.ok(decodeChange(JSON.stringify(good)), 'the well-formed one decodes');
  t.ok(decodeChange(new Uint8Array(Buffer.from(JSON.stringify(good)))), 'from bytes too');
  const cases: Array<[string, unknown]> = [
    ['not JSON', '{"v":1,'],
    ['an array', '[1]'],
    ['null', 'null'],
    ['no version', { ...good, v: undefined }],
    ['version 0', { ...good, v: 0 }],
    ['version as text', { ...good, v: '1' }],
    ['bad pos', { ...good, pos: '16/B374D848' }],
    ['pos index too big', { ...good, pos: '16/B374D848:2147483648' }],
    ['bad end', { ...good, end: 'x' }],
    ['negative xid', { ...good, xid: -1 }],
    ['fractional xid', { ...good, xid: 1.5 }],
    ['empty t', { ...good, t: '' }],
    ['unknown op', { ...good, op: 'upsert' }],
    ['bad rel', { ...good, rel: '16384' }],
    ['insert without new', { ...good, new: undefined }],
    ['insert with array new', { ...good, new: [1] }],
    ['insert with old', { ...good, old: { id: 1 } }],
    ['delete without old', { ...good, op: 'delete', new: undefined }],
    ['update with null old', { ...good, op: 'update', old: null }],
    ['toast of strings only', { ...good, op: 'update', unchanged_toast: [1] }],
    ['toast on insert', { ...good, unchanged_toast: ['a'] }],
    ['truncate without flags', { ...good, op: 'truncate', new: undefined }],
    ['flags on insert', { ...good, cascade: true, restart_identity: false }],
  ];
  for (const [what, p] of cases) {
    t.throws(() => decodeChange(typeof p === 'string' ? p : JSON.stringify(p)), ClusterMessageError, what);
  }
  const err = (() => {
    try {
      decodeChange(JSON.stringify({ ...good, v: 2 }));
    } catch (e) {
      return e;
    }
    return null;
  })();
  t.ok(err instanceof ClusterMessageVersionError, 'version 2');
  t.equal((err as ClusterMessageVersionError).code, 'cluster_message_version');
});

t.test('mutated payloads never throw anything but the codec errors', async (t) => {
  const r = new Rng(99);
  let decoded = 0;
  let refused = 0;
  for (let i = 0; i < 3_000; i++) {
    const rel = relation(r, 1234);
    const tx = { xid: 9, lsnText: '1/2', endLsn: 0x100000003n, commitTime: '2024-01-01T00:00:00Z' };
    const bytes = Buffer.from(i % 2 === 0 ? encodeChange(tx, change(r, rel, 0), relationRef(rel)) : encodeRelation(rel));
    for (let k = r.int(1, 3); k > 0; k--) {
      const at = r.int(0, bytes.length - 1);
      bytes[at] = r.chance(0.5) ? r.int(0, 255) : r.pick([0x22, 0x7b, 0x7d, 0x2c, 0x3a, 0x30]);
    }
    try {
      if (i % 2 === 0) decodeChange(bytes);
      else decodeRelation(bytes);
      decoded++;
    } catch (e) {
      if (!(e instanceof ClusterMessageError) && !(e instanceof ClusterMessageVersionError)) {
        t.fail(`unexpected ${String(e)} for ${bytes.toString()}`);
        return;
      }
      refused++;
    }
  }
  t.ok(refused > 0 && decoded + refused === 3_000, `${refused} refused, ${decoded} still well-formed`);
});
