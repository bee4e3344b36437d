// Broadcasts from SQL only from roles granted them (issue #11, item 4). The attacks: a role that
// can merely log in emits pg_logical_emit_message(true, 'walcast', ...) and calls
// walcast.broadcast(); a role with USAGE on schema walcast calls it and inserts into
// walcast.broadcasts; a superuser inserts an 8 MiB payload; a client subscribes to the table.
// The guarantees: nothing of theirs reaches a member, a role granted EXECUTE does, the payload
// is capped by SQL and by the daemon (which drops it and closes nobody), and the table's rows
// never reach subscribers, live or on catch-up.

import t from 'tap';
import { query, waitUntil } from '../helpers/capture.js';
import { startTestDaemon } from '../helpers/daemon.js';
import { WsClient, type Msg } from '../helpers/ws.js';

const { db, url, daemon, as } = await startTestDaemon(
  t,
  `create table room_members (user_id text, room_id int, primary key (user_id, room_id));
   create table messages (id bigserial primary key, room_id int not null, body text);
   select walcast.enable('room_members'), walcast.enable('messages');
   insert into room_members values ('ann', 1);
   insert into walcast.casbin_rule (ptype, v0, v1, v2, v3, v4) values
     ('p', '*', 'channel', 'room:*', 'join', 'g2(r.sub.id, r.obj.name)'),
     ('p', '*', 'table', 'public.messages', 'read', 'true'),
     -- Even a policy that lets everyone read walcast's tables gives no access to the broadcasts.
     ('p', '*', 'table', 'walcast.*', 'read', 'true');
   -- mallory can log in, nothing more; app is how the docs grant broadcasting (OPERATIONS.md §3).
   create role mallory login password 'mallory';
   create role app login password 'app';
   grant usage on schema walcast to app;
   grant execute on function walcast.broadcast(text, text, jsonb) to app;
   grant insert on messages to app;
   grant usage on sequence messages_id_seq to app;`,
  { relation: ['public.room_members {user_id} room:{room_id}'] },
);
const mallory = db.urlFor({ user: 'mallory', password: 'mallory' });
const app = db.urlFor({ user: 'app', password: 'app' });

const broadcasts = (c: WsClient) => c.messages.filter((m) => m.type === 'broadcast').map((m: Msg) => m.event);

const ann = await as('ann');
const joined = await ann.request({ type: 'join', channel: 'room:1' });
if (joined.type !== 'joined') throw new Error(`ann could not join room:1: ${JSON.stringify(joined)}`);
await ann.subscribe({ id: 'm', table: 'public.messages' });
const dropped = () => daemon.hub.sqlBroadcasts?.dropped ?? -1;

t.test('a role that can only log in: its logical message and its call reach nobody', async (t) => {
  // Postgres lets any role emit a logical message: what matters is that walcast ignores it.
  await query(mallory, `select pg_logical_emit_message(true, 'walcast', '{"channel":"room:1","event":"forged-message","payload":{"admin":true}}')`);
  await t.rejects(query(mallory, "select walcast.broadcast('room:1', 'forged-call', null)"), { code: '42501' }, 'walcast.broadcast: permission denied');
  await t.rejects(query(mallory, "insert into walcast.broadcasts (channel, event) values ('room:1', 'forged-insert')"), { code: '42501' }, 'no insert into walcast.broadcasts');

  // With USAGE on the schema, still no EXECUTE and no INSERT: the grant is on the function.
  await query(url, 'grant usage on schema walcast to mallory');
  await t.rejects(query(mallory, "select walcast.broadcast('room:1', 'forged-call-2', null)"), { code: '42501', message: /permission denied for function broadcast/ });
  await t.rejects(query(mallory, "insert into walcast.broadcasts (channel, event) values ('room:1', 'forged-insert-2')"), { code: '42501', message: /permission denied for table broadcasts/ });
  await query(mallory, `select pg_logical_emit_message(true, 'walcast', '{"channel":"room:1","event":"forged-message-2"}')`);

  // A broadcast that comes after all of them in commit order: once it is in, they were passed over.
  await query(app, "select walcast.broadcast('room:1', 'granted', '{\"n\": 1}')");
  await ann.next((m) => m.type === 'broadcast' && m.event === 'granted');
  t.same(broadcasts(ann), ['granted'], 'only the broadcast of the role granted EXECUTE reached the member');
  t.match(ann.messages.find((m) => m.event === 'granted'), { channel: 'room:1', payload: { n: 1 } });
  t.notOk('from' in (ann.messages.find((m) => m.event === 'granted') as Msg), 'from SQL: no sender');
});

t.test('the granted role: in commit order with its rows, only if committed, arguments checked', async (t) => {
  ann.messages.length = 0;
  await query(app, "begin; insert into messages (room_id, body) values (1, 'hi'); select walcast.broadcast('room:1', 'sent', null); commit;");
  await query(app, "begin; select walcast.broadcast('room:1', 'rolled-back', null); rollback;");
  await query(app, "select walcast.broadcast('room:1', 'last', '[1,2]')");
  await ann.next((m) => m.type === 'broadcast' && m.event === 'last');
  const seq = ann.messages.filter((m) => m.type === 'change' || m.type === 'broadcast').map((m) => (m.type === 'change' ? `change:${m.table}` : `broadcast:${m.event}`));
  t.same(seq, ['change:public.messages', 'broadcast:sent', 'broadcast:last'], 'the row, then its broadcast; never the rolled-back one, never the table walcast.broadcasts');
  await t.rejects(query(app, "select walcast.broadcast('', 'x', null)"), /channel must be 1 to 255/);
  await t.rejects(query(app, "select walcast.broadcast('room:1', repeat('e', 256), null)"), /event must be 1 to 255/);
  const [{ n }] = await query<{ n: string }>(url, 'select count(*) as n from walcast.broadcasts');
  t.equal(Number(n), 0, 'walcast.broadcast leaves no row behind');
});

