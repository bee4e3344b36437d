// walcast's compiled authorizer against Casbin itself: random policies, role links and relations,
// every (user, row) decision compared with Casbin's enforceSync on the same model, now and at
// past positions (the rules and links in force then). Reach must never leave out an allowed user.
import { newEnforcer, newModelFromString } from 'casbin';
import { readFileSync } from 'node:fs';
import t from 'tap';
import { PolicyAuthorizer } from '../../src/auth/authorizer.js';
import { parseModel } from '../../src/auth/model.js';
import { parseRelation } from '../../src/auth/relations.js';
import type { Position } from '../../src/protocol/position.js';
import type { CapturedChange as Change } from '../../src/capture/types.js';
import type { Relation, Row } from '../../src/capture/pgoutput.types.js';

const MODEL = readFileSync(new URL('../../models/default.conf', import.meta.url), 'utf8');
const USERS = ['alice', 'bob', 'carol', 'dave', 'erin'];
const CONDS = [
  'true',
  'r.obj.row.owner_id == r.sub.id',
  'g2(r.sub.id, "room:" + r.obj.row.room_id)',
  'r.sub.role == "admin"',
  'g2(r.sub.id, "room:" + r.obj.row.room_id) && r.obj.row.hidden == false',
  '!r.obj.row.hidden',
  'r.obj.row.level >= 3 || r.sub.id == "carol"',
  'g2(r.sub.id, "friend:" + r.obj.row.owner_id)',
];
const SUBJECTS = ['*', 'alice', 'bob', 'role:staff', 'role:admin'];
const NAMES = ['public.messages', 'public.*', 'public.other'];

function rng(seed: number) {
  return () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x7fffffff;
  };
}

const rel = (qualified: string): Relation => ({ qualified }) as Relation;
const POLICY = rel('walcast.casbin_rule');
const MEMBERS = rel('public.members');
const pos = (n: number): Position => ({ lsn: BigInt(n), index: 0 });
const ruleRow = (ptype: string, ...v: string[]): Row => ({ ptype, v0: v[0] ?? '', v1: v[1] ?? '', v2: v[2] ?? '', v3: v[3] ?? '', v4: v[4] ?? '', v5: '' });
const change = (relation: Relation, add: boolean, row: Row): Change =>
  (add ? { tag: 'insert', relation, new: row, index: 0 } : { tag: 'delete', relation, old: row, index: 0 }) as unknown as Change;

type Op = { kind: 'p'; v: string[] } | { kind: 'g'; v: [string, string] } | { kind: 'member'; user: string; room: number };

function randomOp(r: () => number): Op {
  const pick = <T>(a: T[]) => a[Math.floor(r() * a.length)];
  const x = r();
  if (x < 0.35) return { kind: 'p', v: [pick(SUBJECTS), r() < 0.85 ? 'table' : 'channel', pick(NAMES), r() < 0.85 ? 'read' : 'join', pick(CONDS)] };
  if (x < 0.55) return { kind: 'g', v: [pick(USERS), pick(['role:staff', 'role:admin'])] };
  if (x < 0.7) return { kind: 'g', v: [pick(USERS), `friend:${pick(USERS)}`] };
  return { kind: 'member', user: pick(USERS), room: 1 + Math.floor(r() * 3) };
}

async function casbinAt(state: Map<string, Op>) {
  const e = await newEnforcer(newModelFromString(MODEL));
  for (const op of state.values()) {
    if (op.kind === 'p') await e.addPolicy(...op.v);
    else if (op.kind === 'g') await e.addNamedGroupingPolicy(op.v[1].startsWith('friend:') ? 'g2' : 'g', ...op.v);
    else await e.addNamedGroupingPolicy('g2', op.user, `room:${op.room}`);
  }
  return e;
}

const keyOf = (op: Op) => JSON.stringify(op);

t.test('decisions equal Casbin\'s, now and at past positions; reach never misses', async (t) => {
  for (let seed = 1; seed <= 12; seed++) {
    const r = rng(seed);
    const auth = new PolicyAuthorizer(parseModel(MODEL), [parseRelation('public.members {user_id} room:{room_id}')]);
    auth.install(null, [], []);
    const state = new Map<string, Op>();
    const checkpoints: { at: Position; state: Map<string, Op> }[] = [];
    for (let i = 1; i <= 60; i++) {
      const op = randomOp(r);
      const k = keyOf(op);
      const add = !state.has(k);
      if (add) state.set(k, op);
      else state.delete(k);
      const c =
        op.kind === 'p'
          ? change(POLICY, add, ruleRow('p', ...op.v))
          : op.kind === 'g'
            ? change(POLICY, add, ruleRow(op.v[1].startsWith('friend:') ? 'g2' : 'g', ...op.v))
            : change(MEMBERS, add, { user_id: op.user, room_id: op.room });
      t.equal(auth.apply(c, pos(i * 10).lsn, 1000 + i), true);
      if (i % 10 === 0) checkpoints.push({ at: pos(i * 10 + 5), state: new Map(state) });
    }
    const rows: Row[] = [];
    for (let i = 0; i < 25; i++) rows.push({ owner_id: USERS[Math.floor(r() * 5)], room_id: 1 + Math.floor(r() * 3), hidden: r() < 0.3, level: Math.floor(r() * 6) });
    let checked = 0;
    for (const [n, cp] of checkpoints.entries()) {
      const e = await casbinAt(cp.state);
      const now = n === checkpoints.length - 1;
      for (const row of rows) {
        const reach = now ? auth.reach('public.messages', row) : null;
        for (const user of USERS) {
          const identity = { sub: user, id: user, role: user === 'erin' ? 'admin' : 'user' };
          const want = e.enforceSync(identity, { kind: 'table', name: 'public.messages', row }, 'read');
          const got = auth.mayRead(identity, 'public.messages', row, cp.at);
          if (got !== want) t.fail(`seed ${seed} checkpoint ${n}: ${user} ${JSON.stringify(row)}: walcast ${got}, casbin ${want}`);
          if (now && auth.mayRead(identity, 'public.messages', row, null) !== want) t.fail(`seed ${seed} now: ${user} ${JSON.stringify(row)}: walcast differs from casbin ${want}`);
          if (now && want && reach && !reach.has(user)) t.fail(`seed ${seed}: reach left out ${user} for ${JSON.stringify(row)}`);
          checked++;
        }
      }
    }
    t.equal(checked, 25 * 5 * 6, `seed ${seed}: ${checked} decisions compared`);
  }
});

