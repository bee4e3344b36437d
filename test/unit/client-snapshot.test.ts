// Subscribing with a snapshot, the client's side (docs/PROTOCOL.md, docs/CLIENT.md), against the
// stand-in server of client-fake-server.ts: the option checked at the call; `snapshot` on the
// wire without `since`; the frames handed on as one onSnapshot before the changes that follow;
// those changes delivered but not taken as the position; a drop before `subscribed` asks for a
// new snapshot (never resumes), one after it resumes with `since`; resubscribe() after a resync
// takes a snapshot again by default.

import t from 'tap';
import { SNAPSHOT_MAX_LIMIT, WalcastError, type SubscribedInfo } from '../../src/client/index.js';
import { FakeServer, type FakeConn, type Msg, until, testClient as client, sleep, manualServer as manual } from './client-fake-server.js';

const change = (sub: unknown, pos: string, id: number, op = 'insert'): Msg => ({
  type: 'change',
  sub,
  pos,
  commit_time: '2026-01-01T00:00:00.000000Z',
  op,
  table: 'public.items',
  ...(op === 'delete' ? { old: { id } } : { new: { id } }),
});

/** What a subscription handed on, in order, as short strings. */
function recorder() {
  const log: string[] = [];
  const infos: SubscribedInfo[] = [];
  const errors: WalcastError[] = [];
  return {
    log,
    infos,
    errors,
    handlers: {
      onSnapshot: (rows: Array<{ id: number }>) => log.push(`snapshot ${rows.map((r) => r.id).join(',')}`),
      onChange: (c: { op: string; new?: { id: number }; old?: { id: number } }) => log.push(`${c.op} ${(c.new ?? c.old)?.id}`),
      onSubscribed: (i: SubscribedInfo) => {
        infos.push(i);
        log.push('subscribed');
      },
      onResync: (reason: string) => log.push(`resync ${reason}`),
      onError: (e: WalcastError) => errors.push(e),
    },
  };
}

t.test('the snapshot option is checked at the call', async (t) => {
  const srv = await FakeServer.start(t);
  const c = client(t, { url: srv.url });
  t.throws(() => c.subscribe({ table: 'items', snapshot: true, since: '0/10:0' }), { name: 'TypeError', message: /snapshot and since/ });
  for (const limit of [0, -1, 1.5, SNAPSHOT_MAX_LIMIT + 1, '5', NaN]) {
    t.throws(() => c.subscribe({ table: 'items', snapshot: { limit: limit as number } }), { name: 'TypeError', message: /snapshot\.limit/ }, `limit ${String(limit)}`);
  }
  t.throws(() => c.subscribe({ table: 'items', snapshot: { order: '' } }), { name: 'TypeError', message: /snapshot\.order/ });
  t.throws(() => c.subscribe({ table: 'items', snapshot: { order: 7 as unknown as string } }), { name: 'TypeError', message: /snapshot\.order/ });
  t.throws(() => c.subscribe({ table: 'items', snapshot: { limt: 5 } as never }), { name: 'TypeError', message: /no option "limt"/ });
  t.throws(() => c.subscribe({ table: 'items', snapshot: 'yes' as never }), { name: 'TypeError', message: /snapshot must be/ });
  const ok = c.subscribe({ table: 'items', snapshot: { limit: SNAPSHOT_MAX_LIMIT, order: 'id.desc' } });
  t.same(ok.snapshot, { limit: SNAPSHOT_MAX_LIMIT, order: 'id.desc' }, 'the largest limit is fine');
  t.equal(c.subscribe({ table: 'items', snapshot: false }).snapshot, null, 'false: no snapshot');
  t.throws(() => ok.resubscribe({ since: '0/10:0', snapshot: true }), { name: 'TypeError', message: /snapshot and since/ });
  t.throws(() => ok.resubscribe({ snapshot: { limit: 0 } }), { name: 'TypeError', message: /snapshot\.limit/ });
});

