// Policies loaded from walcast.casbin_rule, then kept in step with the change stream: a grant or a
// revocation committed between two rows applies exactly between them.
import t from 'tap';
import { applyPolicyChange, createEnforcer, loadPolicies } from '../../src/auth/policies.js';
import { migrate } from '../../src/sql/migrate.js';
import { addRule, toRule } from '../../src/sql/policy.js';
import { query, sqlClient, startCollector } from '../helpers/capture.js';
import { withPostgres } from '../helpers/pg.js';

t.test('load at start, then follow the stream in commit order', async (t) => {
  const db = await withPostgres(t);
  await migrate(db.url);
  const c = await sqlClient(t, db.url);
  await c.query('create table msgs (id serial primary key, room int not null, body text)');
  await c.query(`select walcast.enable('msgs')`);
  await addRule(c, toRule('p', ['member', 'table', 'public.msgs', 'read', 'g2(r.sub.id, "room:" + r.obj.row.room)']));
  await addRule(c, toRule('g', ['alice', 'member']));

  const e = await createEnforcer();
  t.equal(await loadPolicies(c, e), 2, 'two rules loaded');
  const canRead = (room: number) => e.enforce({ id: 'alice' }, { kind: 'table', name: 'public.msgs', row: { room } }, 'read');
  t.notOk(await canRead(1), 'no membership yet');

  // Follow the stream: before each row, apply the policy changes committed before it.
  const seen: string[] = [];
  const col = await startCollector(t, {
    url: db.url,
    slot: 'policies_slot',
    onTransaction: async (tx) => {
      for (const ch of tx.changes) {
        if (await applyPolicyChange(e, ch)) continue;
        if (ch.tag === 'insert' && ch.relation.qualified === 'public.msgs') {
          seen.push(`${ch.new.body}:${(await canRead(ch.new.room as number)) ? 'allowed' : 'denied'}`);
        }
      }
    },
  });
  await c.query(`insert into msgs (room, body) values (1, 'before-grant')`);
  await c.query(`insert into walcast.casbin_rule (ptype, v0, v1) values ('g2', 'alice', 'room:1')`);
  await c.query(`insert into msgs (room, body) values (1, 'after-grant')`);
  await c.query('begin');
  await c.query(`insert into msgs (room, body) values (1, 'same-tx-before-revoke')`);
  await c.query(`delete from walcast.casbin_rule where ptype = 'g2' and v0 = 'alice'`);
  await c.query(`insert into msgs (room, body) values (1, 'same-tx-after-revoke')`);
  await c.query('commit');
  await c.query(`insert into msgs (room, body) values (1, 'after-revoke')`);
  await col.waitFor(() => seen.length >= 5, 10_000, 'five rows');
  t.same(seen, ['before-grant:denied', 'after-grant:allowed', 'same-tx-before-revoke:allowed', 'same-tx-after-revoke:denied', 'after-revoke:denied'],
    'each row judged by the policies as of its place in commit order');
  t.equal((await query(db.url, 'select count(*)::int as n from walcast.casbin_rule'))[0].n, 2);
});
