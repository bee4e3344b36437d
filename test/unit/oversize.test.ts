// Transactions past --max-transaction-bytes in the hub (src/hub/oversize.ts): who is told
// `resync` transaction_too_large, live and on catch-up across the marker, and what happens when
// the policy tables are among those it changed. Hand-made transactions, a recording peer.
import t from 'tap';
import type { Relation } from '../../src/capture/pgoutput.types.js';
import type { Position } from '../../src/protocol/position.js';
import type { Transaction } from '../../src/capture/types.js';
import { HistoryRing, LAST_INDEX } from '../../src/history/ring.js';
import { compileFilter, parseFilter } from '../../src/hub/filter.js';
import { Hub } from '../../src/hub/hub.js';
import { oversizeAware } from '../../src/hub/oversize.js';
import type { Peer } from '../../src/hub/types.js';
import { silentLogger } from '../../src/log.js';
import { FakePeer, relation } from '../helpers/fake-peer.js';

const columns = [{ name: 'id', typeOid: 23 }];
const M = relation('m', { columns, replicaIdentity: 'default' });
const N = relation('n', { columns, replicaIdentity: 'default' });

let lsn = 0x1000n;
const next = () => (lsn += 0x100n);
const head = (l: bigint) => ({ xid: 1, lsn: l, lsnText: `0/${l.toString(16).toUpperCase()}`, endLsn: l + 8n, commitTime: new Date().toISOString() });
const insert = (rel: Relation, id: number): Transaction => ({ ...head(next()), changes: [{ index: 0, tag: 'insert', relation: rel, new: { id } }] });
const oversized = (...tables: string[]): Transaction => ({ ...head(next()), changes: [], oversize: { tables, changes: 1000, bytes: 5_000_000 } });
const settle = () => new Promise((r) => setImmediate(r));

function setup(authTables: string[] = []) {
  const ring = new HistoryRing({ maxBytes: 1e9, maxAgeMs: 1e9 });
  const hub = new Hub({ ring });
  hub.reset({ lsn: 0xfffn, index: LAST_INDEX }, null);
  let reloads = 0;
  const feed = oversizeAware(hub, { authTables: new Set(authTables), reloadPolicies: () => reloads++, log: silentLogger });
  return { ring, hub, feed, reloads: () => reloads };
}

function sub(hub: Hub, peer: Peer, id: string, table: string, since: Position | null = null) {
  return hub.subscribe({ peer, id, table, predicate: compileFilter(parseFilter(''), columns), indexTerm: null, events: null, since, ref: `r-${id}` });
}

t.test('live: resync for the subscriptions of its tables only; the marker holds no WAL', async (t) => {
  const { hub, ring, feed } = setup();
  const p = new FakePeer();
  sub(hub, p, 'm', 'public.m');
  sub(hub, p, 'n', 'public.n');
  const big = oversized('public.m');
  feed(big);
  t.same(p.of('resync'), [{ type: 'resync', sub: 'm', reason: 'transaction_too_large' }], 'only the subscription of public.m');
  t.equal(hub.counters.oversized, 1);
  t.equal(ring.oldestLsn(), big.endLsn, 'the slot may be acknowledged past it');
  t.same(ring.head, { lsn: big.lsn, index: 999 }, 'the window covers its change indexes');
  feed(insert(N, 1));
  feed(insert(M, 2));
  await settle();
  t.same(p.of('change').map((c) => [c.sub, (c.new as { id: number }).id]), [['n', 1]], 'n goes on; m was ended');
});

t.test('catch-up across the marker: resync for its tables, the others go through', async (t) => {
  const { hub, feed } = setup();
  const before = insert(M, 1);
  feed(before);
  feed(insert(N, 2));
  const big = oversized('public.m', 'public.x');
  feed(big);
  feed(insert(M, 3));
  feed(insert(N, 4));
  const p = new FakePeer();
  const since = { lsn: before.lsn, index: 0 };
  sub(hub, p, 'm', 'public.m', since);
  sub(hub, p, 'n', 'public.n', since);
  await settle();
  t.same(p.of('resync'), [{ type: 'resync', sub: 'm', reason: 'transaction_too_large', ref: 'r-m' }], 'm crossed it');
  t.same(p.of('change').filter((c) => c.sub === 'n').map((c) => (c.new as { id: number }).id), [2, 4], 'n caught up in full');
  const q = new FakePeer();
  sub(hub, q, 'm', 'public.m', { lsn: big.lsn, index: 999 });
  await settle();
  t.same(q.of('resync'), [], 'from after it: no resync');
  t.same(q.of('change').map((c) => (c.new as { id: number }).id), [3]);
});

t.test('a replay that committed before the daemon started is history: no resync', async (t) => {
  const { hub, feed } = setup();
  const big = oversized('public.m');
  hub.liveFrom({ lsn: big.lsn + 0x10n, index: LAST_INDEX });
  const p = new FakePeer();
  sub(hub, p, 'm', 'public.m');
  feed(big);
  t.same(p.of('resync'), []);
});

t.test('the policy table among its tables: everyone resyncs, the window restarts after it, the policies are read anew', async (t) => {
  const { hub, ring, feed, reloads } = setup(['walcast.casbin_rule']);
  const p = new FakePeer();
  const first = insert(M, 1);
  feed(first);
  sub(hub, p, 'm', 'public.m');
  sub(hub, p, 'n', 'public.n');
  const big = oversized('walcast.casbin_rule');
  feed(big);
  t.same(p.of('resync').map((r) => [r.sub, r.reason]), [['m', 'transaction_too_large'], ['n', 'transaction_too_large']], 'every subscription');
  t.equal(reloads(), 1, 'policies reloaded');
  t.notOk(ring.covers({ lsn: first.lsn, index: 0 }), 'positions before it are outside the window');
  t.ok(ring.covers({ lsn: big.lsn, index: LAST_INDEX }), 'positions after it are honoured');
  t.equal(ring.oldestLsn(), null, 'nothing holds the slot');
});
