// Issue 11, item 7: the authorizer's decision caches are bounded. Rules are specialised per
// table or channel name and action, and names come from clients: a flood of distinct names
// must leave at most the bound behind, and decisions must stay right for entries evicted.
import { readFileSync } from 'node:fs';
import t from 'tap';
import { PolicyAuthorizer } from '../../src/auth/authorizer.js';
import { parseModel } from '../../src/auth/model.js';
import type { Position } from '../../src/protocol/position.js';
import type { CapturedChange as Change } from '../../src/capture/types.js';
import type { Relation, Row } from '../../src/capture/pgoutput.types.js';

const MODEL = parseModel(readFileSync(new URL('../../models/default.conf', import.meta.url), 'utf8'));
const ruleRow = (ptype: string, ...v: string[]): Row => ({ ptype, v0: v[0] ?? '', v1: v[1] ?? '', v2: v[2] ?? '', v3: v[3] ?? '', v4: v[4] ?? '', v5: '' });
const POLICY = { qualified: 'walcast.casbin_rule' } as Relation;
const insert = (row: Row): Change => ({ tag: 'insert', relation: POLICY, new: row, index: 0 }) as unknown as Change;
const pos = (n: number): Position => ({ lsn: BigInt(n), index: 0 });

t.test('a flood of distinct channel and table names stays within the bound', async (t) => {
  const auth = new PolicyAuthorizer(MODEL, [], null, 64);
  auth.install(null, [ruleRow('p', '*', 'channel', 'room:*', 'join', 'g2(r.sub.id, r.obj.name)'), ruleRow('p', '*', 'table', 'public.messages', 'read', 'true')], []);
  const who = { sub: 'mallory', id: 'mallory' };
  let over = 0;
  for (let i = 0; i < 20_000; i++) {
    const long = String(i).padStart(250, 'x');
    auth.mayAct(who, 'channel', `room:${long}`, 'join'); // a rule matches the name: an entry of its own
    auth.mayAct(who, 'channel', `nope:${long}`, 'join'); // none does: the shared empty entry
    auth.mayEverRead(who, `public.t${i}`);
    if (auth.cachedRuleSets > 2 * auth.cacheBound) over++;
  }
  t.equal(over, 0, 'never over the bound');
  t.equal(auth.cacheBound, 64);
  t.ok(auth.cachedRuleSets <= 2 * 64, `${auth.cachedRuleSets} entries held`);
  t.ok(auth.mayRead(who, 'public.messages', {}, null), 'an evicted entry is rebuilt: still allowed');
  t.notOk(auth.mayAct(who, 'channel', 'room:1', 'join'), 'and still refused');
});

t.test('past rule sets (catch-up decisions) are bounded too and stay right', async (t) => {
  const auth = new PolicyAuthorizer(MODEL, [], null, 16);
  auth.install(null, [], []);
  // A rule arrives at 100: a catch-up asks about positions before and after it.
  auth.apply(insert(ruleRow('p', '*', 'table', 'public.t*', 'read', 'true')), 100n, 1);
  const who = { sub: 'a', id: 'a' };
  let allowed = 0;
  let over = 0;
  for (let i = 0; i < 5_000; i++) {
    if (auth.mayRead(who, `public.t${i}`, {}, pos(50))) allowed++;
    if (auth.cachedRuleSets > 32) over++;
  }
  t.equal(allowed, 0, 'nothing before the rule');
  t.equal(over, 0, 'never over twice the bound');
  t.ok(auth.mayRead(who, 'public.t1', {}, pos(150)), 'after it');
  t.ok(auth.mayRead(who, 'public.t1', {}, null), 'now');
  t.ok(auth.cachedRuleSets <= 32);
});

t.test('the default bound comes from SERVER_DEFAULTS', async (t) => {
  const { SERVER_DEFAULTS } = await import('../../src/constants.js');
  t.equal(new PolicyAuthorizer(MODEL, []).cacheBound, SERVER_DEFAULTS.decisionCacheEntries);
});
