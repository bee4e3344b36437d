// Wire protocol v1 (docs/PROTOCOL.md): client frame parsing and server message builders.
import t from 'tap';
import { errorOf } from '../helpers/wire-error.js';
import { formatWalPosition as formatPosition } from '../../src/protocol/position.js';
import { PROTOCOL_VERSION, SERVER_DEFAULTS } from '../../src/constants.js';
import { BadRequestError, DuplicateIdError, TooLargeError } from '../../src/errors.js';
import {
  broadcastMsg,
  changePrefix,
  errorMsg,
  joined,
  left,
  pong,
  presenceDiff,
  presenceState,
  progress,
  resync,
  subscribed,
  unsubscribed,
  welcome,
} from '../../src/protocol/frames.js';
import { LIMITS } from '../../src/protocol/limits.js';
import { CLIENT_MESSAGE_TYPES, parseClientMessage, peekRef, validateClientMessage } from '../../src/protocol/parse.js';
import { parseTableName } from '../../src/protocol/table-name.js';
import type { ClientMessage, SubscribeMessage } from '../../src/protocol/types.js';
import { contextOf, errorMsgFrom, withContext } from '../../src/protocol/wire-errors.js';

const MAX = SERVER_DEFAULTS.maxMessageBytes;

/** Parses a message given as an object (sent as a text frame). */
function parse(msg: unknown, maxBytes = MAX): ClientMessage {
  return parseClientMessage(JSON.stringify(msg), false, maxBytes);
}

function sub(extra: Record<string, unknown>): SubscribeMessage {
  return parse({ type: 'subscribe', id: 's1', table: 'public.todos', ...extra }) as SubscribeMessage;
}

t.test('every client message type, valid', async (t) => {
  t.same(parse({ type: 'auth', token: 'eyJ.x.y' }), { type: 'auth', token: 'eyJ.x.y' });
  t.same(parse({ type: 'subscribe', id: 's1', table: 'public.todos' }), {
    type: 'subscribe',
    id: 's1',
    table: { schema: 'public', name: 'todos', qualified: 'public.todos' },
  });
  t.same(parse({ type: 'unsubscribe', id: 7 }), { type: 'unsubscribe', id: 7 });
  t.same(parse({ type: 'join', channel: 'room:1' }), { type: 'join', channel: 'room:1' });
  t.same(parse({ type: 'leave', channel: 'room:1' }), { type: 'leave', channel: 'room:1' });
  t.same(parse({ type: 'broadcast', channel: 'room:1', event: 'typing', payload: { user: 'ann', at: [1, 2] } }), {
    type: 'broadcast',
    channel: 'room:1',
    event: 'typing',
    payload: { user: 'ann', at: [1, 2] },
    payloadJson: '{"user":"ann","at":[1,2]}',
    self: false,
  });
  t.match(parse({ type: 'broadcast', channel: 'room:1', event: 'typing', self: true }), { self: true }, 'self: the sender receives it too');
  t.same(parse({ type: 'presence', channel: 'room:1', state: { status: 'online' } }), {
    type: 'presence',
    channel: 'room:1',
    state: { status: 'online' },
  });
  t.same(parse({ type: 'presence', channel: 'room:1', state: null }), { type: 'presence', channel: 'room:1', state: null });
  t.same(parse({ type: 'ping' }), { type: 'ping' });
  t.same(CLIENT_MESSAGE_TYPES, ['auth', 'subscribe', 'unsubscribe', 'join', 'leave', 'broadcast', 'presence', 'ping']);
});

t.test('ref is kept on every message type, absent when missing or null', async (t) => {
  const bodies: Record<string, unknown>[] = [
    { type: 'auth', token: 't' },
    { type: 'subscribe', id: 1, table: 'x' },
    { type: 'unsubscribe', id: 1 },
    { type: 'join', channel: 'c' },
    { type: 'leave', channel: 'c' },
    { type: 'broadcast', channel: 'c', event: 'e', payload: 1 },
    { type: 'presence', channel: 'c', state: null },
    { type: 'ping' },
  ];
  for (const body of bodies) {
    t.equal(parse({ ...body, ref: 'r1' }).ref, 'r1', `${body.type} string ref`);
    t.equal(parse({ ...body, ref: 42 }).ref, 42, `${body.type} number ref`);
    t.notOk('ref' in parse(body), `${body.type} no ref`);
    t.notOk('ref' in parse({ ...body, ref: null }), `${body.type} null ref`);
  }
  t.equal(parse({ type: 'ping', ref: 1.5 }).ref, 1.5, 'any finite number');
  t.equal(parse({ type: 'ping', ref: '' }).ref, '', 'any string');
});

