// The hub's delivery rules on hand-made transactions and a recording peer (the sockets are
// covered by test/integration/serve.test.ts).
import t from 'tap';
import type { Row } from '../../src/capture/pgoutput.types.js';
import type { Position } from '../../src/protocol/position.js';
import type { CapturedChange as Change, Transaction } from '../../src/capture/types.js';
import { HistoryRing, LAST_INDEX } from '../../src/history/ring.js';
import { compileFilter, eqIndexable, parseFilter } from '../../src/hub/filter.js';
import { Hub } from '../../src/hub/hub.js';
import type { Peer } from '../../src/hub/types.js';
import { FakePeer, relation } from '../helpers/fake-peer.js';

const columns = [
  { name: 'id', typeOid: 23 },
  { name: 'room', typeOid: 25 },
];
const rel = relation('m', { columns });

let lsn = 0x1000n;
function txOf(...changes: Omit<Change, 'index'>[]): Transaction {
  lsn += 0x100n;
  return {
    xid: 1, lsn, lsnText: `0/${lsn.toString(16).toUpperCase()}`, endLsn: lsn + 8n, commitTime: new Date().toISOString(),
    changes: changes.map((c, index) => ({ ...c, index }) as Change),
  };
}
/** Live deliveries are flushed after the current run of transactions (a microtask). */
const settle = () => new Promise((r) => setImmediate(r));
const ins = (row: Row) => ({ tag: 'insert' as const, relation: rel, new: row });
const upd = (old: Row, row: Row) => ({ tag: 'update' as const, relation: rel, old, new: row, unchangedToast: null });
const del = (old: Row) => ({ tag: 'delete' as const, relation: rel, old });

function setup() {
  const ring = new HistoryRing({ maxBytes: 1e9, maxAgeMs: 1e9 });
  const hub = new Hub({ ring, catchUpBudgetPerTurn: 2 });
  hub.reset({ lsn: 0xfffn, index: LAST_INDEX }, null);
  return { ring, hub };
}

function sub(hub: Hub, peer: Peer, id: string, filter = '', since: Position | null = null, events: string[] | null = null) {
  const f = parseFilter(filter);
  return hub.subscribe({
    peer, id, table: 'public.m', predicate: compileFilter(f, columns),
    indexTerm: f.terms.find((x) => x.op === 'eq' && eqIndexable(columns.find((c) => c.name === x.column)?.typeOid ?? 0)) ?? null,
    events: events ? new Set(events as ('insert' | 'update' | 'delete')[]) : null, since,
  });
}

t.test('filters through the index, leave, events, unsubscribe', async (t) => {
  const { hub } = setup();
  const p = new FakePeer();
  sub(hub, p, 'lobby', 'room=eq.lobby');
  sub(hub, p, 'big', 'id=gt.2');
  sub(hub, p, 'ins', '', null, ['insert']);
  t.same(p.frames.map((f) => f.type), ['subscribed', 'subscribed', 'subscribed']);
  hub.onTransaction(txOf(ins({ id: 1, room: 'lobby' }), ins({ id: 3, room: 'x' })));
  hub.onTransaction(txOf(upd({ id: 1, room: 'lobby' }, { id: 1, room: 'gone' })));
  hub.onTransaction(txOf(del({ id: 3, room: 'x' })));
  await settle();
  t.same(p.changes('lobby'), ['insert:{"id":1,"room":"lobby"}', 'leave:{"id":1,"room":"lobby"}']);
  t.same(p.changes('big'), ['insert:{"id":3,"room":"x"}', 'delete:{"id":3,"room":"x"}']);
  t.same(p.changes('ins'), ['insert:{"id":1,"room":"lobby"}', 'insert:{"id":3,"room":"x"}']);
  const upd1 = p.frames.find((f) => f.sub === 'lobby' && f.op === 'leave');
  t.notOk(upd1 && 'new' in upd1, 'leave carries only the old row');
  t.ok(hub.unsubscribe(p, 'lobby'));
  t.notOk(hub.unsubscribe(p, 'lobby'), 'twice: unknown');
  hub.onTransaction(txOf(ins({ id: 9, room: 'lobby' })));
  await settle();
  t.equal(p.changes('lobby').length, 2, 'nothing after unsubscribe');
  t.equal(hub.counters.deliveries, 8, 'id 9 still reached big and ins');
});

