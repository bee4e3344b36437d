// The capture lease (src/cluster/elector.ts, docs/dev/cluster-plan.md §4) against a real NATS
// KV bucket, default timings (renew 500 ms, expiry 2 s, stale 1.5 s, cooldown 1 s): one leader
// of three; a frozen leader (halt(): no ticks, key untouched) replaced after expiry with a higher
// epoch and stepping down on waking; resign() handing over at the next read, the resigner
// sitting out its cooldown; stop() deleting the key and leaving no timers; NATS going away
// deposing the leader as stale. Throughout, a watcher checks that no two electors ever see
// themselves as leader at once and that each one's callbacks alternate.
import { Kvm, type KV } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import t, { type Test } from 'tap';
import { Elector, type ElectorOptions } from '../../src/cluster/elector.js';
import { CLUSTER_ELECTION as E } from '../../src/constants.js';
import { silentLogger } from '../../src/log.js';
import { until } from '../helpers/capture.js';
import { withNats } from '../helpers/nats.js';

type Event = { kind: 'elected'; epoch: number; at: number } | { kind: 'deposed'; reason: string; at: number };

interface Node {
  id: string;
  el: Elector;
  events: Event[];
}

/** Electors on one key, and a watcher of the invariants, checked every 5 ms and at every callback. */
function group(t: Test, kv: KV, ids: string[], extra: Partial<ElectorOptions> = {}) {
  const violations: string[] = [];
  const nodes: Node[] = [];
  const check = (where: string): void => {
    const leaders = nodes.filter((n) => n.el.isLeader).map((n) => n.id);
    if (leaders.length > 1) violations.push(`${where}: ${leaders.join(', ')} leaders at once`);
  };
  for (const id of ids) {
    const events: Event[] = [];
    const alternate = (kind: Event['kind']): void => {
      const last = events.at(-1)?.kind ?? 'deposed';
      if (last === kind) violations.push(`${id}: ${kind} twice in a row`);
    };
    const el = new Elector({
      kv,
      nodeId: id,
      log: silentLogger,
      onElected: (epoch) => {
        alternate('elected');
        events.push({ kind: 'elected', epoch, at: performance.now() });
        check(`${id} elected`);
      },
      onDeposed: (reason) => {
        alternate('deposed');
        events.push({ kind: 'deposed', reason, at: performance.now() });
      },
      ...extra,
    });
    nodes.push({ id, el, events });
  }
  const watcher = setInterval(() => check('watcher'), 5);
  t.teardown(async () => {
    clearInterval(watcher);
    await Promise.all(nodes.map((n) => n.el.stop()));
  });
  const leaders = () => nodes.filter((n) => n.el.isLeader);
  return {
    nodes,
    violations,
    leaders,
    start: () => nodes.forEach((n) => n.el.start()),
    stopWatching: () => clearInterval(watcher),
    /** Resolves with the one leader once there is one (and `also` holds), rejects after timeoutMs. */
    leader: (timeoutMs: number, also: (n: Node) => boolean = () => true) => until(() => leaders().find(also), timeoutMs, 'a leader'),
  };
}


const ms = (from: number) => Math.round(performance.now() - from);