t.test('unknown extra fields are ignored', async (t) => {
  t.same(parse({ type: 'ping', future: { x: 1 }, v: 2 }), { type: 'ping' });
  t.same(sub({ cursor: 'abc', mode: 'fast' }).table.qualified, 'public.todos');
  t.same(parse({ type: 'join', channel: 'c', presence: true }), { type: 'join', channel: 'c' });
});

t.test('subscribe: table names', async (t) => {
  const ok: Array<[string, string, string]> = [
    ['todos', 'public', 'todos'],
    ['app.todos', 'app', 'todos'],
    ['Public.Todos', 'public', 'todos'],
    ['"Todos"', 'public', 'Todos'],
    ['"My Schema"."My ""quoted"" table"', 'My Schema', 'My "quoted" table'],
    ['"a.b".c', 'a.b', 'c'],
    ['_t$1', 'public', '_t$1'],
    ['app."x.y"', 'app', 'x.y'],
    ['Ärger.Straße', 'Ärger', 'straße'],
    ['s."Ä"', 's', 'Ä'],
  ];
  for (const [text, schema, name] of ok) {
    t.same(sub({ table: text }).table, { schema, name, qualified: `${schema}.${name}` }, text);
    t.same(parseTableName(text), { schema, name, qualified: `${schema}.${name}` });
  }
  const bad = [
    '',
    '.',
    'a.',
    '.b',
    'a..b',
    'a.b.c',
    'db.app.todos',
    '1abc',
    '$x',
    'my-table',
    'a b',
    ' todos',
    'todos ',
    'a . b',
    '"unterminated',
    '"a"b',
    '""',
    'a.""',
    '"a"."b',
    'x'.repeat(64),
    `"${'é'.repeat(32)}"`,
    'a'.repeat(600),
    'public.todos;drop table x',
  ];
  for (const text of bad) {
    const err = errorOf(() => sub({ table: text, ref: 'r' }));
    t.equal(err.code, 'bad_request', JSON.stringify(text));
    t.match(err.message, /subscribe\.table/);
    t.equal(err.ref, 'r');
    t.equal(err.id, 's1');
  }
  t.same(sub({ table: 'x'.repeat(63) }).table.name, 'x'.repeat(63), '63 bytes is the longest identifier');
  for (const v of [undefined, null, 1, ['public', 'todos'], { schema: 'public', name: 'todos' }]) {
    const err = errorOf(() => sub({ table: v }));
    t.equal(err.code, 'bad_request');
    t.match(err.message, /^subscribe\.table must be a string/);
  }
  t.throws(() => parseTableName('a.b.c'), BadRequestError);
});

