// `walcast status` (issue 6, item 4): the slot, its lag and WAL retention, the published tables,
// and a running daemon's clients, subscriptions and window; a table, or --json.
import t from 'tap';
import { resolveServeConfig } from '../../src/config.js';
import { startDaemon } from '../../src/daemon.js';
import { silentLogger } from '../../src/log.js';
import { migrate } from '../../src/sql/migrate.js';
import { query } from '../helpers/capture.js';
import { runCli } from '../helpers/cli.js';
import { withPostgres } from '../helpers/pg.js';
import { freePort, WsClient } from '../helpers/ws.js';

const db = await withPostgres(t);
await migrate(db.url);
await query(db.url, "create table notes (id bigserial primary key, body text); select walcast.enable('notes')");

t.test('before a daemon ever ran: no slot, no daemon', async (t) => {
  const port = await freePort();
  const r = await runCli(['status', '--db', db.url, '--daemon', `http://127.0.0.1:${port}`, '--json']);
  t.equal(r.code, 0);
  const s = JSON.parse(r.lines[0]);
  t.match(s, { slot: { name: 'walcast', exists: false }, settings: { walLevel: 'logical' }, daemon: { reachable: false } });
  t.ok(s.publication.tables.includes('public.notes') && s.publication.tables.includes('walcast.casbin_rule'), 'the published tables');
  const human = await runCli(['status', '--db', db.url, '--daemon', `http://127.0.0.1:${port}`]);
  t.match(human.lines.join('\n'), /slot\s+walcast: not created/);
  t.match(human.lines.join('\n'), /daemon\s+http:\/\/127\.0\.0\.1:\d+: not reachable/);
});

t.test('with a daemon: the active slot, its lag, and the daemon\'s clients and window', async (t) => {
  const d = await startDaemon(resolveServeConfig({ db: db.url, port: '0', auth: false }, {}), silentLogger);
  t.teardown(() => d.stop());
  const c = await WsClient.connect(`ws://127.0.0.1:${d.port}/ws`);
  t.teardown(() => c.close());
  await c.subscribe({ id: 1, table: 'notes' });
  await query(db.url, "insert into notes (body) values ('x')");
  await c.waitChanges(1, 1);
  const r = await runCli(['status', '--db', db.url, '--daemon', `http://127.0.0.1:${d.port}`, '--json']);
  const s = JSON.parse(r.lines[0]);
  t.match(s.slot, { exists: true, active: true, walStatus: 'reserved' }, 'active and reserved');
  t.type(s.slot.lagBytes, 'number', 'lag in bytes');
  t.ok(s.slot.lagBytes >= 0);
  t.match(s.daemon, { reachable: true, status: { replication: 'streaming', clients: 1, subscriptions: 1, window: { transactions: 1 } } });
  const human = await runCli(['status', '--db', db.url, '--daemon', `http://127.0.0.1:${d.port}`]);
  t.match(human.lines.join('\n'), /slot\s+walcast \(active, pid \d+\)/);
  t.match(human.lines.join('\n'), /daemon\s+.*streaming, 1 clients, 1 subscriptions/);
  t.match(human.lines.join('\n'), /window\s+\S+ \.\. \S+: 1 transactions/);
});
