// Subjects, KV keys and route tokens of the cluster (src/cluster/subjects.ts, route.ts): names
// become tokens (plain or hashed), subjects parse back to their parts, reserved tokens are never
// produced by a name, and a filter value and a row value give the same route token exactly when
// src/hub/filter-eval.ts finds them equal, for every routable type.
import t from 'tap';
import { CLUSTER_TOKENS } from '../../src/constants.js';
import { isRoutableType, literalRouteText, rowRouteText, rowRouteToken, termRouteTokens, ROUTABLE_TYPE_OIDS } from '../../src/cluster/route.js';
import {
  aliveSubject, authSubjects, broadcastSubject, changeSubject, channelInterestKey, ctlSubject, formatSubject, heartbeatSubject,
  isNameToken, isReservedToken, nodeKey, parseInterestKey, parseSubject, presenceSubject, presenceSyncSubject, relationKey,
  shortKey, sqlBroadcastSubject, streamSubjects, tableInterestKey, tableSubjects, token, validateNamespace, type SubjectParts,
} from '../../src/cluster/subjects.js';
import { ConfigError } from '../../src/errors.js';
import { compileFilter, parseFilter } from '../../src/hub/filter.js';
import { Rng } from '../helpers/fuzz-gen.js';

t.test('tokens: plain names as they are, others hashed', async (t) => {
  for (const plain of ['public', 'room_42', 'A-b_C', '7', '-1', 'x'.repeat(48)]) t.equal(token(plain), plain, plain);
  const odd = ['', 'a.b', 'a b', '*', '>', 'a*', 'room:1', 'naïve', '日本', '😀', 'x'.repeat(49), '=n', '=a', '=', 'a\nb', '.', 'a/b'];
  const seen = new Set<string>();
  for (const name of odd) {
    const tok = token(name);
    t.match(tok, /^=[A-Za-z0-9_-]{22}$/, `${JSON.stringify(name)} → ${tok}`);
    t.equal(token(name), tok, 'stable');
    t.ok(isNameToken(tok) && !isReservedToken(tok), 'a name token, not reserved');
    seen.add(tok);
  }
  t.equal(seen.size, odd.length, 'distinct names, distinct hashes');
  t.not(token('Room'), token('room'), 'case matters');
});

t.test('reserved tokens are never produced by a name', async (t) => {
  const reserved = Object.values(CLUSTER_TOKENS);
  t.same(reserved.slice().sort(), ['=0', '=a', '=n', '=t', '=x']);
  for (const tok of reserved) {
    t.ok(isReservedToken(tok), tok);
    t.notOk(isNameToken(tok), `${tok} is not a name token`);
    t.not(token(tok), tok, `the name ${tok} is hashed`);
  }
  const r = new Rng(13);
  const alphabet = ['=', 'n', '0', 'a', 't', 'x', '.', ' ', 'é', '*', '>', 'Z', '_', '-'];
  for (let i = 0; i < 5_000; i++) {
    const name = Array.from({ length: r.int(0, 4) }, () => r.pick(alphabet)).join('');
    const tok = token(name);
    if (isReservedToken(tok) || !isNameToken(tok) || tok.includes('.') || tok.includes('*') || tok.includes('>')) {
      t.fail(`${JSON.stringify(name)} gave ${tok}`);
      return;
    }
  }
  t.pass('5000 random names gave name tokens only');
});

t.test('namespace validation', async (t) => {
  for (const ns of ['walcast', 'slot_1', 'My-Cluster', 'a'.repeat(63)]) t.equal(validateNamespace(ns), ns);
  for (const ns of ['', 'a.b', 'a b', 'a*', '>', 'é', 'a'.repeat(65), '=n']) t.throws(() => validateNamespace(ns), ConfigError, JSON.stringify(ns));
});

