// The pure parts of channels across nodes (src/cluster/channel-codec.ts, remote-presence.ts,
// liveness.ts): messages round-trip and anything malformed is refused with ClusterMessageError;
// the remote presence table applies diffs in seq order, reports gaps, replaces on snapshots and
// on a re-opening (seq 1), stays within the bounds per node; liveness tells restarts, stale
// incarnations, expiry and a node's return apart.
import t from 'tap';
import {
  decodeAlive, decodeBroadcast, decodePresence, decodeSnapshot, decodeSyncRequest, encodeAlive, encodeBroadcast, encodePresence,
  encodeSnapshot, encodeSyncRequest, type CodecLimits, type PresenceMessage,
} from '../../src/cluster/channel-codec.js';
import { Liveness } from '../../src/cluster/liveness.js';
import { RemotePresence } from '../../src/cluster/remote-presence.js';
import { ClusterMessageError, ClusterMessageVersionError } from '../../src/errors.js';
import type { PresenceMap } from '../../src/hub/presence.js';

const presence = { metasPerKey: 3, bytesPerKey: 4096, metasTotal: 6, bytesTotal: 64 * 1024 };
const limits: CodecLimits = { maxPayloadBytes: 1024, presence };
const self = { node: 'a', inc: 7 };
const enc = (s: string) => new TextEncoder().encode(s);
const plain = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

t.test('codec: every message round-trips', async (t) => {
  const b = { ...self, channel: 'room:1', event: 'typing', payloadJson: '{"x":[1,"é"]}', from: 'ann' };
  t.same(decodeBroadcast(encodeBroadcast(b), limits), b);
  const p: PresenceMessage = { ...self, channel: 'room:1', seq: 3, joins: { ann: [{ session: 's1', state: { s: 1 } }] }, leaves: {} };
  t.same(plain(decodePresence(encodePresence(p), limits)), p);
  const r = { ...self, channel: 'c', target: null };
  t.same(decodeSyncRequest(encodeSyncRequest(r)), r);
  t.same(decodeSyncRequest(encodeSyncRequest({ ...r, target: 'b' })), { ...r, target: 'b' });
  t.same(decodeAlive(encodeAlive({ ...self, gone: true })), { ...self, gone: true });
  const weird = JSON.parse('{"__proto__":[{"session":"s","state":{}}]}') as PresenceMap;
  const back = decodePresence(encodePresence({ ...p, joins: weird }), limits);
  t.same(Object.keys(back.joins), ['__proto__'], '"__proto__" stays an ordinary key');
});

t.test('codec: a snapshot in parts of bounded size, reassembled', async (t) => {
  const state: PresenceMap = {};
  for (let i = 0; i < 6; i++) state[`user${i}`] = [{ session: `s${i}`, state: { pad: 'x'.repeat(200) } }];
  const parts = encodeSnapshot(self, 'c', 9, state, 500);
  t.ok(parts.length >= 3, `${parts.length} parts`);
  const decoded = parts.map((p) => decodeSnapshot(p, limits));
  t.same(decoded.map((d) => d.part), decoded.map((_, i) => i));
  t.same(decoded.map((d) => d.more), decoded.map((_, i) => i < decoded.length - 1));
  t.same(plain(Object.assign({}, ...decoded.map((d) => d.state)) as PresenceMap), state, 'all keys, once');
  t.equal(encodeSnapshot(self, 'c', 0, {}, 500).length, 1, 'an empty state is one part');
});