t.test('resume: catch up from the ring in slices, then live with no gap or duplicate', async (t) => {
  const { hub } = setup();
  const first = txOf(ins({ id: 1, room: 'a' }), ins({ id: 2, room: 'a' }));
  hub.onTransaction(first);
  for (let i = 3; i <= 8; i++) hub.onTransaction(txOf(ins({ id: i, room: 'a' })));
  const p = new FakePeer();
  sub(hub, p, 's', '', { lsn: first.lsn, index: 0 });
  // Slices of 2 entries: more arrives while it catches up.
  hub.onTransaction(txOf(ins({ id: 9, room: 'a' })));
  await new Promise((r) => setTimeout(r, 20));
  hub.onTransaction(txOf(ins({ id: 10, room: 'a' })));
  await settle();
  const ids = p.frames.filter((f) => f.type === 'change').map((f) => (f.new as Row).id);
  t.same(ids, [2, 3, 4, 5, 6, 7, 8, 9, 10], 'every change after the position, once, in order');
  const kinds = p.frames.map((f) => (f.type === 'change' ? 'c' : f.type));
  t.equal(kinds.indexOf('subscribed'), 8, 'subscribed once the ring is delivered, before live changes');
});

t.test('a position outside the window gets resync; so does everyone on reset', async (t) => {
  const { hub } = setup();
  const p = new FakePeer();
  t.equal(sub(hub, p, 'old', '', { lsn: 0x10n, index: 0 }), null);
  t.same(p.frames[0], { type: 'resync', sub: 'old', reason: 'position_outside_window' });
  sub(hub, p, 'live');
  hub.reset({ lsn: 0x9000n, index: LAST_INDEX }, 'slot_recreated');
  t.same(p.frames.at(-1), { type: 'resync', sub: 'live', reason: 'slot_recreated' });
  t.equal(hub.subscriptionCount, 0);
});

t.test('progress for idle peers only, after the head moved', async (t) => {
  const { hub } = setup();
  const idle = new FakePeer();
  const busy = new FakePeer();
  sub(hub, idle, 'i', 'room=eq.nobody');
  sub(hub, busy, 'b');
  hub.onTransaction(txOf(ins({ id: 1, room: 'a' })));
  await settle();
  hub.sendProgress();
  t.equal(idle.frames.filter((f) => f.type === 'progress').length, 1);
  t.equal(busy.frames.filter((f) => f.type === 'progress').length, 0, 'it already has the head');
  hub.sendProgress();
  t.equal(idle.frames.filter((f) => f.type === 'progress').length, 1, 'not again without news');
  hub.removePeer(idle);
  t.equal(hub.subscriptionCount, 1);
});

t.test('after a restart, "from now" means after what committed before the daemon started', async (t) => {
  const { hub } = setup();
  const replayed = txOf(ins({ id: 1, room: 'a' }));
  hub.liveFrom({ lsn: replayed.lsn + 0x10n, index: LAST_INDEX }); // WAL position at start
  const p = new FakePeer();
  sub(hub, p, 'now');
  t.match(p.frames[0], { type: 'subscribed', position: `0/${(replayed.lsn + 0x10n).toString(16).toUpperCase()}:${LAST_INDEX}` });
  hub.onTransaction(replayed); // the replay of the window reaches it after it subscribed
  hub.onTransaction(txOf(ins({ id: 2, room: 'a' })));
  await settle();
  t.same(p.changes('now'), ['insert:{"id":2,"room":"a"}'], 'only what committed after the start');
  const q = new FakePeer();
  sub(hub, q, 'resumed', '', { lsn: 0xfffn, index: LAST_INDEX });
  await new Promise((r) => setImmediate(r));
  t.same(q.changes('resumed'), ['insert:{"id":1,"room":"a"}', 'insert:{"id":2,"room":"a"}'], 'a resume still gets the replayed window');
});

