// The Supabase Realtime endpoint (issue 15, docs/SUPABASE.md) with Supabase's own client,
// @supabase/realtime-js, unmodified: postgres_changes under row policies with both serializers,
// a write right after SUBSCRIBED, leaves as deletes, broadcast with self/ack, presence with
// config.presence.key, non-members and forged keys refused, anonymous keys, token refresh and
// user switch, heartbeats.

import t from 'tap';
import WebSocket from 'ws';
import type { RealtimePostgresChangesPayload } from '@supabase/realtime-js';
import { createClient } from '@supabase/supabase-js';
import { query } from '../helpers/capture.js';
import { startTestDaemon } from '../helpers/daemon.js';
import { Inbox, subscribed, supabaseClient } from '../helpers/supabase.js';
import { hsToken } from '../helpers/tokens.js';

type Row = Record<string, unknown>;
type Payload = RealtimePostgresChangesPayload<Row>;

const { url, daemon, applied } = await startTestDaemon(
  t,
  `create table room_members (user_id text, room_id int, primary key (user_id, room_id));
   create table messages (id bigserial primary key, room_id int not null, body text, meta jsonb, urgent bool not null default false,
                          at timestamptz not null default now(), tags text[], big numeric);
   alter table messages replica identity full;
   create table notes (id bigserial primary key, body text);
   create table secrets (id bigserial primary key, body text);
   select walcast.enable('room_members'), walcast.enable('messages'), walcast.enable('notes'), walcast.enable('secrets');
   insert into room_members values ('ann', 1), ('ben', 1), ('ann', 3), ('cat', 2);
   insert into walcast.casbin_rule (ptype, v0, v1, v2, v3, v4) values
     ('p', '*', 'table', 'public.messages', 'read', 'g2(r.sub.id, "room:" + r.obj.row.room_id)'),
     ('p', '*', 'table', 'public.notes', 'read', 'r.sub.role == "anon"'),
     ('p', '*', 'channel', 'lobby', 'join', 'r.sub.role == "anon"'),
     ('p', '*', 'table', 'public.secrets', 'read', 'r.sub.id == "ann"'),
     ('p', '*', 'channel', 'room:*', 'join', 'g2(r.sub.id, r.obj.name)'),
     ('p', '*', 'channel', 'room:*', 'broadcast', 'g2(r.sub.id, r.obj.name)'),
     ('p', '*', 'channel', 'room:*', 'presence', 'g2(r.sub.id, r.obj.name)');`,
  { relation: ['public.room_members {user_id} room:{room_id}'] },
);
const port = daemon.port;
const anon = await hsToken({ role: 'anon' });
const as = async (user: string, vsn: '1.0.0' | '2.0.0' = '2.0.0') => supabaseClient(t, port, { apikey: anon, token: await hsToken({ sub: user }), vsn });

