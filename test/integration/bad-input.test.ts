// Bad client input against a running daemon: every kind of malformed or invalid message is
// answered with its error code (echoing `ref` where the client sent one usable), the connection
// stays open where the protocol says so, and a bystander client keeps receiving rows throughout.

import t, { type Test } from 'tap';
import { resolveServeConfig } from '../../src/config.js';
import { startDaemon } from '../../src/daemon.js';
import { silentLogger } from '../../src/log.js';
import { migrate } from '../../src/sql/migrate.js';
import { query, sleep } from '../helpers/capture.js';
import { withPostgres } from '../helpers/pg.js';
import { connectWs, WsClient, type Msg } from '../helpers/ws.js';

const db = await withPostgres(t);
await migrate(db.url);
const url = db.url;
t.teardown(() => {
  if (!t.passing()) t.comment(db.logTail(30));
});

for (const [name, cols] of [
  ['bi', 'id bigserial primary key, i int, ts timestamptz, v text'],
  ['watch', 'id bigserial primary key, v text'],
]) {
  await query(url, `create table ${name} (${cols})`);
  await query(url, `select walcast.enable('${name}')`);
}
const daemon = await startDaemon(resolveServeConfig({ db: url, port: '0', auth: false }, {}), silentLogger);
t.teardown(() => daemon.stop());
const wsUrl = `ws://127.0.0.1:${daemon.port}/ws`;

// The bystander: subscribed before any bad input, checked at the end.
const bystander = await WsClient.connect(wsUrl);
t.teardown(() => bystander.close());
await bystander.subscribe({ id: 'w', table: 'watch' });
await query(url, "insert into watch (v) values ('before')");
await bystander.waitChanges('w', 1);

const MAX_MESSAGE = 64 * 1024;

/** The next error message (not yet taken). */
const nextError = (c: WsClient, timeoutMs = 5_000) => c.next((m) => m.type === 'error', timeoutMs, 'an error');

/** Sends a raw frame and returns the error it gets. */
async function errorFor(c: WsClient, frame: string | Buffer, opts?: { binary?: boolean }): Promise<Msg> {
  c.sendRaw(frame, opts);
  return nextError(c);
}

/** The connection still answers a ping. */
async function stillOpen(t: Test, c: WsClient, what: string): Promise<void> {
  const ref = WsClient.ref('alive');
  c.send({ type: 'ping', ref });
  const pong = await c.next((m) => m.type === 'pong' && m.ref === ref).catch((err: Error) => err);
  t.ok(!(pong instanceof Error) && c.isOpen, `${what}: the connection stays open (ping answered)`);
}

t.test('frames that cannot be read: no ref, connection stays open', async (t) => {
  const c = await connectWs(t, wsUrl);
  const cases: Array<[string, string | Buffer, { binary?: boolean } | undefined, RegExp]> = [
    ['malformed JSON', '{"type":"ping", "ref": 1', undefined, /malformed JSON/],
    ['not JSON at all', 'hello', undefined, /malformed JSON/],
    ['an array', '[{"type":"ping"}]', undefined, /JSON object/],
    ['null', 'null', undefined, /JSON object/],
    ['a number', '42', undefined, /JSON object/],
    ['a string', '"ping"', undefined, /JSON object/],
    ['an empty frame', '', undefined, /malformed JSON/],
    ['a binary frame', Buffer.from(JSON.stringify({ type: 'ping', ref: 'bin' })), { binary: true }, /binary/],
  ];
  for (const [what, frame, opts, message] of cases) {
    const ws = c.ws;
    let err: Msg | Error;
    try {
      err = await errorFor(c, frame, opts);
    } catch (e) {
      err = e as Error;
    }
    if (err instanceof Error) {
      t.fail(`${what}: no error reply (${err.message.slice(0, 200)}); close ${JSON.stringify(c.closeInfo)}`);
      continue;
    }
    t.match(err, { type: 'error', code: 'bad_request', message }, `${what}: bad_request`);
    t.notOk('ref' in err, `${what}: no ref`);
    t.equal(ws.readyState, ws.OPEN, `${what}: still open`);
  }
  await stillOpen(t, c, 'after unreadable frames');
});