t.test('mayEverRead: forbidden only when no rule could allow', async (t) => {
  const auth = new PolicyAuthorizer(parseModel(MODEL), []);
  auth.install(null, [ruleRow('p', '*', 'table', 'public.messages', 'read', 'g2(r.sub.id, "room:" + r.obj.row.room_id)'), ruleRow('p', '*', 'table', 'public.admin', 'read', 'r.sub.role == "admin"')], []);
  t.ok(auth.mayEverRead({ sub: 'a', id: 'a' }, 'public.messages'), 'relations may change: allowed to subscribe');
  t.notOk(auth.mayEverRead({ sub: 'a', id: 'a' }, 'public.other'), 'no rule for the table');
  t.notOk(auth.mayEverRead({ sub: 'a', id: 'a', role: 'user' }, 'public.admin'), 'a claim that rules it out');
  t.ok(auth.mayEverRead({ sub: 'a', id: 'a', role: 'admin' }, 'public.admin'), 'the claim that lets it in');
});

t.test('a load races the stream: changes in the snapshot are not counted twice', async (t) => {
  const { parseSnapshot } = await import('../../src/auth/snapshot.js');
  const auth = new PolicyAuthorizer(parseModel(MODEL), [parseRelation('public.members {user_id} room:{room_id}')]);
  auth.unload();
  const p = ruleRow('p', '*', 'table', 'public.messages', 'read', 'g2(r.sub.id, "room:" + r.obj.row.room_id)');
  // xid 100 committed before the snapshot (already loaded), xid 105 was in progress, 120 later.
  auth.apply(change(MEMBERS, false, { user_id: 'bob', room_id: 1 }), 0x100n, 100);
  auth.apply(change(MEMBERS, true, { user_id: 'carol', room_id: 1 }), 0x200n, 105);
  auth.install(parseSnapshot('99:110:105', '0/300'), [p], [[parseRelation('public.members {user_id} room:{room_id}'), [{ user_id: 'alice', room_id: '1' }]]]);
  auth.apply(change(MEMBERS, false, { user_id: 'alice', room_id: 1 }), 0x400n, 120);
  const row = { room_id: 1 };
  const may = (u: string, at: Position | null) => auth.mayRead({ sub: u, id: u }, 'public.messages', row, at);
  t.notOk(may('alice', null), 'alice removed after the load');
  t.ok(may('alice', { lsn: 0x3ffn, index: 0 }), 'but a member before that');
  t.notOk(may('bob', null), 'bob\'s removal was in the snapshot: not counted again');
  t.ok(may('bob', { lsn: 0xffn, index: 0 }), 'history still knows bob was a member before it');
  t.ok(may('carol', null), 'carol\'s in-progress insert counted once');
  t.notOk(may('carol', { lsn: 0x1ffn, index: 0 }), 'and not before it');
  auth.forget({ lsn: 0x400n, index: 0 });
  t.notOk(may('alice', null), 'forgetting history keeps the present');
  t.equal(auth.linkCount('g2'), 1, 'only carol\'s link is left');
});

t.test('truncating the policy table or a relation table removes what it held, from that commit on', async (t) => {
  const decl = parseRelation('public.members {user_id} room:{room_id}');
  const auth = new PolicyAuthorizer(parseModel(MODEL), [decl]);
  const p = ruleRow('p', '*', 'table', 'public.messages', 'read', 'g2(r.sub.id, "room:" + r.obj.row.room_id)');
  auth.install(null, [p], [[decl, [{ user_id: 'alice', room_id: '1' }, { user_id: 'bob', room_id: '1' }]]]);
  const row = { room_id: 1 };
  const may = (u: string, at: Position | null) => auth.mayRead({ sub: u, id: u }, 'public.messages', row, at);
  const truncate = (relation: Relation): Change => ({ tag: 'truncate', relation, index: 0, cascade: false, restartIdentity: false }) as unknown as Change;
  auth.apply(change(MEMBERS, true, { user_id: 'carol', room_id: 1 }), 10n, 1);
  auth.apply(truncate(MEMBERS), 20n, 2);
  t.notOk(may('alice', null) || may('bob', null) || may('carol', null), 'no member left after the truncate');
  t.ok(may('alice', pos(15)) && may('carol', pos(15)), 'all three before it');
  t.notOk(may('carol', pos(5)), 'carol not before her insert');
  auth.apply(change(MEMBERS, true, { user_id: 'alice', room_id: 1 }), 30n, 3);
  t.ok(may('alice', null), 'a member again after');
  auth.apply(truncate(POLICY), 40n, 4);
  t.notOk(may('alice', null), 'no rule after the policy table is truncated');
  t.ok(may('alice', pos(35)), 'the rule held before');
  t.equal(auth.ruleCount, 0);
});