t.test('payload size: refused by SQL; past the check, dropped by the daemon, nobody closed', async (t) => {
  ann.messages.length = 0;
  const big = JSON.stringify({ blob: 'x'.repeat(40_000) });
  await t.rejects(query(app, 'select walcast.broadcast($1, $2, $3::jsonb)', ['room:1', 'big', big]), { code: '54000', message: /payload must be at most 32768 bytes/ });
  await t.rejects(query(url, 'insert into walcast.broadcasts (channel, event, payload) values ($1, $2, $3::jsonb)', ['room:1', 'big', big]), { code: '23514' }, 'the check holds for a superuser too');
  const fits = JSON.stringify({ blob: 'y'.repeat(32_000) });
  await query(app, 'select walcast.broadcast($1, $2, $3::jsonb)', ['room:1', 'fits', fits]);

  // A superuser can take the check away; the daemon still drops what it would not send.
  await query(url, 'alter table walcast.broadcasts drop constraint broadcasts_payload_size');
  t.teardown(() => query(url, 'alter table walcast.broadcasts add constraint broadcasts_payload_size check (payload is null or octet_length(payload::text) <= 32768)'));
  const before = dropped();
  const ringBefore = daemon.hub.ring.stats().bytes;
  await query(url, `insert into walcast.broadcasts (channel, event, payload) values ('room:1', 'huge', jsonb_build_object('blob', repeat('z', 8 * 1024 * 1024)))`);
  await query(url, "delete from walcast.broadcasts where event = 'huge'");
  await query(app, "select walcast.broadcast('room:1', 'after', null)");
  await ann.next((m) => m.type === 'broadcast' && m.event === 'after', 15_000);
  t.same(broadcasts(ann), ['fits', 'after'], 'the one that fits and the one after; not the 8 MiB one');
  t.equal(dropped(), before + 1, 'counted as dropped');
  t.ok(ann.isOpen, 'the member is still connected (no 4008)');
  t.equal(ann.closeInfo, null);
  const grown = daemon.hub.ring.stats().bytes - ringBefore;
  t.ok(grown < 64 * 1024, `the window holds nothing of the broadcasts (grew by ${grown} bytes)`);
  const metrics = await (await fetch(`http://127.0.0.1:${daemon.port}/metrics`)).text();
  t.match(metrics, new RegExp(`^walcast_sql_broadcasts_dropped_total ${before + 1}$`, 'm'), 'in /metrics');
});

t.test('walcast.broadcasts is not subscribable, and its rows reach no subscriber, live or on catch-up', async (t) => {
  const cat = await as('cat');
  t.match(await cat.subscribe({ id: 'b', table: 'walcast.broadcasts' }, { allowFailure: true }), { type: 'error', code: 'unknown_table' }, 'even with a policy allowing walcast.*');
  t.match(await cat.subscribe({ id: 'r', table: 'walcast.routes' }, { allowFailure: true }), { type: 'error', code: 'unknown_table' }, 'nor is walcast.routes, the cluster\'s routing metadata');
  const sub = (await cat.subscribe({ id: 'm', table: 'public.messages' })) as Msg & { position: string };
  await query(app, "select walcast.broadcast('room:1', 'while-live', null)");
  await query(app, "insert into messages (room_id, body) values (1, 'marker')");
  await cat.waitChanges('m', 1);
  // Resume from before both: the catch-up replays the window, which never held the broadcast.
  const again = await as('cat');
  await again.subscribe({ id: 'm2', table: 'public.messages', since: sub.position });
  await waitUntil(() => again.changes().length >= 1, 10_000, () => 'the catch-up');
  t.same([...cat.changes(), ...again.changes()].map((c) => c.table), ['public.messages', 'public.messages'], 'only the messages row, live and on catch-up');
  t.notOk(cat.messages.some((m) => m.type === 'broadcast'), 'cat joined no channel: no broadcast either');
  await t.rejects(query(url, "select walcast.disable('walcast.broadcasts')"), /stays in the publication/, 'walcast.disable refuses to take it out');
});

t.test('no PUBLIC grant on the function or the table', async (t) => {
  const [p] = await query(
    url,
    `select has_function_privilege('public', 'walcast.broadcast(text, text, jsonb)', 'execute') as fn_public,
            has_function_privilege('mallory', 'walcast.broadcast(text, text, jsonb)', 'execute') as fn_mallory,
            has_function_privilege('app', 'walcast.broadcast(text, text, jsonb)', 'execute') as fn_app,
            has_table_privilege('app', 'walcast.broadcasts', 'insert') as insert_app,
            (select prosecdef from pg_proc where oid = 'walcast.broadcast(text, text, jsonb)'::regprocedure) as definer,
            (select proconfig from pg_proc where oid = 'walcast.broadcast(text, text, jsonb)'::regprocedure) as config`,
  );
  t.same(p, { fn_public: false, fn_mallory: false, fn_app: true, insert_app: false, definer: true, config: ['search_path=pg_catalog, pg_temp'] });
});