t.test('invalid UTF-8 in a text frame: bad_request, connection stays open', async (t) => {
  const frames: Array<[string, Buffer]> = [
    ['bytes 0xFF 0xFE', Buffer.from([0x7b, 0x22, 0x74, 0xff, 0xfe, 0x22, 0x7d])],
    ['an encoded surrogate (CESU-8)', Buffer.from([0x22, 0xed, 0xa0, 0x80, 0x22])],
    ['a truncated sequence', Buffer.from([0x22, 0xe2, 0x82, 0x22])],
  ];
  for (const [what, bytes] of frames) {
    // A connection of its own: the WebSocket layer drops it (docs/PROTOCOL.md §2).
    const c = await connectWs(t, wsUrl);
    c.sendRaw(bytes, { binary: false });
    const info = await c.waitClose(5_000);
    t.pass(`${what}: the connection is dropped by the WebSocket layer (${info.code})`);
    t.notOk(c.messages.some((m) => m.type === 'error'), `${what}: never reached the JSON parser`);
  }
  // Whatever happens to those connections, the daemon goes on.
  const other = await connectWs(t, wsUrl);
  await stillOpen(t, other, 'a new connection after invalid UTF-8');
});

t.test('invalid messages: bad_request naming the field, ref echoed', async (t) => {
  const c = await connectWs(t, wsUrl);
  const ok = { type: 'subscribe', id: 'ok', table: 'bi' };
  const cases: Array<[string, Record<string, unknown>, RegExp, boolean?]> = [
    ['unknown type', { type: 'what' }, /unknown message type "what"/],
    ['no type', {}, /needs a "type"/],
    ['type not a string', { type: 7 }, /type must be a string/],
    ['subscribe without id', { type: 'subscribe', table: 'bi' }, /subscribe\.id/],
    ['subscribe without table', { type: 'subscribe', id: 'x' }, /subscribe\.table/, true],
    ['subscribe, empty id', { ...ok, id: '' }, /subscribe\.id/],
    ['subscribe, id an object', { ...ok, id: { a: 1 } }, /subscribe\.id/],
    ['subscribe, id a boolean', { ...ok, id: true }, /subscribe\.id/],
    ['subscribe, id a fraction', { ...ok, id: 1.5 }, /subscribe\.id/],
    ['subscribe, id beyond 2^53', { ...ok, id: 2 ** 60 }, /subscribe\.id/],
    ['subscribe, id of 129 characters', { ...ok, id: 'x'.repeat(129) }, /subscribe\.id/],
    ['subscribe, table a number', { ...ok, table: 5 }, /subscribe\.table/, true],
    ['subscribe, table with three parts', { ...ok, table: 'a.b.c' }, /subscribe\.table/, true],
    ['subscribe, table with a space', { ...ok, table: 'public. bi' }, /subscribe\.table/, true],
    ['subscribe, events not an array', { ...ok, events: 'insert' }, /subscribe\.events/, true],
    ['subscribe, events empty', { ...ok, events: [] }, /subscribe\.events/, true],
    ['subscribe, unknown event', { ...ok, events: ['insert', 'upsert'] }, /subscribe\.events/, true],
    ['subscribe, an event twice', { ...ok, events: ['insert', 'insert'] }, /more than once/, true],
    ['subscribe, filter a number', { ...ok, filter: 5 }, /subscribe\.filter/, true],
    ['subscribe, filter too long', { ...ok, filter: `v=eq.${'x'.repeat(2100)}` }, /subscribe\.filter/, true],
    ['subscribe, since a number', { ...ok, since: 5 }, /subscribe\.since/, true],
    ['subscribe, since not a position', { ...ok, since: 'yesterday' }, /subscribe\.since/, true],
    ['subscribe, since without index', { ...ok, since: '0/16B3748' }, /subscribe\.since/, true],
    ['subscribe, since with a negative index', { ...ok, since: '0/16B3748:-1' }, /subscribe\.since/, true],
    ['subscribe, since with an index too big', { ...ok, since: '0/16B3748:2147483648' }, /subscribe\.since/, true],
    ['unsubscribe without id', { type: 'unsubscribe' }, /unsubscribe\.id/],
    ['unsubscribe, id an array', { type: 'unsubscribe', id: [1] }, /unsubscribe\.id/],
    ['auth without token', { type: 'auth' }, /auth\.token/],
    ['join without channel', { type: 'join' }, /join\.channel/],
    ['broadcast without event', { type: 'broadcast', channel: 'c' }, /broadcast\.event/],
    ['presence with a string state', { type: 'presence', channel: 'c', state: 'online' }, /presence\.state/],
  ];
  let k = 0;
  for (const [what, msg, message, withId] of cases) {
    const ref = k++ % 2 === 0 ? `ref-${k}` : k;
    c.send({ ...msg, ref });
    const err = await nextError(c);
    t.match(err, { type: 'error', code: 'bad_request', message, ref }, `${what}: bad_request, ref ${JSON.stringify(ref)}`);
    if (withId) t.equal(err.id, msg.id, `${what}: carries the id`);
    else t.notOk('id' in err, `${what}: no id`);
  }

  // A ref that is not usable is not echoed, and is itself the error.
  const badRef = await errorFor(c, '{"type":"ping","ref":{"x":1}}');
  t.match(badRef, { code: 'bad_request', message: /ref must be a string or a number/ }, 'ref an object: bad_request');
  t.notOk('ref' in badRef, 'no ref echoed');
  const hugeRef = await errorFor(c, '{"type":"ping","ref":1e400}');
  t.match(hugeRef, { code: 'bad_request', message: /ref/ }, 'ref 1e400: bad_request');
  t.notOk('ref' in hugeRef, 'no ref echoed');
  const hugeId = await errorFor(c, '{"type":"subscribe","id":1e400,"table":"bi","ref":"h"}');
  t.match(hugeId, { code: 'bad_request', message: /subscribe\.id/, ref: 'h' }, 'id 1e400: bad_request');

  // null optional fields and unknown fields are fine.
  t.same((await c.request({ type: 'ping', extra: { deep: [1, 2, 3] }, other: null })).type, 'pong', 'unknown fields are ignored');
  const nulls = await c.request({ type: 'subscribe', id: 'nulls', table: 'bi', filter: null, since: null, events: null });
  t.equal(nulls.type, 'subscribed', 'null filter/since/events mean absent');
  c.send({ type: 'ping', ref: null });
  t.same(await c.next((m) => m.type === 'pong'), { type: 'pong' }, 'ref null is no ref');
  await stillOpen(t, c, 'after invalid messages');
});

