// Decisions per second: walcast's authorizer (the model's matcher specialised per table and
// compiled, see src/auth/compile.ts) beside Casbin's own enforceSync on the same model, rules and
// links. 1,000 rules, one per table, each "members of the row's room may read"; 1,000 users,
// each in one of 100 rooms. Allow: a member asks about a row of its room; deny: a non-member.
// Casbin scans every rule for each decision (and, for a deny, evaluates all of them); walcast
// looks at the rules of the row's table only.
//
// Prints one JSON line and a readable table. Run: npm run bench:policies [-- --rules N]
import { newEnforcer, newModelFromString } from 'casbin';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { PolicyAuthorizer } from '../src/auth/authorizer.js';
import { parseModel } from '../src/auth/model.js';
import { parseRelation } from '../src/auth/relations.js';
import { fmtInt, table } from './lib/stats.js';

const { values: args } = parseArgs({ options: { rules: { type: 'string', default: '1000' }, seconds: { type: 'string', default: '1' } } });
const RULES = Number(args.rules);
const SECONDS = Number(args.seconds);
const ROOMS = 100;
const USERS = 1000;
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const MODEL = readFileSync(path.join(ROOT, 'models/default.conf'), 'utf8');
const COND = 'g2(r.sub.id, "room:" + r.obj.row.room_id)';

const members = Array.from({ length: USERS }, (_, i) => ({ user_id: `u${i}`, room_id: String(i % ROOMS) }));
const rules = Array.from({ length: RULES }, (_, i) => ({ ptype: 'p', v0: '*', v1: 'table', v2: `public.t${i}`, v3: 'read', v4: COND, v5: '' }));

const auth = new PolicyAuthorizer(parseModel(MODEL), [parseRelation('public.members {user_id} room:{room_id}')]);
auth.install(null, rules, [[parseRelation('public.members {user_id} room:{room_id}'), members]]);
const e = await newEnforcer(newModelFromString(MODEL));
await e.addPolicies(rules.map((r) => [r.v0, r.v1, r.v2, r.v3, r.v4]));
await e.addNamedGroupingPolicies(
  'g2',
  members.map((m) => [m.user_id, `room:${m.room_id}`]),
);

const tableName = `public.t${Math.floor(RULES / 2)}`;
const row = { id: 1, room_id: 7, body: 'hello' };
const member = { sub: 'u7', id: 'u7' }; // u7 is in room 7
const stranger = { sub: 'u8', id: 'u8' };
const obj = { kind: 'table', name: tableName, row };

/** Decisions per second of `fn`, run for SECONDS (after a warm-up); checks the answer each time. */
function rate(fn: () => boolean, want: boolean): number {
  for (let i = 0; i < 200; i++) if (fn() !== want) throw new Error(`wrong decision (want ${want})`);
  let n = 0;
  const start = process.hrtime.bigint();
  const end = start + BigInt(Math.round(SECONDS * 1e9));
  let now = start;
  while (now < end) {
    for (let i = 0; i < 50; i++) if (fn() !== want) throw new Error(`wrong decision (want ${want})`);
    n += 50;
    now = process.hrtime.bigint();
  }
  return n / (Number(now - start) / 1e9);
}

const results = {
  rules: RULES,
  walcastAllowPerSec: Math.round(rate(() => auth.mayRead(member, tableName, row, null), true)),
  walcastDenyPerSec: Math.round(rate(() => auth.mayRead(stranger, tableName, row, null), false)),
  casbinAllowPerSec: Math.round(rate(() => e.enforceSync(member, obj, 'read'), true)),
  casbinDenyPerSec: Math.round(rate(() => e.enforceSync(stranger, obj, 'read'), false)),
  walcastReachPerSec: Math.round(rate(() => (auth.reach(tableName, row)?.size ?? 0) === USERS / ROOMS + 1, true)),
};
process.stdout.write(JSON.stringify({ bench: 'policies', ...results }) + '\n');
process.stdout.write(
  table(
    ['decision', 'walcast /s', 'casbin enforceSync /s', 'ratio'],
    [
      ['allow (member)', fmtInt(results.walcastAllowPerSec), fmtInt(results.casbinAllowPerSec), `${(results.walcastAllowPerSec / results.casbinAllowPerSec).toFixed(0)}x`],
      ['deny (non-member)', fmtInt(results.walcastDenyPerSec), fmtInt(results.casbinDenyPerSec), `${(results.walcastDenyPerSec / results.casbinDenyPerSec).toFixed(0)}x`],
      ['reach (who may read a row)', fmtInt(results.walcastReachPerSec), '-', '-'],
    ],
  ) + '\n',
);
process.stdout.write(`${RULES} rules over ${RULES} tables, ${USERS} users in ${ROOMS} rooms; one decision = one (user, row) pair\n`);
