// Wire protocol: `subscribe` with `snapshot` (docs/PROTOCOL.md §7, src/protocol/parse.ts
// parseSnapshot): true / {order?, limit?} ask for one; false / null / absent do not; everything
// else, and snapshot together with since, is bad_request with the ref and id echoed.
import t from 'tap';
import { errorOf } from '../helpers/wire-error.js';
import { SERVER_DEFAULTS } from '../../src/constants.js';
import { LIMITS } from '../../src/protocol/limits.js';
import { parseClientMessage } from '../../src/protocol/parse.js';
import type { SubscribeMessage } from '../../src/protocol/types.js';
import { errorMsgFrom } from '../../src/protocol/wire-errors.js';
import { SNAPSHOT_MAX_LIMIT } from '../../src/client/snapshot.js';

const MAX = SERVER_DEFAULTS.maxMessageBytes;

function sub(extra: Record<string, unknown>): SubscribeMessage {
  return parseClientMessage(JSON.stringify({ type: 'subscribe', id: 's1', table: 'public.todos', ...extra }), false, MAX) as SubscribeMessage;
}

t.test('snapshot: true and objects', async (t) => {
  t.same(sub({ snapshot: true }).snapshot, { order: null, limit: null }, 'true: every row, unordered');
  t.same(sub({ snapshot: {} }).snapshot, { order: null, limit: null }, '{}: like true');
  t.same(sub({ snapshot: { order: 'a.desc', limit: 5 } }).snapshot, { order: { column: 'a', desc: true }, limit: 5 });
  t.same(sub({ snapshot: { order: 'a.asc' } }).snapshot, { order: { column: 'a', desc: false }, limit: null });
  t.same(sub({ snapshot: { order: 'created_at' } }).snapshot, { order: { column: 'created_at', desc: false }, limit: null }, 'a bare column: asc');
  t.same(sub({ snapshot: { order: 'a.b.desc' } }).snapshot?.order, { column: 'a.b', desc: true }, 'only the last .asc/.desc is the direction');
  t.same(sub({ snapshot: { order: 'a.b' } }).snapshot?.order, { column: 'a.b', desc: false }, 'a dotted name without direction');
  t.same(sub({ snapshot: { order: 'x.DESC' } }).snapshot?.order, { column: 'x.DESC', desc: false }, 'directions are lower case; anything else is part of the name');
  t.same(sub({ snapshot: { order: '.desc' } }).snapshot?.order, { column: '.desc', desc: false }, 'no column before .desc: the whole is a name (unknown at subscribe)');
  t.same(sub({ snapshot: { order: 'o'.repeat(LIMITS.orderLength) } }).snapshot?.order?.column.length, LIMITS.orderLength, 'the longest order');
  t.same(sub({ snapshot: { order: null, limit: null } }).snapshot, { order: null, limit: null }, 'null fields: absent');
  t.same(sub({ snapshot: { limit: 1 } }).snapshot, { order: null, limit: 1 });
  t.same(sub({ snapshot: { limit: LIMITS.snapshotLimit } }).snapshot, { order: null, limit: 10_000 }, 'the largest limit');
  t.equal(LIMITS.snapshotLimit, 10_000);
  t.same(sub({ snapshot: { limit: 5.0 } }).snapshot?.limit, 5, '5.0 is the integer 5 in JSON');
  t.same(sub({ snapshot: true, filter: 'room=eq.1', events: ['insert'], ref: 'r' }), {
    type: 'subscribe',
    id: 's1',
    table: { schema: 'public', name: 'todos', qualified: 'public.todos' },
    events: ['insert'],
    filter: 'room=eq.1',
    snapshot: { order: null, limit: null },
    ref: 'r',
  });
  const raw = parseClientMessage('{"type":"subscribe","id":1,"table":"t","snapshot":{"limit":1e4}}', false, MAX) as SubscribeMessage;
  t.equal(raw.snapshot?.limit, 10_000, '1e4 in the JSON text');
});

t.test('snapshot: false, null, absent: none', async (t) => {
  for (const snapshot of [false, null, undefined]) {
    t.notOk('snapshot' in sub({ snapshot }), String(snapshot));
  }
  t.notOk('snapshot' in sub({}), 'absent');
  t.notOk('snapshot' in sub({ snapshot: false, since: '0/10:1' }), 'false with since: a resume');
  t.notOk('snapshot' in sub({ snapshot: null, since: '0/10:1' }), 'null with since: a resume');
  t.ok(sub({ snapshot: false, since: '0/10:1' }).since);
});

