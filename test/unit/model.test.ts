// The shipped default model (models/default.conf) expresses roles, conditions on row columns and
// relations, with deny by default. In-memory policies; loading them from walcast.casbin_rule and
// enforcing per change is the authorization work (issue 4).
import { readFileSync } from 'node:fs';
import { newEnforcer, newModelFromString } from 'casbin';
import t from 'tap';

const MODEL = readFileSync(new URL('../../models/default.conf', import.meta.url), 'utf8');
const msg = (room: number) => ({ kind: 'table', name: 'public.messages', row: { room_id: room } });

t.test('roles, row conditions, relations; deny unless allowed', async (t) => {
  const e = await newEnforcer(newModelFromString(MODEL));
  await e.addPolicy('member', 'table', 'public.messages', 'read', 'g2(r.sub.id, "room:" + r.obj.row.room_id)');
  await e.addPolicy('*', 'table', 'public.profiles', 'read', 'r.obj.row.owner == r.sub.id');
  await e.addPolicy('admin', 'table', 'public.*', 'read', 'true');
  await e.addPolicy('*', 'channel', 'room:*', 'join', 'g2(r.sub.id, r.obj.name)');
  await e.addGroupingPolicy('alice', 'member');
  await e.addGroupingPolicy('bob', 'member');
  await e.addNamedGroupingPolicy('g2', 'alice', 'room:1');

  t.ok(await e.enforce({ id: 'alice' }, msg(1), 'read'), 'a member of the row\'s room reads it');
  t.notOk(await e.enforce({ id: 'alice' }, msg(2), 'read'), 'not another room\'s');
  t.notOk(await e.enforce({ id: 'bob' }, msg(1), 'read'), 'the role alone is not enough');
  await e.addNamedGroupingPolicy('g2', 'bob', 'room:1');
  t.ok(await e.enforce({ id: 'bob' }, msg(1), 'read'), 'a relation added later applies');
  await e.removeNamedGroupingPolicy('g2', 'bob', 'room:1');
  t.notOk(await e.enforce({ id: 'bob' }, msg(1), 'read'), 'and its removal too');

  const profile = (owner: string) => ({ kind: 'table', name: 'public.profiles', row: { owner } });
  t.ok(await e.enforce({ id: 'carol' }, profile('carol'), 'read'), 'one\'s own row');
  t.notOk(await e.enforce({ id: 'carol' }, profile('dave'), 'read'), 'not another\'s');
  t.notOk(await e.enforce({ id: 'carol' }, profile('carol'), 'delete'), 'only the action granted');

  t.notOk(await e.enforce({ id: 'zed' }, { kind: 'table', name: 'public.secrets', row: {} }, 'read'), 'deny by default');
  await e.addGroupingPolicy('zed', 'admin');
  t.ok(await e.enforce({ id: 'zed' }, { kind: 'table', name: 'public.secrets', row: {} }, 'read'), 'keyMatch on names');
  t.notOk(await e.enforce({ id: 'zed' }, { kind: 'table', name: 'private.secrets', row: {} }, 'read'), 'only within the pattern');

  t.ok(await e.enforce({ id: 'alice' }, { kind: 'channel', name: 'room:1' }, 'join'), 'channels: a member joins its room');
  t.notOk(await e.enforce({ id: 'alice' }, { kind: 'channel', name: 'room:2' }, 'join'), 'not another');
  t.notOk(await e.enforce({ id: 'alice' }, { kind: 'table', name: 'room:1' }, 'join'), 'kinds do not mix');
});