for (const vsn of ['1.0.0', '2.0.0'] as const) {
  t.test(`postgres_changes (vsn ${vsn}): shapes, typed values, filters and row policies`, async (t) => {
    const ann = await as('ann', vsn);
    const filtered = new Inbox<Payload>();
    const inserts = new Inbox<Payload>();
    const ch = ann
      .channel(`room:1:${vsn}`)
      .on('postgres_changes', { event: '*', schema: 'public', table: 'messages', filter: 'room_id=eq.1' }, filtered.push)
      .on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'messages' }, inserts.push);
    t.match(await subscribed(ch), { status: 'SUBSCRIBED' });
    const tag = `v${vsn}`;
    await query(url, `insert into messages (room_id, body) values (2, $1)`, [`${tag} room 2: not ann's`]);
    await query(url, `insert into messages (room_id, body) values (3, $1)`, [`${tag} room 3: outside the filter`]);
    const [{ id }] = await query<{ id: string }>(url, `insert into messages (room_id, body, meta, urgent, tags, big) values (1, $1, '{"a":[1,2]}', true, '{x,y}', 12.50) returning id`, [`${tag} hello`]);
    await query(url, `update messages set body = $1 where id = $2`, [`${tag} edited`, id]);
    await query(url, `delete from messages where id = $1`, [id]);

    const ins = await filtered.find((p) => p.eventType === 'INSERT');
    t.match(ins, { schema: 'public', table: 'messages', eventType: 'INSERT', errors: null, old: {} });
    const row = ins.new as Row;
    t.equal(row.id, Number(id), 'int8 id as a number');
    t.same(row.meta, { a: [1, 2] }, 'jsonb as an object');
    t.equal(row.urgent, true, 'bool as a boolean');
    t.same(row.tags, ['x', 'y'], 'text[] as an array');
    t.equal(row.big, 12.5, 'numeric as a number (realtime-js converts it)');
    t.match(row.at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d/, 'timestamptz as an ISO string');
    t.match((ins as { commit_timestamp: string }).commit_timestamp, /^\d{4}-\d\d-\d\dT.*Z$/);
    const upd = await filtered.find((p) => p.eventType === 'UPDATE');
    t.match(upd, { new: { id: Number(id), body: `${tag} edited` }, old: { id: Number(id), body: `${tag} hello` } }, 'UPDATE with old (replica identity full)');
    const del = await filtered.find((p) => p.eventType === 'DELETE');
    t.match(del, { new: {}, old: { id: Number(id), body: `${tag} edited` } });
    t.equal(filtered.items.length, 3, 'the filtered binding: its three changes, nothing of rooms 2 and 3');

    await inserts.find((p) => (p.new as Row).body === `${tag} hello`);
    t.ok(inserts.items.some((p) => (p.new as Row).body === `${tag} room 3: outside the filter`), 'the unfiltered INSERT binding gets room 3 (ann is a member)');
    t.notOk(inserts.items.some((p) => (p.new as Row).room_id === 2), "never a row of room 2 (another room's)");
    t.ok(inserts.items.every((p) => p.eventType === 'INSERT'), 'an INSERT binding gets inserts only');
  });
}

t.test('a write right after SUBSCRIBED is never missed', async (t) => {
  const ben = await as('ben');
  for (let i = 0; i < 15; i++) {
    const got = new Inbox<Payload>();
    const ch = ben.channel(`race:${i}`).on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'messages', filter: `body=eq.race ${i}` }, got.push);
    let write: Promise<unknown> = Promise.resolve();
    await subscribed(ch, (s) => {
      if (s === 'SUBSCRIBED') write = query(url, `insert into messages (room_id, body) values (1, $1)`, [`race ${i}`]);
    });
    await write;
    await got.find(() => true, 10_000, `the row written right after SUBSCRIBED (${i})`);
    await ben.removeChannel(ch);
  }
  t.pass('15 of 15 arrived');
});

t.test('an update that takes a row out of view is a DELETE of the row as last seen', async (t) => {
  const ann = await as('ann');
  const got = new Inbox<Payload>();
  const ch = ann.channel('room:1:leave').on('postgres_changes', { event: '*', schema: 'public', table: 'messages' }, got.push);
  t.match(await subscribed(ch), { status: 'SUBSCRIBED' });
  const [{ id }] = await query<{ id: string }>(url, `insert into messages (room_id, body) values (1, 'moving') returning id`);
  await query(url, `update messages set room_id = 2, body = 'moved away' where id = $1`, [id]);
  const del = await got.find((p) => p.eventType === 'DELETE');
  t.match(del.old, { id: Number(id), room_id: 1, body: 'moving' }, 'the old row, never the new one ann may not read');
  t.notOk(JSON.stringify(got.items).includes('moved away'));
});

t.test('a join that cannot be served is refused with the reason, not half-subscribed', async (t) => {
  const ann = await as('ann');
  const cases: [string, Record<string, string>, RegExp][] = [
    ['unknown table', { table: 'nope' }, /public\.nope does not exist/],
    ['operator walcast has not', { table: 'messages', filter: 'body=like.%a%' }, /like/],
    ['column not in the table', { table: 'messages', filter: 'nope=eq.1' }, /nope/],
    ['a table no policy lets ann read', { table: 'notes' }, /no policy allows/],
  ];
  for (const [what, binding, reason] of cases) {
    const ch = ann.channel(`bad:${what}`).on('postgres_changes', { event: '*', schema: 'public', ...binding } as never, () => {});
    const s = await subscribed(ch);
    t.equal(s.status, 'CHANNEL_ERROR', what);
    t.match(s.err?.message, reason, what);
    await ann.removeChannel(ch);
  }
});