t.test('subscription errors: bad_filter, unknown_table, duplicate_id, unknown_subscription, limit_exceeded', async (t) => {
  const c = await connectWs(t, wsUrl);
  const sub = async (id: string | number, table: string, extra: Record<string, unknown> = {}) => {
    const ref = WsClient.ref('s');
    c.send({ type: 'subscribe', id, table, ref, ...extra });
    return c.next((m) => m.ref === ref, 10_000, `reply to subscribe ${id}`);
  };
  const filters: Array<[string, RegExp]> = [
    ['nope=eq.1', /unknown column "nope"/],
    ['I=eq.1', /unknown column "I"/],
    ['i=like.1', /like/],
    ['i=eq', /./],
    ['i', /./],
    ['=eq.1', /./],
    ['i=eq.abc', /./],
    ['i=eq.99999999999', /./],
    ['i=in.(1,x)', /./],
    ['i=in.(1,2', /./],
    ['ts=gt.yesterday', /./],
    ['ts=eq.2024-02-30', /./],
    ['i=is.maybe', /./],
    ['i=is.true', /bool/],
    ['v=eq.a&&i=eq.1', /./],
    ['v=eq.a&', /./],
  ];
  for (const [filter, message] of filters) {
    const reply = await sub('f', 'bi', { filter });
    t.match(reply, { type: 'error', code: 'bad_filter', message, id: 'f' }, `filter ${JSON.stringify(filter)}: bad_filter with ref and id`);
  }
  t.match(await sub('u', 'no_such_table'), { type: 'error', code: 'unknown_table', id: 'u' }, 'unknown_table');
  t.match(await sub('u', 'other_schema.bi'), { type: 'error', code: 'unknown_table', id: 'u' }, 'unknown_table: wrong schema');
  t.match(await sub('u', '"BI"'), { type: 'error', code: 'unknown_table', id: 'u' }, 'unknown_table: quoted identifiers keep their case');
  await query(url, 'create table not_enabled (id int primary key)');
  await sleep(1_100); // the catalog rereads at most once a second
  t.match(await sub('u', 'not_enabled'), { type: 'error', code: 'unknown_table', id: 'u' }, 'unknown_table: a table not enabled');
  t.match(await sub('BI', 'BI'), { type: 'subscribed', id: 'BI' }, 'unquoted names fold to lower case');

  // duplicate ids, also while the first subscribe is still being handled.
  t.match(await sub('d', 'bi'), { type: 'subscribed', id: 'd' }, 'first d');
  t.match(await sub('d', 'bi'), { type: 'error', code: 'duplicate_id', id: 'd' }, 'duplicate_id');
  t.match(await sub(5, 'bi'), { type: 'subscribed', id: 5 }, 'the number 5 is another id than "5"');
  t.match(await sub('5', 'bi'), { type: 'subscribed', id: '5' }, '"5"');
  const r1 = WsClient.ref('p');
  const r2 = WsClient.ref('p');
  c.send({ type: 'subscribe', id: 'p', table: 'bi', ref: r1 });
  c.send({ type: 'subscribe', id: 'p', table: 'bi', ref: r2 });
  const [a, b] = await Promise.all([c.next((m) => m.ref === r1), c.next((m) => m.ref === r2)]);
  t.same([a.type, b.type === 'error' ? b.code : b.type].sort(), ['duplicate_id', 'subscribed'], 'two subscribes with one id in a row: one subscribed, one duplicate_id');

  // unsubscribe
  const u1 = await c.request({ type: 'unsubscribe', id: 'never' });
  t.match(u1, { type: 'error', code: 'unknown_subscription', id: 'never' }, 'unsubscribe of an unknown id: unknown_subscription');
  t.match(await c.request({ type: 'unsubscribe', id: 'd' }), { type: 'unsubscribed', id: 'd' }, 'unsubscribe d');
  t.match(await c.request({ type: 'unsubscribe', id: 'd' }), { type: 'error', code: 'unknown_subscription' }, 'twice: unknown_subscription');
  t.match(await c.request({ type: 'unsubscribe', id: '__nope', ref: 'ignored' }), { type: 'error', code: 'unknown_subscription' }, 'with ref');
  t.match(await sub('d', 'bi'), { type: 'subscribed', id: 'd' }, 'an id is free again after unsubscribed');
  t.match(await sub('f', 'bi'), { type: 'subscribed', id: 'f' }, 'an id is free again after an error for its subscribe');

  // limit_exceeded: 100 per connection, counting those in flight.
  const have = ['BI', 'd', 5, '5', 'p', 'f'].length;
  const refs: string[] = [];
  for (let i = have; i < 101; i++) {
    const ref = WsClient.ref('l');
    refs.push(ref);
    c.send({ type: 'subscribe', id: `l${i}`, table: 'bi', ref });
  }
  const replies = await Promise.all(refs.map((ref) => c.next((m) => m.ref === ref, 10_000)));
  const codes = replies.map((m) => (m.type === 'error' ? (m.code as string) : m.type));
  t.equal(codes.filter((x) => x === 'subscribed').length, 100 - have, `${100 - have} more subscribed`);
  t.same(codes.filter((x) => x !== 'subscribed'), ['limit_exceeded'], 'the 101st: limit_exceeded');
  t.match(replies[replies.length - 1], { code: 'limit_exceeded', id: 'l100' }, 'the last one, with its id');
  t.match(await sub('more', 'bi'), { code: 'limit_exceeded', id: 'more' }, 'still limited');
  t.match(await c.request({ type: 'unsubscribe', id: 'l50' }), { type: 'unsubscribed' }, 'unsubscribe one');
  t.match(await sub('more', 'bi'), { type: 'subscribed', id: 'more' }, 'then one more fits');
  await stillOpen(t, c, 'after subscription errors');
});

