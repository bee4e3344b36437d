// Row-level authorization end to end (issue 4): real Postgres, `walcast serve` in process with a
// JWT secret, real WebSocket clients. Policies and relations change in commit order; deletes are
// judged on the old row; an update out of a subscriber's policy is a `leave`; a refresh that
// loses access ends the subscription; history is authorized as it was at each commit, also
// after a daemon restart; and a model other than the default one.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { resolveServeConfig, type ServeFlags } from '../../src/config.js';
import { startDaemon, type Daemon } from '../../src/daemon.js';
import { silentLogger } from '../../src/log.js';
import { migrate } from '../../src/sql/migrate.js';
import { query } from '../helpers/capture.js';
import { withPostgres } from '../helpers/pg.js';
import { hsToken, SECRET } from '../helpers/tokens.js';
import { comparePos, WsClient, type ChangeMsg } from '../helpers/ws.js';

const db = await withPostgres(t);
await migrate(db.url);
const url = db.url;
await query(
  url,
  `create table docs (id bigserial primary key, body text);
   create table messages (id bigserial primary key, room_id int not null, body text);
   create table admin_notes (id bigserial primary key, body text);
   create table room_members (user_id text, room_id int, primary key (user_id, room_id));
   select walcast.enable('docs'), walcast.enable('messages'), walcast.enable('admin_notes'), walcast.enable('room_members');`,
);
const rule = (...v: string[]) => query(url, 'insert into walcast.casbin_rule (ptype, v0, v1, v2, v3, v4) values ($1, $2, $3, $4, $5, $6)', [...v, ...Array(6 - v.length).fill('')]);
await rule('p', 'role:reader', 'table', 'public.docs', 'read', 'true');
await rule('p', '*', 'table', 'public.messages', 'read', 'g2(r.sub.id, "room:" + r.obj.row.room_id)');
await rule('p', '*', 'table', 'public.admin_notes', 'read', 'r.sub.role == "admin"');

const RELATIONS = ['public.room_members {user_id} room:{room_id}'];
async function daemonWith(flags: ServeFlags = {}): Promise<Daemon> {
  const d = await startDaemon(resolveServeConfig({ db: url, port: '0', jwtSecret: SECRET, relation: RELATIONS, progressInterval: '200ms', ...flags }, {}), silentLogger);
  t.teardown(() => d.stop());
  return d;
}
const daemon = await daemonWith();

async function as(user: string, claims: Record<string, unknown> = {}, d: Daemon = daemon): Promise<WsClient> {
  const c = await WsClient.connect(`ws://127.0.0.1:${d.port}/ws?token=${await hsToken({ sub: user, ...claims })}`);
  t.teardown(() => c.close());
  return c;
}
const bodies = (c: WsClient, sub: string) => c.changes(sub).map((m) => `${m.op}:${(m.new ?? m.old)?.body}`);
/**
 * Writes a marker row and waits until `c` has it, and each of `others` (who may not see it) a
 * change or progress at or past its position: on every connection, everything committed before
 * the marker has arrived.
 */
async function settle(c: WsClient, sub: string, insertMarker: string, others: WsClient[] = []): Promise<void> {
  await query(url, insertMarker);
  await c.waitFor(() => c.changes(sub).some((m) => m.new?.body === 'marker'), 10_000, 'marker');
  const at = c.changes(sub).find((m) => m.new?.body === 'marker')!.pos;
  const past = (o: WsClient) => o.messages.some((m) => (m.type === 'change' || m.type === 'progress') && comparePos(m.pos as string, at) >= 0);
  for (const o of others) await o.waitFor(() => past(o), 10_000, `a position at or past the marker ${at}`);
}

t.test('a subscribe no policy could allow is forbidden', async (t) => {
  const c = await as('zoe');
  const r = await c.subscribe({ id: 1, table: 'public.admin_notes' }, { allowFailure: true });
  t.match(r, { type: 'error', code: 'forbidden', id: 1 }, 'no admin claim: forbidden');
  const r2 = await c.subscribe({ id: 2, table: 'public.room_members' }, { allowFailure: true });
  t.match(r2, { type: 'error', code: 'forbidden', id: 2 }, 'no rule for the table at all');
  const r3 = await c.subscribe({ id: 3, table: 'public.messages' }, { allowFailure: true });
  t.equal(r3.type, 'subscribed', 'relations may come later: a table with a rule that may allow is subscribable');
});