t.test('old rows only to whom the policies let read them: otherwise an update enters as an insert (issue 11)', async (t) => {
  // Rooms each user may read; the policies are the same at every position here.
  const rooms: Record<string, string[]> = { dave: ['2'], erin: ['1', '2'] };
  const auth = {
    ready: true, epoch: 0,
    whenReady: () => Promise.resolve(),
    mayEverRead: () => true,
    mayAct: () => true,
    mayRead: (identity: { id: string }, _table: string, row: Row) => (rooms[identity.id] ?? []).includes(String(row.room)),
    reach: () => null,
    apply: () => false,
    forget: () => {},
  };
  const ring = new HistoryRing({ maxBytes: 1e9, maxAgeMs: 1e9 });
  const hub = new Hub({ ring, auth });
  hub.reset({ lsn: 0xfffn, index: LAST_INDEX }, null);
  const peerOf = (id: string) => new FakePeer({ id });
  const dave = peerOf('dave');
  const erin = peerOf('erin');
  const start = { lsn: lsn, index: LAST_INDEX };
  for (const p of [dave, erin]) {
    sub(hub, p, 'all');
    sub(hub, p, 'in2', 'room=eq.2');
  }
  const moves = [
    txOf(upd({ id: 1, room: '1' }, { id: 1, room: '2' })), // 1 → 2: dave may not read the old row
    txOf(upd({ id: 1, room: '2' }, { id: 1, room: '2', x: 1 } as Row)), // within 2
    txOf(upd({ id: 1, room: '2' }, { id: 1, room: '1' })), // 2 → 1: dave sees it leave
  ];
  for (const tx of moves) hub.onTransaction(tx);
  await settle();
  // Resumed from before the moves: the catch-up path, judged at each commit.
  const daveLater = peerOf('dave');
  const erinLater = peerOf('erin');
  for (const p of [daveLater, erinLater]) {
    sub(hub, p, 'all', '', start);
    sub(hub, p, 'in2', 'room=eq.2', start);
  }
  await new Promise((r) => setTimeout(r, 20));
  for (const [who, d, e] of [['live', dave, erin], ['catch-up', daveLater, erinLater]] as const) {
    const shape = (p: FakePeer, s: string) => p.frames.filter((f) => f.type === 'change' && f.sub === s).map((f) => ({ op: f.op, old: f.old, changed: f.changed }));
    t.same(shape(d, 'all'), [
      { op: 'insert', old: undefined, changed: undefined },
      { op: 'update', old: { id: 1, room: '2' }, changed: ['x'] },
      { op: 'leave', old: { id: 1, room: '2' }, changed: undefined },
    ], `${who}: dave gets the row entering as an insert, without room 1's old row`);
    t.same(shape(d, 'in2'), shape(d, 'all'), `${who}: the same through a filter`);
    t.same(shape(e, 'all'), [
      { op: 'update', old: { id: 1, room: '1' }, changed: ['room'] },
      { op: 'update', old: { id: 1, room: '2' }, changed: ['x'] },
      { op: 'update', old: { id: 1, room: '2' }, changed: ['room'] },
    ], `${who}: erin may read both rooms: updates with old`);
    t.same(shape(e, 'in2'), [
      { op: 'update', old: { id: 1, room: '1' }, changed: ['room'] },
      { op: 'update', old: { id: 1, room: '2' }, changed: ['x'] },
      { op: 'leave', old: { id: 1, room: '2' }, changed: undefined },
    ], `${who}: an old row outside the filter but readable still comes with the update`);
    const entered = d.frames.find((f) => f.sub === 'all' && f.op === 'insert');
    t.notOk(entered && ('old' in entered || 'changed' in entered), `${who}: no old, no changed`);
    t.same(entered?.new, { id: 1, room: '2' }, `${who}: the new row`);
  }
});