t.test('codec: malformed messages are refused', async (t) => {
  const good = { v: 1, node: 'b', inc: 1, channel: 'c', event: 'e', from: 'u', payload: 1, seq: 2, joins: {}, leaves: {}, target: null, gone: false, state: {}, part: 0, more: false };
  const cases: [string, unknown][] = [
    ['no version', { ...good, v: undefined }],
    ['node empty', { ...good, node: '' }],
    ['node too long', { ...good, node: 'n'.repeat(65) }],
    ['node with a control character', { ...good, node: 'a\u0000b' }],
    ['node with a space', { ...good, node: 'a b' }],
    ['inc negative', { ...good, inc: -1 }],
    ['inc fractional', { ...good, inc: 1.5 }],
    ['channel too long', { ...good, channel: 'c'.repeat(256) }],
    ['channel not a string', { ...good, channel: 5 }],
    ['seq 0 in a diff', { ...good, seq: 0 }],
    ['joins an array', { ...good, joins: [] }],
    ['a meta without session', { ...good, joins: { u: [{ state: {} }] } }],
    ['a state that is an array', { ...good, joins: { u: [{ session: 's', state: [] }] } }],
    ['too many metas per key', { ...good, joins: { u: [1, 2, 3, 4].map((i) => ({ session: `s${i}`, state: {} })) } }],
    ['too many metas in all', { ...good, joins: Object.fromEntries([1, 2, 3, 4, 5, 6, 7].map((i) => [`u${i}`, [{ session: 's', state: {} }]])) }],
    ['a state over the payload bound', { ...good, joins: { u: [{ session: 's', state: { x: 'x'.repeat(2000) } }] } }],
    ['an empty key', { ...good, leaves: { '': [{ session: 's', state: {} }] } }],
  ];
  for (const [what, body] of cases) t.throws(() => decodePresence(enc(JSON.stringify(body)), limits), ClusterMessageError, what);
  t.throws(() => decodePresence(enc('{"v":2,"node":"b","inc":1}'), limits), ClusterMessageVersionError, 'a newer version');
  t.throws(() => decodePresence(enc('not json'), limits), ClusterMessageError, 'not JSON');
  t.throws(() => decodePresence(new Uint8Array([0xff, 0xfe, 0x7b]), limits), ClusterMessageError, 'not UTF-8');
  t.throws(() => decodePresence(enc('[1]'), limits), ClusterMessageError, 'an array');
  t.throws(() => decodePresence(enc(JSON.stringify({ ...good, pad: 'x'.repeat(600 * 1024) })), limits), ClusterMessageError, 'over the size cap');
  t.throws(() => decodePresence(enc(JSON.stringify(good)), limits, (n) => n === 'other'), ClusterMessageError, 'the channel is not the subject\'s');
  t.throws(() => decodeBroadcast(enc(JSON.stringify({ ...good, payload: undefined })), limits), ClusterMessageError, 'a broadcast without payload');
  t.throws(() => decodeBroadcast(enc(JSON.stringify({ ...good, payload: 'x'.repeat(2000) })), limits), ClusterMessageError, 'a payload over the bound');
  t.throws(() => decodeBroadcast(enc(JSON.stringify({ ...good, event: '' })), limits), ClusterMessageError, 'an empty event');
  t.throws(() => decodeSyncRequest(enc(JSON.stringify({ ...good, target: 3 }))), ClusterMessageError, 'a target not a string');
  t.throws(() => decodeAlive(enc(JSON.stringify({ ...good, gone: 'no' }))), ClusterMessageError, 'gone not a boolean');
  t.throws(() => decodeSnapshot(enc(JSON.stringify({ ...good, part: -1 })), limits), ClusterMessageError, 'a negative part');
  t.doesNotThrow(() => decodePresence(enc(JSON.stringify(good)), limits), 'the base case is valid');
});

const meta = (session: string, state: Record<string, unknown> = {}) => ({ session, state });
const diff = (seq: number, joins: PresenceMap = {}, leaves: PresenceMap = {}, node = 'b', inc = 1): PresenceMessage => ({ node, inc, channel: 'c', seq, joins, leaves });