t.test('snapshot: bad types and values are bad_request, with ref and id', async (t) => {
  const bad: Array<[unknown, RegExp]> = [
    [1, /^subscribe\.snapshot must be true or an object \{order\?, limit\?\}, not the number 1/],
    [0, /^subscribe\.snapshot must be true or an object/],
    ['true', /^subscribe\.snapshot must be true or an object .*not the string "true"/],
    ['', /^subscribe\.snapshot must be true or an object/],
    [[], /^subscribe\.snapshot must be true or an object .*not an array/],
    [[{ limit: 1 }], /^subscribe\.snapshot must be true or an object/],
    [{ order: 1 }, /^subscribe\.snapshot\.order must be a string "column\.asc" or "column\.desc"/],
    [{ order: '' }, /^subscribe\.snapshot\.order must be a string .*not an empty string/],
    [{ order: true }, /^subscribe\.snapshot\.order must be/],
    [{ order: ['id', 'desc'] }, /^subscribe\.snapshot\.order must be/],
    [{ order: { column: 'id' } }, /^subscribe\.snapshot\.order must be/],
    [{ order: 'o'.repeat(LIMITS.orderLength + 1) }, /^subscribe\.snapshot\.order must be a string .* of at most 200 characters/],
    [{ limit: 0 }, /^subscribe\.snapshot\.limit must be an integer from 1 to 10000, not the number 0/],
    [{ limit: -1 }, /^subscribe\.snapshot\.limit must be an integer from 1 to 10000/],
    [{ limit: 10_001 }, /^subscribe\.snapshot\.limit must be an integer from 1 to 10000, not the number 10001/],
    [{ limit: 1.5 }, /^subscribe\.snapshot\.limit must be an integer from 1 to 10000, not the number 1\.5/],
    [{ limit: '5' }, /^subscribe\.snapshot\.limit must be an integer .*not the string "5"/],
    [{ limit: true }, /^subscribe\.snapshot\.limit must be an integer/],
    [{ limit: [5] }, /^subscribe\.snapshot\.limit must be an integer/],
    [{ limit: 1e300 }, /^subscribe\.snapshot\.limit must be an integer/],
    [{ offset: 5 }, /^subscribe\.snapshot has an unknown field "offset"; it takes order and limit/],
    [{ order: 'id', where: 'x' }, /^subscribe\.snapshot has an unknown field "where"/],
    [{ Limit: 5 }, /^subscribe\.snapshot has an unknown field "Limit"/],
  ];
  for (const [snapshot, message] of bad) {
    const err = errorOf(() => sub({ snapshot, ref: 'r7' }));
    t.equal(err.code, 'bad_request', JSON.stringify(snapshot));
    t.match(err.message, message);
    t.equal(err.ref, 'r7', 'ref echoed');
    t.equal(err.id, 's1', 'id echoed');
  }
  // A field named __proto__ in the JSON is an own field: unknown, not the prototype.
  const proto = errorOf(() => parseClientMessage('{"type":"subscribe","id":"p","table":"t","ref":1,"snapshot":{"__proto__":{"limit":5}}}', false, MAX));
  t.equal(proto.code, 'bad_request');
  t.match(proto.message, /unknown field "__proto__"/);
  t.equal(proto.id, 'p');
  // A long unknown field name is clipped in the message.
  const long = errorOf(() => sub({ snapshot: { ['k'.repeat(5000)]: 1 } }));
  t.ok(long.message.length < 1000, 'the message stays short');
});

t.test('snapshot with since: bad_request, no subscription', async (t) => {
  for (const snapshot of [true, {}, { order: 'id.desc', limit: 5 }]) {
    const err = errorOf(() => sub({ snapshot, since: '16/B374D848:3', ref: 'x', id: 42 }));
    t.equal(err.code, 'bad_request', JSON.stringify(snapshot));
    t.match(err.message, /^subscribe\.snapshot and subscribe\.since cannot go together/);
    t.equal(err.ref, 'x');
    t.equal(err.id, 42, 'an integer id echoed');
  }
  // The reply as the client sees it.
  const err = errorOf(() => sub({ snapshot: true, since: '0/10:1', ref: 'z' }));
  const reply = JSON.parse(String(errorMsgFrom(err))) as Record<string, unknown>;
  t.match(reply, { type: 'error', code: 'bad_request', ref: 'z', id: 's1' });
  // A bad since is reported as such, before the snapshot is looked at.
  t.match(errorOf(() => sub({ snapshot: true, since: 'nope' })).message, /^subscribe\.since is not a position/);
  // A bad snapshot with a since: the snapshot's own error.
  t.match(errorOf(() => sub({ snapshot: { limit: 0 }, since: '0/10:1' })).message, /^subscribe\.snapshot\.limit/);
});

t.test('the client SDK checks the same largest limit as the server', async (t) => {
  t.equal(SNAPSHOT_MAX_LIMIT, LIMITS.snapshotLimit);
});