t.test('subjects: builders and parser agree', async (t) => {
  const ns = 'main';
  t.equal(changeSubject(ns, 'd', 'public', 'messages', '42'), 'walcast.main.s.d.public.messages.42');
  t.equal(changeSubject(ns, 'a', 'walcast', 'casbin_rule', CLUSTER_TOKENS.noRoute), 'walcast.main.s.a.walcast.casbin_rule.=n');
  t.equal(changeSubject(ns, 'd', 'public', 'Mixed Case', CLUSTER_TOKENS.truncate, true), `walcast.main.r.d.public.${token('Mixed Case')}.=t`);
  t.equal(tableSubjects(ns, 'd', 'public', 'messages', true), 'walcast.main.r.d.public.messages.*');
  t.equal(sqlBroadcastSubject(ns, 'room:1'), `walcast.main.s.x.${token('room:1')}`);
  t.equal(ctlSubject(ns), 'walcast.main.s.ctl');
  t.equal(ctlSubject(ns, true), 'walcast.main.r.ctl');
  t.equal(streamSubjects(ns), 'walcast.main.s.>');
  t.equal(streamSubjects(ns, true), 'walcast.main.r.>');
  t.equal(authSubjects(ns, true), 'walcast.main.r.a.>');
  t.equal(heartbeatSubject(ns), 'walcast.main.hb');
  t.equal(aliveSubject(ns), 'walcast.main.alive');
  t.equal(broadcastSubject(ns, 'lobby'), 'walcast.main.c.lobby');
  t.equal(presenceSubject(ns, 'lobby'), 'walcast.main.p.lobby');
  t.equal(presenceSyncSubject(ns, 'a b'), `walcast.main.psync.${token('a b')}`);

  const parts: SubjectParts[] = [
    { kind: 'change', republished: false, area: 'd', schema: 'public', table: token('t.x'), route: token('7') },
    { kind: 'change', republished: true, area: 'a', schema: 'walcast', table: 'casbin_rule', route: CLUSTER_TOKENS.noRoute },
    ...Object.values(CLUSTER_TOKENS).map((route): SubjectParts => ({ kind: 'change', republished: false, area: 'd', schema: 's', table: 't', route })),
    { kind: 'sqlBroadcast', republished: true, channel: token('room:1') },
    { kind: 'ctl', republished: false },
    { kind: 'ctl', republished: true },
    { kind: 'heartbeat' },
    { kind: 'alive' },
    { kind: 'broadcast', channel: 'c1' },
    { kind: 'presence', channel: token('ü') },
    { kind: 'presenceSync', channel: 'c1' },
  ];
  for (const p of parts) {
    const s = formatSubject(ns, p);
    t.same(parseSubject(ns, s), p, s);
  }
  t.same(parseSubject(ns, changeSubject(ns, 'd', 'public', 'a b', '1')), { kind: 'change', republished: false, area: 'd', schema: 'public', table: token('a b'), route: '1' });
  for (const bad of ['walcast.other.s.ctl', 'walcast.main', 'walcast.main.s', 'walcast.main.s.d.a.b', 'walcast.main.s.d.a.b.c.d', 'walcast.main.s.q.a.b.c', 'walcast.main.s.d.a.b.=q', 'walcast.main.hb.x', 'walcast.main.c', 'walcast.main.c.=n', 'walcast.main.z.a', 'nats.main.hb']) {
    t.equal(parseSubject(ns, bad), null, bad);
  }
});

t.test('KV keys', async (t) => {
  t.equal(nodeKey('host-1'), 'node.host-1');
  t.equal(nodeKey('host:8080'), `node.${token('host:8080')}`);
  t.equal(shortKey(3), 'short.3');
  t.throws(() => shortKey(-1));
  t.equal(relationKey('16384.abcdefghijkl'), 'rel.16384.abcdefghijkl');
  const whole = tableInterestKey(3, 1, 'public', 'messages', CLUSTER_TOKENS.wholeTable);
  t.equal(whole, '3-1.d.public.messages.=a');
  t.same(parseInterestKey(whole), { kind: 'table', short: 3, inc: 1, schema: 'public', table: 'messages', route: '=a' });
  const routed = tableInterestKey(0, 12, 'public', 'my table', token('a.b'));
  t.same(parseInterestKey(routed), { kind: 'table', short: 0, inc: 12, schema: 'public', table: token('my table'), route: token('a.b') });
  const chan = channelInterestKey(5, 2, 'room:1');
  t.same(parseInterestKey(chan), { kind: 'channel', short: 5, inc: 2, channel: token('room:1') });
  const validKv = /^[-/=.\w]+$/; // nats.js validKeyRe
  for (const k of [whole, routed, chan, nodeKey('a b:1')]) t.match(k, validKv, `${k} is a valid KV key`);
  for (const bad of ['3-1.d.public.messages', '3.d.p.t.=a', '03-1.d.p.t.=a', '3-1.q.p.t.=a', '3-1.d.p.t.=t', '3-1.x.=n', 'x-1.x.c']) t.equal(parseInterestKey(bad), null, bad);
});

// Route values: for each routable type, rows as capture decodes them and filter literals.
const CASES: Array<{ oid: number; rows: unknown[]; literals: string[] }> = [
  { oid: 23, rows: [7, 0, -0, -7, 2147483647, -2147483648], literals: ['7', '+7', '007', '0', '-0', '-7', '2147483647', '-2147483648', '8', 'x', '7.0', '1e1', ''] },
  { oid: 21, rows: [7, -32768], literals: ['7', '07', '-32768', '7.5'] },
  { oid: 20, rows: [7, 9007199254740991, '9007199254740993', '-9223372036854775808', '9223372036854775807'], literals: ['7', '9007199254740991', '9007199254740993', '+09007199254740993', '-9223372036854775808', '9223372036854775807', '9007199254740992'] },
  { oid: 25, rows: ['7', 'a.b', 'a b', '', 'Room', 'room', 'é', 'e\u0301', '*', '>', 'x'.repeat(100)], literals: ['7', '07', 'a.b', 'a b', '', 'Room', 'room', 'é', 'e\u0301', '*', '>', 'x'.repeat(100)] },
  { oid: 1043, rows: ['abc', 'ABC'], literals: ['abc', 'ABC', 'abc '] },
  { oid: 1042, rows: ['ab  ', 'ab'], literals: ['ab', 'ab  '] },
  { oid: 2950, rows: ['0b0a2c5e-8f3e-4f7a-9a57-1e6a3c2b9d10', '00000000-0000-0000-0000-000000000000'], literals: ['0b0a2c5e-8f3e-4f7a-9a57-1e6a3c2b9d10', '0B0A2C5E-8F3E-4F7A-9A57-1E6A3C2B9D10', '{0b0a2c5e8f3e4f7a9a571e6a3c2b9d10}', '00000000000000000000000000000000', 'nope'] },
  { oid: 16, rows: [true, false], literals: ['true', 't', 'TRUE', 'f', 'False', 'yes'] },
];

