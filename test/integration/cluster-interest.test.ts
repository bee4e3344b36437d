// Interest routing's registry against a real NATS KV bucket `walcast_<ns>_interest` (made as
// startClusterNode makes it: ensureBucket, history 1): two edge incarnations acquire and
// release interests (refcounts, linger, a re-acquire cancelling the delete), a watching
// InterestTable converges to the expected sets, close() removes an incarnation's keys, a burst
// of 2,000 distinct routes stays within maxRouteKeys by following the whole table, writes stay
// within their concurrency and failed ones are retried, and the watch survives a server restart.
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import t from 'tap';
import { InterestRegistry, type InterestRegistryOptions } from '../../src/cluster/interest.js';
import { dataInterestKey, presenceKey } from '../../src/cluster/interest-keys.js';
import { InterestTable } from '../../src/cluster/interest-table.js';
import { watchInterest, type InterestWatch } from '../../src/cluster/interest-watch.js';
import { clusterNames, ensureBucket } from '../../src/cluster/stream.js';
import { silentLogger } from '../../src/log.js';
import { until } from '../helpers/capture.js';
import { withNats } from '../helpers/nats.js';


const sorted = (s: ReadonlySet<string>) => [...s].sort();

async function keysOf(kv: KV, inc: string): Promise<string[]> {
  const out: string[] = [];
  for await (const k of await kv.keys(`${inc}.>`)) out.push(k);
  return out.sort();
}

