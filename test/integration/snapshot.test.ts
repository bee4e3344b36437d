// Subscribe with a snapshot (docs/PROTOCOL.md §7): rows first, filtered and authorized
// like changes and typed like `change.new`, then `subscribed`, then the changes; a transaction
// open while the snapshot is taken arrives as changes, once; order and limit; the refusals.
import t from 'tap';
import { query, sqlClient } from '../helpers/capture.js';
import { startTestDaemon } from '../helpers/daemon.js';
import type { Msg, WsClient } from '../helpers/ws.js';

const d = await startTestDaemon(
  t,
  `create table items (id bigserial primary key, room int not null, owner text, body text, n numeric, at timestamptz, tags text[], doc jsonb,
                       loud text generated always as (upper(body)) stored);
   select walcast.enable('items');
   create table room_members (user_id text, room_id int, primary key (user_id, room_id));
   select walcast.enable('room_members');
   insert into walcast.casbin_rule (ptype, v0, v1, v2, v3, v4) values
     ('p', '*', 'table', 'public.items', 'read', 'g2(r.sub.id, "room:" + r.obj.row.room)'),
     ('p', '*', 'table', 'public.items', 'read', 'r.obj.row.owner == r.sub.id');
   insert into room_members values ('alice', 1), ('alice', 2), ('bob', 2);
   insert into items (room, owner, body, n, at, tags, doc)
     select g % 3, case when g % 10 = 0 then 'carol' end, 'row ' || g, g / 4.0, '2026-01-01T00:00:00.123456Z'::timestamptz + g * interval '1 minute',
            array['a', g::text], jsonb_build_object('g', g, 'big', 12345678901234567890)
       from generate_series(1, 1200) g;`,
  { relation: ['public.room_members {user_id} room:{room_id}'] },
);

/** Sends a subscribe; collects everything of it up to `subscribed` (or an error / resync). */
async function snapshotOf(c: WsClient, msg: Record<string, unknown>): Promise<{ rows: Record<string, unknown>[]; frames: number; before: Msg[]; end: Msg }> {
  const ref = `r-${msg.id}`;
  const from = c.messages.length;
  c.send({ type: 'subscribe', ref, ...msg });
  const end = await c.next((m) => (m.type === 'subscribed' && m.id === msg.id) || (m.type === 'error' && m.ref === ref) || (m.type === 'resync' && m.sub === msg.id), 20_000, `the end of snapshot ${msg.id}`);
  const mine = c.messages.slice(from, c.messages.indexOf(end));
  const snaps = mine.filter((m) => m.type === 'snapshot' && m.sub === msg.id);
  return { rows: snaps.flatMap((m) => m.rows as Record<string, unknown>[]), frames: snaps.length, before: mine.filter((m) => m.type === 'change' && m.sub === msg.id), end };
}

const ids = (rows: Record<string, unknown>[]) => rows.map((r) => Number(r.id));

t.test('rows the subscriber may see, typed like change.new, then subscribed, then changes', async (t) => {
  const alice = await d.as('alice');
  const s = await snapshotOf(alice, { id: 'all', table: 'items', snapshot: true });
  t.equal(s.end.type, 'subscribed', 'subscribed ends the snapshot');
  // alice: rooms 1 and 2 (g % 3 in 1, 2); carol's rows of room 0 are not hers.
  const want = (await query<{ id: string }>(d.url, 'select i.id::text as id from items i where room in (1, 2) order by i.id')).map((r) => Number(r.id));
  t.same(ids(s.rows).sort((a, b) => a - b), want, 'exactly the rows of her rooms');
  t.ok(s.frames > 1, `in several frames (${s.frames})`);
  // The same row as a change would carry it.
  await query(d.url, `insert into items (room, owner, body, n, at, tags, doc) values (1, null, 'fresh', 2.5, '2026-01-01T00:00:00.123456Z', array['a','b'], '{"g": 1, "big": 12345678901234567890}')`);
  const [c] = await alice.waitChanges('all', 1);
  const row = s.rows.find((r) => Number(r.id) === 4)!;
  t.same(Object.keys(row), Object.keys(c.new!), 'the same columns, in the same order (no generated column)');
  t.equal(row.at, '2026-01-01T00:04:00.123456Z', 'timestamps as changes write them (microseconds)');
  t.same(row.tags, ['a', '4'], 'arrays decoded');
  t.equal(typeof row.id, 'number', 'int8 as a number');
  t.same((row.doc as Record<string, unknown>).g, 4, 'jsonb decoded');
  t.equal(c.new!.body, 'fresh', 'then live changes');
});