function quoteValue(v: string): string {
  return '"' + v.replace(/[\\"]/g, '\\$&') + '"';
}

t.test('a filter literal and a row value give the same route token whenever filter-eval finds them equal', async (t) => {
  let equalPairs = 0;
  for (const { oid, rows, literals } of CASES) {
    t.ok(isRoutableType(oid), `type ${oid} is routable`);
    const columns = [{ name: 'r', typeOid: oid }];
    for (const lit of literals) {
      let pred: ((row: Record<string, unknown>) => boolean) | null;
      try {
        pred = compileFilter(parseFilter(`r=eq.${quoteValue(lit)}`), columns);
      } catch {
        pred = null; // a literal the type refuses: it matches nothing
      }
      const tokens = termRouteTokens(oid, { column: 'r', op: 'eq', values: [lit] });
      t.ok(tokens !== null, 'an eq term on a routable column routes');
      if (pred === null) {
        t.same(tokens, [], `type ${oid}: ${JSON.stringify(lit)} is refused by the filter and routes nowhere`);
        continue;
      }
      for (const v of rows) {
        const match = pred({ r: v });
        const same = tokens?.[0] === rowRouteToken(oid, v);
        if (match) equalPairs++;
        // Equal by the filter ⇒ same token (the promise routing needs); and here, with canonical
        // texts, the converse too: no traffic for rows the filter refuses.
        t.equal(same, match, `type ${oid}: eq.${JSON.stringify(lit)} vs row ${JSON.stringify(v)}: match ${match}`);
      }
    }
  }
  t.ok(equalPairs > 30, `${equalPairs} equal pairs checked`);
});

t.test('route texts and tokens', async (t) => {
  t.equal(rowRouteText(23, 7), '7');
  t.equal(rowRouteText(23, -0), '0');
  t.equal(rowRouteText(20, '9007199254740993'), '9007199254740993');
  t.equal(rowRouteText(16, true), 'true');
  t.equal(rowRouteText(2950, '0B0A2C5E-8F3E-4F7A-9A57-1E6A3C2B9D10'), '0b0a2c5e-8f3e-4f7a-9a57-1e6a3c2b9d10');
  t.equal(rowRouteText(23, null), null, 'NULL');
  t.equal(rowRouteToken(23, null), CLUSTER_TOKENS.nullRoute);
  t.equal(rowRouteToken(25, '=0'), token('=0'), 'the text "=0" is not NULL');
  t.not(rowRouteToken(25, '=0'), CLUSTER_TOKENS.nullRoute);
  t.equal(rowRouteToken(25, 'room 1'), token('room 1'));
  t.equal(literalRouteText(23, '+007'), '7');
  t.equal(literalRouteText(23, 'seven'), undefined);
  for (const oid of [700, 701, 1700, 1184, 1114, 1082, 114, 3802, 1007, 17, 19, 26]) {
    t.notOk(isRoutableType(oid), `type ${oid} is not routable`);
    t.equal(rowRouteToken(oid, 1), CLUSTER_TOKENS.noRoute, `a row value of type ${oid} has no route`);
    t.equal(termRouteTokens(oid, { column: 'r', op: 'eq', values: ['1'] }), null, `a filter on type ${oid} follows the whole table`);
  }
  t.same(ROUTABLE_TYPE_OIDS.slice().sort((a, b) => a - b), [16, 20, 21, 23, 25, 1042, 1043, 2950]);
  t.same(termRouteTokens(23, { column: 'r', op: 'in', values: ['1', '01', '2', 'x'] }), ['1', '2'], 'in: one token per distinct value');
  t.same(termRouteTokens(23, { column: 'r', op: 'in', values: [] }), [], 'in.() routes nowhere');
  t.same(termRouteTokens(23, { column: 'r', op: 'is_null', values: [] }), [CLUSTER_TOKENS.nullRoute]);
  t.same(termRouteTokens(16, { column: 'r', op: 'is_true', values: [] }), ['true']);
  t.equal(termRouteTokens(23, { column: 'r', op: 'gt', values: ['1'] }), null, 'gt follows the whole table');
  t.equal(termRouteTokens(23, { column: 'r', op: 'neq', values: ['1'] }), null, 'neq too');
  t.equal(rowRouteToken(23, 'abc'), CLUSTER_TOKENS.noRoute, 'a value of an unexpected shape');
});