t.test('a whole schema (no table): the tables the user may read', async (t) => {
  const ben = await as('ben');
  const got = new Inbox<Payload>();
  const ch = ben.channel('everything').on('postgres_changes', { event: 'INSERT', schema: 'public' }, got.push);
  t.match(await subscribed(ch), { status: 'SUBSCRIBED' });
  await query(url, `insert into secrets (body) values ('hidden'); insert into messages (room_id, body) values (1, 'schema-wide')`);
  await got.find((p) => (p.new as Row).body === 'schema-wide');
  t.notOk(got.items.some((p) => p.table === 'secrets'), 'secrets (no policy) left out');
});

t.test('broadcast: self and ack; a non-member refused', async (t) => {
  const ann = await as('ann');
  const ben = await as('ben');
  const cat = await as('cat');
  const config = { config: { broadcast: { self: true, ack: true } } };
  const annGot = new Inbox<unknown>();
  const benGot = new Inbox<unknown>();
  const a = ann.channel('room:1', config).on('broadcast', { event: 'typing' }, annGot.push);
  const b = ben.channel('room:1').on('broadcast', { event: 'typing' }, benGot.push);
  t.match(await subscribed(a), { status: 'SUBSCRIBED' });
  t.match(await subscribed(b), { status: 'SUBSCRIBED' });
  t.equal(await a.send({ type: 'broadcast', event: 'typing', payload: { who: 'ann' } }), 'ok', 'ack: the server answered');
  t.match(await benGot.find(() => true), { type: 'broadcast', event: 'typing', payload: { who: 'ann' } });
  t.match(await annGot.find(() => true), { event: 'typing', payload: { who: 'ann' } }, 'self: the sender gets it too');
  t.equal(await b.send({ type: 'broadcast', event: 'typing', payload: { who: 'ben' } }), 'ok', 'without ack, resolved at once');
  await annGot.find((m) => (m as { payload: { who: string } }).payload.who === 'ben');
  t.equal(benGot.items.length, 1, 'ben (self: false) never got his own');

  const c = cat.channel('room:1', config).on('broadcast', { event: 'typing' }, () => {});
  const s = await subscribed(c);
  t.equal(s.status, 'CHANNEL_ERROR', 'cat is no member of room 1: the join is refused');
  t.match(s.err?.message, /no policy allows "cat" to join room:1/);
});

t.test('presence: join and leave, under config.presence.key', async (t) => {
  const ann = await as('ann');
  const ben = await as('ben');
  const events = new Inbox<{ event: string; key: string; newPresences?: unknown[]; leftPresences?: unknown[] }>();
  const b = ben.channel('room:1:presence').on('presence', { event: 'join' }, events.push as never).on('presence', { event: 'leave' }, events.push as never);
  await applied(`insert into walcast.casbin_rule (ptype, v0, v1, v2, v3, v4) values ('p', '*', 'channel', 'room:1:presence', 'join', 'true'), ('p', '*', 'channel', 'room:1:presence', 'presence', 'true')`);
  t.match(await subscribed(b), { status: 'SUBSCRIBED' });
  const a = ann.channel('room:1:presence', { config: { presence: { key: 'ann-tab-1' } } });
  t.match(await subscribed(a), { status: 'SUBSCRIBED' });
  t.equal(await a.track({ online_at: 'now', mood: 'fine' }), 'ok');
  const join = await events.find((e) => e.event === 'join');
  t.match(join, { key: 'ann-tab-1', newPresences: [{ online_at: 'now', mood: 'fine' }] });
  t.match(b.presenceState()['ann-tab-1'], [{ mood: 'fine' }], 'in presenceState under the chosen key');
  t.equal(await a.track({ online_at: 'now', mood: 'great' }), 'ok', 'tracked again: replaced');
  await events.find((e) => e.event === 'join' && JSON.stringify(e.newPresences).includes('great'));
  await t.resolves(async () => {
    for (let i = 0; i < 50 && (b.presenceState()['ann-tab-1'] ?? []).length !== 1; i++) await new Promise((r) => setTimeout(r, 20));
  });
  t.match(b.presenceState()['ann-tab-1'], [{ mood: 'great' }], 'one presence, the new one');
  const leaves = events.items.filter((e) => e.event === 'leave').length;
  t.equal(await a.untrack(), 'ok');
  await events.find((e) => e.event === 'leave' && e.key === 'ann-tab-1' && events.items.filter((x) => x.event === 'leave').length > leaves);
  t.same(b.presenceState()['ann-tab-1'] ?? [], [], 'gone after untrack');
});