t.test('on the wire: snapshot without since; true for all rows, else order and limit', async (t) => {
  const srv = await manual(t);
  const c = client(t, { url: srv.url });
  const all = c.subscribe({ table: 'items', snapshot: true });
  const empty = c.subscribe({ table: 'items', snapshot: {} });
  const top = c.subscribe({ table: 'items', filter: 'room_id=eq.1', events: ['insert'], snapshot: { order: 'id.desc', limit: 50 } });
  const plain = c.subscribe({ table: 'items' });
  const conn = await srv.connections(1);
  const sent = await Promise.all([all, empty, top, plain].map((s) => conn.next((m) => m.type === 'subscribe' && m.id === s.id)));
  t.same(sent[0], { type: 'subscribe', id: all.id, table: 'items', snapshot: true, ref: sent[0].ref });
  t.equal(sent[1].snapshot, true, '{} goes as true');
  t.same(sent[2], { type: 'subscribe', id: top.id, table: 'items', filter: 'room_id=eq.1', events: ['insert'], snapshot: { order: 'id.desc', limit: 50 }, ref: sent[2].ref });
  t.notOk('snapshot' in sent[3], 'no snapshot unless asked');
  for (const m of sent) t.notOk('since' in m, 'no since');
});

t.test('frames → one onSnapshot before the changes after it; those are delivered but are not the position until subscribed', async (t) => {
  const srv = await manual(t);
  const c = client(t, { url: srv.url });
  const r = recorder();
  const events: unknown[][] = [];
  const sub = c.subscribe<{ id: number }>({ table: 'items', snapshot: { order: 'id' } }, r.handlers);
  sub.on('snapshot', (rows) => events.push(rows));
  const conn = await srv.connections(1);
  const m = await conn.next((x) => x.type === 'subscribe');
  conn.send({ type: 'snapshot', sub: sub.id, rows: [{ id: 1 }, { id: 2 }] });
  conn.send({ type: 'snapshot', sub: sub.id, rows: [{ id: 3 }] });
  await sleep(50);
  t.same(r.log, [], 'nothing yet: the snapshot may have more frames');
  conn.send(change(sub.id, '0/200:0', 4));
  conn.send(change(sub.id, '0/200:0', 4)); // the same again: dropped
  conn.send(change(sub.id, '0/201:0', 2, 'delete'));
  await until(() => r.log.length === 3);
  t.same(r.log, ['snapshot 1,2,3', 'insert 4', 'delete 2'], 'the snapshot in order, then the changes after it');
  t.same(events, [[{ id: 1 }, { id: 2 }, { id: 3 }]], "also as the subscription's snapshot event");
  t.equal(sub.duplicatesDropped, 1, 'a change seen twice is dropped');
  t.equal(sub.position, null, 'no resume point before subscribed');
  t.equal(sub.state, 'subscribing');
  conn.send({ type: 'subscribed', id: sub.id, position: '0/200:5', ref: m.ref });
  await until(() => sub.state === 'live');
  t.same(r.infos, [{ position: '0/200:5', resumed: false, snapshot: true }]);
  t.equal(sub.position, '0/201:0', 'the later of subscribed and the changes delivered');
  conn.send(change(sub.id, '0/202:0', 5));
  await until(() => r.log.length === 5);
  t.equal(sub.position, '0/202:0', 'live: positions as usual');
  t.same(r.log.slice(3), ['subscribed', 'insert 5']);
});

t.test('an empty snapshot is handed on too, at subscribed, before onSubscribed', async (t) => {
  const srv = await manual(t);
  const c = client(t, { url: srv.url });
  const r = recorder();
  const sub = c.subscribe<{ id: number }>({ table: 'items', snapshot: true }, r.handlers);
  const m = await (await srv.connections(1)).next((x) => x.type === 'subscribe');
  srv.last.send({ type: 'subscribed', id: sub.id, position: '0/300:0', ref: m.ref });
  await until(() => sub.state === 'live');
  t.same(r.log, ['snapshot ', 'subscribed']);
  t.equal(sub.position, '0/300:0');
});

t.test('a drop before subscribed: subscribe again with a snapshot and without since; the new snapshot replaces the old', async (t) => {
  const srv = await manual(t);
  const c = client(t, { url: srv.url });
  const r = recorder();
  const sub = c.subscribe<{ id: number }>({ table: 'items', snapshot: { limit: 10 } }, r.handlers);
  const first = await srv.connections(1);
  await first.next((x) => x.type === 'subscribe');
  first.send({ type: 'snapshot', sub: sub.id, rows: [{ id: 1 }] });
  first.send(change(sub.id, '0/400:0', 2));
  await until(() => r.log.length === 2);
  first.terminate();
  const second = await srv.connections(2);
  const again = await second.next((x) => x.type === 'subscribe');
  t.same(again, { type: 'subscribe', id: sub.id, table: 'items', snapshot: { limit: 10 }, ref: again.ref }, 'a snapshot again, no since');
  t.equal(sub.position, null, 'the change before the drop was not a resume point');
  // The server's new snapshot already holds row 2 (and the change of it is not sent again).
  second.send({ type: 'snapshot', sub: sub.id, rows: [{ id: 1 }, { id: 2 }] });
  second.send({ type: 'subscribed', id: sub.id, position: '0/500:0', ref: again.ref });
  await until(() => sub.state === 'live');
  t.same(r.log, ['snapshot 1', 'insert 2', 'snapshot 1,2', 'subscribed'], 'the second snapshot is handed on in full');
  t.same(r.infos, [{ position: '0/500:0', resumed: false, snapshot: true }]);
});

