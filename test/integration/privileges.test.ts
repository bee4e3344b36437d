// docs/OPERATIONS.md against a real Postgres: its SQL blocks (marked `<!-- sql: NAME -->`) are
// run verbatim, and `walcast serve` and `walcast status` then run as the least-privilege role
// they create: LOGIN REPLICATION, connect, usage on schema walcast, select on
// walcast.casbin_rule and on the relation table, and nothing on the streamed table; an
// application role granted walcast.broadcast() the way the docs say broadcasts from SQL. Then WAL
// retention (an invalidated slot and the daemon's restart), the refusal without REPLICATION,
// and decommissioning.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { resolveServeConfig } from '../../src/config.js';
import { startDaemon } from '../../src/daemon.js';
import { silentLogger } from '../../src/log.js';
import { migrate } from '../../src/sql/migrate.js';
import { packageRoot } from '../../src/util/package-root.js';
import { query, releasedSlot, waitUntil } from '../helpers/capture.js';
import { runCli, spawnCli, type CliProcess } from '../helpers/cli.js';
import { withPostgres } from '../helpers/pg.js';
import { hsToken, SECRET } from '../helpers/tokens.js';
import { connectWs, servedPort, type ChangeMsg } from '../helpers/ws.js';

const OPERATIONS = readFileSync(join(packageRoot(), 'docs/OPERATIONS.md'), 'utf8');

