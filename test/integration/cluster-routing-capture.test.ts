// Interest routing, capture's half (docs/dev/cluster-plan.md, "Next increments in detail", item
// 6), against a real Postgres and a 1-server NATS: three fake incarnations write interests
// (whole table `alpha`; route r1 of `rooms`, enabled with route_by; later, whole table `beta`),
// transactions touch several tables and routes (a multi-table one, routes moving both ways), and
// the stored stream is checked message by message: Walcast-Chain names exactly the incs each
// message concerns, prev pointers form exactly each inc's chain (the marker first, 0 for an inc
// that joined later), Walcast-Ends on each inc's last change of a transaction, rows on their
// route's subject; the heartbeats agree with the stream. A second leader (takeover) goes on with
// every known inc's chain from its marker.
import { DeliverPolicy, jetstream, jetstreamManager, type JsMsg } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect } from '@nats-io/transport-node';
import t from 'tap';
import { CaptureLeader } from '../../src/cluster/capture-leader.js';
import type { CaptureHeartbeat } from '../../src/cluster/heartbeat.js';
import { parseChain } from '../../src/cluster/chain-codec.js';
import { decodeChange } from '../../src/cluster/codec.js';
import { CLUSTER_HEADERS, decodeCtl } from '../../src/cluster/ctl.js';
import { InterestRegistry } from '../../src/cluster/interest.js';
import { clusterNames, ensureBucket, ensureStream } from '../../src/cluster/stream.js';
import { heartbeatSubject } from '../../src/cluster/subjects.js';
import { PUBLICATION } from '../../src/constants.js';
import { createLogger, silentLogger } from '../../src/log.js';
import { migrate } from '../../src/sql/migrate.js';
import { query, waitUntil } from '../helpers/capture.js';
import { withNats } from '../helpers/nats.js';
import { withPostgres } from '../helpers/pg.js';

const A = 'aaaaaaaa'; // whole table alpha
const B = 'bbbbbbbb'; // route r1 of rooms
const C = 'cccccccc'; // whole table beta, joins while leader 1 streams

interface Stored {
  seq: number;
  subject: string;
  epoch: number;
  chain: Map<string, number> | null;
  chainEpoch: number | null;
  ends: string[];
  last: boolean;
  pos: string;
  ctl: string | null;
  /** data changes: table, route on the subject, the old row's room of an update */
  table?: string;
  route?: string;
  oldRoom?: string | null;
}

function stored(m: JsMsg): Stored {
  const h = m.headers;
  const chainText = h?.get(CLUSTER_HEADERS.chain) ?? '';
  const chain = chainText ? parseChain(chainText) : null;
  const ends = h?.get(CLUSTER_HEADERS.ends) ?? '';
  const s: Stored = {
    seq: m.seq,
    subject: m.subject,
    epoch: Number(h?.get(CLUSTER_HEADERS.epoch)),
    chain: chain?.links ?? null,
    chainEpoch: chain?.epoch ?? null,
    ends: ends ? ends.split(',') : [],
    last: h?.get(CLUSTER_HEADERS.last) === '1',
    pos: h?.get(CLUSTER_HEADERS.position) ?? '',
    ctl: null,
  };
  if (m.subject.endsWith('.ctl')) s.ctl = decodeCtl(m.data).type;
  else {
    const t = m.subject.split('.');
    s.table = t[5];
    s.route = t[6];
    const c = decodeChange(m.data);
    s.oldRoom = c.op === 'update' && c.old ? ((c.old as { room?: string }).room ?? null) : null;
  }
  return s;
}