t.test('/metrics shows the policies held', async (t) => {
  const text = await (await fetch(`http://127.0.0.1:${daemon.port}/metrics`)).text();
  t.match(text, /^walcast_policy_ready 1$/m, 'loaded');
  t.match(text, /^walcast_policy_rules 3$/m, 'the three rules');
  t.match(text, /^walcast_policy_links \d+$/m, 'links gauge');
});

t.test('grants and revocations apply exactly between the transactions around them, also inside one', async (t) => {
  const alice = await as('alice');
  const watcher = await as('wendy');
  await query(url, "insert into walcast.casbin_rule (ptype, v0, v1) values ('g', 'wendy', 'role:reader')");
  await alice.subscribe({ id: 'd', table: 'public.docs' });
  await watcher.subscribe({ id: 'd', table: 'public.docs' });
  const grant = "insert into walcast.casbin_rule (ptype, v0, v1) values ('g', 'alice', 'role:reader')";
  const revoke = "delete from walcast.casbin_rule where ptype = 'g' and v0 = 'alice'";
  await query(url, "insert into docs (body) values ('before grant')");
  await query(url, grant);
  await query(url, "insert into docs (body) values ('granted')");
  await query(url, revoke);
  await query(url, "insert into docs (body) values ('revoked')");
  await query(url, `begin; insert into docs (body) values ('tx: before'); ${grant}; insert into docs (body) values ('tx: granted'); ${revoke}; insert into docs (body) values ('tx: revoked'); commit;`);
  await settle(watcher, 'd', "insert into docs (body) values ('marker')", [alice]);
  t.same(bodies(alice, 'd'), ['insert:granted', 'insert:tx: granted'], 'alice got exactly the rows committed while granted');
  t.equal(bodies(watcher, 'd').length, 7, 'a reader throughout got all six and the marker');
});

t.test('relations mirrored from the stream: membership, deletes on the old row, leave on an update out of the policy', async (t) => {
  const bob = await as('bob');
  const carol = await as('carol');
  for (const c of [bob, carol]) await c.subscribe({ id: 'm', table: 'public.messages' });
  await query(url, "insert into room_members values ('bob', 1), ('carol', 2)");
  await query(url, "begin; insert into messages (room_id, body) values (1, 'room 1 hello'); insert into room_members values ('carol', 1); insert into messages (room_id, body) values (1, 'carol joined'); commit;");
  const rows = await query<{ id: string }>(url, "insert into messages (room_id, body) values (1, 'to move') returning id");
  await query(url, 'update messages set room_id = 2 where id = $1', [rows[0].id]);
  await query(url, "delete from messages where body = 'room 1 hello'");
  await query(url, "delete from room_members where user_id = 'carol' and room_id = 1");
  await query(url, "insert into messages (room_id, body) values (1, 'carol left')");
  await settle(carol, 'm', "insert into messages (room_id, body) values (2, 'marker')", [bob]);
  t.same(bodies(bob, 'm'), ['insert:room 1 hello', 'insert:carol joined', 'insert:to move', 'leave:to move', 'delete:room 1 hello', 'insert:carol left'], 'bob: his room; the moved row leaves; the delete judged on the old row');
  t.same(bodies(carol, 'm'), ['insert:carol joined', 'insert:to move', 'update:to move', 'delete:room 1 hello', 'insert:marker'], 'carol: from her join in the same transaction, until she left');
  const leave = bob.changes('m').find((m) => m.op === 'leave') as ChangeMsg;
  t.match(leave.old, { room_id: 1, body: 'to move' }, 'leave carries the row as bob last could see it');
  t.notOk(bob.changes('m').some((m) => (m.new ?? m.old)?.room_id === 2 && m.op !== 'leave'), 'nothing of room 2 reached bob');
});

