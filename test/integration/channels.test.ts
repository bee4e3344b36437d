// Channels (issue 5): broadcast and presence on real sockets, authorized by the same policies as
// rows (join, broadcast, presence), with relations mirrored from the stream; broadcast from SQL
// in commit order; bad input answered with its code while others carry on.

import t from 'tap';
import { query } from '../helpers/capture.js';
import { startTestDaemon } from '../helpers/daemon.js';
import { hsToken } from '../helpers/tokens.js';
import { WsClient, type Msg } from '../helpers/ws.js';

const { url, daemon, as, applied } = await startTestDaemon(
  t,
  `create table room_members (user_id text, room_id int, primary key (user_id, room_id));
   create table friendships (a text, b text, primary key (a, b));
   create table messages (id bigserial primary key, room_id int not null, body text);
   select walcast.enable('room_members'), walcast.enable('friendships'), walcast.enable('messages');
   insert into room_members values ('ann', 1), ('ben', 1), ('cat', 2), ('ann', 3), ('ben', 3);
   insert into friendships values ('ann', 'ben');
   insert into walcast.casbin_rule (ptype, v0, v1, v2, v3, v4) values
     ('p', '*', 'channel', 'room:*', 'join', 'g2(r.sub.id, r.obj.name)'),
     ('p', '*', 'channel', 'room:1', 'broadcast', 'g2(r.sub.id, r.obj.name)'),
     ('p', '*', 'channel', 'room:*', 'presence', 'g2(r.sub.id, r.obj.name)'),
     ('p', '*', 'table', 'public.messages', 'read', 'g2(r.sub.id, "room:" + r.obj.row.room_id)'),
     -- Online status only for friends: user:<id> may be joined by its owner and the owner's
     -- friends, and only the owner tracks presence there.
     ('p', '*', 'channel', 'user:*', 'join', 'r.obj.name == "user:" + r.sub.id || g2(r.sub.id, "friend:" + r.obj.name)'),
     ('p', '*', 'channel', 'user:*', 'presence', 'r.obj.name == "user:" + r.sub.id');`,
  {
    idleTimeout: '8s',
    relation: ['public.room_members {user_id} room:{room_id}', 'public.friendships {a} friend:user:{b}', 'public.friendships {b} friend:user:{a}'],
  },
);
const of = (c: WsClient, type: string) => c.messages.filter((m) => m.type === type);
const join = (c: WsClient, channel: string) => c.request({ type: 'join', channel });

t.test('join needs the join action; joined comes with the presence state', async (t) => {
  const ann = await as('ann');
  const cat = await as('cat');
  t.match(await join(ann, 'room:1'), { type: 'joined', channel: 'room:1' });
  t.match(await ann.next((m) => m.type === 'presence_state'), { channel: 'room:1', state: {} });
  t.match(await join(cat, 'room:1'), { type: 'error', code: 'forbidden' }, 'not a member of room 1');
  t.match(await cat.request({ type: 'broadcast', channel: 'room:1', event: 'x' }), { type: 'error', code: 'bad_request' }, 'broadcast without joining');
});

t.test('broadcast: to the other members, the sender only when it asks; the action checked; size bounded', async (t) => {
  const ann = await as('ann');
  const ben = await as('ben');
  for (const c of [ann, ben]) {
    await join(c, 'room:1');
    await join(c, 'room:3');
  }
  ann.send({ type: 'broadcast', channel: 'room:1', event: 'typing', payload: { user: 'ann' } });
  t.match(await ben.next((m) => m.type === 'broadcast'), { channel: 'room:1', event: 'typing', payload: { user: 'ann' }, from: 'ann' });
  ann.send({ type: 'broadcast', channel: 'room:1', event: 'echo', payload: 1, self: true });
  t.match(await ann.next((m) => m.type === 'broadcast'), { event: 'echo' }, 'self: true echoes back');
  await ben.next((m) => m.type === 'broadcast' && m.event === 'echo');
  t.equal(of(ann, 'broadcast').length, 1, 'ann never got her own typing event');

  t.match(await ann.request({ type: 'broadcast', channel: 'room:3', event: 'typing' }), { code: 'forbidden' }, 'joined room 3, but broadcasting there is not granted');
  t.match(await ann.request({ type: 'broadcast', channel: 'room:1', event: 'big', payload: 'x'.repeat(40_000) }), { code: 'too_large' });
  t.match(await ann.request({ type: 'broadcast', channel: 'room:1', payload: 1 }), { code: 'bad_request' }, 'no event');
  t.match(await ann.request({ type: 'broadcast', channel: 'room:1', event: 'x', self: 'yes' }), { code: 'bad_request' }, 'self not a boolean');
  ann.send({ type: 'broadcast', channel: 'room:1', event: 'still', payload: null });
  await ben.next((m) => m.type === 'broadcast' && m.event === 'still');
  t.pass('the socket carries on after each refusal');
});

