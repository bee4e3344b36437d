// Issue 11, item 1: an update's old row goes only to subscribers the policies let read it. The
// attack: a message of room 1 (dave is not a member) is moved to room 2 (he is). Before the fix
// dave got `op: "update"` with `old: {room_id: 1, body: "SECRET…"}` and `changed`, live and on a
// resume with `since`. Now the row enters his view as an `insert` of the new row only; erin, a
// member of both rooms, still gets the `update` with `old` (so the test can tell the two apart).
// On the resume the old row is judged at the update's commit: dave joining room 1 afterwards
// does not let him see what it was.

import t from 'tap';
import { query } from '../helpers/capture.js';
import { startTestDaemon } from '../helpers/daemon.js';
import { WsClient, type ChangeMsg } from '../helpers/ws.js';

const { url, as } = await startTestDaemon(
  t,
  `create table messages (id bigserial primary key, room_id int not null, body text);
   create table room_members (user_id text, room_id int, primary key (user_id, room_id));
   select walcast.enable('messages'), walcast.enable('room_members');
   insert into walcast.casbin_rule (ptype, v0, v1, v2, v3, v4) values ('p', '*', 'table', 'public.messages', 'read', 'g2(r.sub.id, "room:" + r.obj.row.room_id)');
   insert into room_members values ('dave', 2), ('erin', 1), ('erin', 2);`,
  { relation: ['public.room_members {user_id} room:{room_id}'], progressInterval: '200ms' },
);

/** What a change shows of the row's past: op, and whether old/changed are there. */
const shape = (m: ChangeMsg) => ({ op: m.op, new: m.new, old: m.old, changed: m.changed });
const SUBS = [
  { id: 'all', table: 'public.messages' },
  { id: 'room2', table: 'public.messages', filter: 'room_id=eq.2' },
];

t.test('an update moving a row out of a room dave may not read reaches him without its old row, live and on resume', async (t) => {
  const dave = await as('dave');
  const erin = await as('erin');
  let since = '';
  for (const c of [dave, erin]) for (const s of SUBS) since = (await c.subscribe(s)).position as string;

  const [{ id }] = await query<{ id: string }>(url, "insert into messages (room_id, body) values (1, 'SECRET: the plan') returning id");
  await query(url, "update messages set room_id = 2, body = 'nothing to see' where id = $1", [id]);
  // After the move dave joins room 1: today's policies would let him read the old row, those in
  // force at the update's commit did not.
  await query(url, "insert into room_members values ('dave', 1)");
  await query(url, "insert into messages (room_id, body) values (2, 'marker')");

  const moved = { id: Number(id), room_id: 2, body: 'nothing to see' };
  const check = async (who: string, d: WsClient, e: WsClient) => {
    for (const s of SUBS) {
      await d.waitFor(() => d.changes(s.id).some((m) => m.new?.body === 'marker'), 10_000, `${who} dave ${s.id}: marker`);
      await e.waitFor(() => e.changes(s.id).some((m) => m.new?.body === 'marker'), 10_000, `${who} erin ${s.id}: marker`);
      t.same(d.changes(s.id).map(shape).slice(0, 1), [{ op: 'insert', new: moved, old: undefined, changed: undefined }], `${who} ${s.id}: dave gets the row entering his view as an insert, no old, no changed`);
      t.equal(d.changes(s.id).length, 2, `${who} ${s.id}: then only the marker`);
      const update = e.changes(s.id).find((m) => m.op === 'update');
      t.same(update && shape(update), { op: 'update', new: moved, old: { id: moved.id, room_id: 1, body: 'SECRET: the plan' }, changed: ['room_id', 'body'] }, `${who} ${s.id}: erin, a member of both rooms, gets the update with the old row`);
    }
    const raw = JSON.stringify(d.messages);
    t.notMatch(raw, /SECRET/, `${who}: nothing of the old row anywhere in what dave received`);
    t.notMatch(raw, /"room_id":1/, `${who}: not even its room`);
  };
  await check('live', dave, erin);

  // The same history, resumed from before the insert: catch-up judges each change at its commit.
  const dave2 = await as('dave');
  const erin2 = await as('erin');
  for (const c of [dave2, erin2]) for (const s of SUBS) await c.subscribe({ ...s, since });
  await check('resume', dave2, erin2);
  t.same(erin2.changes('all').map((m) => m.op), ['insert', 'update', 'insert'], 'resume: erin saw the insert in room 1, the move and the marker');
});

t.test('an update out of dave\'s rooms is a leave carrying the row as he could see it; nothing else of the new row', async (t) => {
  const dave = await as('dave');
  await dave.subscribe({ id: 'all', table: 'public.messages' });
  const [{ id }] = await query<{ id: string }>(url, "insert into messages (room_id, body) values (2, 'before') returning id");
  await query(url, "update messages set room_id = 3, body = 'SECRET: after' where id = $1", [id]);
  await query(url, "insert into messages (room_id, body) values (2, 'marker 2')");
  await dave.waitFor(() => dave.changes('all').some((m) => m.new?.body === 'marker 2'), 10_000, 'marker 2');
  t.same(dave.changes('all').map(shape), [
    { op: 'insert', new: { id: Number(id), room_id: 2, body: 'before' }, old: undefined, changed: undefined },
    { op: 'leave', new: undefined, old: { id: Number(id), room_id: 2, body: 'before' }, changed: undefined },
    { op: 'insert', new: { id: Number(id) + 1, room_id: 2, body: 'marker 2' }, old: undefined, changed: undefined },
  ]);
  t.notMatch(JSON.stringify(dave.messages), /SECRET/, 'the new row of room 3 never reached dave');
});