t.test('filters narrow the snapshot exactly like changes', async (t) => {
  const bob = await d.as('bob');
  const s = await snapshotOf(bob, { id: 'f', table: 'items', filter: 'room=eq.2&n=gte.100&body=neq.row 500', snapshot: true });
  const want = (await query<{ id: string }>(d.url, "select i.id::text as id from items i where room = 2 and n >= 100 and body <> 'row 500' order by i.id")).map((r) => Number(r.id));
  t.same(ids(s.rows).sort((a, b) => a - b), want, 'room 2, n >= 100, not row 500');
  const none = await snapshotOf(bob, { id: 'f1', table: 'items', filter: 'room=eq.1', snapshot: true });
  t.equal(none.end.type, 'subscribed', 'a room he is not in: subscribed');
  t.same(none.rows, [], 'with no row');
});

t.test('order and limit: the latest rows of a room', async (t) => {
  const alice = await d.as('alice');
  const s = await snapshotOf(alice, { id: 'latest', table: 'items', filter: 'room=eq.2', snapshot: { order: 'id.desc', limit: 50 } });
  const want = (await query<{ id: string }>(d.url, 'select i.id::text as id from items i where room = 2 order by i.id desc limit 50')).map((r) => Number(r.id));
  t.same(ids(s.rows), want, 'the 50 latest, newest first');
  const asc = await snapshotOf(alice, { id: 'oldest', table: 'items', snapshot: { order: 'at', limit: 3 } });
  const wantAsc = (await query<{ id: string }>(d.url, 'select i.id::text as id from items i where room in (1, 2) order by i.at limit 3')).map((r) => Number(r.id));
  t.same(ids(asc.rows), wantAsc, 'a bare column orders ascending');
});

t.test('a transaction open while the snapshot is taken arrives once, as a change', async (t) => {
  const alice = await d.as('alice');
  const open = await sqlClient(t, d.url);
  await open.query('begin');
  const { rows } = await open.query<{ id: string }>("insert into items (room, body) values (1, 'in flight') returning id::text as id");
  await open.query("update items set body = 'changed in flight' where id = 1");
  const pending = snapshotOf(alice, { id: 'open', table: 'items', filter: 'room=eq.1', snapshot: true });
  // Commit while the snapshot is read (or just after it was taken). Awaited before the test ends:
  // its change can arrive before its own reply, and the client is closed at the end.
  let committed: Promise<unknown> = Promise.resolve();
  setTimeout(() => (committed = open.query('commit')), 30);
  const s = await pending;
  const rowsAfter = await alice.waitChanges('open', 0).then(() => alice.changes('open'));
  await alice.waitFor(() => alice.changes('open').some((c) => c.new?.body === 'in flight'), 10_000, 'the open transaction as changes');
  const all = [...s.rows.map((r) => ({ from: 'snapshot', id: Number(r.id), body: r.body })), ...alice.changes('open').map((c) => ({ from: c.op, id: Number(c.new?.id), body: c.new?.body }))];
  const inFlight = all.filter((x) => x.id === Number(rows[0].id));
  t.equal(inFlight.length, 1, `the row inserted in flight once: ${JSON.stringify(inFlight)}`);
  t.equal(inFlight[0].from, 'insert', 'as an insert change, not in the snapshot');
  const first = all.filter((x) => x.id === 1);
  t.same(first.map((x) => x.body), ['row 1', 'changed in flight'], `row 1 as it was, then its update: ${JSON.stringify(first)} (${rowsAfter.length})`);
  await committed;
});

t.test('refusals: snapshot with since, unknown table, bad order, bad limit', async (t) => {
  const alice = await d.as('alice');
  const bad = async (msg: Record<string, unknown>) => (await snapshotOf(alice, msg)).end;
  let e = await bad({ id: 'a', table: 'items', snapshot: true, since: '0/0:0' });
  t.match(e, { type: 'error', code: 'bad_request', id: 'a' }, 'snapshot with since');
  e = await bad({ id: 'b', table: 'nope', snapshot: true });
  t.match(e, { type: 'error', code: 'unknown_table', id: 'b' }, 'unknown table');
  e = await bad({ id: 'c', table: 'items', snapshot: { order: 'nope.desc' } });
  t.match(e, { type: 'error', code: 'bad_request', id: 'c' }, 'order on no column');
  e = await bad({ id: 'd', table: 'items', snapshot: { limit: 10_001 } });
  t.match(e, { type: 'error', code: 'bad_request', id: 'd' }, 'limit over the maximum');
  e = await bad({ id: 'e', table: 'items', snapshot: { limit: 1, extra: 1 } });
  t.match(e, { type: 'error', code: 'bad_request', id: 'e' }, 'unknown field');
  e = await bad({ id: 'f', table: 'items', filter: 'room=eq.x', snapshot: true });
  t.match(e, { type: 'error', code: 'bad_filter', id: 'f' }, 'bad filter');
  const ok = await bad({ id: 'g', table: 'items', snapshot: { limit: 1 } });
  t.equal(ok.type, 'subscribed', 'the connection still works');
});