t.test('sizes: 64 KiB, too_large, 1009 beyond 1 MiB; deep nesting', async (t) => {
  const c = await connectWs(t, wsUrl);
  /** A ping frame of exactly n bytes. */
  const pingOf = (n: number, ref: string) => {
    const head = `{"type":"ping","ref":"${ref}","pad":"`;
    return head + 'x'.repeat(n - head.length - 2) + '"}';
  };
  c.sendRaw(pingOf(MAX_MESSAGE, 'edge'));
  t.same(await c.next((m) => m.type === 'pong' || m.type === 'error'), { type: 'pong', ref: 'edge' }, 'exactly 64 KiB: parsed');
  const big = await errorFor(c, pingOf(MAX_MESSAGE + 1, 'over'));
  t.match(big, { type: 'error', code: 'too_large' }, '64 KiB + 1: too_large');
  t.notOk('ref' in big, 'too_large carries no ref');
  const multi = await errorFor(c, `{"type":"ping","ref":"u","pad":"${'é'.repeat(MAX_MESSAGE / 2)}"}`);
  t.match(multi, { code: 'too_large' }, 'counted in UTF-8 bytes, not characters');
  const large = await errorFor(c, pingOf(512 * 1024, 'half'));
  t.match(large, { code: 'too_large' }, '512 KiB: too_large');
  await stillOpen(t, c, 'after too_large');

  // Deep nesting: the whole frame, a field nobody walks, a payload that is walked.
  const deepArray = '['.repeat(30_000) + ']'.repeat(30_000);
  t.match(await errorFor(c, deepArray), { code: 'bad_request', message: /JSON object/ }, 'an array nested 30000 deep: bad_request');
  const deepField = `{"type":"ping","ref":"deep","x":${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}}`;
  c.sendRaw(deepField);
  t.same(await c.next((m) => m.ref === 'deep'), { type: 'pong', ref: 'deep' }, 'an unknown field nested 10000 deep is ignored');
  const nested = (n: number) => '['.repeat(n) + ']'.repeat(n);
  const deepPayload = await errorFor(c, `{"type":"broadcast","channel":"c","event":"e","payload":${nested(101)},"ref":"bp"}`);
  t.match(deepPayload, { code: 'bad_request', message: /nested more than 100/, ref: 'bp' }, 'a broadcast payload nested 101 deep: bad_request');
  const deepState = await errorFor(c, `{"type":"presence","channel":"c","state":{"s":${nested(100)}},"ref":"ps"}`);
  t.match(deepState, { code: 'bad_request', message: /nested more than 100/, ref: 'ps' }, 'a presence state nested 101 deep: bad_request');
  const okPayload = await errorFor(c, `{"type":"broadcast","channel":"c","event":"e","payload":${nested(100)},"ref":"bq"}`);
  t.match(okPayload, { code: 'bad_request', message: /join c first/, ref: 'bq' }, '100 deep passes validation (then: the channel must be joined first)');
  await stillOpen(t, c, 'after deep nesting');

  // Beyond 1 MiB the WebSocket layer closes the connection.
  const huge = await connectWs(t, wsUrl);
  huge.sendRaw(pingOf(1024 * 1024 + 16, 'huge'));
  const info = await huge.waitClose(10_000);
  t.pass(`a frame over 1 MiB: the connection is closed (${info.code})`);
  t.equal(info.code, 1006, 'dropped without a close frame, as docs/PROTOCOL.md §2 says');
  t.notOk(huge.messages.some((m) => m.type === 'pong'), 'not answered');
  await stillOpen(t, c, 'another connection after the dropped one');
  const fresh = await connectWs(t, wsUrl);
  await stillOpen(t, fresh, 'a new connection after the dropped one');
});

t.test('the bystander kept receiving; the daemon still serves', async (t) => {
  await query(url, "insert into watch (v) values ('after')");
  const got = await bystander.waitChanges('w', 2);
  t.same(got.map((c) => c.new?.v), ['before', 'after'], 'the bystander got the row written after all the bad input');
  t.same(bystander.ofType('error'), [], 'and no error');
  t.equal((await fetch(`http://127.0.0.1:${daemon.port}/healthz`)).status, 200, 'healthz 200');
});