t.test('apikey: forged or missing is a 401 on the upgrade; an anon key reads what policies let role anon read', async (t) => {
  const status = (apikey: string, vsn = '2.0.0') =>
    new Promise<number>((resolve) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/realtime/v1/websocket?apikey=${encodeURIComponent(apikey)}&vsn=${vsn}`);
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('open', () => {
        ws.close();
        resolve(101);
      });
      ws.on('error', () => {});
    });
  t.equal(await status(await hsToken({ role: 'anon' }, { secret: 'another-secret-of-enough-length-0123456789' })), 401, 'signed with another key');
  t.equal(await status(''), 401, 'no apikey');
  t.equal(await status('not.a.jwt'), 401, 'garbage');
  t.equal(await status(await hsToken({ role: 'anon' }, { exp: Math.floor(Date.now() / 1000) - 60 })), 401, 'expired');
  t.equal(await status(await hsToken({ iss: 'x' })), 401, 'neither sub nor role');
  t.equal(await status(anon, '3.0.0'), 400, 'an unknown serializer version');
  t.equal(await status(anon), 101, 'the anon key');

  const visitor = await supabaseClient(t, port, { apikey: anon });
  const notes = new Inbox<Payload>();
  const ch = visitor.channel('lobby').on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'notes' }, notes.push);
  t.match(await subscribed(ch), { status: 'SUBSCRIBED' }, 'an anonymous client (role anon) may read notes and join the lobby');
  await query(url, `insert into notes (body) values ('for everyone')`);
  t.match((await notes.find(() => true)).new, { body: 'for everyone' });
  const denied = await subscribed(visitor.channel('lobby:2').on('postgres_changes', { event: '*', schema: 'public', table: 'secrets' }, () => {}));
  t.equal(denied.status, 'CHANNEL_ERROR', 'anonymous: no policy for secrets');
});

t.test('access_token: an anonymous client signs in and switches users, row by row; a bad token is refused', async (t) => {
  const visitor = await supabaseClient(t, port, { apikey: anon });
  const room1 = new Inbox<Payload>();
  const room2 = new Inbox<Payload>();
  const ch = visitor
    .channel('signin')
    .on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'messages', filter: 'room_id=eq.1' }, room1.push)
    .on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'messages', filter: 'room_id=eq.2' }, room2.push);
  t.match(await subscribed(ch), { status: 'SUBSCRIBED' }, 'anonymous: subscribed, rows judged one by one');
  // Rows are judged as whoever the connection is when they are dispatched. The marker (a note,
  // which anonymous clients may read, committed with the row) says the row was dispatched; a
  // heartbeat answered after setAuth says the new token was applied (pushes are read in order).
  const marker = new Inbox<Payload>();
  t.match(await subscribed(visitor.channel('signin:marker').on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'notes' }, marker.push)), { status: 'SUBSCRIBED' });
  await query(url, `begin; insert into messages (room_id, body) values (1, 'anon-1'); insert into notes (body) values ('anon-1 sent'); commit;`);
  await marker.find((p) => (p.new as Row).body === 'anon-1 sent');
  const applied = async () => {
    const beats = new Inbox<string>();
    visitor.onHeartbeat((s) => beats.push(s));
    await visitor.sendHeartbeat();
    await beats.find((s) => s === 'ok', 10_000, 'a heartbeat answered');
  };
  await visitor.setAuth(await hsToken({ sub: 'ann' }));
  await applied();
  await query(url, `insert into messages (room_id, body) values (1, 'ann-1')`);
  await room1.find((p) => (p.new as Row).body === 'ann-1', 10_000, 'a row of room 1 once signed in as ann');
  t.notOk(room1.items.some((p) => (p.new as Row).body === 'anon-1'), 'nothing of room 1 while anonymous');

  await visitor.setAuth(await hsToken({ sub: 'cat' }));
  await applied();
  await query(url, `insert into messages (room_id, body) values (1, 'cat-1'); insert into messages (room_id, body) values (2, 'cat-2')`);
  await room2.find((p) => (p.new as Row).body === 'cat-2', 10_000, 'a row of room 2 once cat');
  t.notOk(room1.items.some((p) => (p.new as Row).body === 'cat-1'), 'cat never gets a row of room 1 (written before his own)');

  // A token for a user who may not read a table at all ends that subscription: the channel errors
  // and its rejoin is refused.
  const ann = await as('ann');
  const statuses = new Inbox<string>();
  const secret = ann.channel('secret').on('postgres_changes', { event: '*', schema: 'public', table: 'secrets' }, () => {});
  secret.subscribe((s) => statuses.push(s));
  await statuses.find((s) => s === 'SUBSCRIBED');
  await ann.setAuth(await hsToken({ sub: 'ben' }));
  await statuses.find((s) => s === 'CHANNEL_ERROR', 10_000, 'the secrets channel errored for ben');

  const forged = await supabaseClient(t, port, { apikey: anon, token: await hsToken({ sub: 'ann' }, { secret: 'another-secret-of-enough-length-0123456789' }) });
  const s = await subscribed(forged.channel('room:1').on('postgres_changes', { event: '*', schema: 'public', table: 'messages' }, () => {}));
  t.equal(s.status, 'CHANNEL_ERROR');
  t.match(s.err?.message, /signature/, 'the join is refused with the reason');
});

t.test('heartbeats are answered', async (t) => {
  const c = await supabaseClient(t, port, { apikey: anon, vsn: '1.0.0' });
  const statuses = new Inbox<string>();
  c.onHeartbeat((s) => statuses.push(s));
  c.connect();
  await statuses.find((s) => s === 'ok', 15_000, 'a heartbeat answered');
  t.pass('heartbeat ok');
  const status = (await (await fetch(`http://127.0.0.1:${port}/status`)).json()) as { supabase: { connections: number; channels: number }; clients: number };
  t.ok(status.supabase.connections >= 1, `/status counts the endpoint's connections (${status.supabase.connections})`);
  t.ok(status.clients >= status.supabase.connections, 'among the clients');
  t.match(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text(), /^walcast_supabase_clients \d+$/m);
});

t.test('supabase-js itself, its URL pointed at walcast (realtime only), with the accessToken option', async (t) => {
  const supabase = createClient(`http://127.0.0.1:${port}`, anon, {
    accessToken: async () => hsToken({ sub: 'ben' }),
    realtime: { transport: WebSocket as never },
  });
  t.teardown(() => supabase.removeAllChannels());
  // The token is fetched asynchronously: a join sent before it is known is anonymous (then
  // switched to ben when it arrives), as with Supabase. Waiting for it makes the join ben's.
  await supabase.realtime.setAuth();
  const got = new Inbox<Payload>();
  const ch = supabase.channel('room:1:supabase-js').on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'messages', filter: 'room_id=eq.1' }, got.push);
  t.match(await subscribed(ch), { status: 'SUBSCRIBED' });
  await query(url, `insert into messages (room_id, body) values (2, 'not for ben'), (1, 'via supabase-js')`);
  t.match((await got.find(() => true)).new, { room_id: 1, body: 'via supabase-js' });
  t.equal(got.items.length, 1);
});
