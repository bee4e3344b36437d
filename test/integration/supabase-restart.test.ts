// A Supabase client (realtime-js, unmodified) across a daemon restart on the same port: it
// reconnects by itself, rejoins its channel, and gets what is written after the rejoin. What was
// written while it was away is not replayed: realtime-js has no position to send back
// (docs/SUPABASE.md, "Resuming").

import t from 'tap';
import { resolveServeConfig } from '../../src/config.js';
import { startDaemon, type Daemon } from '../../src/daemon.js';
import { silentLogger } from '../../src/log.js';
import { migrate } from '../../src/sql/migrate.js';
import { freePort } from '../../src/util/free-port.js';
import { query } from '../helpers/capture.js';
import { withPostgres } from '../helpers/pg.js';
import { Inbox, supabaseClient } from '../helpers/supabase.js';
import { hsToken, SECRET } from '../helpers/tokens.js';

const db = await withPostgres(t);
await migrate(db.url);
await query(
  db.url,
  `create table messages (id bigserial primary key, owner text not null, body text);
   select walcast.enable('messages');
   insert into walcast.casbin_rule (ptype, v0, v1, v2, v3, v4) values ('p', '*', 'table', 'public.messages', 'read', 'r.obj.row.owner == r.sub.id');`,
);
const port = await freePort();
const start = () => startDaemon(resolveServeConfig({ db: db.url, port: String(port), jwtSecret: SECRET }, {}), silentLogger);
let daemon: Daemon | null = await start();
t.teardown(() => daemon?.stop());

t.test('the daemon restarts: the client reconnects, rejoins and gets the writes after its rejoin', async (t) => {
  for (const vsn of ['1.0.0', '2.0.0'] as const) {
    const client = await supabaseClient(t, port, { apikey: await hsToken({ role: 'anon' }), token: await hsToken({ sub: 'ann' }), vsn });
    const got = new Inbox<{ new: { body?: string; owner?: string } }>();
    const statuses = new Inbox<string>();
    client
      .channel(`mine:${vsn}`)
      .on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'messages' }, got.push as never)
      .subscribe((s) => statuses.push(s));
    await statuses.find((s) => s === 'SUBSCRIBED');
    await query(db.url, `insert into messages (owner, body) values ('ben', $1), ('ann', $2)`, [`${vsn} not ann's`, `${vsn} before`]);
    await got.find((p) => p.new.body === `${vsn} before`);

    const joins = statuses.items.filter((s) => s === 'SUBSCRIBED').length;
    await daemon?.stop();
    daemon = null;
    await query(db.url, `insert into messages (owner, body) values ('ann', $1)`, [`${vsn} while down`]);
    daemon = await start();
    await statuses.find(() => statuses.items.filter((s) => s === 'SUBSCRIBED').length > joins, 30_000, 'SUBSCRIBED again after the restart');
    await query(db.url, `insert into messages (owner, body) values ('ben', $1), ('ann', $2)`, [`${vsn} not ann's either`, `${vsn} after`]);
    await got.find((p) => p.new.body === `${vsn} after`, 10_000, 'the write after the rejoin');
    t.ok(got.items.every((p) => p.new.owner === 'ann'), `${vsn}: only ann's rows, before and after the restart`);
    t.notOk(got.items.some((p) => p.new.body === `${vsn} while down`), `${vsn}: what was written while away is not replayed (no position to resume from)`);
    await client.disconnect();
  }
});