t.test('a change before subscribed is not compared with the void attempt', async (t) => {
  const srv = await manual(t);
  const c = client(t, { url: srv.url });
  const r = recorder();
  const sub = c.subscribe<{ id: number }>({ table: 'items', snapshot: true }, r.handlers);
  const first = await srv.connections(1);
  await first.next((x) => x.type === 'subscribe');
  first.send(change(sub.id, '0/600:0', 1));
  await until(() => r.log.length === 2);
  first.terminate();
  const second = await srv.connections(2);
  const again = await second.next((x) => x.type === 'subscribe');
  // The new snapshot is older than the change seen on the void attempt: the change comes again.
  second.send(change(sub.id, '0/600:0', 1));
  second.send({ type: 'subscribed', id: sub.id, position: '0/600:0', ref: again.ref });
  await until(() => sub.state === 'live');
  t.same(r.log, ['snapshot ', 'insert 1', 'snapshot ', 'insert 1', 'subscribed'], 'delivered after the new snapshot');
  t.equal(sub.duplicatesDropped, 0);
});

t.test('after subscribed a drop resumes with since, without a snapshot', async (t) => {
  const srv = await manual(t);
  const c = client(t, { url: srv.url });
  const r = recorder();
  const sub = c.subscribe<{ id: number }>({ table: 'items', snapshot: true }, r.handlers);
  const first = await srv.connections(1);
  const m = await first.next((x) => x.type === 'subscribe');
  first.send({ type: 'snapshot', sub: sub.id, rows: [{ id: 1 }] });
  first.send({ type: 'subscribed', id: sub.id, position: '0/700:0', ref: m.ref });
  first.send(change(sub.id, '0/701:0', 2));
  await until(() => r.log.length === 3);
  first.terminate();
  const second = await srv.connections(2);
  const again = await second.next((x) => x.type === 'subscribe');
  t.same(again, { type: 'subscribe', id: sub.id, table: 'items', since: '0/701:0', ref: again.ref }, 'a resume');
  second.send(change(sub.id, '0/701:0', 2)); // the overlap: dropped
  second.send(change(sub.id, '0/702:0', 3));
  second.send({ type: 'subscribed', id: sub.id, position: '0/702:0', ref: again.ref });
  await until(() => r.infos.length === 2);
  t.same(r.log, ['snapshot 1', 'subscribed', 'insert 2', 'insert 3', 'subscribed'], 'no second snapshot');
  t.same(r.infos[1], { position: '0/702:0', resumed: true, snapshot: false });
  t.equal(sub.duplicatesDropped, 1);
});

t.test('resync: resubscribe() takes a snapshot again by default; {since}, {snapshot: false} and a new snapshot option', async (t) => {
  const srv = await manual(t);
  const c = client(t, { url: srv.url });
  const r = recorder();
  const sub = c.subscribe<{ id: number }>({ table: 'items', snapshot: { order: 'id.desc', limit: 5 } }, r.handlers);
  const conn = await srv.connections(1);
  let m = await conn.next((x) => x.type === 'subscribe');
  t.same(m.snapshot, { order: 'id.desc', limit: 5 });
  conn.send({ type: 'resync', sub: sub.id, reason: 'position_outside_window' });
  await until(() => sub.state === 'ended');
  t.same(r.log, ['resync position_outside_window'], 'a resync before subscribed ends it, as any resync');
  const firstId = sub.id;
  sub.resubscribe();
  m = await conn.next((x) => x.type === 'subscribe');
  t.same(m, { type: 'subscribe', id: sub.id, table: 'items', snapshot: { order: 'id.desc', limit: 5 }, ref: m.ref }, 'the snapshot option again');
  t.not(sub.id, firstId, 'under a new id');
  conn.send({ type: 'snapshot', sub: sub.id, rows: [{ id: 9 }] });
  conn.send({ type: 'subscribed', id: sub.id, position: '0/800:0', ref: m.ref });
  await until(() => sub.state === 'live');
  t.same(r.log.slice(1), ['snapshot 9', 'subscribed']);

  sub.resubscribe({ since: '0/800:0' });
  m = await conn.next((x) => x.type === 'subscribe');
  t.equal(m.since, '0/800:0', 'resubscribe({since}) resumes');
  t.notOk('snapshot' in m);
  sub.resubscribe({ snapshot: false });
  m = await conn.next((x) => x.type === 'subscribe');
  t.notOk('snapshot' in m || 'since' in m, 'snapshot: false: from now');
  sub.resubscribe();
  m = await conn.next((x) => x.type === 'subscribe');
  t.notOk('snapshot' in m, 'and it stays dropped');
  t.equal(sub.snapshot, null);

  const plain = c.subscribe({ table: 'items' });
  await conn.next((x) => x.type === 'subscribe' && x.id === plain.id);
  plain.resubscribe({ snapshot: { limit: 3 } });
  m = await conn.next((x) => x.type === 'subscribe' && x.id === plain.id);
  t.same(m.snapshot, { limit: 3 }, 'a subscription without one can start with a snapshot');
});

