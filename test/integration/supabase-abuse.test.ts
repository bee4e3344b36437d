// The Supabase endpoint under bad input, with raw Phoenix frames: malformed and oversized frames,
// unknown events and topics, joins beyond the bounds, binary payloads, presence keys used to pose
// as someone else, and floods. Each is answered (when the frame names a push) or dropped, and the
// connection and the daemon carry on.

import t from 'tap';
import { SERVER_DEFAULTS, SUPABASE } from '../../src/constants.js';
import { startTestDaemon } from '../helpers/daemon.js';
import { hsToken } from '../helpers/tokens.js';
import { RawPhoenix } from '../helpers/supabase.js';

const { daemon, as } = await startTestDaemon(
  t,
  `create table messages (id bigserial primary key, room_id int not null, body text);
   select walcast.enable('messages');
   insert into walcast.casbin_rule (ptype, v0, v1, v2, v3, v4) values
     ('p', '*', 'table', 'public.messages', 'read', 'true'),
     ('p', '*', 'channel', 'room:*', 'join', 'true'),
     ('p', '*', 'channel', 'room:*', 'broadcast', 'true'),
     ('p', '*', 'channel', 'room:*', 'presence', 'true');`,
);


const token = await hsToken({ sub: 'ann' });
const joinPayload = (extra: Record<string, unknown> = {}) => ({ config: { broadcast: { ack: true, self: false }, presence: { key: '' }, postgres_changes: [], ...extra }, access_token: token });

t.test('malformed, unknown and misaddressed frames are answered or dropped; the connection goes on', async (t) => {
  const c = await RawPhoenix.open(t, daemon.port, token);
  c.ws.send('not json');
  c.ws.send('{"topic":"realtime:x"}');
  c.ws.send('[1,2,3]');
  c.ws.send(Buffer.from([3, 0, 0, 200, 1, 0, 1]), { binary: true }); // lengths past the frame's end
  c.ws.send(Buffer.from([9, 1, 2, 3]), { binary: true }); // an unknown kind
  t.ok(await c.alive(), 'still answering after garbage');
  t.match(await c.reply(c.push('realtime:room:1', 'broadcast', { type: 'broadcast', event: 'x' })), { status: 'error', response: { reason: 'unmatched topic' } });
  t.match(await c.reply(c.push('phoenix', 'nope', {})), { status: 'error', response: { reason: /unknown event/ } });
  t.match(await c.reply(c.push('room:1', 'phx_join', joinPayload())), { status: 'error', response: { reason: /topics are "realtime:<channel>"/ } });
  t.match(await c.reply(c.push(`realtime:${'x'.repeat(300)}`, 'phx_join', joinPayload())), { status: 'error', response: { reason: /channel/ } });
  t.match(await c.reply(c.push('realtime:room:1', 'phx_join', { config: 'no' })), { status: 'error', response: { reason: /config must be an object/ } });
  for (const [bad, reason] of [
    ['x', /must be an array/],
    [[{ event: 'TRUNCATE', schema: 'public', table: 'messages' }], /event must be/],
    [[{ event: '*', schema: '*' }], /schema "\*" is not supported/],
    [[{ event: '*', schema: 'public', table: 'messages', filter: 'room_id=ilike.x' }], /ilike/],
    [[{ event: '*', schema: 'public', table: 'messages', filter: 7 }], /filter must be a string/],
  ] as const) {
    t.match(await c.reply(c.push('realtime:room:1', 'phx_join', joinPayload({ postgres_changes: bad }))), { status: 'error', response: { reason } }, String(reason));
  }
  const joinRef = c.push('realtime:room:1', 'phx_join', joinPayload());
  t.match(await c.reply(joinRef), { status: 'ok' });
  t.match(await c.reply(c.push('realtime:room:1', 'whatever', {}, joinRef)), { status: 'error', response: { reason: /unknown event/ } });
  t.match(await c.reply(c.push('realtime:room:1', 'presence', { type: 'presence', event: 'dance' }, joinRef)), { status: 'error', response: { reason: /track/ } });
  let deep: unknown = 1;
  for (let i = 0; i < 150; i++) deep = [deep];
  t.match(await c.reply(c.push('realtime:room:1', 'broadcast', { type: 'broadcast', event: 'deep', payload: deep }, joinRef)), { status: 'error', response: { reason: /deep/ } });
  t.match(await c.reply(c.push('realtime:room:1', 'broadcast', { type: 'broadcast', event: 7 }, joinRef)), { status: 'error' }, 'event not a string');
  t.ok(await c.alive());
  t.equal(c.closed, null, 'never closed');
});

