// Authorization across cluster nodes (issue 13 item 3): policy and relation rows reach every node
// through the stream, in commit order with the data, so a membership revoked before a row is
// committed never lets that row reach the revoked user on any node, a grant lets the next row
// through on every node, a catch-up on another node is judged at each row's position, and a node
// started later (policies from a snapshot plus the stream) decides the same.
import t from 'tap';
import { resolveServeConfig, type ServeFlags } from '../../src/config.js';
import { startDaemon, type Daemon } from '../../src/daemon.js';
import { silentLogger } from '../../src/log.js';
import { migrate } from '../../src/sql/migrate.js';
import { query, waitUntil } from '../helpers/capture.js';
import { withNats } from '../helpers/nats.js';
import { withPostgres } from '../helpers/pg.js';
import { hsToken, SECRET } from '../helpers/tokens.js';
import { comparePos, WsClient } from '../helpers/ws.js';

t.test('authorization on every node', async (t) => {
  const [db, nats] = await Promise.all([withPostgres(t), withNats(t, { size: 1 })]);
  const url = db.url;
  await migrate(url);
  await query(
    url,
    `create table messages (id bigserial primary key, room_id int not null, body text);
     create table room_members (user_id text, room_id int, primary key (user_id, room_id));
     select walcast.enable('messages'), walcast.enable('room_members');
     insert into walcast.casbin_rule (ptype, v0, v1, v2, v3, v4) values ('p', '*', 'table', 'public.messages', 'read', 'g2(r.sub.id, "room:" + r.obj.row.room_id)');`,
  );
  const flags = (id: string): ServeFlags => ({
    db: url, port: '0', jwtSecret: SECRET, relation: ['public.room_members {user_id} room:{room_id}'],
    nats: nats.urls, nodeId: id, cluster: 'au', streamReplicas: '1', streamMaxBytes: '64MiB', natsAckDelay: '0', progressInterval: '200ms',
  });
  const start = async (id: string): Promise<Daemon> => {
    const d = await startDaemon(resolveServeConfig(flags(id), {}), silentLogger);
    t.teardown(() => d.stop());
    return d;
  };
  const a = await start('a');
  const b = await start('b');
  await waitUntil(() => [a, b].some((d) => d.cluster?.capture?.current === 'streaming'), 15_000, () => 'a capture node');
  const as = async (user: string, d: Daemon): Promise<WsClient> => {
    const c = await WsClient.connect(`ws://127.0.0.1:${d.port}/ws?token=${await hsToken({ sub: user })}`);
    t.teardown(() => c.close());
    return c;
  };
  const bodies = (c: WsClient, sub: string) => c.changes(sub).map((m) => String((m.new ?? m.old)?.body));
  /** Waits until `c` was sent a change or progress at or past the position of the marker row seen by `w`. */
  const settle = async (w: WsClient, sub: string, others: WsClient[], marker: string) => {
    await query(url, 'insert into messages (room_id, body) values (0, $1)', [marker]);
    await w.waitFor(() => w.changes(sub).some((m) => m.new?.body === marker), 10_000, marker);
    const at = w.changes(sub).find((m) => m.new?.body === marker)!.pos;
    for (const o of others) {
      await o.waitFor(() => o.messages.some((m) => (m.type === 'change' || m.type === 'progress') && comparePos(m.pos as string, at) >= 0), 10_000, `past ${marker}`);
    }
  };
  await query(url, "insert into room_members values ('watcher', 0)");

  await t.test('a revoke committed before a row: the row reaches the revoked user on no node', async (t) => {
    const watcher = await as('watcher', a);
    const carolA = await as('carol', a);
    const carolB = await as('carol', b);
    for (const c of [watcher, carolA, carolB]) await c.subscribe({ id: 'm', table: 'public.messages' });
    // 30 rounds: grant, a row she may see, revoke, a row she may not; each its own commit, back to back.
    for (let i = 0; i < 30; i++) {
      await query(url, "insert into room_members values ('carol', 1)");
      await query(url, 'insert into messages (room_id, body) values (1, $1)', [`granted-${i}`]);
      await query(url, "delete from room_members where user_id = 'carol' and room_id = 1");
      await query(url, 'insert into messages (room_id, body) values (1, $1)', [`revoked-${i}`]);
    }
    await settle(watcher, 'm', [carolA, carolB], 'marker-1');
    const want = Array.from({ length: 30 }, (_, i) => `granted-${i}`);
    t.same(bodies(carolA, 'm'), want, 'node a: every row while a member, none after a revoke');
    t.same(bodies(carolB, 'm'), want, 'node b: the same');
  });

  let daveSince = '';
  await t.test('a catch-up on another node is judged at each row\'s position', async (t) => {
    const dave = await as('dave', a);
    await dave.subscribe({ id: 'm', table: 'public.messages' });
    await query(url, "insert into room_members values ('dave', 2)");
    await query(url, "insert into messages (room_id, body) values (2, 'dave-1')");
    await dave.waitChanges('m', 1);
    const since = dave.changes('m')[0].pos;
    daveSince = since;
    await dave.close();
    await query(url, "insert into messages (room_id, body) values (2, 'dave-2')");
    await query(url, "delete from room_members where user_id = 'dave'");
    await query(url, "insert into messages (room_id, body) values (2, 'dave-hidden')");
    await query(url, "insert into room_members values ('dave', 2)");
    await query(url, "insert into messages (room_id, body) values (2, 'dave-3')");
    const other = await as('dave', b);
    const reply = await other.subscribe({ id: 'm', table: 'public.messages', since });
    t.equal(reply.type, 'subscribed');
    const watcher = await as('watcher', b);
    await watcher.subscribe({ id: 'w', table: 'public.messages' });
    await settle(watcher, 'w', [other], 'marker-2');
    t.same(bodies(other, 'm'), ['dave-2', 'dave-3'], 'the missed rows he could see when each was committed');
  });

  await t.test('a catch-up read from the stream (a node that follows nothing yet) gives nobody another room\'s rows', async (t) => {
    const fresh = await start('fresh');
    const st = async () => ((await (await fetch(`http://127.0.0.1:${fresh.port}/status`)).json()) as { cluster: { streamCatchUps: { opened: number } } }).cluster.streamCatchUps.opened;
    const opened = await st();
    const dave = await as('dave', fresh);
    const mallory = await as('mallory', fresh);
    const reply = await dave.subscribe({ id: 'm', table: 'public.messages', since: daveSince }, { timeoutMs: 20_000 });
    t.equal(reply.type, 'subscribed');
    const stolen = await mallory.subscribe({ id: 'm', table: 'public.messages', since: daveSince }, { timeoutMs: 20_000, allowFailure: true });
    const watcher = await as('watcher', fresh);
    await watcher.subscribe({ id: 'w', table: 'public.messages' }, { timeoutMs: 20_000 });
    await settle(watcher, 'w', [dave], 'marker-fresh');
    t.ok((await st()) > opened, 'read from the stream');
    // This node started after dave was let back into room 2: it judges rows older than its start
    // by the policies it loaded then (docs/dev/cluster-plan.md §7, auth boot replay not built), so
    // the row committed while he was out reaches him here: a row of a room he may read now, never
    // another room's.
    const got = bodies(dave, 'm');
    t.same(got.filter((b) => b !== 'dave-hidden'), ['dave-2', 'dave-3'], 'the rows of his room after his position, in order');
    t.ok(got.every((b) => b.startsWith('dave-')), 'nothing of a room he may not read');
    t.same(stolen.type === 'subscribed' ? bodies(mallory, 'm') : [], [], 'another user resuming from his position gets none of his rows');
  });

  await t.test('a node started later decides the same', async (t) => {
    const c = await start('c');
    const carolC = await as('carol', c);
    const eveC = await as('eve', c);
    await query(url, "insert into room_members values ('eve', 3)");
    for (const x of [carolC, eveC]) await x.subscribe({ id: 'm', table: 'public.messages' });
    await query(url, "insert into messages (room_id, body) values (1, 'room-1'), (3, 'room-3')");
    const watcher = await as('watcher', c);
    await watcher.subscribe({ id: 'w', table: 'public.messages' });
    await settle(watcher, 'w', [carolC, eveC], 'marker-3');
    t.same(bodies(carolC, 'm'), [], 'carol (revoked) gets nothing');
    t.same(bodies(eveC, 'm'), ['room-3'], 'eve gets her room');
  });
});