t.test('snapshot_failed ends the subscription; resubscribe() asks again', async (t) => {
  const srv = await manual(t);
  const c = client(t, { url: srv.url });
  const r = recorder();
  const sub = c.subscribe<{ id: number }>({ table: 'items', snapshot: true }, r.handlers);
  const conn = await srv.connections(1);
  let m = await conn.next((x) => x.type === 'subscribe');
  conn.send({ type: 'snapshot', sub: sub.id, rows: [{ id: 1 }] });
  conn.send({ type: 'error', code: 'snapshot_failed', message: 'canceling statement due to statement timeout', id: sub.id, ref: m.ref });
  await until(() => r.errors.length === 1);
  t.match(r.errors[0], { code: 'snapshot_failed', id: m.id });
  t.equal(sub.state, 'ended');
  t.same(r.log, [], 'the rows of a failed snapshot are never handed on');
  sub.resubscribe();
  m = await conn.next((x) => x.type === 'subscribe');
  t.equal(m.snapshot, true);
  conn.send({ type: 'subscribed', id: sub.id, position: '0/900:0', ref: m.ref });
  await until(() => sub.state === 'live');
  t.same(r.log, ['snapshot ', 'subscribed'], 'only the snapshot that completed');
});

t.test('snapshot frames out of place are reported (protocol) and dropped; the subscription goes on', async (t) => {
  const srv = await manual(t);
  const c = client(t, { url: srv.url });
  const r = recorder();
  const snap = c.subscribe<{ id: number }>({ table: 'items', snapshot: true }, r.handlers);
  const plainErrors: WalcastError[] = [];
  const plain = c.subscribe({ table: 'items' }, { onError: (e) => plainErrors.push(e) });
  const conn = await srv.connections(1);
  await conn.next((x) => x.type === 'subscribe' && x.id === snap.id);
  await conn.next((x) => x.type === 'subscribe' && x.id === plain.id);
  conn.send({ type: 'snapshot', sub: plain.id, rows: [{ id: 1 }] });
  conn.send({ type: 'snapshot', sub: snap.id, rows: 'nope' });
  conn.send(change(snap.id, '0/950:0', 1));
  conn.send({ type: 'snapshot', sub: snap.id, rows: [{ id: 2 }] });
  await until(() => plainErrors.length === 1 && r.errors.length === 2);
  t.match(plainErrors[0], { code: 'protocol', message: /asked for none/ });
  t.match(r.errors[0], { code: 'protocol', message: /without a rows array/ });
  t.match(r.errors[1], { code: 'protocol', message: /after its changes/ });
  t.same(r.log, ['snapshot ', 'insert 1'], 'the late frame is not handed on');
  t.equal(snap.state, 'subscribing', 'not ended');
  t.equal(plain.state, 'subscribing');
});

t.test('a listener that unsubscribes in onSnapshot gets no change after it', async (t) => {
  const srv = await manual(t);
  const c = client(t, { url: srv.url });
  const got: string[] = [];
  const sub = c.subscribe({ table: 'items', snapshot: true }, {
    onSnapshot: () => {
      got.push('snapshot');
      void sub.unsubscribe();
    },
    onChange: () => got.push('change'),
  });
  const conn: FakeConn = await srv.connections(1);
  await conn.next((x) => x.type === 'subscribe');
  conn.send(change(sub.id, '0/990:0', 1));
  await conn.next((x) => x.type === 'unsubscribe');
  t.same(got, ['snapshot']);
});
