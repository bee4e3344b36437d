// Merging presence (src/client/presence.ts): diffs applied in order, updates as leave + join of
// the same connection, keys joining on their first meta and leaving with their last, and a fresh
// presence_state replacing the view with the difference reported.
import t from 'tap';
import { applyPresenceDiff, emptyPresence, replacePresenceState, type PresenceState } from '../../src/client/presence.js';

const meta = (session: string, state: Record<string, unknown> = {}) => ({ session, state });
const plain = (s: PresenceState) => JSON.parse(JSON.stringify(s));

t.test('joins, a second tab, an update, then the tabs leave one by one', async (t) => {
  let view = emptyPresence();
  let c = applyPresenceDiff(view, { ann: [meta('a1', { s: 'online' })] }, {});
  view = c.state;
  t.same(plain(view), { ann: [meta('a1', { s: 'online' })] });
  t.same(c.joinedKeys, ['ann'], 'ann joined');
  t.same(c.leftKeys, []);

  c = applyPresenceDiff(view, { ann: [meta('a2', { s: 'online' })], bob: [meta('b1')] }, {});
  view = c.state;
  t.same(c.joinedKeys, ['bob'], 'a second tab of ann is no join of ann; bob joins');
  t.same(plain(c.joins), { ann: [meta('a2', { s: 'online' })], bob: [meta('b1')] }, 'meta-level joins');
  t.equal(view.ann.length, 2, 'two metas for ann');

  c = applyPresenceDiff(view, { ann: [meta('a1', { s: 'away' })] }, { ann: [meta('a1', { s: 'online' })] });
  view = c.state;
  t.same(c.joinedKeys, [], 'an update is no join');
  t.same(c.leftKeys, [], 'nor a leave');
  t.same(plain(c.leaves), { ann: [meta('a1', { s: 'online' })] }, 'the old meta left');
  t.same(plain(c.joins), { ann: [meta('a1', { s: 'away' })] }, 'the new one joined');
  t.same(view.ann.map((m) => m.state), [{ s: 'online' }, { s: 'away' }], 'a2 unchanged, a1 updated');

  c = applyPresenceDiff(view, {}, { ann: [meta('a2', { s: 'online' })] });
  view = c.state;
  t.same(c.leftKeys, [], 'ann still has a tab');
  t.same(view.ann, [meta('a1', { s: 'away' })]);

  c = applyPresenceDiff(view, {}, { ann: [meta('a1', { s: 'away' })] });
  view = c.state;
  t.same(c.leftKeys, ['ann'], 'ann leaves with her last meta');
  t.same(plain(view), { bob: [meta('b1')] });
});

t.test('the update of the only meta: leave then join in one diff keeps the key', async (t) => {
  const before = applyPresenceDiff(emptyPresence(), { u: [meta('s', { n: 1 })] }, {}).state;
  const c = applyPresenceDiff(before, { u: [meta('s', { n: 2 })] }, { u: [meta('s', { n: 1 })] });
  t.same(c.joinedKeys, []);
  t.same(c.leftKeys, []);
  t.same(c.state.u, [meta('s', { n: 2 })]);
});

t.test('inputs are not mutated; repeated and unknown entries are harmless', async (t) => {
  const before = applyPresenceDiff(emptyPresence(), { u: [meta('s1')] }, {}).state;
  const snapshot = plain(before);
  const c = applyPresenceDiff(before, { u: [meta('s1')] }, { nobody: [meta('x')], u: [meta('zz')] });
  t.same(plain(before), snapshot, 'the previous view is untouched');
  t.same(plain(c.state), snapshot, 'a repeated join and leaves of unknown metas change nothing');
  t.same(plain(c.joins), {}, 'nothing reported');
  t.same(plain(c.leaves), {});
  const junk = applyPresenceDiff(before, { u: 'nope', v: [null, 3, meta('v1')] }, null);
  t.same(plain(junk.state), { u: [meta('s1')], v: [meta('v1')] }, 'malformed parts ignored');
});

t.test('a join without a session replaces nothing; a meta without session leaves by content', async (t) => {
  let view = applyPresenceDiff(emptyPresence(), { k: [{ state: { a: 1 } }, { state: { a: 2 } }] }, {}).state;
  t.equal(view.k.length, 2);
  view = applyPresenceDiff(view, {}, { k: [{ state: { a: 1 } }] }).state;
  t.same(view.k, [{ state: { a: 2 } }]);
});

