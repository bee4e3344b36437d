// walcast.casbin_rule (sql/002) and `walcast policy add|remove|list`: rules in the table, in the
// change stream (so policy changes apply in commit order), and announced by NOTIFY.
import pg from 'pg';
import t from 'tap';
import { migrate } from '../../src/sql/migrate.js';
import { query, startCollector, waitUntil } from '../helpers/capture.js';
import { runCli } from '../helpers/cli.js';
import { withPostgres } from '../helpers/pg.js';

t.test('policy add, list, remove through the CLI; changes in the stream and on NOTIFY', async (t) => {
  const db = await withPostgres(t);
  const fresh = await runCli(['policy', 'list', '--db', db.url]);
  t.equal(fresh.code, 1, 'before migrate: fails');
  t.match(fresh.stderr, /walcast migrate/, 'and names the fix');
  await migrate(db.url);

  const listener = new pg.Client({ connectionString: db.url });
  await listener.connect();
  t.teardown(() => listener.end());
  const notes: string[] = [];
  listener.on('notification', (n) => notes.push(`${n.channel}:${n.payload}`));
  await listener.query('listen walcast_policy');

  const c = await startCollector(t, { url: db.url, slot: 'policy_slot' });
  const P = ['p', 'member', 'table', 'public.messages', 'read', 'g2(r.sub.id, "room:" + r.obj.row.room_id)'];
  const add = await runCli(['policy', 'add', '--db', db.url, ...P]);
  t.equal(add.code, 0);
  t.match(add.lines[0], /^added: p, member, table, public\.messages, read, /);
  const again = await runCli(['policy', 'add', '--db', db.url, ...P]);
  t.match(again.lines[0], /already present/, 'adding twice is a no-op');
  t.equal((await runCli(['policy', 'add', '--db', db.url, 'g', 'alice', 'member'])).code, 0);

  const list = await runCli(['policy', 'list', '--db', db.url]);
  t.same(list.lines, ['g, alice, member', 'p, member, table, public.messages, read, "g2(r.sub.id, ""room:"" + r.obj.row.room_id)"']);
  const json = await runCli(['policy', 'list', '--db', db.url, '--json']);
  t.same(JSON.parse(json.lines[0]), { ptype: 'g', values: ['alice', 'member'] });

  const removed = await runCli(['policy', 'remove', '--db', db.url, 'g', 'alice', 'member']);
  t.match(removed.lines[0], /^removed: g, alice, member/);
  const missing = await runCli(['policy', 'remove', '--db', db.url, 'g', 'alice', 'member']);
  t.equal(missing.code, 1, 'removing a missing rule exits 1');
  t.match(missing.lines[0], /not present/);
  const bad = await runCli(['policy', 'add', '--db', db.url, 'x', 'a']);
  t.equal(bad.code, 1);
  t.match(bad.stderr, /bad policy type/);
  // Rules the model could not use are refused before they reach the table (they would allow nothing).
  for (const [args, why] of [
    [['p', 'member', 'public.messages', 'read'], /has 5 values/],
    [['p', '*', 'table', 'public.messages', 'read', 'r.obj.row.room_id =='], /does not parse/],
    [['p', '*', 'table', 'public.messages', 'read', 'isMember(r.sub.id)'], /calls isMember\(\)/],
    [['g3', 'alice', 'x'], /no role definition g3/],
  ] as const) {
    const r = await runCli(['policy', 'add', '--db', db.url, ...args]);
    t.equal(r.code, 1, `refused: ${args.join(' ')}`);
    t.match(r.stderr, why);
    t.match(r.stderr, /bad_policy|fix/);
  }

  await c.waitFor(() => c.changes('walcast.casbin_rule').length >= 3, 10_000, 'policy changes in the stream');
  const ops = c.changes('walcast.casbin_rule').map((ch) => `${ch.tag}:${JSON.stringify('new' in ch ? ch.new : ch.tag === 'delete' ? ch.old : null)}`);
  t.equal(ops.length, 3, 'two inserts and a delete in the change stream');
  t.match(ops[0], /^insert:.*"ptype":"p".*"v0":"member"/);
  t.match(ops[2], /^delete:.*"v0":"alice"/, 'the delete carries the whole old row');
  // A notification of our own, committed last: notifications arrive in commit order.
  await query(db.url, "select pg_notify('walcast_policy', 'barrier')");
  await waitUntil(() => notes.includes('walcast_policy:barrier'), 10_000, () => `our notification (have ${JSON.stringify(notes)})`);
  t.same(notes, ['walcast_policy:INSERT', 'walcast_policy:INSERT', 'walcast_policy:DELETE', 'walcast_policy:barrier'], 'NOTIFY for each change, none for the no-ops');
});
