// Users and groups are kept apart (issue 11, item 2): no token `sub` is a group (a role, a
// relation object) by being spelled like one. The link store's rule on small graphs, reach()
// agreeing with it on random ones, and the authorizer's decisions for the attacks.
import { readFileSync } from 'node:fs';
import t from 'tap';
import { PolicyAuthorizer } from '../../src/auth/authorizer.js';
import { parseModel } from '../../src/auth/model.js';
import { parseRelation } from '../../src/auth/relations.js';
import { GroupNames, LinkStore, type SourceKind } from '../../src/auth/store.js';
import type { Row } from '../../src/capture/pgoutput.types.js';

const MODEL = parseModel(readFileSync(new URL('../../models/default.conf', import.meta.url), 'utf8'));
const ruleRow = (ptype: string, ...v: string[]): Row => ({ ptype, v0: v[0] ?? '', v1: v[1] ?? '', v2: v[2] ?? '', v3: v[3] ?? '', v4: v[4] ?? '', v5: '' });

function store(links: [SourceKind, string, string][]): LinkStore {
  const s = new LinkStore(new GroupNames());
  for (const [k, a, b] of links) s.change(k, a, b, 1, null, true);
  return s;
}

t.test('a name is a user or a group, never both', async (t) => {
  const s = store([
    ['u', 'alice', 'room:1'],
    ['?', 'bob', 'admin'],
    ['?', 'admin', 'super'],
    ['?', 'role:admin', 'role:super'],
    ['?', 'carol', 'role:admin'],
    ['u', 'did:key:z6', 'room:1'],
    ['g', 'team:5', 'room:2'],
    ['u', 'erin', 'team:5'],
  ]);
  const has = (u: string, g: string) => s.has(u, g, null);
  t.ok(has('alice', 'room:1'), 'a member');
  t.notOk(has('room:1', 'room:1'), 'sub "room:1" is not a member of room:1');
  t.notOk(has('role:admin', 'role:admin'), 'sub "role:admin" does not hold role:admin');
  t.notOk(has('role:admin', 'role:super'), 'nor what role:admin inherits: its links are a group\'s');
  t.ok(has('carol', 'role:super'), 'a user holding role:admin inherits role:super');
  t.ok(has('bob', 'super'), 'bare role names: bob → admin → super');
  t.notOk(has('admin', 'admin'), '"admin" is a link target, so a group: sub "admin" is not it');
  t.notOk(has('admin', 'super'), 'nor does sub "admin" get what the group admin inherits');
  t.ok(has('zed', 'zed'), 'a name no link points to, without ":", is a user id: itself');
  t.notOk(has('zed', 'room:1'), 'and nothing more');
  t.ok(has('did:key:z6', 'room:1'), 'a user id with ":" from a relation subject {user_id} is a user');
  t.ok(has('erin', 'room:2'), 'user → team:5 (a group subject) → room:2');
  t.notOk(has('team:5', 'room:2'), 'sub "team:5" is not the team');
  t.ok(has('alice', 'alice') && !has('alice', 'bob'), 'identity only for oneself');
});

t.test('the target of any role definition is a group in all of them', async (t) => {
  const groups = new GroupNames();
  const g = new LinkStore(groups);
  const g2 = new LinkStore(groups);
  g.change('u', 'ann', 'editors', 1, null, true);
  t.notOk(g2.has('editors', 'editors', null), '"editors" is a group, also in g2');
  t.ok(g2.has('ann', 'ann', null), 'ann is still herself');
  g.change('u', 'ann', 'editors', -1, null, true);
  g.clear();
  t.ok(g2.has('editors', 'editors', null), 'once no link points to it, the name is free again');
});

t.test('reach lists exactly the users has() lets through (random graphs)', async (t) => {
  const names = ['alice', 'bob', 'admin', 'super', 'role:a', 'role:b', 'room:1', 'room:2', 'team:1', 'x:y'];
  let seed = 7;
  const r = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const pick = <T>(a: readonly T[]) => a[Math.floor(r() * a.length)];
  let compared = 0;
  for (let round = 0; round < 200; round++) {
    const links: [SourceKind, string, string][] = [];
    const n = 1 + Math.floor(r() * 10);
    for (let i = 0; i < n; i++) links.push([pick(['u', 'g', '?'] as const), pick(names), pick(names)]);
    const s = store(links);
    for (const b of names) {
      const into = new Set<string>();
      s.reaching(b, into);
      for (const u of names) {
        if (s.has(u, b, null) !== into.has(u)) t.fail(`round ${round}: ${JSON.stringify(links)}: has(${u}, ${b}) = ${s.has(u, b, null)}, reach says ${into.has(u)}`);
        compared++;
      }
    }
  }
  t.equal(compared, 200 * 100);
});

t.test('the authorizer: "room:1" and "role:admin" as sub get nothing of what they are spelled like', async (t) => {
  const decl = parseRelation('public.room_members {user_id} room:{room_id}');
  t.equal(decl.subjectKind, 'u');
  t.equal(parseRelation('public.team_rooms team:{team_id} room:{room_id}').subjectKind, 'g');
  const auth = new PolicyAuthorizer(MODEL, [decl]);
  auth.install(
    null,
    [
      ruleRow('p', '*', 'table', 'public.messages', 'read', 'g2(r.sub.id, "room:" + r.obj.row.room_id)'),
      ruleRow('p', '*', 'channel', 'room:*', 'join', 'g2(r.sub.id, r.obj.name)'),
      ruleRow('p', 'role:admin', 'table', 'public.*', 'read', 'true'),
      ruleRow('p', 'bob', 'table', 'public.bobs', 'read', 'true'),
    ],
    [[decl, [{ user_id: 'alice', room_id: '1' }]]],
  );
  const id = (s: string) => ({ sub: s, id: s });
  const row = { room_id: 1 };
  t.ok(auth.mayRead(id('alice'), 'public.messages', row, null), 'the member reads room 1');
  t.notOk(auth.mayRead(id('room:1'), 'public.messages', row, null), 'sub "room:1" does not');
  t.ok(auth.mayAct(id('alice'), 'channel', 'room:1', 'join'), 'the member joins');
  t.notOk(auth.mayAct(id('room:1'), 'channel', 'room:1', 'join'), 'sub "room:1" does not');
  t.notOk(auth.mayRead(id('role:admin'), 'public.secrets', {}, null), 'p role:admin with no g row: sub "role:admin" reads nothing');
  t.ok(auth.mayRead(id('bob'), 'public.bobs', {}, null), 'a rule naming a user id still applies to that user');
  t.same([...(auth.reach('public.messages', row) ?? [])], ['alice'], 'reach: the member, not "room:1"');
  auth.install(null, [ruleRow('p', 'role:admin', 'table', 'public.*', 'read', 'true'), ruleRow('g', 'alice', 'role:admin')], []);
  t.ok(auth.mayRead(id('alice'), 'public.secrets', {}, null), 'g alice role:admin: alice reads');
  t.notOk(auth.mayRead(id('role:admin'), 'public.secrets', {}, null), 'sub "role:admin" still does not');
});