t.test('walcast.broadcast() from SQL: in commit order with the rows, and only if committed', async (t) => {
  const ben = await as('ben');
  await join(ben, 'room:1');
  await ben.subscribe({ id: 'm', table: 'public.messages' });
  await query(url, "begin; insert into messages (room_id, body) values (1, 'hi'); select walcast.broadcast('room:1', 'message_sent', '{\"n\": 1}'); commit;");
  await query(url, "begin; select walcast.broadcast('room:1', 'rolled_back', null); rollback;");
  await query(url, "select walcast.broadcast('room:1', 'after', '[1,2]')");
  await ben.next((m) => m.type === 'broadcast' && m.event === 'after');
  const seq = ben.messages.filter((m) => m.type === 'change' || m.type === 'broadcast').map((m: Msg) => (m.type === 'change' ? `change:${(m.new as { body: string }).body}` : `broadcast:${m.event}:${JSON.stringify(m.payload)}`));
  t.same(seq, ['change:hi', 'broadcast:message_sent:{"n":1}', 'broadcast:after:[1,2]'], 'the row, then its broadcast; never the rolled-back one');
  t.notOk(ben.messages.some((m) => m.type === 'broadcast' && 'from' in m), 'broadcasts from SQL have no from');
  await t.rejects(query(url, "select walcast.broadcast('', 'x', null)"), /channel must be 1 to 255/, 'SQL checks its arguments');
});

t.test('presence: one key per user with a meta per socket; diffs on track, re-track, untrack and close', async (t) => {
  const ann = await as('ann');
  const ann2 = await as('ann');
  const ben = await as('ben');
  await join(ben, 'room:3');
  await join(ann, 'room:3');
  ann.send({ type: 'presence', channel: 'room:3', state: { status: 'online' } });
  const d1 = await ben.next((m) => m.type === 'presence_diff');
  t.match(d1, { channel: 'room:3', joins: { ann: [{ state: { status: 'online' } }] }, leaves: {} });
  await join(ann2, 'room:3');
  const st = await ann2.next((m) => m.type === 'presence_state');
  t.match(st.state, { ann: [{ state: { status: 'online' } }] }, 'presence_state on join holds what is tracked');
  ann2.send({ type: 'presence', channel: 'room:3', state: { status: 'away' } });
  await ben.waitFor(() => of(ben, 'presence_diff').length >= 2);
  ann.send({ type: 'presence', channel: 'room:3', state: { status: 'typing' } });
  await ben.waitFor(() => of(ben, 'presence_diff').length >= 3);
  const retrack = of(ben, 'presence_diff')[2];
  t.match(retrack, { joins: { ann: [{ state: { status: 'typing' } }] }, leaves: { ann: [{ state: { status: 'online' } }] } }, 're-tracking: the old meta leaves, the new joins');
  const metas = new Set([...of(ben, 'presence_diff').flatMap((d) => Object.values(d.joins as Record<string, { session: string }[]>).flat().map((m) => m.session))]);
  t.equal(metas.size, 2, 'two sockets, two metas under the one key');
  await ann2.close();
  const gone = await ben.next((m) => m.type === 'presence_diff' && Object.keys(m.leaves as object).length > 0 && (m.leaves as Record<string, { state: { status: string } }[]>).ann[0].state.status === 'away');
  t.same(gone.joins, {}, 'a closed socket leaves');
  ann.send({ type: 'presence', channel: 'room:3', state: null });
  const untrack = await ben.next((m) => m.type === 'presence_diff' && (m.leaves as Record<string, unknown[]>).ann?.length === 1 && Object.keys(m.joins as object).length === 0 && m !== gone);
  t.match(untrack.leaves, { ann: [{ state: { status: 'typing' } }] }, 'untrack');
});