t.test('capture stamps chains, ends and heartbeats by interest', async (t) => {
  const [db, nats] = await Promise.all([withPostgres(t), withNats(t, { size: 1 })]);
  await migrate(db.url);
  await query(db.url, `
    create table alpha (id int primary key, body text);
    create table beta (id int primary key, body text);
    create table rooms (id int primary key, room text, body text);
    select walcast.enable('alpha'); select walcast.enable('beta'); select walcast.enable('rooms', route_by => 'room');`);
  const log = process.env.CLUSTER_TEST_LOG ? createLogger(process.env.CLUSTER_TEST_LOG) : silentLogger;
  const nc = await connect({ servers: nats.urls, name: 'walcast test-routing' });
  t.teardown(() => nc.close());
  const jsm = await jetstreamManager(nc);
  const ns = 'rt';
  const names = clusterNames(ns);
  await ensureStream(jsm, { names, description: 'walcast test', maxAgeMs: 3_600_000, maxBytes: 64 * 1024 ** 2, replicas: 1 }, 'walcast_rt', log);
  await ensureBucket(nc, jsm, names.clusterBucket, 1, log);
  await ensureBucket(nc, jsm, names.interestBucket, 1, log);
  const js = jetstream(nc, { timeout: 5_000 });
  const kvm = new Kvm(nc);
  const clusterKv = await kvm.open(names.clusterBucket);
  const interestKv = await kvm.open(names.interestBucket);

  const heartbeats: CaptureHeartbeat[] = [];
  const hbSub = nc.subscribe(heartbeatSubject(ns), { callback: (_e, m) => void heartbeats.push(m.json<CaptureHeartbeat>()) });
  t.teardown(() => hbSub.unsubscribe());

  const registry = (inc: string) => {
    const r = new InterestRegistry({ kv: interestKv, nodeId: `edge-${inc}`, log, inc, lingerMs: 60_000 });
    t.teardown(() => r.close());
    return r;
  };
  const ra = registry(A);
  const rb = registry(B);
  await Promise.all([ra.start(), rb.start()]);
  await ra.acquire('public', 'alpha', null).revision;
  await rb.acquire('public', 'rooms', 'r1').revision;

  const leader = (epoch: number, nodeId: string) => {
    const failures: Error[] = [];
    const l = new CaptureLeader({
      db: db.url, slot: 'walcast_rt', publication: PUBLICATION, js, jsm, kv: clusterKv, ns, stream: names.stream, epoch, nodeId,
      authTables: new Set(), maxTransactionBytes: 64 * 1024 ** 2, ackDelayMs: 0, maxPayload: 8 * 1024, log,
      onFailed: (err) => failures.push(err),
    });
    t.teardown(() => l.stop());
    return { l, failures };
  };
  const streamLast = async () => (await jsm.streams.info(names.stream)).state.last_seq;
  const readStream = async (): Promise<Stored[]> => {
    const last = await streamLast();
    const c = await js.consumers.get(names.stream, { deliver_policy: DeliverPolicy.All });
    const out: Stored[] = [];
    const it = await c.fetch({ max_messages: last, expires: 5_000 });
    for await (const m of it) {
      out.push(stored(m));
      if (m.seq === last) break;
    }
    return out;
  };
  /** Waits until the stream holds `count` more messages than at `from`, and a heartbeat says they are PubAck'ed. */
  const settled = async (epoch: number, from: number, count: number) => {
    await waitUntil(async () => {
      const last = await streamLast();
      return last >= from + count && heartbeats.some((h) => h.epoch === epoch && h.acked === last);
    }, 15_000, () => 'a heartbeat covering the stream');
  };

  const first = leader(100, 'cap-1');
  await first.l.start();
  await waitUntil(() => first.l.current?.current === 'streaming', 15_000, () => 'capture streaming');
  t.equal(first.l.routing.incs, 2, 'two incarnations known at the marker');

  const start1 = await streamLast();
  // T1: several tables and routes in one transaction; T2/T3 move rows between routes; T4 concerns nobody.
  await query(db.url, `begin;
    insert into alpha values (1, 'a1');
    insert into rooms values (1, 'r1', 'm1'), (2, 'r2', 'm2');
    insert into beta values (1, 'b1');
    insert into alpha values (2, 'a2');
    commit;`);
  await query(db.url, "update rooms set room = 'r2' where id = 1");
  await query(db.url, "update rooms set room = 'r1' where id = 2");
  await query(db.url, "insert into rooms values (3, 'r3', 'nobody')");
  await query(db.url, "begin; insert into rooms values (4, 'r1', 'x'); insert into alpha values (3, 'a3'); insert into rooms values (5, 'r1', 'y'); commit;");
  // C joins while capture streams: its chain starts at 0, and appliedRev/appliedSeq say from where.
  const rc = registry(C);
  await rc.start();
  const revC = (await rc.acquire('public', 'beta', null).revision) as number;
  await waitUntil(() => first.l.routing.appliedRevision >= revC, 10_000, () => 'capture applied C\'s interest');
  await query(db.url, "begin; insert into beta values (2, 'b2'); insert into rooms values (6, 'r1', 'z'); commit;");
  await query(db.url, "insert into beta values (3, 'b3')");
  await settled(100, start1, 14);

  // Takeover: the second leader goes on with every known chain from its own marker.
  await first.l.stop();
  const second = leader(200, 'cap-2');
  await second.l.start();
  await waitUntil(() => second.l.current?.current === 'streaming', 15_000, () => 'second capture streaming');
  const start2 = await streamLast();
  await query(db.url, "begin; insert into alpha values (4, 'a4'); insert into beta values (4, 'b4'); insert into rooms values (7, 'r1', 'w'); commit;");
  // A change of routing, through the slot: beta's rows now go to their body's route; it concerns everyone.
  await query(db.url, "select walcast.enable('beta', route_by => 'body')");
  await query(db.url, "insert into beta values (5, 'k1')");
  // A change over max_payload: an oversize ctl message, which concerns everyone.
  await query(db.url, "insert into alpha values (6, repeat('x', 20000))");
  await settled(200, start2, 6);
  const msgs = await readStream();
  t.same(first.failures.concat(second.failures), [], 'no leadership failed');

  const markers = msgs.filter((m) => m.ctl === 'epoch');
  t.same(markers.map((m) => m.epoch), [100, 200], 'one marker per leadership');
  t.ok(markers.every((m) => m.chain === null && m.ends.length === 0), 'markers carry no chain');

  // Who each message concerns, computed from the stream itself.
  const joinedC = msgs.find((m) => m.chain?.has(C))?.seq ?? Infinity;
  const expected = (m: Stored): string[] => {
    if (m.ctl !== null || m.table === 'routes') return [A, B, ...(m.seq >= joinedC ? [C] : [])];
    const out: string[] = [];
    if (m.table === 'alpha') out.push(A);
    if (m.table === 'rooms' && (m.route === 'r1' || m.oldRoom === 'r1')) out.push(B);
    if (m.table === 'beta' && m.seq >= joinedC) out.push(C);
    return out;
  };
  const wrong: string[] = [];
  for (const m of msgs) {
    if (m.ctl === 'epoch') continue;
    const got = m.chain ? [...m.chain.keys()].sort() : [];
    const want = expected(m).sort();
    if (got.join() !== want.join()) wrong.push(`seq ${m.seq} ${m.subject}: ${got.join()} ≠ ${want.join()}`);
    if (m.chain && m.chainEpoch !== m.epoch) wrong.push(`seq ${m.seq}: chain epoch ${m.chainEpoch} ≠ ${m.epoch}`);
  }
  t.same(wrong, [], 'every message names exactly the incs it concerns');
  t.ok(msgs.some((m) => m.table === 'rooms' && m.route === 'r2' && m.oldRoom === 'r1' && m.chain?.has(B)), 'the row leaving r1 (published on r2) names r1\'s follower');
  t.ok(msgs.some((m) => m.table === 'rooms' && m.route === 'r3' && m.chain === null), 'a change nobody follows has no chain header');
  t.ok(msgs.filter((m) => m.table === 'rooms').every((m) => ['r1', 'r2', 'r3'].includes(m.route!)), 'rooms rows on their route\'s subject');
  t.ok(msgs.some((m) => m.ctl === 'oversize' && m.chain?.size === 3), 'an oversize marker names everyone');
  t.ok(msgs.some((m) => m.table === 'routes' && m.chain?.size === 3), 'a change of walcast.routes names everyone');
  t.ok(msgs.some((m) => m.table === 'beta' && m.route === 'k1' && m.chain?.has(C)), 'after route_by changed through the slot, beta\'s row on its route');
  t.ok(joinedC < Infinity && msgs.filter((m) => m.table === 'beta' && m.seq > joinedC).length >= 1, 'C is named once it joined');

  // Chains: prev = the previous message naming the inc in its epoch; the marker first (0 for C, joined later).
  const chainErrors: string[] = [];
  for (const inc of [A, B, C]) {
    for (const marker of markers) {
      const next = markers.find((x) => x.seq > marker.seq)?.seq ?? Infinity;
      const mine = msgs.filter((m) => m.seq > marker.seq && m.seq < next && m.chain?.has(inc));
      let prev = inc === C && marker.epoch === 100 ? 0 : marker.seq;
      for (const m of mine) {
        if (m.chain!.get(inc) !== prev) chainErrors.push(`${inc} seq ${m.seq}: prev ${m.chain!.get(inc)}, expected ${prev}`);
        prev = m.seq;
      }
      if (mine.length === 0) chainErrors.push(`${inc}: nothing in epoch ${marker.epoch}`);
    }
  }
  t.same(chainErrors, [], 'each inc\'s chain, in both epochs');

  // Walcast-Ends: per transaction, each inc's last change (not the transaction's last one).
  const endErrors: string[] = [];
  const byTx = new Map<string, Stored[]>();
  for (const m of msgs) if (m.ctl === null) byTx.set(m.pos.split(':')[0], [...(byTx.get(m.pos.split(':')[0]) ?? []), m]);
  let multi = 0;
  for (const [lsn, tx] of byTx) {
    const lastIdx = new Map<string, number>();
    tx.forEach((m, i) => m.chain?.forEach((_p, inc) => lastIdx.set(inc, i)));
    tx.forEach((m, i) => {
      const want = i === tx.length - 1 ? [] : [...lastIdx].filter(([, j]) => j === i).map(([inc]) => inc).sort();
      if (m.ends.slice().sort().join() !== want.join()) endErrors.push(`${lsn} #${i}: ends ${m.ends.join()} ≠ ${want.join()}`);
      if (m.last !== (i === tx.length - 1)) endErrors.push(`${lsn} #${i}: Walcast-Last`);
    });
    if (tx.length > 1) multi++;
  }
  t.same(endErrors, [], 'Walcast-Ends on each inc\'s last change of a transaction');
  t.ok(msgs.some((m) => m.ends.includes(A)) && msgs.some((m) => m.ends.includes(B)), 'ends seen for A and B');
  t.ok(multi >= 3, `${multi} multi-change transactions`);

  // Heartbeats: acked and last as the stream says; appliedRev/appliedSeq cover C's interest.
  const hbErrors: string[] = [];
  for (const h of heartbeats) {
    const marker = markers.find((m) => m.epoch === h.epoch);
    if (!marker || h.markerSeq !== marker.seq) {
      hbErrors.push(`epoch ${h.epoch}: marker ${h.markerSeq}`);
      continue;
    }
    if (h.acked < marker.seq) hbErrors.push(`acked ${h.acked} before the marker`);
    for (const [inc, seq] of Object.entries(h.last)) {
      const named = msgs.filter((m) => m.seq > marker.seq && m.seq <= h.acked && m.chain?.has(inc));
      const fromMarker = h.epoch === 200 || inc !== C;
      const want = named.length > 0 ? named[named.length - 1].seq : fromMarker ? marker.seq : 0;
      if (seq !== want) hbErrors.push(`epoch ${h.epoch} acked ${h.acked}: last[${inc}] ${seq} ≠ ${want}`);
    }
    if (h.appliedRev >= revC) {
      const missed = msgs.filter((m) => m.epoch === h.epoch && m.seq > h.appliedSeq && m.table === 'beta' && !m.chain?.has(C));
      if (missed.length > 0) hbErrors.push(`appliedRev ${h.appliedRev} appliedSeq ${h.appliedSeq}: beta seq ${missed[0].seq} does not name C`);
    }
  }
  t.same(hbErrors, [], `${heartbeats.length} heartbeats agree with the stream`);
  const lastHb = heartbeats[heartbeats.length - 1];
  t.same(Object.keys(lastHb.last).sort(), [A, B, C], 'the last heartbeat names every inc');
  t.match(lastHb, { v: 1, node: 'cap-2', epoch: 200, acked: msgs[msgs.length - 1].seq }, 'the last heartbeat: the second leader, everything acked');
  t.ok(heartbeats.some((h) => h.epoch === 100 && h.appliedRev >= revC), 'a heartbeat of the first leader reports C\'s revision applied');
});