t.test('subscribe: id', async (t) => {
  for (const id of ['a', 'x'.repeat(128), 0, -5, 2 ** 53 - 1, -(2 ** 53 - 1), '🙂']) {
    t.equal(sub({ id }).id, id, JSON.stringify(id));
  }
  for (const id of [undefined, null, '', 'x'.repeat(129), 1.5, 2 ** 53, 1e300, true, [], {}, ['a']]) {
    const err = errorOf(() => sub({ id, ref: 9 }));
    t.equal(err.code, 'bad_request', JSON.stringify(id));
    t.match(err.message, /^subscribe\.id must be a non-empty string or an integer/);
    t.equal(err.ref, 9, 'ref echoed');
    t.notOk('id' in err, 'an invalid id is not echoed');
  }
  // Numbers beyond double range parse as Infinity; huge integers lose precision: both refused.
  const inf = errorOf(() => parseClientMessage('{"type":"subscribe","id":1e400,"table":"t"}', false, MAX));
  t.match(inf.message, /^subscribe\.id must be/);
  const huge = errorOf(() => parseClientMessage('{"type":"subscribe","id":123456789012345678901234567890,"table":"t"}', false, MAX));
  t.match(huge.message, /^subscribe\.id must be a non-empty string or an integer \(integers up to 2\^53-1/);
  const unsub = errorOf(() => parse({ type: 'unsubscribe', id: 1.25 }));
  t.match(unsub.message, /^unsubscribe\.id must be a non-empty string or an integer/);
  t.equal(errorOf(() => parse({ type: 'unsubscribe' })).code, 'bad_request');
});

t.test('subscribe: events', async (t) => {
  t.notOk('events' in sub({}), 'absent means all');
  t.notOk('events' in sub({ events: null }), 'null means all');
  t.same(sub({ events: ['insert'] }).events, ['insert']);
  t.same(sub({ events: ['delete', 'insert', 'update'] }).events, ['delete', 'insert', 'update'], 'client order kept');
  const bad: unknown[] = [[], 'insert', ['insert', 'insert'], ['upsert'], ['INSERT'], ['leave'], ['truncate'], [1], [null], {}, true];
  for (const events of bad) {
    const err = errorOf(() => sub({ events, ref: 'e' }));
    t.equal(err.code, 'bad_request', JSON.stringify(events));
    t.match(err.message, /^subscribe\.events /);
    t.equal(err.ref, 'e');
    t.equal(err.id, 's1');
  }
  t.match(errorOf(() => sub({ events: ['update', 'update'] })).message, /"update" more than once/);
});

t.test('subscribe: filter', async (t) => {
  t.equal(sub({ filter: 'status=eq.open&n=gt.3' }).filter, 'status=eq.open&n=gt.3', 'kept as text');
  t.equal(sub({ filter: 'x=eq.' + 'a'.repeat(2043) }).filter?.length, 2048, '2048 characters allowed');
  t.notOk('filter' in sub({}));
  t.notOk('filter' in sub({ filter: null }));
  t.notOk('filter' in sub({ filter: '' }), 'empty filter means none');
  t.equal(sub({ filter: 'not even a filter' }).filter, 'not even a filter', 'the filter language is checked elsewhere');
  for (const filter of ['x'.repeat(2049), 1, true, ['a=eq.1'], { a: 1 }]) {
    const err = errorOf(() => sub({ filter, ref: 3 }));
    t.equal(err.code, 'bad_request');
    t.match(err.message, /^subscribe\.filter /);
    t.equal(err.ref, 3);
    t.equal(err.id, 's1');
  }
});

t.test('subscribe: since', async (t) => {
  const s = sub({ since: '16/B374D848:3' }).since;
  t.ok(s);
  t.equal(formatPosition(s!.lsn, s!.index), '16/B374D848:3');
  t.notOk('since' in sub({}), 'absent: from now');
  t.notOk('since' in sub({ since: null }), 'null: from now');
  t.same(sub({ since: '0/0:0' }).since, { lsn: 0n, index: 0 });
  for (const since of ['', 'now', '16/B374D848', '16/B374D848:', '16/B374D848:-1', '16B374D848:3', 'x/1:1', '0/10:1.5', '0/10:2147483648', '0/10:12345678901']) {
    const err = errorOf(() => sub({ since, ref: 'p' }));
    t.equal(err.code, 'bad_request', `${JSON.stringify(since)} is bad_request, not bad_position`);
    t.match(err.message, /^subscribe\.since is not a position: .*"<commit LSN>:<index>", like "16\/B374D848:3"/);
    t.equal(err.ref, 'p');
    t.equal(err.id, 's1');
    t.equal((err.cause as { code?: string } | undefined)?.code, 'bad_position', 'the PositionError is the cause');
  }
  for (const since of [3, true, {}, ['0/0:0']]) {
    const err = errorOf(() => sub({ since }));
    t.equal(err.code, 'bad_request');
    t.match(err.message, /^subscribe\.since must be a position string like "16\/B374D848:3", or null/);
  }
});

t.test('subscribe: since may be a progress position with the largest index', async (t) => {
  // docs/PROTOCOL.md: progress may name an LSN where nothing committed, "<lsn>:2147483647".
  t.same(sub({ since: '0/1520407:2147483647' }).since, { lsn: 0x1520407n, index: 2147483647 });
});

t.test('auth, channels, broadcast, presence: invalid fields', async (t) => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ type: 'auth' }, /^auth\.token must be a non-empty string/],
    [{ type: 'auth', token: '' }, /^auth\.token must be a non-empty string/],
    [{ type: 'auth', token: 5 }, /^auth\.token /],
    [{ type: 'join' }, /^join\.channel must be a string of 1 to 255 characters/],
    [{ type: 'join', channel: '' }, /^join\.channel /],
    [{ type: 'join', channel: 'c'.repeat(256) }, /^join\.channel /],
    [{ type: 'join', channel: 1 }, /^join\.channel .*not the number 1/],
    [{ type: 'leave', channel: null }, /^leave\.channel /],
    [{ type: 'broadcast', event: 'e', payload: 1 }, /^broadcast\.channel /],
    [{ type: 'broadcast', channel: 'c', payload: 1 }, /^broadcast\.event must be a string of 1 to 255 characters/],
    [{ type: 'broadcast', channel: 'c', event: 'e'.repeat(256), payload: 1 }, /^broadcast\.event /],
    [{ type: 'broadcast', channel: 'c', event: {}, payload: 1 }, /^broadcast\.event /],
    [{ type: 'presence', channel: 'c' }, /^presence\.state must be an object, or null to untrack$/],
    [{ type: 'presence', channel: 'c', state: [] }, /^presence\.state must be an object, or null to untrack, not an array/],
    [{ type: 'presence', channel: 'c', state: 'online' }, /^presence\.state /],
    [{ type: 'presence', state: {} }, /^presence\.channel /],
  ];
  for (const [msg, re] of cases) {
    const err = errorOf(() => parse({ ...msg, ref: 'x' }));
    t.equal(err.code, 'bad_request', JSON.stringify(msg));
    t.match(err.message, re);
    t.equal(err.ref, 'x');
  }
  t.equal((parse({ type: 'join', channel: 'c'.repeat(255) }) as { channel: string }).channel.length, 255);
});