t.test('presence floods are rate bounded per socket; others unaffected', async (t) => {
  const ann = await as('ann');
  const ben = await as('ben');
  await join(ann, 'room:1');
  await join(ben, 'room:1');
  for (let i = 0; i < 40; i++) ann.send({ type: 'presence', channel: 'room:1', state: { n: i }, ref: `p${i}` });
  // Barriers: ann's ping is answered after all 40 were handled (and refused or passed on); her
  // broadcast reaches ben after every diff they caused.
  await ann.request({ type: 'ping' });
  ann.send({ type: 'broadcast', channel: 'room:1', event: 'done' });
  await ben.next((m) => m.type === 'broadcast' && m.event === 'done');
  const refused = of(ann, 'error');
  t.ok(refused.length >= 15 && refused.every((e) => e.code === 'limit_exceeded'), `${refused.length} of 40 refused with limit_exceeded`);
  t.ok(of(ben, 'presence_diff').length >= 20 && of(ben, 'presence_diff').length <= 25, `the burst went through (${of(ben, 'presence_diff').length} diffs)`);
  ben.send({ type: 'presence', channel: 'room:1', state: { ok: true } });
  await ann.next((m) => m.type === 'presence_diff' && JSON.stringify(m.joins).includes('"ok":true'));
  t.pass('another socket tracks at once');
});

t.test('a member removed from the room stops receiving its channel at once', async (t) => {
  const ann = await as('ann');
  const cat = await as('cat');
  await applied("insert into room_members values ('cat', 1)");
  await join(cat, 'room:1');
  await join(ann, 'room:1');
  ann.send({ type: 'broadcast', channel: 'room:1', event: 'one' });
  await cat.next((m) => m.type === 'broadcast' && m.event === 'one');
  await applied("delete from room_members where user_id = 'cat' and room_id = 1");
  ann.send({ type: 'broadcast', channel: 'room:1', event: 'two' });
  const out = await cat.next((m) => m.type === 'left' && m.channel === 'room:1');
  t.ok(out, 'cat is told it left');
  t.ok(of(cat, 'error').some((e) => e.code === 'forbidden'), 'with forbidden');
  await cat.request({ type: 'ping' }); // answered after anything sent to cat before
  t.notOk(of(cat, 'broadcast').some((m) => m.event === 'two'), 'and never gets the broadcast after its removal');
});

t.test('a refreshed token whose claims no longer allow a channel leaves it', async (t) => {
  await applied("insert into walcast.casbin_rule (ptype, v0, v1, v2, v3, v4) values ('p', '*', 'channel', 'staff', 'join', 'r.sub.role == \"staff\"')");
  const c = await WsClient.connect(`ws://127.0.0.1:${daemon.port}/ws?token=${await hsToken({ sub: 'eve', role: 'staff' })}`);
  t.teardown(() => c.close());
  t.match(await join(c, 'staff'), { type: 'joined' });
  c.send({ type: 'auth', token: await hsToken({ sub: 'eve', role: 'guest' }) });
  t.match(await c.next((m) => m.type === 'left' && m.channel === 'staff'), { channel: 'staff' }, 'left');
  t.ok(of(c, 'error').some((e) => e.code === 'forbidden'), 'with forbidden');
  t.ok(c.isOpen, 'the connection stays open');
});

t.test('online status only reaches the user\'s friends (per-user channels, friendships mirrored)', async (t) => {
  const ann = await as('ann');
  const ben = await as('ben');
  const cat = await as('cat');
  t.match(await join(ann, 'user:ann'), { type: 'joined' }, 'the owner');
  t.match(await join(ben, 'user:ann'), { type: 'joined' }, 'a friend');
  t.match(await join(cat, 'user:ann'), { code: 'forbidden' }, 'not a friend');
  ann.send({ type: 'presence', channel: 'user:ann', state: { online: true } });
  t.match(await ben.next((m) => m.type === 'presence_diff'), { channel: 'user:ann', joins: { ann: [{ state: { online: true } }] } });
  t.match(await ben.request({ type: 'presence', channel: 'user:ann', state: { online: true } }), { code: 'forbidden' }, 'a friend cannot pose as the owner');
  await applied("insert into friendships values ('cat', 'ann')");
  t.match(await join(cat, 'user:ann'), { type: 'joined' }, 'a new friendship lets cat in');
  t.match(await cat.next((m) => m.type === 'presence_state'), { state: { ann: [{ state: { online: true } }] } });
});

t.test('a socket that never answers pings is closed and its presence leaves within the idle timeout', async (t) => {
  const ben = await as('ben');
  const mute = await as('ann', { autoPong: false });
  await join(ben, 'room:1');
  await join(mute, 'room:1');
  mute.send({ type: 'presence', channel: 'room:1', state: { here: true } });
  await ben.next((m) => m.type === 'presence_diff');
  const started = Date.now();
  const leave = await ben.next((m) => m.type === 'presence_diff' && Object.keys(m.leaves as object).length > 0, 25_000);
  const took = Date.now() - started;
  t.ok(leave, `the mute socket left after ${took} ms (idle timeout 8 s)`);
  t.ok(took < 20_000, 'within about twice the idle timeout');
});
