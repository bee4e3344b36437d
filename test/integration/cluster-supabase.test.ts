// The Supabase endpoint on a cluster (issues 13 and 15): two `serve --nats` nodes on one NATS
// server and one Postgres. A realtime-js client on each node gets its rows through the node it
// is on (whichever holds the slot), and broadcast and presence cross nodes between realtime-js
// and walcast clients, a Supabase presence key (a label) included.
import t from 'tap';
import type { RealtimePostgresChangesPayload } from '@supabase/realtime-js';
import { resolveServeConfig } from '../../src/config.js';
import { startDaemon, type Daemon } from '../../src/daemon.js';
import { silentLogger } from '../../src/log.js';
import { migrate } from '../../src/sql/migrate.js';
import { query, waitUntil } from '../helpers/capture.js';
import { withNats } from '../helpers/nats.js';
import { withPostgres } from '../helpers/pg.js';
import { Inbox, subscribed, supabaseClient } from '../helpers/supabase.js';
import { hsToken, SECRET } from '../helpers/tokens.js';
import { WsClient } from '../helpers/ws.js';

type Payload = RealtimePostgresChangesPayload<Record<string, unknown>>;

const [db, nats] = await Promise.all([withPostgres(t), withNats(t, { size: 1 })]);
await migrate(db.url);
await query(
  db.url,
  `create table messages (id bigserial primary key, owner text not null, body text);
   select walcast.enable('messages');
   insert into walcast.casbin_rule (ptype, v0, v1, v2, v3, v4) values
     ('p', '*', 'table', 'public.messages', 'read', 'r.obj.row.owner == r.sub.id'),
     ('p', '*', 'channel', 'room:*', 'join', 'true'),
     ('p', '*', 'channel', 'room:*', 'broadcast', 'true'),
     ('p', '*', 'channel', 'room:*', 'presence', 'true');`,
);
const start = async (nodeId: string): Promise<Daemon> => {
  const cfg = resolveServeConfig({ db: db.url, port: '0', jwtSecret: SECRET, nats: nats.urls, nodeId, cluster: 'sb1', streamReplicas: '1', streamMaxBytes: '64MiB', natsAckDelay: '0' }, {});
  const d = await startDaemon(cfg, silentLogger);
  t.teardown(() => d.stop());
  return d;
};
const nodes = [await start('a'), await start('b')];
await waitUntil(() => nodes.some((d) => d.cluster?.role === 'capture' && d.cluster.capture?.current === 'streaming'), 20_000, () => 'a capture node streaming');
const anon = await hsToken({ role: 'anon' });

t.test('postgres_changes on either node, under row policies', async (t) => {
  const inboxes: Inbox<Payload>[] = [];
  for (const [i, d] of nodes.entries()) {
    const c = await supabaseClient(t, d.port, { apikey: anon, token: await hsToken({ sub: `user${i}` }) });
    const got = new Inbox<Payload>();
    t.match(await subscribed(c.channel('mine').on('postgres_changes', { event: '*', schema: 'public', table: 'messages' }, got.push)), { status: 'SUBSCRIBED' });
    inboxes.push(got);
  }
  await query(db.url, `insert into messages (owner, body) values ('user0', 'to a'), ('user1', 'to b'), ('nobody', 'to none')`);
  t.match((await inboxes[0].find(() => true)).new, { owner: 'user0', body: 'to a' });
  t.match((await inboxes[1].find(() => true)).new, { owner: 'user1', body: 'to b' });
  await query(db.url, `update messages set body = 'b again' where owner = 'user1'`);
  await inboxes[1].find((p) => p.eventType === 'UPDATE');
  t.same(inboxes.map((i) => i.items.length), [1, 2], "each only its own rows");
});

t.test('broadcast and presence cross nodes between Supabase and walcast clients', async (t) => {
  const sb = await supabaseClient(t, nodes[1].port, { apikey: anon, token: await hsToken({ sub: 'sam' }) });
  const native = await WsClient.connect(`ws://127.0.0.1:${nodes[0].port}/ws?token=${await hsToken({ sub: 'nat' })}`);
  t.teardown(() => native.close());
  const got = new Inbox<{ event: string; payload: unknown }>();
  const presence = new Inbox<{ event: string; key: string }>();
  const ch = sb
    .channel('room:x', { config: { presence: { key: 'sam-phone' } } })
    .on('broadcast', { event: 'ping' }, got.push as never)
    .on('presence', { event: 'join' }, presence.push as never);
  t.match(await subscribed(ch), { status: 'SUBSCRIBED' });
  await native.request({ type: 'join', channel: 'room:x' });
  native.send({ type: 'broadcast', channel: 'room:x', event: 'ping', payload: { from: 'node a' } });
  t.match(await got.find(() => true), { event: 'ping', payload: { from: 'node a' } }, 'a walcast broadcast on node a reaches realtime-js on node b');
  native.send({ type: 'presence', channel: 'room:x', state: { here: true } });
  t.match(await presence.find((p) => p.key === 'nat'), { key: 'nat' }, "node a's walcast presence, keyed by its user");
  t.equal(await ch.track({ online: true }), 'ok');
  const diff = await native.next((m) => m.type === 'presence_diff' && JSON.stringify(m.joins).includes('sam'));
  t.match(diff.joins, { sam: [{ state: { online: true }, label: 'sam-phone' }] }, 'the Supabase key crossed the cluster as a label');
  t.equal(await ch.send({ type: 'broadcast', event: 'pong', payload: 1 }), 'ok');
  t.match(await native.next((m) => m.type === 'broadcast' && m.event === 'pong'), { payload: 1, from: 'sam' });
});