t.test('broadcast payload: any JSON, absent is null', async (t) => {
  for (const payload of [null, 0, 'text', true, [1, [2, [3]]], { a: { b: {} } }]) {
    const m = parse({ type: 'broadcast', channel: 'c', event: 'e', payload });
    t.same(m, { type: 'broadcast', channel: 'c', event: 'e', payload, payloadJson: JSON.stringify(payload), self: false });
  }
  t.same(parse({ type: 'broadcast', channel: 'c', event: 'e' }), {
    type: 'broadcast',
    channel: 'c',
    event: 'e',
    payload: null,
    payloadJson: 'null',
    self: false,
  });
});

t.test('frames: binary, oversize, UTF-8, JSON', async (t) => {
  const ping = Buffer.from('{"type":"ping","ref":1}');
  t.same(parseClientMessage(ping, false, MAX), { type: 'ping', ref: 1 }, 'Buffer');
  const ab = ping.buffer.slice(ping.byteOffset, ping.byteOffset + ping.byteLength);
  t.same(parseClientMessage(ab, false, MAX), { type: 'ping', ref: 1 }, 'ArrayBuffer (uWebSockets.js)');
  t.same(parseClientMessage(Buffer.from('\uFEFF{"type":"ping"}'), false, MAX), { type: 'ping' }, 'a UTF-8 BOM is skipped');
  t.same(parseClientMessage('\uFEFF{"type":"ping"}', false, MAX), { type: 'ping' }, 'in a string too');

  for (const data of [ping, ab, '{"type":"ping"}']) {
    const err = errorOf(() => parseClientMessage(data, true, MAX));
    t.equal(err.code, 'bad_request');
    t.equal(err.message, 'binary frames are not accepted; send JSON text');
  }

  // Size is counted in UTF-8 bytes of the frame, the limit itself is allowed.
  const body = (n: number, ch = 'a') => `{"type":"ping","pad":"${ch.repeat(n)}"}`;
  const overhead = body(0).length;
  t.same(parseClientMessage(body(MAX - overhead), false, MAX), { type: 'ping' }, 'exactly the limit');
  t.same(parseClientMessage(Buffer.from(body(MAX - overhead)), false, MAX), { type: 'ping' });
  for (const data of [body(MAX - overhead + 1), Buffer.from(body(MAX - overhead + 1)), body(MAX * 2)]) {
    const err = errorOf(() => parseClientMessage(data, false, MAX));
    t.ok(err instanceof TooLargeError);
    t.equal(err.code, 'too_large');
    t.match(err.message, /limit is 65536/);
  }
  // 'é' is 2 bytes: 40000 characters are 80000 bytes.
  t.equal(errorOf(() => parseClientMessage(body(40_000, 'é'), false, MAX)).code, 'too_large', 'multi-byte string');
  t.same(parseClientMessage(body(30_000, 'é'), false, MAX), { type: 'ping' });
  t.same(parseClientMessage(body(20_000, '🙂'), false, 100_000), { type: 'ping' }, 'astral: 4 bytes per 2 units');
  t.equal(errorOf(() => parseClientMessage(body(20_000, '🙂'), false, 80_000)).code, 'too_large');
  t.equal(errorOf(() => parseClientMessage('{"type":"ping"}', false, 5)).code, 'too_large', 'maxBytes is honoured');

  const badUtf8 = [
    [0x7b, 0xff, 0x7d],
    [0x22, 0xc0, 0xaf, 0x22], // overlong '/'
    [0x22, 0xed, 0xa0, 0x80, 0x22], // encoded UTF-16 surrogate
    [0x22, 0xe2, 0x82, 0x22], // truncated sequence
    [0x22, 0xf4, 0x90, 0x80, 0x80, 0x22], // beyond U+10FFFF
  ];
  for (const bytes of badUtf8) {
    const buf = Buffer.from(bytes);
    for (const data of [buf, buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength)]) {
      const err = errorOf(() => parseClientMessage(data, false, MAX));
      t.equal(err.code, 'bad_request');
      t.equal(err.message, 'the frame is not valid UTF-8');
    }
  }
  t.same(parseClientMessage(Buffer.from('{"type":"join","channel":"Zürich 🙂"}'), false, MAX), {
    type: 'join',
    channel: 'Zürich 🙂',
  });

  for (const text of ['', ' ', '{', '{"type":"ping"', "{'type':'ping'}", '{"type":"ping",}', 'ping', '{"type":"ping"}x', 'NaN', '\u0000']) {
    const err = errorOf(() => parseClientMessage(text, false, MAX));
    t.equal(err.code, 'bad_request', JSON.stringify(text));
    t.match(err.message, /^malformed JSON: /);
  }
});

