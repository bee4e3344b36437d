// What a node follows and from where its ring covers a table (src/cluster/edge-interests.ts),
// and capture's heartbeat as edges read it (src/cluster/heartbeat.ts).
import t from 'tap';
import { EdgeInterests } from '../../src/cluster/edge-interests.js';
import { parseHeartbeat } from '../../src/cluster/heartbeat.js';
import type { Interest } from '../../src/cluster/interest.js';

function fakeRegistry() {
  const keys = new Map<string, { released: boolean; resolve: (rev: number | null) => void }>();
  let next = 10;
  return {
    keys,
    acquire(schema: string, table: string): Interest {
      const key = `${schema}.${table}#${next++}`;
      let resolve!: (rev: number | null) => void;
      const revision = new Promise<number | null>((r) => (resolve = r));
      const rec = { released: false, resolve };
      keys.set(key, rec);
      return { key, route: null, revision, release: () => (rec.released = true) };
    },
  };
}

const tick = () => new Promise((r) => setImmediate(r));
const pos = (lsn: number, index = 0) => ({ lsn: BigInt(lsn), index });

t.test('a table is covered from the first message after the seq capture applied its key at', async (t) => {
  const reg = fakeRegistry();
  const subscribed: string[] = [];
  const ended: string[] = [];
  const e = new EdgeInterests({ registry: reg, subscribe: (s, n) => (subscribed.push(`${s}.${n}`), () => ended.push(`${s}.${n}`)), always: new Set(['walcast.casbin_rule']), lingerMs: 20 });
  let woke = 0;
  e.onCovered(() => woke++);
  t.same(e.coveredFrom('walcast.casbin_rule'), pos(0), 'policy tables: always');
  const release = e.follow('public.items');
  t.same(subscribed, ['public.items'], 'subscribed at once');
  t.equal(e.coveredFrom('public.items'), null, 'not covered before capture applied it');
  const [rec] = [...reg.keys.values()];
  rec.resolve(42);
  await tick();
  e.applied(41, 100);
  e.advanced(200, pos(5));
  t.equal(e.coveredFrom('public.items'), null, 'a heartbeat below its revision says nothing');
  e.applied(42, 300);
  e.advanced(300, pos(6));
  t.equal(e.coveredFrom('public.items'), null, 'the message at the applied seq itself was routed without it');
  e.advanced(301, pos(7, 2));
  t.same(e.coveredFrom('public.items'), pos(7, 2), 'covered from the first message after it');
  t.equal(woke, 1, 'waiting catch-ups woken');
  t.same(e.stats, { tables: 1, pending: 0, covered: 1 });

  // A second subscriber, then both gone: the table lingers, then is dropped.
  const release2 = e.follow('public.items');
  release();
  release();
  release2();
  t.same(e.coveredFrom('public.items'), pos(7, 2), 'lingering: still covered');
  const again = e.follow('public.items');
  await new Promise((r) => setTimeout(r, 40));
  t.same(e.coveredFrom('public.items'), pos(7, 2), 'a follow during the linger keeps it');
  again();
  await new Promise((r) => setTimeout(r, 40));
  t.equal(e.coveredFrom('public.items'), null, 'dropped after the linger');
  t.same(ended, ['public.items'], 'its subscription ended');
  t.ok(rec.released, 'its key released');
});

t.test('a heartbeat before the key was written counts once the revision is known', async (t) => {
  const reg = fakeRegistry();
  const e = new EdgeInterests({ registry: reg, subscribe: () => () => {}, always: new Set() });
  e.follow('public.a');
  e.applied(50, 900); // capture already past the key's revision
  const [rec] = [...reg.keys.values()];
  rec.resolve(45);
  await tick();
  e.advanced(901, pos(9));
  t.same(e.coveredFrom('public.a'), pos(9));
  e.uncover();
  t.equal(e.coveredFrom('public.a'), null, 'lost messages: nothing covered');
  e.applied(50, 950);
  e.advanced(951, pos(10));
  t.same(e.coveredFrom('public.a'), pos(10), 'covered again after the next heartbeat');
  e.close();
  t.equal(e.coveredFrom('public.a'), null);
  t.ok(rec.released);
});

t.test('heartbeats: only well-formed ones are read', async (t) => {
  const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
  const ok = { v: 1, node: 'a', epoch: 3, markerSeq: 10, appliedRev: 7, appliedSeq: 12, acked: 20, last: { abcd1234: 19 } };
  t.same(parseHeartbeat(enc(ok)), ok);
  for (const bad of [
    { ...ok, v: 2 },
    { ...ok, epoch: -1 },
    { ...ok, appliedSeq: 1.5 },
    { ...ok, last: { x: 'y' } },
    { ...ok, last: [1] },
    { ...ok, node: 5 },
    null,
    'hb',
  ]) t.equal(parseHeartbeat(enc(bad)), null, JSON.stringify(bad));
  t.equal(parseHeartbeat(new TextEncoder().encode('{not json')), null);
  t.equal(parseHeartbeat(new Uint8Array(2 * 1024 * 1024)), null, 'oversized');
});