/** The statements of the ```sql block that follows `<!-- sql: NAME -->` in OPERATIONS.md. */
function docSql(name: string): string[] {
  const at = OPERATIONS.indexOf(`<!-- sql: ${name} -->`);
  if (at < 0) throw new Error(`docs/OPERATIONS.md has no block ${name}`);
  const m = /```sql\n([\s\S]*?)```/.exec(OPERATIONS.slice(at));
  if (!m) throw new Error(`no sql block after ${name}`);
  const text = m[1]
    .split('\n')
    .filter((l) => !l.trim().startsWith('--'))
    .join('\n');
  return text
    .split(/;\s*(?:\n|$)/)
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/** Runs a doc block statement by statement (ALTER SYSTEM may not share a transaction). */
async function runDocSql(url: string, name: string): Promise<Array<Record<string, unknown>>> {
  let rows: Array<Record<string, unknown>> = [];
  for (const stmt of docSql(name)) rows = await query(url, stmt);
  return rows;
}

const RELATION = 'public.room_members {user_id} room:{room_id}';
const SLOT = 'walcast';

const cluster = await withPostgres(t);
t.teardown(() => {
  if (!t.passing()) t.comment(cluster.logTail(40));
});
// The docs' role SQL names the database `app`.
await query(cluster.url, 'create database app');
const admin = cluster.urlFor({ database: 'app' });
const daemonUrl = cluster.urlFor({ database: 'app', user: 'walcast_daemon', password: 'change-me' });
const monitorUrl = cluster.urlFor({ database: 'app', user: 'walcast_monitor', password: 'change-me' });
const backendUrl = cluster.urlFor({ database: 'app', user: 'app_backend', password: 'change-me' });

const serveArgs = ['serve', '--db', daemonUrl, '--port', '0', '--relation', RELATION];
const serveEnv = { WALCAST_JWT_SECRET: SECRET };

async function startServe(t: Test): Promise<{ proc: CliProcess; port: number }> {
  const proc = spawnCli(serveArgs, { env: serveEnv, timeoutMs: 120_000 });
  t.teardown(() => proc.kill('SIGKILL'));
  await proc.waitFor(() => servedPort(proc.stderr) !== null, 'walcast serve listening', 20_000);
  return { proc, port: servedPort(proc.stderr) as number };
}

async function slotHealth(): Promise<Array<Record<string, unknown>>> {
  return runDocSql(monitorUrl, 'slot-health');
}

// Filled in as the daemon runs, read by the later subtests.
let lastPos = '';

t.test('§2: the settings, changed and checked with the docs\' SQL', async (t) => {
  await runDocSql(cluster.url, 'settings-change');
  await cluster.restart();
  const rows = await runDocSql(cluster.url, 'settings-check');
  const by = Object.fromEntries(rows.map((r) => [r.name, r]));
  t.same(Object.keys(by).sort(), ['max_replication_slots', 'max_slot_wal_keep_size', 'max_wal_senders', 'wal_level', 'wal_sender_timeout']);
  t.match(by.wal_level, { setting: 'logical', context: 'postmaster' }, 'wal_level: restart');
  t.match(by.max_replication_slots, { setting: '10', context: 'postmaster' });
  t.match(by.max_wal_senders, { setting: '10', context: 'postmaster' });
  t.match(by.max_slot_wal_keep_size, { setting: String(64 * 1024), unit: 'MB', context: 'sighup' }, '64GB, reload is enough');
  t.match(by.wal_sender_timeout, { setting: '60000', unit: 'ms', context: 'user' }, 'the default 60s; no restart needed');
});

t.test('§3: migrations and policies by the admin, then the daemon\'s role from the docs', async (t) => {
  await migrate(admin);
  await query(admin, 'create table messages (id bigserial primary key, room_id int not null, body text)');
  await query(admin, 'create table room_members (user_id text not null, room_id int not null, primary key (user_id, room_id))');
  await query(admin, "select walcast.enable('public.messages'), walcast.enable('public.room_members')");
  await query(admin, "insert into room_members values ('alice', 1)");
  const added = await runCli(['policy', 'add', '--db', admin, 'p', '*', 'table', 'public.messages', 'read', 'g2(r.sub.id, "room:" + r.obj.row.room_id)']);
  t.equal(added.code, 0, `policy added: ${added.stderr}`);
  const join = await runCli(['policy', 'add', '--db', admin, 'p', '*', 'channel', 'room:*', 'join', 'g2(r.sub.id, r.obj.name)']);
  t.equal(join.code, 0, `policy added: ${join.stderr}`);

  await runDocSql(admin, 'daemon-role');
  await runDocSql(admin, 'monitor-role');
  await runDocSql(admin, 'broadcast-role');
  t.equal((await runDocSql(monitorUrl, 'settings-check')).length, 5, 'the settings query of §2 runs as the monitoring role');
  const [role] = await query(admin, "select rolcanlogin, rolreplication, rolsuper, rolcreatedb, rolcreaterole from pg_roles where rolname = 'walcast_daemon'");
  t.same(role, { rolcanlogin: true, rolreplication: true, rolsuper: false, rolcreatedb: false, rolcreaterole: false }, 'LOGIN REPLICATION, nothing more');
  const [can] = await query(
    admin,
    `select has_table_privilege('walcast_daemon', 'public.messages', 'select') as messages,
            has_table_privilege('walcast_daemon', 'walcast.casbin_rule', 'select') as rules,
            has_table_privilege('walcast_daemon', 'walcast.casbin_rule', 'insert') as rules_insert,
            has_table_privilege('walcast_daemon', 'public.room_members', 'select') as members,
            has_function_privilege('walcast_daemon', 'walcast.enable(regclass)', 'execute') as enable,
            has_function_privilege('walcast_daemon', 'walcast.broadcast(text, text, jsonb)', 'execute') as broadcast,
            has_function_privilege('walcast_monitor', 'walcast.broadcast(text, text, jsonb)', 'execute') as monitor_broadcast,
            has_function_privilege('app_backend', 'walcast.broadcast(text, text, jsonb)', 'execute') as backend_broadcast,
            has_table_privilege('app_backend', 'walcast.broadcasts', 'insert') as backend_insert,
            has_schema_privilege('walcast_daemon', 'walcast', 'create') as create_in_walcast`,
  );
  t.same(can, { messages: false, rules: true, rules_insert: false, members: true, enable: true, broadcast: false, monitor_broadcast: false, backend_broadcast: true, backend_insert: false, create_in_walcast: false },
    'no privilege on the streamed table; read-only on the policies (functions are executable by PUBLIC by default, and the daemon calls none); walcast.broadcast only for the role granted it');
});

t.test('walcast serve as walcast_daemon: authorized changes, HTTP endpoints, JSON logs, status', async (t) => {
  const { proc, port } = await startServe(t);
  const alice = await connectWs(t, `ws://127.0.0.1:${port}/ws?token=${await hsToken({ sub: 'alice' })}`);
  // The catalog (columns for filters) is read as walcast_daemon too.
  await alice.subscribe({ id: 'm', table: 'messages', filter: 'room_id=in.(1,2)' });
  const unknown = await alice.subscribe({ id: 'x', table: 'no_such_table' }, { allowFailure: true });
  t.match(unknown, { type: 'error', code: 'unknown_table' });
  await query(admin, "insert into messages (room_id, body) values (2, 'not for alice')");
  await query(admin, "insert into messages (room_id, body) values (1, 'hello alice')");
  const [change] = await alice.waitChanges('m', 1);
  t.match(change, { op: 'insert', table: 'public.messages', new: { room_id: 1, body: 'hello alice' } }, 'the change arrives, authorized by the relation table');
  t.equal(alice.changes('m').length, 1, 'room 2 (committed before it) was not delivered: alice is not a member');
  lastPos = change.pos;
  // A snapshot needs SELECT on the table (the role of the docs has none): snapshot_failed, and
  // the connection goes on; granted, the rows come, judged by the same policies.
  const refused = await alice.request({ type: 'subscribe', id: 's1', table: 'messages', snapshot: true });
  t.match(refused, { type: 'error', code: 'snapshot_failed', id: 's1' }, 'no SELECT on the table: snapshot_failed');
  t.match(refused.message as string, /may not read this table/, 'saying why');
  await query(admin, 'grant select on public.messages to walcast_daemon');
  t.teardown(() => query(admin, 'revoke select on public.messages from walcast_daemon'));
  const from = alice.messages.length;
  t.match(await alice.request({ type: 'subscribe', id: 's2', table: 'messages', snapshot: true }), { type: 'subscribed', id: 's2' }, 'with SELECT granted: subscribed (walcast.snapshot_mark needs no grant)');
  const rows = alice.messages.slice(from).filter((m) => m.type === 'snapshot').flatMap((m) => m.rows as { body: string }[]);
  t.same(rows.map((r) => r.body), ['hello alice'], 'only the row of her room');
  t.match(await alice.request({ type: 'unsubscribe', id: 's2' }), { type: 'unsubscribed' });
  // A broadcast from SQL by the role of the docs' broadcast-role block; the others may not.
  t.match(await alice.request({ type: 'join', channel: 'room:1' }), { type: 'joined' });
  await t.rejects(query(daemonUrl, "select walcast.broadcast('room:1', 'not-yours', null)"), { code: '42501' }, 'the daemon role may not broadcast');
  await query(backendUrl, `select walcast.broadcast('room:1', 'hello', '{"from": "sql"}')`);
  t.match(await alice.next((m) => m.type === 'broadcast'), { channel: 'room:1', event: 'hello', payload: { from: 'sql' } }, 'the granted role broadcasts from SQL');

  const base = `http://127.0.0.1:${port}`;
  const health = await fetch(`${base}/healthz`);
  t.equal(health.status, 200, '/healthz 200 while streaming');
  const status = (await (await fetch(`${base}/status`)).json()) as { window: { walBound: unknown; walHeld: unknown } };
  t.match(status, { slot: SLOT, replication: 'streaming', clients: 1, subscriptions: 1, auth: { ready: true }, snapshots: { done: 1, failed: 1 } }, '/status');
  t.type(status.window.walBound, 'number', '/status window.walBound');
  t.type(status.window.walHeld, 'number', '/status window.walHeld');
  const metrics = await (await fetch(`${base}/metrics`)).text();
  const documented = [...OPERATIONS.matchAll(/^\| `(walcast_[a-z0-9_]+)` \|/gm)].map((m) => m[1]);
  t.ok(documented.length >= 15, 'the metrics table of OPERATIONS.md');
  for (const name of documented) t.match(metrics, new RegExp(`^# TYPE ${name} `, 'm'), `/metrics has ${name}`);
  t.match(metrics, /^walcast_process_/m, 'process metrics under walcast_process_');
  t.equal((await fetch(`${base}/nothing`)).status, 404);

  // `walcast status` as the daemon's role and as the monitoring role (LOGIN only).
  for (const [who, url] of [['walcast_daemon', daemonUrl], ['walcast_monitor', monitorUrl]]) {
    const r = await runCli(['status', '--db', url, '--daemon', base, '--json']);
    t.equal(r.code, 0, `status as ${who}: ${r.stderr}`);
    const s = JSON.parse(r.lines[0]);
    t.match(s, {
      slot: { name: SLOT, exists: true, active: true, walStatus: 'reserved' },
      settings: { walLevel: 'logical', maxSlotWalKeepSize: '64GB' },
      daemon: { reachable: true, status: { replication: 'streaming' } },
    }, `status as ${who}`);
    t.ok(s.publication.tables.includes('public.messages'), 'the published tables');
  }
  const human = await runCli(['status', '--db', monitorUrl, '--daemon', base]);
  t.match(human.lines.join('\n'), /window WAL held\s+.* of at most 1\.0 GiB/, 'the WAL the window holds, against --max-slot-lag');

  const [slot] = await slotHealth();
  t.match(slot, { slot_name: SLOT, active: true, wal_status: 'reserved' }, 'the slot-health query, as walcast_monitor');
  t.type(slot.safe_wal_size, 'string', 'safe_wal_size (pretty) while max_slot_wal_keep_size is set');
  await t.rejects(runDocSql(daemonUrl, 'drop-slot'), { code: '55006' }, 'the slot cannot be dropped while a daemon reads it');

  // Graceful shutdown: 1001 to clients, exit 0, slot released.
  proc.kill('SIGTERM');
  const closed = await alice.waitClose(10_000);
  t.equal(closed.code, 1001, 'clients closed with 1001');
  const r = await proc.wait(15_000);
  t.equal(r.code, 0, 'exit 0 after SIGTERM');
  t.same(r.lines, [], 'nothing on stdout');
  const jsonLines = r.stderrLines.filter((l) => l.startsWith('{'));
  t.ok(jsonLines.length >= 3, 'JSON log lines on stderr');
  for (const l of jsonLines) t.match(JSON.parse(l), { level: Number, time: Number, name: 'walcast', msg: String });
  const msgs = jsonLines.map((l) => JSON.parse(l).msg as string);
  for (const m of ['policies loaded', 'replication streaming', 'walcast serving', 'shutting down']) t.ok(msgs.includes(m), `logged: ${m}`);
  t.notOk(msgs.includes('slot lag bound lowered to 3/4 of max_slot_wal_keep_size'), '1GiB is below 3/4 of 64GB: not clamped');
  const released = await releasedSlot(daemonUrl, SLOT);
  t.equal(released.active, false, 'the slot is released');
});

t.test('REPLICATION lets the role decode tables it may not read (the security note of §3)', async (t) => {
  await query(admin, "create table secret (id int primary key, v text); insert into secret values (0, 'seed')");
  await query(daemonUrl, "select pg_create_logical_replication_slot('peek', 'test_decoding')");
  t.teardown(() => query(admin, "select pg_drop_replication_slot('peek') from pg_replication_slots where slot_name = 'peek'"));
  await query(admin, "insert into secret values (1, 'hidden')");
  await t.rejects(query(daemonUrl, 'select * from secret'), { code: '42501' }, 'no SELECT on it');
  const rows = await query<{ data: string }>(daemonUrl, "select data from pg_logical_slot_get_changes('peek', null, null)");
  t.ok(rows.some((r) => r.data.includes("'hidden'")), 'yet its changes are readable through a slot of its own');
});

t.test('§4: an invalidated slot (max_slot_wal_keep_size): wal_status lost, recreated at start, clients resync', async (t) => {
  t.ok(lastPos, 'a position from the first run');
  await query(cluster.url, "alter system set max_slot_wal_keep_size = '1MB'");
  await query(cluster.url, 'select pg_reload_conf()');
  // The daemon is down: WAL piles up behind the slot until it passes the limit.
  let walStatus = '';
  for (let i = 0; i < 12 && walStatus !== 'lost'; i++) {
    await query(admin, "insert into messages (room_id, body) values (1, 'while down')");
    await query(admin, 'select pg_switch_wal()');
    await query(admin, 'checkpoint');
    walStatus = String((await slotHealth()).find((r) => r.slot_name === SLOT)?.wal_status);
  }
  t.equal(walStatus, 'lost', 'the slot-health query shows wal_status lost');
  const st = JSON.parse((await runCli(['status', '--db', monitorUrl, '--json'])).lines[0]);
  t.match(st.slot, { exists: true, active: false, walStatus: 'lost', safeWalSize: null }, 'walcast status shows it');

  const { proc, port } = await startServe(t);
  await proc.waitFor(() => /slot had been invalidated and was recreated/.test(proc.stderr), 'the recreation warning');
  t.match(proc.stderr, /slot lag bound lowered to 3\/4 of max_slot_wal_keep_size/, 'the lag bound is clamped under 1MB, with a warning');
  const alice = await connectWs(t, `ws://127.0.0.1:${port}/ws?token=${await hsToken({ sub: 'alice' })}`);
  const resumed = await alice.subscribe({ id: 'old', table: 'messages', since: lastPos }, { allowFailure: true });
  t.match(resumed, { type: 'resync', sub: 'old', reason: 'slot_recreated' }, 'a position from before the loss: resync, slot_recreated');
  await alice.subscribe({ id: 'new', table: 'messages' });
  await query(admin, "insert into messages (room_id, body) values (1, 'after the loss')");
  const [c] = await alice.waitChanges('new', 1);
  t.match(c as ChangeMsg, { new: { body: 'after the loss' } }, 'a fresh subscription gets new changes');
  t.equal(alice.changes('new').length, 1, 'nothing written while the slot was lost is delivered');
  const [slot] = await slotHealth();
  t.match(slot, { slot_name: SLOT, active: true, wal_status: 'reserved' }, 'the new slot is healthy');

  proc.kill('SIGTERM');
  t.equal((await proc.wait(15_000)).code, 0);
  await releasedSlot(daemonUrl, SLOT);
  await query(cluster.url, "alter system set max_slot_wal_keep_size = '64GB'");
  await query(cluster.url, 'select pg_reload_conf()');
});

t.test('without REPLICATION the daemon refuses: no_replication_privilege', async (t) => {
  await query(admin, 'alter role walcast_daemon noreplication');
  t.teardown(() => query(admin, 'alter role walcast_daemon replication'));
  const started = Date.now();
  const r = await runCli(serveArgs, { env: serveEnv, timeoutMs: 40_000 });
  t.ok(Date.now() - started < 8_000, `it exits at once, nothing lingering (${Date.now() - started} ms)`);
  t.equal(r.code, 1, 'exit 1');
  t.notOk(r.timedOut);
  const plain = r.stderrLines.filter((l) => !l.startsWith('{'));
  t.same(plain, [
    'walcast: role "walcast_daemon" has no REPLICATION privilege',
    '  fix: run ALTER ROLE "walcast_daemon" WITH REPLICATION as a superuser, or connect as a role that has it',
    '  code: no_replication_privilege (docs/errors.md)',
  ], 'one line naming the cause, one naming the fix, one the code');
  // The code itself, as the library reports it.
  const cfg = resolveServeConfig({ db: daemonUrl, port: '0', jwtSecret: SECRET, relation: [RELATION] }, {});
  await t.rejects(startDaemon(cfg, silentLogger), { code: 'no_replication_privilege', name: 'ReplicationPrivilegeError' });
  const status = await runCli(['status', '--db', daemonUrl, '--json']);
  t.equal(status.code, 0, 'walcast status needs no REPLICATION');
});

t.test('each grant of the set is needed: without it serve stops at start', async (t) => {
  const cases: Array<[revoke: string, regrant: string, line: string]> = [
    ['revoke usage on schema walcast from walcast_daemon', 'grant usage on schema walcast to walcast_daemon', 'walcast: reading the policies: permission denied for schema walcast'],
    ['revoke select on walcast.casbin_rule from walcast_daemon', 'grant select on walcast.casbin_rule to walcast_daemon', 'walcast: reading the policies: permission denied for table casbin_rule'],
    ['revoke select on public.room_members from walcast_daemon', 'grant select on public.room_members to walcast_daemon', 'walcast: reading the policies: permission denied for table room_members'],
  ];
  for (const [revoke, regrant, line] of cases) {
    await query(admin, revoke);
    const r = await runCli(serveArgs, { env: serveEnv, timeoutMs: 40_000 });
    await query(admin, regrant);
    t.equal(r.code, 1, `${revoke}: exit 1`);
    const plain = r.stderrLines.filter((l) => !l.startsWith('{'));
    t.equal(plain[0], line, `${revoke}: ${line}`);
    t.equal(plain[2], '  code: insufficient_privilege (docs/errors.md)', `${revoke}: insufficient_privilege`);
  }
  // And with all of them back, it starts again.
  const { proc } = await startServe(t);
  proc.kill('SIGTERM');
  t.equal((await proc.wait(15_000)).code, 0, 'with the whole set it serves');
  await releasedSlot(daemonUrl, SLOT);
});

t.test('§4: decommissioning: drop the slot, then the schema and publication', async (t) => {
  await runDocSql(daemonUrl, 'drop-slot');
  t.same(await query(admin, 'select slot_name from pg_replication_slots'), [], 'no slot left');
  await runDocSql(admin, 'uninstall');
  t.same(await query(admin, "select 1 from pg_publication where pubname = 'walcast'"), [], 'publication gone');
  t.same(await query(admin, "select 1 from pg_namespace where nspname = 'walcast'"), [], 'schema gone');
  await waitUntil(async () => (await query(admin, 'select count(*)::int as n from pg_stat_replication'))[0].n === 0, 5_000);
});