t.test('top level must be an object', async (t) => {
  const cases: Array<[string, RegExp]> = [
    ['[]', /not an array$/],
    ['[{"type":"ping"}]', /not an array$/],
    ['null', /not null$/],
    ['42', /not the number 42$/],
    ['1e999', /not a number out of range$/],
    ['"ping"', /not the string "ping"$/],
    ['true', /not true$/],
  ];
  for (const [text, re] of cases) {
    const err = errorOf(() => parseClientMessage(text, false, MAX));
    t.equal(err.code, 'bad_request', text);
    t.match(err.message, /^a message must be a JSON object with a "type"/);
    t.match(err.message, re);
  }
});

t.test('type: missing, wrong, unknown', async (t) => {
  let err = errorOf(() => parse({ ref: 'a' }));
  t.equal(err.code, 'bad_request');
  t.match(err.message, /^a message needs a "type" \(one of auth, subscribe, unsubscribe, join, leave, broadcast, presence, ping\)/);
  t.equal(err.ref, 'a', 'ref echoed');

  err = errorOf(() => parse({ type: 3, ref: 'b' }));
  t.match(err.message, /^type must be a string/);
  t.equal(err.ref, 'b');

  err = errorOf(() => parse({ type: 'x', ref: 4 }));
  t.equal(err.code, 'bad_request');
  t.equal(err.message, 'unknown message type "x"');
  t.equal(err.ref, 4);

  for (const type of ['Ping', 'subscribed', 'change', 'welcome', '__proto__', 'toString', '']) {
    t.equal(errorOf(() => parse({ type })).message, `unknown message type ${JSON.stringify(type)}`);
  }
  t.ok(errorOf(() => parse({ type: 'y'.repeat(1000) })).message.length < 120, 'long types are clipped');
  t.equal(
    errorOf(() => parseClientMessage('{"__proto__":{"type":"ping"}}', false, MAX)).code,
    'bad_request',
    'inherited fields are not read',
  );
});

