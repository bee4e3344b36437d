// Snapshots in a cluster (issue 14 item 6): a snapshot taken on an edge node, whose changes come
// from the capture node through the NATS stream (and only the route values it follows), is
// consistent with that stream: its mark travels the same way as the rows, so the snapshot rows
// plus the changes that follow equal the table, with writes going on throughout, on a table the
// node did not follow before the subscribe.
import t from 'tap';
import { resolveServeConfig, type ServeFlags } from '../../src/config.js';
import { startDaemon, type Daemon } from '../../src/daemon.js';
import { silentLogger } from '../../src/log.js';
import { migrate } from '../../src/sql/migrate.js';
import { query, sleep, waitUntil } from '../helpers/capture.js';
import { withNats } from '../helpers/nats.js';
import { withPostgres } from '../helpers/pg.js';
import { comparePos, WsClient, type Msg } from '../helpers/ws.js';

t.test('a snapshot on an edge node is consistent with the stream it follows', async (t) => {
  const [db, nats] = await Promise.all([withPostgres(t), withNats(t, { size: 1 })]);
  await migrate(db.url);
  await query(
    db.url,
    `create table items (id bigserial primary key, room int not null, v int not null);
     select walcast.enable('items', route_by => 'room');
     insert into items (room, v) select g % 4, 0 from generate_series(1, 3000) g;`,
  );
  const config = (flags: ServeFlags) => resolveServeConfig({ db: db.url, port: '0', auth: false, nats: nats.urls, cluster: 'sn', streamReplicas: '1', streamMaxBytes: '64MiB', natsAckDelay: '0', ...flags }, {});
  const start = async (id: string): Promise<Daemon> => {
    const d = await startDaemon(config({ nodeId: id }), silentLogger);
    t.teardown(() => d.stop());
    return d;
  };
  const a = await start('sn-a');
  await waitUntil(() => a.cluster?.capture?.current === 'streaming', 15_000, () => 'capture streaming');
  const b = await start('sn-b');
  t.equal(b.cluster?.capture, null, 'b is an edge node');

  // Writers: inserts, updates and deletes in every room, until stopped.
  let stop = false;
  const writers = [0, 1].map(async (w) => {
    let i = 0;
    while (!stop) {
      const room = i % 4;
      await query(db.url, 'insert into items (room, v) values ($1, $2)', [room, w]);
      await query(db.url, 'update items set v = v + 1 where id = (select id from items where room = $1 order by random() limit 1)', [room]);
      await query(db.url, 'delete from items where id = (select id from items where room = $1 and v > 2 order by id limit 1)', [room]);
      i++;
    }
  });
  t.teardown(async () => {
    stop = true;
    await Promise.all(writers);
  });
  await sleep(300);

  const c = await WsClient.connect(`ws://127.0.0.1:${b.port}/ws`);
  t.teardown(() => c.close());
  const subs = [
    { id: 'r1', filter: 'room=eq.1', rooms: [1] },
    { id: 'r23', filter: 'room=in.(2,3)', rooms: [2, 3] },
  ];
  for (const s of subs) c.send({ type: 'subscribe', id: s.id, table: 'items', filter: s.filter, snapshot: true, ref: s.id });
  for (const s of subs) {
    const end = await c.next((m) => m.ref === s.id && m.type !== 'snapshot', 30_000, `the end of ${s.id}'s snapshot`);
    t.equal(end.type, 'subscribed', `${s.id}: subscribed (${JSON.stringify(end).slice(0, 200)})`);
  }
  await sleep(500);
  stop = true;
  await Promise.all(writers);
  // A last row per room: once each subscription has it, it has everything committed before.
  const last = await query<{ id: string; room: number }>(db.url, 'insert into items (room, v) select r, -1 from generate_series(0, 3) r returning id::text as id, room');
  for (const s of subs) {
    const want = last.filter((r) => s.rooms.includes(r.room)).map((r) => Number(r.id));
    await c.waitFor(() => want.every((id) => c.changes(s.id).some((m) => Number(m.new?.id) === id)), 30_000, `${s.id} has the last rows`);
  }

  for (const s of subs) {
    const rows = new Map<number, Record<string, unknown>>();
    let dup = 0;
    const mine = c.messages.filter((m: Msg) => (m.type === 'snapshot' || m.type === 'change') && (m.sub === s.id));
    for (const m of mine) {
      if (m.type === 'snapshot') for (const r of m.rows as Record<string, unknown>[]) rows.set(Number(r.id), r);
      else {
        const ch = m as Msg & { op: string; new?: Record<string, unknown>; old?: Record<string, unknown> };
        if (ch.op === 'insert' && rows.has(Number(ch.new?.id))) dup++;
        if (ch.op === 'insert' || ch.op === 'update') rows.set(Number(ch.new?.id), ch.new!);
        else rows.delete(Number(ch.old?.id));
      }
    }
    const positions = c.changes(s.id).map((m) => m.pos);
    t.ok(positions.every((p, i) => i === 0 || comparePos(positions[i - 1], p) < 0), `${s.id}: positions strictly increasing`);
    t.equal(dup, 0, `${s.id}: no insert of a row the snapshot already had`);
    const table = await query<{ id: string; room: number; v: number }>(db.url, 'select id::text as id, room, v from items where room = any($1) order by id', [s.rooms]);
    const got = [...rows.values()].map((r) => `${r.id}:${r.room}:${r.v}`).sort();
    const want = table.map((r) => `${r.id}:${r.room}:${r.v}`).sort();
    t.same(got, want, `${s.id}: snapshot + changes = the table's rows of rooms ${s.rooms} (${want.length} rows)`);
  }
  t.ok(b.snapshots.stats.done >= 2, 'the snapshots were read on the edge node');
});