t.test('interest registry and table on a real KV bucket', async (t) => {
  const nats = await withNats(t, { size: 1 });
  const nc: NatsConnection = await connect({ servers: nats.urls, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  t.teardown(() => nc.close());
  const jsm = await jetstreamManager(nc);
  const bucket = clusterNames('it').interestBucket;
  await ensureBucket(nc, jsm, bucket, 1, silentLogger);
  t.equal((await jsm.streams.info(`KV_${bucket}`)).config.max_msgs_per_subject, 1, 'history 1');
  const kv = await new Kvm(nc).open(bucket);

  const table = new InterestTable();
  const watch: InterestWatch = watchInterest(kv, table, silentLogger, { retryBaseMs: 50, retryCapMs: 200 });
  t.teardown(() => watch.stop());
  await watch.ready;

  const registries: InterestRegistry[] = [];
  const registry = (o: Partial<InterestRegistryOptions> & { nodeId: string }) => {
    const r = new InterestRegistry({ kv, log: silentLogger, lingerMs: 100, ...o });
    registries.push(r);
    return r;
  };
  t.teardown(() => Promise.all(registries.map((r) => r.close())));
  /** The table has applied revision `rev` (and so everything put before it). */
  const applied = (rev: number | null) => until(() => rev !== null && table.appliedRevision >= rev, 10_000, `revision ${rev} applied`);
  const incs = (tbl: string, route: string) => sorted(table.incsFor('d', 'public', tbl, route));

  const a = registry({ nodeId: 'node-a' });
  const b = registry({ nodeId: 'node-b' });
  t.not(a.inc, b.inc, 'two incarnations');

  await t.test('presence: an incarnation is known before it follows anything', async (t) => {
    const [ra, rb] = await Promise.all([a.start(), b.start()]);
    t.type(ra, 'number');
    await applied(Math.max(ra ?? 0, rb ?? 0));
    t.same(sorted(table.everyInc()), [a.inc, b.inc].sort());
    t.equal(table.nodeOf(a.inc), 'node-a');
    t.equal(table.nodeOf(b.inc), 'node-b');
    t.same(incs('rooms', '1'), [], 'no data interest yet');
  });

  await t.test('two incarnations: whole table and routes united', async (t) => {
    const wa = a.acquire('public', 'rooms', null);
    const b1 = b.acquire('public', 'rooms', '1');
    const b2 = b.acquire('public', 'rooms', '2');
    const bn = b.acquire('public', 'users', '=0');
    t.equal(wa.route, null);
    t.equal(b1.key, dataInterestKey(b.inc, 'public', 'rooms', '1'));
    const revs = await Promise.all([wa.revision, b1.revision, b2.revision, bn.revision]);
    t.ok(revs.every((r) => typeof r === 'number' && r > 0), 'every put has its revision');
    await applied(Math.max(...(revs as number[])));
    t.same(incs('rooms', '1'), [a.inc, b.inc].sort());
    t.same(incs('rooms', '3'), [a.inc]);
    t.same(incs('users', '=0'), [b.inc]);
    t.same(incs('users', '5'), []);
    t.same(sorted(table.incsForMove('d', 'public', 'users', '=0', '5')), [b.inc]);
    t.same(await keysOf(kv, b.inc), [presenceKey(b.inc), b1.key, b2.key, bn.key].sort());
    for (const i of [wa, b1, b2, bn]) i.release();
    await until(() => incs('rooms', '1').length === 0 && incs('users', '=0').length === 0, 10_000, 'the released keys deleted after the linger');
    t.same(await keysOf(kv, b.inc), [presenceKey(b.inc)], 'only presence left');
    t.same(sorted(table.everyInc()), [a.inc, b.inc].sort(), 'presence keeps both known');
  });

  await t.test('refcounts: one key per (table, route), deleted after the last release and the linger', async (t) => {
    const writes = a.stats().writes;
    const x1 = a.acquire('public', 'rooms', '7');
    const x2 = a.acquire('public', 'rooms', '7');
    t.equal(x1.key, x2.key);
    const [r1, r2] = await Promise.all([x1.revision, x2.revision]);
    t.equal(r1, r2, 'one put, one revision');
    t.equal(a.stats().writes, writes + 1);
    x1.release();
    x1.release(); // idempotent: does not take x2's reference
    // The linger (100 ms) is long past when the next put is applied: the key must still be there.
    await new Promise((r) => setTimeout(r, 300));
    const probe = a.acquire('public', 'probe', null);
    await applied(await probe.revision);
    probe.release();
    t.same(incs('rooms', '7'), [a.inc], 'still held by the second reference');
    x2.release();
    await until(() => incs('rooms', '7').length === 0, 10_000, 'the key deleted');
    t.equal(await kv.get(x1.key).then((e) => e?.operation ?? null), 'DEL');
  });

  await t.test('a re-acquire during the linger cancels the delete', async (t) => {
    const c = registry({ nodeId: 'node-c', lingerMs: 60_000 });
    const x = c.acquire('public', 'rooms', '9');
    const rev = await x.revision;
    x.release();
    const y = c.acquire('public', 'rooms', '9');
    t.equal(await y.revision, rev, 'the stored key, same revision');
    t.equal(c.stats().writes, 1, 'no delete, no second put');
    await applied(rev);
    t.same(incs('rooms', '9'), [c.inc]);
    y.release();
    await c.close();
    t.same(await keysOf(kv, c.inc), [], 'close() deleted the lingering key');
  });

  await t.test('close() removes an incarnation from the table', async (t) => {
    const held = b.acquire('public', 'rooms', '1');
    await applied(await held.revision);
    t.same(incs('rooms', '1'), [b.inc]);
    await b.close();
    t.same(await keysOf(kv, b.inc), [], 'no key of b left');
    await until(() => !table.everyInc().has(b.inc), 10_000, 'b gone from the table');
    t.same(incs('rooms', '1'), []);
    const late = b.acquire('public', 'rooms', '2');
    t.equal(await late.revision, null, 'after close: inert');
    t.same(sorted(table.everyInc()), [a.inc]);
  });

  await t.test('a burst of 2,000 distinct routes: bounded keys, whole-table fallback, bounded concurrency', async (t) => {
    let inFlight = 0;
    let maxInFlight = 0;
    const counting: Pick<KV, 'put' | 'delete'> = {
      put: async (k, v, o) => {
        maxInFlight = Math.max(maxInFlight, ++inFlight);
        try {
          return await kv.put(k, v, o);
        } finally {
          inFlight--;
        }
      },
      delete: (k, o) => kv.delete(k, o),
    };
    const d = registry({ nodeId: 'node-d', kv: counting, maxRouteKeys: 100, writeConcurrency: 8 });
    const held = Array.from({ length: 2000 }, (_, i) => d.acquire('public', 'events', `r${i}`));
    t.equal(held.filter((i) => i.route !== null).length, 100, 'the first 100 follow their route');
    t.equal(held.filter((i) => i.route === null).length, 1900, 'the rest follow the whole table');
    t.equal(d.stats().routeKeys, 100);
    t.equal(d.stats().fallbacks, 1900);
    const revs = await Promise.all(held.map((i) => i.revision));
    t.ok(revs.every((r) => typeof r === 'number'), 'all stored');
    t.ok(maxInFlight <= 8, `puts in flight at most 8 (saw ${maxInFlight})`);
    t.equal(d.stats().writes, 101, '100 route keys and one whole-table key');
    const keys = await keysOf(kv, d.inc);
    t.equal(keys.length, 101, 'in the KV too');
    await applied(Math.max(...(revs as number[])));
    t.same(incs('events', 'r5'), [d.inc]);
    t.same(incs('events', 'r1999'), [d.inc], 'a fallen-back route is covered by the whole table');
    for (const i of held) i.release();
    await until(() => d.stats().keys === 0, 20_000, 'every key deleted');
    t.same(await keysOf(kv, d.inc), []);
    t.equal(d.acquire('public', 'events', 'r5000').route, 'r5000', 'route keys available again');
  });

  await t.test('failed writes are retried; callers see no error', async (t) => {
    let failuresLeft = 3;
    const flaky: Pick<KV, 'put' | 'delete'> = {
      put: (k, v, o) => (failuresLeft-- > 0 ? Promise.reject(new Error('injected')) : kv.put(k, v, o)),
      delete: (k, o) => kv.delete(k, o),
    };
    const e = registry({ nodeId: 'node-e', kv: flaky, retryBaseMs: 10, retryCapMs: 20 });
    const x = e.acquire('public', 'rooms', '4');
    const rev = await x.revision;
    t.type(rev, 'number', 'stored in the end');
    t.equal(e.stats().failures, 3);
    await applied(rev);
    t.same(incs('rooms', '4'), [e.inc]);
    await e.close();
  });

  await t.test('close() with NATS unreachable returns within its bound', async (t) => {
    const hang: Pick<KV, 'put' | 'delete'> = { put: () => new Promise(() => {}), delete: () => new Promise(() => {}) };
    const f = registry({ nodeId: 'node-f', kv: hang, closeTimeoutMs: 200 });
    const x = f.acquire('public', 'rooms', '1');
    await f.close();
    t.equal(await x.revision, null, 'the pending interest resolves with null');
    t.ok(f.stats().keys > 0, 'the key was never stored, never deleted');
  });

  await t.test('a watch started later finds the keys there at ready', async (t) => {
    const held = a.acquire('public', 'late', '1');
    const rev = await held.revision;
    const other = new InterestTable();
    const w = watchInterest(kv, other, silentLogger);
    await w.ready;
    t.ok(other.appliedRevision >= (rev ?? Infinity), 'every revision so far applied at ready');
    t.same(sorted(other.incsFor('d', 'public', 'late', '1')), [a.inc]);
    t.same(sorted(other.everyInc()), sorted(table.everyInc()));
    await w.stop();
    held.release();
  });

  await t.test('a watch that ends is reopened after the last revision applied', async (t) => {
    const iters: Array<{ stop(): void }> = [];
    const spy: Pick<KV, 'watch' | 'status'> = {
      status: () => kv.status(),
      watch: async (o) => {
        const it = await kv.watch(o);
        iters.push(it);
        return it;
      },
    };
    const h = registry({ nodeId: 'node-h' });
    const gone = h.acquire('public', 'reopen', '1');
    await gone.revision;
    const other = new InterestTable();
    const w = watchInterest(spy, other, silentLogger, { retryBaseMs: 50, retryCapMs: 100 });
    t.teardown(() => w.stop());
    await w.ready;
    t.same(sorted(other.incsFor('d', 'public', 'reopen', '1')), [h.inc]);
    const before = other.appliedRevision;
    iters[0].stop();
    // Changes while no watch runs: a delete (the linger is 100 ms) and a put.
    gone.release();
    const added = h.acquire('public', 'reopen', '2');
    const rev = await added.revision;
    await until(() => h.stats().keys === 2, 10_000, 'the released key deleted'); // presence and the new key
    await until(() => other.appliedRevision >= (rev ?? Infinity) && other.incsFor('d', 'public', 'reopen', '1').size === 0, 10_000, 'the reopened watch caught up');
    t.equal(w.opened, 2, 'reopened once');
    t.same(sorted(other.incsFor('d', 'public', 'reopen', '2')), [h.inc]);
    t.same(sorted(other.incsFor('d', 'public', 'reopen', '1')), [], 'the delete made meanwhile seen');
    t.equal(other.stats().stale, 0, `nothing applied twice (resumed after ${before})`);
  });

  await t.test('the watch survives a server restart', async (t) => {
    const opened = watch.opened;
    await nats.servers[0].stop();
    await nats.servers[0].start();
    const g = registry({ nodeId: 'node-g', retryBaseMs: 50, retryCapMs: 200 });
    const x = g.acquire('public', 'after', '1');
    const rev = await x.revision; // retried until the connection is back
    await applied(rev);
    t.same(incs('after', '1'), [g.inc], 'the table saw the put made after the restart');
    t.ok(watch.opened >= opened, `watch opened ${watch.opened} time(s)`);
  });
});