t.test('ref: wrong type is refused, not echoed', async (t) => {
  for (const ref of [{}, [], true, ['r']]) {
    const err = errorOf(() => parse({ type: 'ping', ref }));
    t.equal(err.code, 'bad_request');
    t.match(err.message, /^ref must be a string or a number/);
    t.notOk('ref' in err);
  }
  const err = errorOf(() => parseClientMessage('{"type":"ping","ref":1e400}', false, MAX));
  t.match(err.message, /^ref must be a string or a number, not a number out of range/);
});

t.test('peekRef', async (t) => {
  t.equal(peekRef({ ref: 'a' }), 'a');
  t.equal(peekRef({ ref: 0 }), 0);
  t.equal(peekRef({ ref: -1.5 }), -1.5);
  t.equal(peekRef({ ref: Infinity }), undefined);
  t.equal(peekRef({ ref: NaN }), undefined);
  t.equal(peekRef({ ref: null }), undefined);
  t.equal(peekRef({ ref: {} }), undefined);
  t.equal(peekRef({}), undefined);
  t.equal(peekRef(Object.create({ ref: 'inherited' })), undefined);
  for (const v of [null, undefined, 'ref', 1, ['a'], true]) t.equal(peekRef(v), undefined);
});

t.test('deep nesting does not crash', async (t) => {
  const big = 10 * 1024 * 1024;
  const deepArray = '['.repeat(100_000) + ']'.repeat(100_000);
  let err = errorOf(() => parseClientMessage(deepArray, false, big));
  t.equal(err.code, 'bad_request', '100k nested arrays: refused, no crash');

  const deepObject = '{"a":'.repeat(100_000) + '1' + '}'.repeat(100_000);
  err = errorOf(() => parseClientMessage(deepObject, false, big));
  t.equal(err.code, 'bad_request');
  t.match(err.message, /^(a message needs a "type"|malformed JSON)/);

  // Extra fields are never walked, however deep.
  const deepExtra = `{"type":"ping","x":${deepArray}}`;
  t.same(parseClientMessage(deepExtra, false, big), { type: 'ping' });
  t.equal(errorOf(() => parseClientMessage(deepExtra, false, MAX)).code, 'too_large');

  // Payloads and states are re-serialised later, so their depth is bounded.
  const nest = (n: number) => '['.repeat(n) + ']'.repeat(n);
  const objNest = (n: number) => '{"a":'.repeat(n) + 'null' + '}'.repeat(n);
  for (const payload of [nest(100_000), nest(30_000), nest(LIMITS.jsonDepth + 1), objNest(LIMITS.jsonDepth + 1)]) {
    err = errorOf(() => parseClientMessage(`{"type":"broadcast","channel":"c","event":"e","payload":${payload},"ref":5}`, false, big));
    t.equal(err.code, 'bad_request');
    t.equal(err.message, `broadcast.payload is nested more than ${LIMITS.jsonDepth} levels deep`);
    t.equal(err.ref, 5);
  }
  const edge = parseClientMessage(`{"type":"broadcast","channel":"c","event":"e","payload":${nest(LIMITS.jsonDepth)}}`, false, MAX);
  t.equal((edge as { payloadJson: string }).payloadJson, nest(LIMITS.jsonDepth), `${LIMITS.jsonDepth} levels allowed`);
  const wide = JSON.stringify({ a: Array.from({ length: 5000 }, (_, i) => ({ i })) });
  t.equal(parseClientMessage(`{"type":"broadcast","channel":"c","event":"e","payload":${wide}}`, false, MAX).type, 'broadcast');

  err = errorOf(() => parseClientMessage(`{"type":"presence","channel":"c","state":${objNest(30_000)}}`, false, big));
  t.equal(err.message, `presence.state is nested more than ${LIMITS.jsonDepth} levels deep`);
  t.same(
    parseClientMessage(`{"type":"presence","channel":"c","state":${objNest(LIMITS.jsonDepth)}}`, false, MAX).type,
    'presence',
  );

  // Deep subscribe fields are rejected by type, never walked.
  err = errorOf(() => parseClientMessage(`{"type":"subscribe","id":"s","table":"t","events":${nest(30_000)}}`, false, big));
  t.match(err.message, /^subscribe\.events /);
  err = errorOf(() => parseClientMessage(`{"type":"subscribe","id":${nest(30_000)},"table":"t"}`, false, big));
  t.match(err.message, /^subscribe\.id /);
});