t.test('a refreshed token that loses access ends the subscription with forbidden', async (t) => {
  const c = await as('dave', { role: 'admin' });
  await c.subscribe({ id: 'n', table: 'public.admin_notes' });
  await query(url, "insert into admin_notes (body) values ('while admin')");
  await c.waitChanges('n', 1);
  c.send({ type: 'auth', token: await hsToken({ sub: 'dave', role: 'user' }) });
  const err = await c.next((m) => m.type === 'error');
  t.match(err, { code: 'forbidden', id: 'n' }, 'forbidden, naming the subscription');
  // A barrier dave may see: a message of a room he joins, committed after the note.
  await c.subscribe({ id: 'm', table: 'public.messages' });
  await query(url, "insert into admin_notes (body) values ('after refresh')");
  await query(url, "insert into room_members values ('dave', 99)");
  await query(url, "insert into messages (room_id, body) values (99, 'for dave')");
  await c.waitFor(() => bodies(c, 'm').includes('insert:for dave'), 10_000, 'the later message');
  t.same(bodies(c, 'n'), ['insert:while admin'], 'nothing after the refresh');
  t.ok(c.isOpen, 'the connection stays open');
});

t.test('history is authorized as of each commit: a resume, then a daemon restart rebuilding the window from WAL', async (t) => {
  const d = await daemonWith({ slot: 'history' });
  const eve = await as('eve', {}, d);
  await eve.subscribe({ id: 'm', table: 'public.messages' });
  await query(url, "insert into room_members values ('eve', 7)");
  await query(url, "insert into messages (room_id, body) values (7, 'first')");
  const [first] = await eve.waitChanges('m', 1);
  await eve.close();
  await query(url, "insert into messages (room_id, body) values (7, 'while away, member')");
  await query(url, "delete from room_members where user_id = 'eve'");
  await query(url, "insert into messages (room_id, body) values (7, 'while away, not a member')");
  await query(url, "insert into room_members values ('eve', 7)");
  await query(url, "insert into messages (room_id, body) values (7, 'while away, member again')");
  const want = ['insert:while away, member', 'insert:while away, member again'];

  const back = await as('eve', {}, d);
  await back.subscribe({ id: 'm', table: 'public.messages', since: first.pos });
  await back.waitChanges('m', 2);
  t.same(bodies(back, 'm'), want, 'resumed: what was allowed at each commit');
  await back.close();

  // The daemon stops; another one on the same slot rebuilds the window from WAL, with the
  // policies loaded now (eve a member) and the history of the window replayed around them.
  await d.stop();
  const d2 = await daemonWith({ slot: 'history' });
  const again = await as('eve', {}, d2);
  await again.subscribe({ id: 'm', table: 'public.messages', since: first.pos });
  // A last message in the room: once it is in, everything before it has arrived.
  await query(url, "insert into messages (room_id, body) values (7, 'last')");
  await again.waitFor(() => bodies(again, 'm').includes('insert:last'), 10_000, 'the last message');
  t.same(bodies(again, 'm'), [...want, 'insert:last'], 'after a restart: the same rows, not the one from outside the room');
});

t.test('a custom model file (--model)', async (t) => {
  const model = join(mkdtempSync(join(tmpdir(), 'walcast-model-')), 'owner-model.conf');
  writeFileSync(
    model,
    `[request_definition]\nr = sub, obj, act\n[policy_definition]\np = sub, obj, act\n[role_definition]\ng = _, _\n[policy_effect]\ne = some(where (p.eft == allow))\n[matchers]\nm = g(r.sub.id, p.sub) && r.obj.name == p.obj && r.act == p.act && r.obj.row.body != "secret"\n`,
  );
  await rule('p', 'frank', 'public.docs', 'read');
  const d = await daemonWith({ slot: 'custom', model });
  const frank = await as('frank', {}, d);
  await frank.subscribe({ id: 'd', table: 'public.docs' });
  // One transaction, 'secret' first: had it been sent, it would have come before 'open'.
  await query(url, "insert into docs (body) values ('secret'), ('open')");
  await frank.waitFor(() => bodies(frank, 'd').includes('insert:open'), 10_000, 'the open doc');
  t.same(bodies(frank, 'd'), ['insert:open'], 'the custom matcher decides');
  const other = await as('gina', {}, d);
  t.match(await other.subscribe({ id: 'm', table: 'public.messages' }, { allowFailure: true }), { code: 'forbidden' }, 'and what may be subscribed to: no rule of this model names messages');

  writeFileSync(model, '[request_definition]\nr = sub, obj, act\n[policy_definition]\np = sub, obj, act, eft\n[policy_effect]\ne = !some(where (p.eft == deny))\n[matchers]\nm = r.sub.id == p.sub\n');
  await t.rejects(daemonWith({ slot: 'custom2', model }), { code: 'auth_config' }, 'a model walcast cannot evaluate is refused at start');
});