t.test('remote presence: seq order, gaps, snapshots, re-opening', async (t) => {
  const r = new RemotePresence(presence);
  t.same(r.diff(diff(2, { ann: [meta('s1')] })), { kind: 'gap' }, 'a first diff past 1: the start was missed');
  r.markSyncing('c', 'b', 1);
  t.same(r.diff(diff(3, { ann: [meta('s1')] })), { kind: 'ignored' }, 'while a snapshot is awaited, diffs wait');
  const s = r.snapshot('c', 'b', 1, 3, { ann: [meta('s1', { at: 3 })] });
  t.same(plain(s), { joins: { ann: [meta('s1', { at: 3 })] }, leaves: {} }, 'the snapshot joins what it holds');
  t.same(plain(r.states('c')), [{ ann: [meta('s1', { at: 3 })] }]);
  t.same(r.diff(diff(3, {})), { kind: 'ignored' }, 'a seq the snapshot includes');
  const d4 = r.diff(diff(4, { ben: [meta('s2')] }));
  t.same(plain(d4), { kind: 'applied', diff: { joins: { ben: [meta('s2')] }, leaves: {} } });
  const d5 = r.diff(diff(5, { ann: [meta('s1', { at: 5 })] }, { ann: [meta('s1', { at: 3 })] }));
  t.same(plain(d5), { kind: 'applied', diff: { joins: { ann: [meta('s1', { at: 5 })] }, leaves: { ann: [meta('s1', { at: 3 })] } } }, 're-track: leave then join');
  t.same(r.diff(diff(7, {})), { kind: 'gap' }, 'seq 6 missing');
  r.markSyncing('c', 'b', 1);
  const s2 = r.snapshot('c', 'b', 1, 8, { ann: [meta('s1', { at: 5 })], cat: [meta('s3')] });
  t.same(plain(s2), { joins: { cat: [meta('s3')] }, leaves: { ben: [meta('s2')] } }, 'a snapshot gives only the difference');
  const reopen = r.diff(diff(1, { dan: [meta('s4')] }));
  t.same(plain(reopen), { kind: 'applied', diff: { joins: { dan: [meta('s4')] }, leaves: { ann: [meta('s1', { at: 5 })], cat: [meta('s3')] } } }, 'seq 1: the channel re-opened there, all before is gone');
  t.same(r.channelsOf('b'), ['c']);
  t.same(plain(r.dropNode('b')), [['c', { joins: {}, leaves: { dan: [meta('s4')] } }]], 'a dead node leaves');
  t.same(r.states('c'), []);
  t.equal(r.size, 0);
});

t.test('remote presence: per node, bounded per node', async (t) => {
  const r = new RemotePresence(presence);
  const many = Object.fromEntries(Array.from({ length: 6 }, (_, i) => [`u${i}`, [meta(`s${i}`)]]));
  r.diff(diff(1, many, {}, 'b'));
  r.diff(diff(1, many, {}, 'c'));
  t.equal(r.states('c').length, 2, 'one map per node');
  t.equal(r.overLimit, 0, 'each node within its own bound');
  r.diff(diff(2, { extra: [meta('x')] }, {}, 'b'));
  t.equal(r.overLimit, 1, 'past the bound of one node: refused and counted');
  t.equal(Object.keys(r.states('c')[0]).length, 6);
  r.dropChannel('c');
  t.same(r.states('c'), []);
  t.equal(r.drop('c', 'b'), null);
});

t.test('liveness: restarts, stale incarnations, expiry, return', async (t) => {
  const l = new Liveness({ expiryMs: 10_000, maxNodes: 3, deadIncarnations: 2 });
  t.same(l.seen('b', 1, 0), { kind: 'live' });
  t.same(l.seen('b', 1, 1_000), { kind: 'live' });
  t.same(l.seen('b', 2, 2_000), { kind: 'restarted', old: 1 });
  t.same(l.seen('b', 1, 2_100), { kind: 'stale' }, 'a late message of the replaced process');
  t.ok(l.isLive('b', 2));
  t.same(l.sweep(11_999), [], 'heard 10 s ago: alive');
  t.same(l.sweep(12_001), [{ node: 'b', inc: 2 }], 'unheard of for over 10 s: dead');
  t.equal(l.count, 0);
  l.rememberExpired('b', 2, ['room:1']);
  t.same(l.seen('b', 2, 13_000), { kind: 'returned', channels: ['room:1'] }, 'cut off, not dead: asked again');
  t.same(l.seen('c', 1, 13_000), { kind: 'live' });
  t.ok(l.gone('c', 1), 'a graceful stop');
  t.notOk(l.gone('c', 1), 'once');
  t.same(l.seen('c', 1, 13_100), { kind: 'stale' }, 'a stopped process stays dead');
  l.seen('d', 1, 13_000);
  l.seen('e', 1, 13_000);
  t.same(l.seen('f', 1, 13_000), { kind: 'stale' }, 'past the bound of live nodes');
});