t.test('errors carry ref and id for the reply', async (t) => {
  const err = errorOf(() => sub({ ref: 'r7', id: 'orders', events: ['nope'] }));
  t.same(contextOf(err), { ref: 'r7', id: 'orders' });
  t.same(JSON.parse(errorMsgFrom(err)), {
    type: 'error',
    code: 'bad_request',
    message: err.message,
    ref: 'r7',
    id: 'orders',
  });
  const noRef = errorOf(() => sub({ id: 12, filter: 1 }));
  t.same(contextOf(noRef), { id: 12 });
  t.same(Object.keys(JSON.parse(errorMsgFrom(noRef))), ['type', 'code', 'message', 'id']);

  // Errors raised elsewhere (the hub) get their context the same way.
  const dup = withContext(new DuplicateIdError('subscription "a" exists'), { ref: 1, id: 'a' });
  t.same(JSON.parse(errorMsgFrom(dup)), { type: 'error', code: 'duplicate_id', message: 'subscription "a" exists', ref: 1, id: 'a' });
  t.same(JSON.parse(errorMsgFrom(new TooLargeError('big'), { ref: 'z' })), {
    type: 'error',
    code: 'too_large',
    message: 'big',
    ref: 'z',
  });
  t.same(contextOf(new Error('x')), {});
  t.same(contextOf(null), {});
  t.same(contextOf('x'), {});
});

t.test('validateClientMessage takes parsed values', async (t) => {
  t.same(validateClientMessage({ type: 'ping', ref: 'v' }), { type: 'ping', ref: 'v' });
  t.throws(() => validateClientMessage(undefined), { code: 'bad_request' });
  t.throws(() => validateClientMessage(Object.create({ type: 'ping' })), { code: 'bad_request' });
});

