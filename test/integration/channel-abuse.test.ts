// Channels under abuse (issue 11, items 3, 8, 10), each attack performed against a real daemon
// with lowered limits, then the guarantee asserted: a re-join after a revocation is refused
// before anything of the channel is sent; one user's many sockets cannot blow up a channel's
// presence (nor what a joiner receives); a broadcast flood is cut at the sender's budget, per
// connection and per user, and never closes a listener.

import t from 'tap';
import { query } from '../helpers/capture.js';
import { startTestDaemon } from '../helpers/daemon.js';
import { WsClient, type Msg } from '../helpers/ws.js';

const KiB = 1024;
/** Refill so slow that nothing refills while a test runs: the bursts are the whole budget. */
const SLOW = 0.01;
const limits = {
  presence: { metasPerKey: 5, bytesPerKey: 200 * KiB, metasTotal: 40, bytesTotal: 256 * KiB },
  broadcastPerConnection: { messages: { burst: 10, perSecond: SLOW }, bytes: { burst: 128 * KiB, perSecond: SLOW } },
  broadcastPerUser: { messages: { burst: 15, perSecond: SLOW }, bytes: { burst: 192 * KiB, perSecond: SLOW } },
};

const { url, daemon, as } = await startTestDaemon(
  t,
  `create table room_members (user_id text, room_id int, primary key (user_id, room_id));
   select walcast.enable('room_members');
   insert into room_members values ('ann', 1), ('ben', 1), ('dan', 1), ('cat', 5), ('ben', 5),
     ('eve', 9), ('fay', 9), ('gus', 9), ('hal', 9);
   insert into walcast.casbin_rule (ptype, v0, v1, v2, v3, v4) values
     ('p', '*', 'channel', 'room:*', 'join', 'g2(r.sub.id, r.obj.name)'),
     ('p', '*', 'channel', 'room:*', 'broadcast', 'g2(r.sub.id, r.obj.name)'),
     ('p', '*', 'channel', 'room:*', 'presence', 'g2(r.sub.id, r.obj.name)'),
     ('p', '*', 'channel', 'tmp:*', 'join', 'r.sub.id == "ann"'),
     ('p', '*', 'channel', 'tmp:*', 'presence', 'r.sub.id == "ann"');`,
  { maxBackpressure: '1MiB', relation: ['public.room_members {user_id} room:{room_id}'] },
  { channels: limits },
);
const channels = daemon.hub.channels!;

const of = (c: WsClient, type: string) => c.messages.filter((m) => m.type === type);
const join = (c: WsClient, channel: string) => c.request({ type: 'join', channel });
/** Every message sent to `c` before this call has arrived once it resolves (replies keep order). */
const barrier = (c: WsClient) => c.request({ type: 'ping' }, 30_000);

t.test('item 3: a re-join after the membership was revoked is refused before anything is sent', async (t) => {
  const cat = await as('cat');
  const ben = await as('ben');
  t.match(await join(cat, 'room:5'), { type: 'joined' });
  await join(ben, 'room:5');
  cat.send({ type: 'presence', channel: 'room:5', state: { here: true } });
  await ben.next((m) => m.type === 'presence_diff' && 'cat' in (m.joins as object));

  await query(url, "delete from room_members where user_id = 'cat' and room_id = 5");
  // Wait until the daemon has the change: a fresh connection of cat is refused.
  const probe = await as('cat');
  for (;;) {
    const r = await join(probe, 'room:5');
    if (r.type === 'error') break;
    await probe.request({ type: 'leave', channel: 'room:5' });
  }
  // Nothing of room 5 was sent since, so nothing re-checked cat's membership: the re-join must.
  const before = { joined: of(cat, 'joined').length, state: of(cat, 'presence_state').length };
  const reply = await join(cat, 'room:5');
  t.match(reply, { type: 'error', code: 'forbidden' }, 'the re-join is refused');
  await cat.next((m) => m.type === 'left' && m.channel === 'room:5' && m.ref === undefined);
  await barrier(cat);
  t.equal(of(cat, 'joined').length, before.joined, 'no joined');
  t.equal(of(cat, 'presence_state').length, before.state, 'no presence_state');
  t.match(await cat.request({ type: 'broadcast', channel: 'room:5', event: 'x' }), { code: 'bad_request' }, 'no longer a member');
  const gone = await ben.next((m) => m.type === 'presence_diff' && 'cat' in (m.leaves as object));
  t.ok(gone, "cat's presence left with it");
});