t.test('oversized frames and binary broadcast payloads', async (t) => {
  const c = await RawPhoenix.open(t, daemon.port, token);
  const joinRef = c.push('realtime:room:2', 'phx_join', joinPayload());
  await c.reply(joinRef);
  c.ws.send(JSON.stringify([joinRef, '99', 'realtime:room:2', 'broadcast', { type: 'broadcast', event: 'big', payload: 'x'.repeat(70_000) }]));
  t.ok(await c.alive(), 'a frame past the message limit is refused unread; the connection goes on');
  t.notOk(c.frames.some((f) => f[1] === '99'), 'no reply: its ref could not be read');
  // A kind 3 push (realtime-js's binary broadcast) with a binary payload: walcast broadcasts JSON.
  const topic = Buffer.from('realtime:room:2');
  const event = Buffer.from('blob');
  const ref = Buffer.from('77');
  const header = Buffer.from([3, Buffer.byteLength(joinRef), ref.length, topic.length, event.length, 0, 0]);
  c.ws.send(Buffer.concat([header, Buffer.from(joinRef), ref, topic, event, Buffer.from([1, 2, 3])]), { binary: true });
  t.match(await c.reply('77'), { status: 'error', response: { reason: /binary broadcast payloads are not supported/ } });
});

t.test('bounds: channels per connection, bindings per channel, presence keys, frames held while joining', async (t) => {
  const c = await RawPhoenix.open(t, daemon.port, token);
  for (let i = 0; i < SUPABASE.maxTopics; i++) c.push(`realtime:room:t${i}`, 'phx_join', joinPayload());
  await c.next((f) => f[2] === `realtime:room:t${SUPABASE.maxTopics - 1}` && f[3] === 'phx_reply');
  t.match(await c.reply(c.push('realtime:room:one-more', 'phx_join', joinPayload())), { status: 'error', response: { reason: new RegExp(`at most ${SUPABASE.maxTopics} channels`) } });
  t.match(await c.reply(c.push('realtime:room:t0', 'phx_join', joinPayload())), { status: 'ok' }, 'joining a topic again replaces it (not one more)');

  const d = await RawPhoenix.open(t, daemon.port, token);
  const many = Array.from({ length: SERVER_DEFAULTS.maxSubscriptionsPerSocket + 1 }, (_, i) => ({ event: '*', schema: 'public', table: 'messages', filter: `id=eq.${i}` }));
  t.match(await d.reply(d.push('realtime:room:many', 'phx_join', joinPayload({ postgres_changes: many }))), { status: 'error', response: { reason: /at most/ } });
  t.match(await d.reply(d.push('realtime:room:key', 'phx_join', joinPayload({ presence: { key: 'k'.repeat(SUPABASE.maxPresenceKey + 1) } }))), { status: 'error', response: { reason: /presence.key/ } });
  t.ok(await d.alive());
});

t.test('config.presence.key is a label: walcast clients still see who tracked', async (t) => {
  const c = await RawPhoenix.open(t, daemon.port, token);
  const joinRef = c.push('realtime:room:pose', 'phx_join', joinPayload({ presence: { key: 'ben', enabled: true } }));
  t.match(await c.reply(joinRef), { status: 'ok' });
  const native = await as('ben');
  await native.request({ type: 'join', channel: 'room:pose' });
  t.match(await c.reply(c.push('realtime:room:pose', 'presence', { type: 'presence', event: 'track', payload: { hi: 1 } }, joinRef)), { status: 'ok' });
  const diff = await native.next((m) => m.type === 'presence_diff');
  t.match(diff.joins, { ann: [{ state: { hi: 1 }, label: 'ben' }] }, "filed under ann's id, labelled ben");
  t.notOk((diff.joins as Record<string, unknown>).ben, 'not under ben');
});

t.test('a flood of pushes is bounded like native messages; the daemon stays up', async (t) => {
  const c = await RawPhoenix.open(t, daemon.port, token);
  const n = SERVER_DEFAULTS.maxQueuedMessages * 2;
  const frame = JSON.stringify([null, '1', 'phoenix', 'heartbeat', {}]);
  for (let i = 0; i < n; i++) c.ws.send(frame);
  await c.next(() => c.closed !== null || c.frames.length >= n, 30_000).catch(() => null);
  t.ok(c.closed === null ? c.frames.length >= n : c.closed.code === 1013, `all ${n} answered, or closed with 1013 (got ${c.closed?.code ?? c.frames.length})`);
  const d = await RawPhoenix.open(t, daemon.port, token);
  t.ok(await d.alive(), 'another connection is served');
});