t.test('capture lease', async (t) => {
  const nats = await withNats(t, { size: 1 });
  const conns: NatsConnection[] = [];
  const open = async (bucket: string): Promise<KV> => {
    const nc = await connect({ servers: nats.urls, name: `walcast test-elector-${conns.length}`, reconnectTimeWait: 100, maxReconnectAttempts: -1 });
    conns.push(nc);
    return new Kvm(nc).create(bucket, { history: 1 });
  };
  t.teardown(() => Promise.all(conns.map((c) => c.close())));

  t.test('three electors: exactly one leader, the others see it as holder', async (t) => {
    const kv = await open('walcast_t1_cluster');
    const g = group(t, kv, ['a', 'b', 'c']);
    const t0 = performance.now();
    g.start();
    const l = await g.leader(E.expiryMs);
    t.comment(`elected after ${ms(t0)} ms (three racing kv.create on a free key)`);
    t.equal(g.leaders().length, 1, 'one leader');
    const epoch = l.el.epoch!;
    t.same(l.events, [{ kind: 'elected', epoch, at: l.events[0].at }], 'onElected once, with the epoch');
    const entry = await kv.get('capture');
    t.equal(entry?.operation, 'PUT');
    t.equal(entry!.json<{ node: string }>().node, l.id, 'the key names the leader');
    // The losers of the create race see the winner; the revision moves on with each renew.
    const others = g.nodes.filter((n) => n !== l);
    await until(() => others.every((n) => n.el.holder?.node === l.id && n.el.holder.epoch === epoch), 2 * E.renewMs, 'others to see the holder');
    for (const n of others) t.same(n.el.holder, { node: l.id, epoch }, `${n.id} sees ${l.id} holding epoch ${epoch}`);
    t.same(l.el.holder, { node: l.id, epoch }, 'the leader sees itself');
    // Held across renewals (several times expiryMs would otherwise have let a candidate in).
    const rev0 = entry!.revision;
    const tr = performance.now();
    const rev = await until(async () => {
      const r = (await kv.get('capture'))!.revision;
      return r >= rev0 + 6 && r;
    }, 12 * E.renewMs, 'six renewals');
    t.comment(`renewed ${rev - rev0} times in ${ms(tr)} ms`);
    t.equal(g.leaders()[0], l, 'the same leader');
    t.equal(l.events.length, 1, 'no other callback');
    for (const n of others) t.same(n.events, [], `${n.id} never elected`);
    t.same(g.violations, [], 'never two leaders');
  });

  t.test('a frozen leader is replaced after expiry, and steps down on waking', async (t) => {
    const kv = await open('walcast_t2_cluster');
    const g = group(t, kv, ['a', 'b', 'c']);
    g.start();
    const old = await g.leader(E.expiryMs);
    const oldEpoch = old.el.epoch!;
    // Right after a renew, so the bounds below are measured from the last write.
    const rev = (await kv.get('capture'))!.revision;
    await until(async () => (await kv.get('capture'))!.revision > rev, 2 * E.renewMs, 'a renew');
    const th = performance.now();
    old.el.halt();
    const next = await g.leader(E.expiryMs + 2 * E.renewMs + 1_000, (n) => n !== old);
    const took = ms(th);
    t.comment(`halted leader replaced after ${took} ms (expiry ${E.expiryMs}, renew ${E.renewMs})`);
    t.ok(took >= E.staleMs, 'not before the frozen leader is stale by its own clock');
    t.ok(took <= E.expiryMs + 2 * E.renewMs + 500, `within expiryMs + 2 renewMs + slack`);
    t.ok(next.el.epoch! > oldEpoch, `higher epoch: ${next.el.epoch} > ${oldEpoch}`);
    t.equal(old.el.currentState, 'leader', 'the frozen one has not ticked...');
    t.notOk(old.el.isLeader, '...but does not see itself as leader: its lease is stale by its own clock');
    t.equal(old.el.epoch, null);
    t.same(old.events.map((e) => e.kind), ['elected'], 'no callback while frozen');
    // Waking: the overdue tick runs first and deposes before anything else.
    old.el.resume();
    t.same(old.events.at(-1), { kind: 'deposed', reason: 'stale', at: old.events.at(-1)!.at }, 'onDeposed(stale) at its first tick');
    t.equal(old.el.currentState, 'candidate');
    await until(() => old.el.holder?.node === next.id, 2 * E.renewMs, 'the woken one to see the new holder');
    t.same(old.el.holder, { node: next.id, epoch: next.el.epoch }, 'and sees the new holder');
    t.equal(g.leaders().length, 1, 'one leader');
    t.equal(g.leaders()[0], next);
    t.same(g.violations, [], 'never two leaders, from the electors\' own view');
  });

  t.test('resign hands over at once; the resigner sits out its cooldown', async (t) => {
    const kv = await open('walcast_t3_cluster');
    const g = group(t, kv, ['a', 'b', 'c']);
    g.start();
    const old = await g.leader(E.expiryMs);
    const tr = performance.now();
    await old.el.resign();
    t.match(old.events.at(-1), { kind: 'deposed', reason: 'resigned' }, 'onDeposed(resigned)');
    t.equal(old.el.currentState, 'cooldown');
    const next = await g.leader(E.expiryMs, (n) => n !== old);
    const took = ms(tr);
    t.comment(`after resign, taken over in ${took} ms`);
    t.ok(took < E.expiryMs / 2, `well under expiryMs (${took} < ${E.expiryMs / 2})`);
    t.ok(next.el.epoch! > (old.events[0] as { epoch: number }).epoch, 'a higher epoch');
    await until(() => old.el.currentState === 'candidate', E.cooldownMs + E.renewMs, 'the cooldown to end');
    t.same(old.events.map((e) => e.kind), ['elected', 'deposed'], 'not re-elected');
    t.same(g.violations, [], 'never two leaders');

    // Alone, the resigner would retake a free key at its next tick: only the cooldown holds it back.
    const solo = group(t, kv, ['solo'], { key: 'capture-solo' });
    solo.start();
    const s = await solo.leader(E.expiryMs);
    const ts = performance.now();
    await s.el.resign();
    const freed = await kv.get('capture-solo');
    t.equal(freed?.operation, 'DEL', 'resign deleted the key');
    t.equal(s.el.holder, null, 'and sees it free');
    await until(() => s.el.isLeader, E.cooldownMs + 3 * E.renewMs, 'solo to retake');
    const back = ms(ts);
    t.comment(`alone, retaken ${back} ms after resign (cooldown ${E.cooldownMs})`);
    t.ok(back >= E.cooldownMs, 'not before the cooldown ended');
    t.same(s.events.map((e) => e.kind), ['elected', 'deposed', 'elected']);
    t.ok((s.events[2] as { epoch: number }).epoch > (s.events[0] as { epoch: number }).epoch, 'a new epoch');
  });

  t.test('stop on all deletes the key and leaves no timers', async (t) => {
    const kv = await open('walcast_t4_cluster');
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const g = group(t, kv, ['a', 'b', 'c']);
    g.stopWatching();
    const before = timers();
    g.start();
    t.ok(timers() >= before + 3, 'each elector has a timer');
    const l = await g.leader(E.expiryMs);
    const ts = performance.now();
    await Promise.all(g.nodes.map((n) => n.el.stop()));
    t.comment(`stop() of all took ${ms(ts)} ms`);
    t.match(l.events.at(-1), { kind: 'deposed', reason: 'stopped' }, 'the leader: onDeposed(stopped)');
    for (const n of g.nodes) t.equal(n.el.currentState, 'stopped');
    const e = await kv.get('capture');
    t.equal(e?.operation, 'DEL', 'the key is deleted');
    t.equal(timers(), before, 'no timer left');
    await Promise.all(g.nodes.map((n) => n.el.stop()));
    t.equal(l.events.length, 2, 'stop() again: nothing more');
    t.same(g.violations, []);
  });

  t.test('NATS gone: the leader steps down as stale; back: a leader again', async (t) => {
    const kv = await open('walcast_t5_cluster');
    const g = group(t, kv, ['a', 'b']);
    g.start();
    const l = await g.leader(E.expiryMs);
    const server = nats.servers[0];
    const td = performance.now();
    await server.stop();
    const down = ms(td);
    await until(() => l.events.at(-1)?.kind === 'deposed', E.staleMs + 2 * E.renewMs, 'the leader to step down');
    const took = ms(td);
    t.comment(`NATS stopped: leader deposed after ${took} ms (stale ${E.staleMs})`);
    // Its last good renew was sent before the server was down: the deadline timer, not the
    // next tick (up to renewMs later), deposes it.
    t.ok(took <= down + E.staleMs + 1_000, `within staleMs of its last renew (server down after ${down} ms)`);
    t.match(l.events.at(-1), { kind: 'deposed', reason: 'stale' }, 'onDeposed(stale)');
    t.equal(g.leaders().length, 0, 'no leader while NATS is away');
    const tb = performance.now();
    await server.start();
    const again = await g.leader(30_000);
    t.comment(`NATS back: ${again.id} elected ${ms(tb)} ms after restart`);
    t.ok(again.el.epoch! > (l.events[0] as { epoch: number }).epoch, 'with a higher epoch');
    t.same(g.violations, [], 'never two leaders');
  });
});