t.test('item 8: one user\'s many sockets cannot grow a channel\'s presence past its bounds', async (t) => {
  const state = { blob: 'x'.repeat(30 * KiB) };
  const eves = await Promise.all(Array.from({ length: 12 }, () => as('eve')));
  for (const c of eves) await join(c, 'room:9');
  const replies: Msg[] = [];
  for (const c of eves) {
    c.send({ type: 'presence', channel: 'room:9', state, ref: 'track' });
    replies.push(await barrier(c).then(() => c.messages.find((m) => m.ref === 'track') ?? { type: 'accepted' }));
  }
  t.same(replies.map((r) => r.type), [...Array(5).fill('accepted'), ...Array(7).fill('error')], 'five of eve\'s sockets track, the sixth on are refused');
  t.ok(replies.slice(5).every((r) => r.code === 'limit_exceeded'), 'with limit_exceeded');

  const fay = await as('fay');
  await join(fay, 'room:9');
  fay.send({ type: 'presence', channel: 'room:9', state, ref: 'track' });
  await barrier(fay);
  t.notOk(fay.messages.some((m) => m.ref === 'track'), 'another user still tracks');

  // 6 × ~30 KiB tracked; a third user fills the channel to its 256 KiB.
  const gus = await Promise.all([as('gus'), as('gus'), as('gus')]);
  const refused: unknown[] = [];
  for (const c of gus) {
    await join(c, 'room:9');
    c.send({ type: 'presence', channel: 'room:9', state, ref: 'track' });
    await barrier(c);
    refused.push(c.messages.find((m) => m.ref === 'track')?.code);
  }
  t.same(refused, [undefined, undefined, 'limit_exceeded'], 'the channel is full past 256 KiB');

  const hal = await as('hal');
  t.match(await join(hal, 'room:9'), { type: 'joined' });
  const st = await hal.next((m) => m.type === 'presence_state');
  const size = Buffer.byteLength(JSON.stringify(st));
  t.ok(size <= limits.presence.bytesTotal + 1024, `a joiner's presence_state is ${size} bytes, within 256 KiB`);
  const s = st.state as Record<string, unknown[]>;
  t.same([s.eve?.length, s.fay?.length, s.gus?.length], [5, 1, 2], 'what was tracked stays');
  await barrier(hal);
  t.ok(hal.isOpen && eves.every((c) => c.isOpen), 'nobody was closed');
});

t.test('item 8: a channel without members or presence leaves nothing behind', async (t) => {
  const base = channels.count;
  const ann = await as('ann');
  for (let i = 0; i < 150; i++) {
    t.match(await join(ann, `tmp:${i}`), { type: 'joined' });
    if (i % 10 === 0) ann.send({ type: 'presence', channel: `tmp:${i}`, state: { i } });
    if (i % 2 === 1) await ann.request({ type: 'leave', channel: `tmp:${i}` });
  }
  await barrier(ann);
  t.equal(channels.count, base + 75, 'the channels still joined exist, no others');
  await ann.close();
  await t.resolves(waitUntil(() => channels.count === base), 'all gone once the socket closed');
});

t.test('item 10: a broadcast flood is cut at the budget; a listener is never closed and gets the allowed ones', async (t) => {
  const ben = await as('ben');
  await join(ben, 'room:1');
  // The listener stops reading: whatever gets through piles up in its socket's buffer, where
  // a flood past --max-backpressure (1 MB here) would close it with 4008.
  (ben.ws as unknown as { _socket: { pause(): void } })._socket.pause();
  const dan = await as('dan');
  await join(dan, 'room:1');
  const payload = 'y'.repeat(30 * KiB);
  const N = 600;
  for (let i = 0; i < N; i++) dan.send({ type: 'broadcast', channel: 'room:1', event: 'flood', payload, ref: `b${i}` });
  await barrier(dan);
  const errors = dan.messages.filter((m) => typeof m.ref === 'string' && m.ref.startsWith('b'));
  t.ok(errors.every((e) => e.type === 'error' && e.code === 'limit_exceeded'), 'refused with limit_exceeded');
  const allowed = N - errors.length;
  t.equal(allowed, 4, `${allowed} of ${N} went through: the connection's 128 KiB of 30 KiB payloads`);
  t.ok(dan.isOpen, 'the flooder is only refused');

  (ben.ws as unknown as { _socket: { resume(): void } })._socket.resume();
  await barrier(ben);
  t.equal(ben.closeInfo, null, 'the listener was never closed');
  t.equal(of(ben, 'broadcast').filter((m) => m.event === 'flood').length, allowed, 'and received every allowed broadcast');
});

t.test('item 10: a user\'s connections share one budget; it goes with the last of them', async (t) => {
  const ben = await as('ben');
  await join(ben, 'room:1');
  const ann1 = await as('ann');
  const ann2 = await as('ann');
  const flood = async (c: WsClient, tag: string): Promise<number> => {
    await join(c, 'room:1');
    for (let i = 0; i < 30; i++) c.send({ type: 'broadcast', channel: 'room:1', event: tag, payload: i, ref: `${tag}${i}` });
    await barrier(c);
    const refused = c.messages.filter((m) => typeof m.ref === 'string' && m.ref.startsWith(tag));
    t.ok(refused.every((e) => e.code === 'limit_exceeded'), `${tag}: refused with limit_exceeded`);
    return 30 - refused.length;
  };
  const first = await flood(ann1, 'one');
  t.equal(first, 10, 'the first connection: its own burst of 10');
  const second = await flood(ann2, 'two');
  t.equal(second, 5, 'the second: what is left of the user\'s 15, not a burst of its own');
  await barrier(ben);
  t.equal(of(ben, 'broadcast').filter((m) => m.event === 'one' || m.event === 'two').length, first + second, 'the listener got all the allowed ones');

  const users = channels.budgetUsers;
  const clients = daemon.server.clients;
  await ann1.close();
  await waitUntil(() => daemon.server.clients === clients - 1);
  t.equal(channels.budgetUsers, users, 'kept while a connection of the user is open');
  await ann2.close();
  await t.resolves(waitUntil(() => channels.budgetUsers === users - 1), "dropped with the user's last connection");
});

/** Polls the daemon's state (in this process) until `cond` holds; rejects after 5 s. */
async function waitUntil(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('condition not reached');
}
