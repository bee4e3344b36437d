// The Supabase endpoint under --no-auth: the apikey is not read (any, or none, connects), tokens
// sent as access_token are accepted unread, and every row is delivered, as on /ws.
import t from 'tap';
import { resolveServeConfig } from '../../src/config.js';
import { startDaemon } from '../../src/daemon.js';
import { silentLogger } from '../../src/log.js';
import { migrate } from '../../src/sql/migrate.js';
import { query } from '../helpers/capture.js';
import { withPostgres } from '../helpers/pg.js';
import { Inbox, subscribed, supabaseClient } from '../helpers/supabase.js';

const db = await withPostgres(t);
await migrate(db.url);
await query(db.url, `create table notes (id bigserial primary key, body text); select walcast.enable('notes');`);
const daemon = await startDaemon(resolveServeConfig({ db: db.url, port: '0', auth: false }, {}), silentLogger);
t.teardown(() => daemon.stop());

t.test('any apikey connects; rows, broadcast and presence work without identities', async (t) => {
  const a = await supabaseClient(t, daemon.port, { apikey: 'anything', token: 'not-a-jwt' });
  const b = await supabaseClient(t, daemon.port, { apikey: 'x', vsn: '1.0.0' });
  const rows = new Inbox<{ new: { body: string } }>();
  const said = new Inbox<{ payload: unknown }>();
  const joins = new Inbox<{ key: string }>();
  const ca = a.channel('open').on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'notes' }, rows.push as never);
  const cb = b.channel('open').on('broadcast', { event: 'hi' }, said.push as never).on('presence', { event: 'join' }, joins.push as never);
  t.match(await subscribed(ca), { status: 'SUBSCRIBED' });
  t.match(await subscribed(cb), { status: 'SUBSCRIBED' });
  await query(db.url, `insert into notes (body) values ('open to all')`);
  t.match((await rows.find(() => true)).new, { body: 'open to all' });
  t.equal(await ca.send({ type: 'broadcast', event: 'hi', payload: 1 }), 'ok');
  t.match(await said.find(() => true), { payload: 1 });
  t.equal(await ca.track({ here: true }), 'ok');
  const join = await joins.find(() => true);
  t.type(join.key, 'string', 'keyed by the connection (no user under --no-auth)');
});