t.test('user ids that are Object.prototype names are plain keys', async (t) => {
  const c = applyPresenceDiff(emptyPresence(), JSON.parse('{"__proto__": [{"session": "p"}], "constructor": [{"session": "c"}]}'), {});
  t.same(c.joinedKeys.sort(), ['__proto__', 'constructor']);
  t.same(Object.keys(c.state).sort(), ['__proto__', 'constructor']);
  const gone = applyPresenceDiff(c.state, {}, JSON.parse('{"__proto__": [{"session": "p"}], "toString": [{"session": "x"}]}'));
  t.same(gone.leftKeys, ['__proto__']);
  t.same(Object.keys(gone.state), ['constructor']);
});

t.test('a fresh presence_state replaces the view and reports the difference', async (t) => {
  let view = applyPresenceDiff(emptyPresence(), { ann: [meta('a1')], bob: [meta('b1', { x: 1 })], cy: [meta('c1')] }, {}).state;
  // After a reconnect: bob's tab reconnected (a new session), cy is gone, dee came.
  const c = replacePresenceState(view, { ann: [meta('a1')], bob: [meta('b2', { x: 1 })], dee: [meta('d1')] });
  view = c.state;
  t.same(c.joinedKeys, ['dee']);
  t.same(c.leftKeys, ['cy']);
  t.same(plain(c.joins), { bob: [meta('b2', { x: 1 })], dee: [meta('d1')] }, 'bob\'s new session and dee');
  t.same(plain(c.leaves), { bob: [meta('b1', { x: 1 })], cy: [meta('c1')] }, 'bob\'s old session and cy');
  t.same(plain(view), { ann: [meta('a1')], bob: [meta('b2', { x: 1 })], dee: [meta('d1')] });
  const same = replacePresenceState(view, plain(view));
  t.same([plain(same.joins), plain(same.leaves), same.joinedKeys, same.leftKeys], [{}, {}, [], []], 'the same state again: no difference');
  const empty = replacePresenceState(view, {});
  t.same(empty.leftKeys.sort(), ['ann', 'bob', 'dee'], 'an empty state: everyone left');
});

t.test('random diffs: the view equals a per-connection reference model', async (t) => {
  // Reference: session → {key, state}; the view must group exactly those by key.
  const ref = new Map<string, { key: string; state: Record<string, unknown> }>();
  let view = emptyPresence();
  const keys = ['a', 'b', 'c'];
  let sessions = 0;
  for (let step = 0; step < 2000; step++) {
    const joins: PresenceState = {};
    const leaves: PresenceState = {};
    const push = (into: PresenceState, k: string, m: ReturnType<typeof meta>) => (into[k] ??= []).push(m);
    const r = Math.random();
    const live = [...ref.entries()];
    if (r < 0.4 || live.length === 0) {
      const s = `s${++sessions}`;
      const k = keys[Math.floor(Math.random() * keys.length)];
      const st = { v: step };
      ref.set(s, { key: k, state: st });
      push(joins, k, meta(s, st));
    } else if (r < 0.7) {
      const [s, { key, state }] = live[Math.floor(Math.random() * live.length)];
      const st = { v: step };
      push(leaves, key, meta(s, state));
      push(joins, key, meta(s, st));
      ref.set(s, { key, state: st });
    } else {
      const [s, { key, state }] = live[Math.floor(Math.random() * live.length)];
      push(leaves, key, meta(s, state));
      ref.delete(s);
    }
    const before = new Set(Object.keys(view));
    const c = applyPresenceDiff(view, joins, leaves);
    view = c.state;
    const want: Record<string, string[]> = {};
    for (const [s, { key, state }] of ref) (want[key] ??= []).push(JSON.stringify(meta(s, state)));
    const got: Record<string, string[]> = {};
    for (const k of Object.keys(view)) got[k] = view[k].map((m) => JSON.stringify(m));
    for (const k of Object.keys(want)) want[k].sort();
    for (const k of Object.keys(got)) got[k].sort();
    if (JSON.stringify(Object.entries(want).sort()) !== JSON.stringify(Object.entries(got).sort())) {
      t.fail(`step ${step}: view ${JSON.stringify(got)} != model ${JSON.stringify(want)}`);
      return;
    }
    const after = new Set(Object.keys(view));
    const joined = [...after].filter((k) => !before.has(k)).sort();
    const left = [...before].filter((k) => !after.has(k)).sort();
    if (JSON.stringify([c.joinedKeys.sort(), c.leftKeys.sort()]) !== JSON.stringify([joined, left])) {
      t.fail(`step ${step}: keys joined/left ${JSON.stringify([c.joinedKeys, c.leftKeys])}, expected ${JSON.stringify([joined, left])}`);
      return;
    }
  }
  t.pass('2000 random diffs: views and key joins/leaves as the model says');
});