t.test('server message builders: valid JSON, exact fields', async (t) => {
  const check = (s: string, expected: Record<string, unknown>, name: string) => {
    const parsed: unknown = JSON.parse(s);
    t.same(parsed, expected, name);
    t.same(Object.keys(parsed as object), Object.keys(expected), `${name}: exactly these fields, in this order`);
  };
  check(welcome('sess-1'), { type: 'welcome', protocol: PROTOCOL_VERSION, session: 'sess-1' }, 'welcome');
  t.equal(JSON.parse(welcome('x')).protocol, 1);
  check(subscribed('s1', '16/B374D848:3'), { type: 'subscribed', id: 's1', position: '16/B374D848:3' }, 'subscribed');
  check(subscribed(5, '0/0:0', 'r'), { type: 'subscribed', id: 5, position: '0/0:0', ref: 'r' }, 'subscribed with ref');
  check(unsubscribed('s1'), { type: 'unsubscribed', id: 's1' }, 'unsubscribed');
  check(unsubscribed(-3, 8), { type: 'unsubscribed', id: -3, ref: 8 }, 'unsubscribed with ref');
  check(errorMsg('bad_filter', 'bad "x"\n'), { type: 'error', code: 'bad_filter', message: 'bad "x"\n' }, 'error');
  check(errorMsg('forbidden', 'no', 'r', 's'), { type: 'error', code: 'forbidden', message: 'no', ref: 'r', id: 's' }, 'error full');
  check(errorMsg('unknown_subscription', 'no', undefined, 0), { type: 'error', code: 'unknown_subscription', message: 'no', id: 0 }, 'error id only');
  check(pong(), { type: 'pong' }, 'pong');
  check(pong('p'), { type: 'pong', ref: 'p' }, 'pong ref');
  check(pong(0), { type: 'pong', ref: 0 }, 'pong ref 0');
  check(pong(1.5), { type: 'pong', ref: 1.5 }, 'pong float ref');
  check(progress('0/1520407:2147483647'), { type: 'progress', pos: '0/1520407:2147483647' }, 'progress');
  check(resync('s1', 'position_outside_window'), { type: 'resync', sub: 's1', reason: 'position_outside_window' }, 'resync');
  check(resync(2, 'slot_recreated', 'q'), { type: 'resync', sub: 2, reason: 'slot_recreated', ref: 'q' }, 'resync ref');
  check(joined('room:1'), { type: 'joined', channel: 'room:1' }, 'joined');
  check(joined('room:1', 1), { type: 'joined', channel: 'room:1', ref: 1 }, 'joined ref');
  check(left('room "2"'), { type: 'left', channel: 'room "2"' }, 'left');
  check(left('c', 'l'), { type: 'left', channel: 'c', ref: 'l' }, 'left ref');
  const b = parse({ type: 'broadcast', channel: 'c', event: 'typing', payload: { who: 'ann' } });
  check(broadcastMsg('c', 'typing', (b as { payloadJson: string }).payloadJson), { type: 'broadcast', channel: 'c', event: 'typing', payload: { who: 'ann' } }, 'broadcast');
  check(presenceState('c', { s1: [{ online: true }] }), { type: 'presence_state', channel: 'c', state: { s1: [{ online: true }] } }, 'presence_state');
  check(presenceDiff('c', { s1: [{}] }, {}), { type: 'presence_diff', channel: 'c', joins: { s1: [{}] }, leaves: {} }, 'presence_diff');

  // Strings are escaped; ids keep their JSON type.
  const nasty = 'a"b\\c\u2028\u0000</script>';
  t.equal(JSON.parse(subscribed(nasty, '0/1:0')).id, nasty);
  t.equal(JSON.parse(welcome(nasty)).session, nasty);
  t.equal(JSON.parse(unsubscribed('1')).id, '1');
  t.equal(JSON.parse(unsubscribed(1)).id, 1);
  t.equal(JSON.parse(unsubscribed(2 ** 53 - 1)).id, 2 ** 53 - 1);
});

t.test('changePrefix: callers append the rest', async (t) => {
  t.equal(changePrefix('s1'), '{"type":"change","sub":"s1"');
  t.equal(changePrefix(42), '{"type":"change","sub":42');
  const line = changePrefix('a"b') + ',"pos":"0/16B3748:0","commit_time":"2024-01-01T00:00:00.000000Z","op":"insert","table":"public.todos","new":{"id":1}}';
  const msg = JSON.parse(line);
  t.same(msg, {
    type: 'change',
    sub: 'a"b',
    pos: '0/16B3748:0',
    commit_time: '2024-01-01T00:00:00.000000Z',
    op: 'insert',
    table: 'public.todos',
    new: { id: 1 },
  });
});

t.test('parsed ids round-trip through the builders', async (t) => {
  for (const id of ['s1', 'x'.repeat(128), 0, -7, 2 ** 53 - 1, 'ünï🙂']) {
    const m = parse({ type: 'unsubscribe', id, ref: id }) as { id: string | number; ref: string | number };
    t.same(JSON.parse(unsubscribed(m.id, m.ref)), { type: 'unsubscribed', id, ref: id });
    t.equal(JSON.parse(changePrefix(m.id) + '}').sub, id);
  }
});
