// client.collection(): a snapshot subscription kept as a Map by key, against the stand-in server
// of client-fake-server.ts. The map a snapshot builds (with the changes after it) is shown only
// at `subscribed`, in one step; then changes apply by key (insert/update upsert, a changed key
// moves the row, delete/leave remove, truncate clears); a drop before `subscribed` or a resync
// builds a new map while the old one stays shown; failures retry or end the collection.

import t from 'tap';
import { rowKey, WalcastError, type Change, type LiveCollection } from '../../src/client/index.js';
import { type FakeConn, type Msg, until, testClient as client, sleep, manualServer as manual } from './client-fake-server.js';

type Item = { id: number; v?: string };

let seq = 0;
/** A change message with a fresh position. */
function change(sub: string, op: string, rows: { new?: Record<string, unknown>; old?: Record<string, unknown> } = {}): Msg {
  seq++;
  return { type: 'change', sub, pos: `1/${seq.toString(16)}:0`, commit_time: '2026-01-01T00:00:00.000000Z', op, table: 'public.items', ...rows };
}

/** The collection's rows as [key, v] pairs, in map order. */
const view = (col: LiveCollection<Item>) => [...col.rows].map(([k, r]) => `${k}:${r.v ?? ''}`);

/** Waits for the subscribe of `col` on `conn` and returns its id and ref. */
async function subscribeOf(conn: FakeConn): Promise<{ id: string; ref: unknown; msg: Msg }> {
  const msg = await conn.next((m) => m.type === 'subscribe');
  return { id: msg.id as string, ref: msg.ref, msg };
}

/** Counts the collection's change events (and keeps what each saw). */
function watch(col: LiveCollection<Item>) {
  const seen: Array<{ change: Change<Item> | null; rows: string[] }> = [];
  col.on('change', (c, ch) => seen.push({ change: ch, rows: view(c) }));
  return seen;
}

t.test('the snapshot and the changes after it are shown at subscribed, in one step', async (t) => {
  const srv = await manual(t);
  const c = client(t, { url: srv.url });
  const col = c.collection<Item>({ table: 'items', snapshot: { order: 'id.desc', limit: 3 } });
  const seen = watch(col);
  let ready = false;
  void col.ready.then(() => (ready = true));
  const conn = await srv.connections(1);
  const s = await subscribeOf(conn);
  t.same(s.msg.snapshot, { order: 'id.desc', limit: 3 }, 'subscribes with the snapshot option');
  conn.send({ type: 'snapshot', sub: s.id, rows: [{ id: 3, v: 'c' }, { id: 2, v: 'b' }] });
  conn.send({ type: 'snapshot', sub: s.id, rows: [{ id: 1, v: 'a' }] });
  conn.send(change(s.id, 'insert', { new: { id: 4, v: 'd' } }));
  conn.send(change(s.id, 'update', { new: { id: 2, v: 'B' }, old: { id: 2, v: 'b' } }));
  conn.send(change(s.id, 'delete', { old: { id: 1, v: 'a' } }));
  await sleep(100);
  t.equal(col.rows.size, 0, 'nothing shown before subscribed');
  t.equal(col.state, 'loading');
  t.same(seen, [], 'no change event for the map being built');
  t.notOk(ready, 'not ready');
  conn.send({ type: 'subscribed', id: s.id, position: '1/ff:0', ref: s.ref });
  await col.ready;
  t.equal(col.state, 'ready');
  t.same(view(col), ['3:c', '2:B', '4:d'], 'the snapshot in its order, the changes after it applied, then the insert');
  t.same(seen, [{ change: null, rows: ['3:c', '2:B', '4:d'] }], 'one change event: the swap');
  t.equal(col.rows.get('2')?.v, 'B', 'keyed by the id as text');
  t.equal(col.keyOf({ id: 2 }), '2');
});

t.test('after subscribed: upsert, a changed key, delete, leave, truncate; each a change event', async (t) => {
  const srv = await manual(t);
  const c = client(t, { url: srv.url });
  const col = c.collection<Item>({ table: 'items' });
  const conn = await srv.connections(1);
  const s = await subscribeOf(conn);
  t.equal(s.msg.snapshot, true, 'all rows by default');
  conn.send({ type: 'snapshot', sub: s.id, rows: [{ id: 1, v: 'a' }, { id: 2, v: 'b' }, { id: 3, v: 'c' }] });
  conn.send({ type: 'subscribed', id: s.id, position: '1/0:0', ref: s.ref });
  await col.ready;
  const seen = watch(col);
  const steps: Array<[Msg, string[]]> = [
    [change(s.id, 'insert', { new: { id: 4, v: 'd' } }), ['1:a', '2:b', '3:c', '4:d']],
    [change(s.id, 'insert', { new: { id: 1, v: 'A' } }), ['1:A', '2:b', '3:c', '4:d']], // an insert of a known key: an upsert
    [change(s.id, 'update', { new: { id: 2, v: 'B' } }), ['1:A', '2:B', '3:c', '4:d']], // no old (key unchanged): in place
    [change(s.id, 'update', { new: { id: 30, v: 'c' }, old: { id: 3, v: 'c' } }), ['1:A', '2:B', '4:d', '30:c']], // the key changed
    [change(s.id, 'delete', { old: { id: 1 } }), ['2:B', '4:d', '30:c']],
    [change(s.id, 'leave', { old: { id: 4, v: 'd' } }), ['2:B', '30:c']],
    [change(s.id, 'delete', { old: { id: 99 } }), ['2:B', '30:c']], // not there: nothing to do
    [change(s.id, 'truncate'), []],
    [change(s.id, 'insert', { new: { id: 5, v: 'e' } }), ['5:e']],
  ];
  for (const [i, [msg, expected]] of steps.entries()) {
    conn.send(msg);
    await until(() => seen.length === i + 1, 3_000, `${msg.op}`);
    t.same(view(col), expected, `${msg.op} ${JSON.stringify(msg.new ?? msg.old ?? null)}`);
  }
  t.equal(seen.length, steps.length, 'one change event per change');
  t.same(seen.map((x) => x.change?.op), steps.map(([m]) => m.op), 'with the change');
  t.equal(col.skipped, 0);
});

t.test('a composite key', async (t) => {
  const srv = await manual(t);
  const c = client(t, { url: srv.url });
  type Member = { room_id: number; user_id: string; role: string };
  const col = c.collection<Member>({ table: 'room_members', key: ['room_id', 'user_id'] });
  const conn = await srv.connections(1);
  const s = await subscribeOf(conn);
  conn.send({
    type: 'snapshot',
    sub: s.id,
    rows: [
      { room_id: 1, user_id: 'alice', role: 'owner' },
      { room_id: 1, user_id: 'bob', role: 'member' },
      { room_id: 2, user_id: 'alice', role: 'member' },
      { room_id: 2, role: 'member' }, // no user_id: cannot be keyed
    ],
  });
  conn.send({ type: 'subscribed', id: s.id, position: '1/0:0', ref: s.ref });
  await col.ready;
  t.same([...col.rows.keys()], ['[1,"alice"]', '[1,"bob"]', '[2,"alice"]'], 'keys: the values as a JSON array');
  t.equal(col.skipped, 1, 'the row without a key column is skipped and counted');
  t.equal(col.keyOf({ room_id: 2, user_id: 'alice' }), '[2,"alice"]');
  t.throws(() => col.keyOf({ room_id: 2 }), TypeError);
  conn.send(change(s.id, 'delete', { old: { room_id: 1, user_id: 'alice', role: 'owner' } }));
  conn.send(change(s.id, 'update', { new: { room_id: 3, user_id: 'bob', role: 'member' }, old: { room_id: 1, user_id: 'bob', role: 'member' } }));
  await until(() => !col.rows.has('[1,"bob"]'));
  t.same([...col.rows.keys()], ['[2,"alice"]', '[3,"bob"]'], 'deleted by old, moved to its new key');
  t.equal(rowKey({ room_id: 1, user_id: 'x' }, ['room_id', 'user_id']), '[1,"x"]', 'rowKey, exported');
  t.equal(rowKey({ id: 'abc' }, ['id']), 'abc', 'a single text key as it is');
});

t.test('a drop before subscribed: the void snapshot is never shown; the new one is', async (t) => {
  const srv = await manual(t);
  const c = client(t, { url: srv.url });
  const col = c.collection<Item>({ table: 'items' });
  const seen = watch(col);
  const first = await srv.connections(1);
  const s1 = await subscribeOf(first);
  first.send({ type: 'snapshot', sub: s1.id, rows: [{ id: 1, v: 'old' }, { id: 2, v: 'old' }] });
  first.send(change(s1.id, 'insert', { new: { id: 3, v: 'old' } }));
  await sleep(50);
  first.terminate();
  const second = await srv.connections(2);
  const s2 = await subscribeOf(second);
  t.equal(s2.msg.snapshot, true, 'a new snapshot');
  t.notOk('since' in s2.msg, 'not a resume');
  second.send({ type: 'snapshot', sub: s2.id, rows: [{ id: 2, v: 'new' }] });
  await sleep(50);
  t.equal(col.rows.size, 0, 'still nothing shown');
  second.send({ type: 'subscribed', id: s2.id, position: '1/0:0', ref: s2.ref });
  await col.ready;
  t.same(view(col), ['2:new'], 'only the new snapshot: nothing of the void one');
  t.equal(seen.length, 1);
});

t.test('a drop after subscribed resumes into the shown map; a resync builds a new one while the old stays shown', async (t) => {
  const srv = await manual(t);
  const c = client(t, { url: srv.url });
  const col = c.collection<Item>({ table: 'items' });
  const first = await srv.connections(1);
  const s1 = await subscribeOf(first);
  first.send({ type: 'snapshot', sub: s1.id, rows: [{ id: 1, v: 'a' }] });
  first.send({ type: 'subscribed', id: s1.id, position: '2/0:0', ref: s1.ref });
  await col.ready;
  first.terminate();
  const second = await srv.connections(2);
  const s2 = await subscribeOf(second);
  t.equal(s2.msg.since, '2/0:0', 'a resume');
  t.notOk('snapshot' in s2.msg);
  second.send({ type: 'change', sub: s2.id, pos: '2/1:0', commit_time: '2026-01-01T00:00:00Z', op: 'insert', table: 'public.items', new: { id: 2, v: 'b' } });
  await until(() => col.rows.size === 2);
  t.same(view(col), ['1:a', '2:b'], 'catch-up changes apply to the shown map');
  second.send({ type: 'subscribed', id: s2.id, position: '2/1:0', ref: s2.ref });
  await sleep(20);
  t.same(view(col), ['1:a', '2:b'], 'a resumed subscribed changes nothing');

  const seen = watch(col);
  second.send({ type: 'resync', sub: s2.id, reason: 'slot_recreated' });
  const s3 = await subscribeOf(second);
  t.equal(s3.msg.snapshot, true, 'the collection subscribes with a snapshot again by itself');
  t.not(s3.id, s2.id);
  second.send({ type: 'snapshot', sub: s3.id, rows: [{ id: 7, v: 'x' }] });
  second.send({ type: 'change', sub: s3.id, pos: '3/0:0', commit_time: '2026-01-01T00:00:00Z', op: 'insert', table: 'public.items', new: { id: 8, v: 'y' } });
  await sleep(50);
  t.same(view(col), ['1:a', '2:b'], 'the old rows stay shown meanwhile');
  t.same(seen, []);
  second.send({ type: 'subscribed', id: s3.id, position: '3/0:0', ref: s3.ref });
  await until(() => seen.length === 1);
  t.same(view(col), ['7:x', '8:y'], 'swapped');
  t.equal(col.state, 'ready');
});

t.test('snapshot_failed: reported, then tried again; a refusal ends it and ready rejects', async (t) => {
  const srv = await manual(t);
  const c = client(t, { url: srv.url });
  const col = c.collection<Item>({ table: 'items', backoff: { baseMs: 10, capMs: 20 } });
  const errors: WalcastError[] = [];
  col.on('error', (e) => errors.push(e));
  const conn = await srv.connections(1);
  const s1 = await subscribeOf(conn);
  conn.send({ type: 'error', code: 'snapshot_failed', message: 'statement timeout', id: s1.id, ref: s1.ref });
  const s2 = await subscribeOf(conn);
  t.equal(s2.msg.snapshot, true, 'tried again with a snapshot');
  t.match(errors, [{ code: 'snapshot_failed' }]);
  t.equal(col.state, 'loading');
  conn.send({ type: 'error', code: 'forbidden', message: 'no', id: s2.id, ref: s2.ref });
  await t.rejects(col.ready, { code: 'forbidden' }, 'ready rejects');
  t.equal(col.state, 'ended');
  t.match(errors, [{ code: 'snapshot_failed' }, { code: 'forbidden' }]);
  await sleep(80);
  t.equal(conn.of('subscribe').length, 2, 'no more tries');
});

t.test('without an error listener the error goes to the client', async (t) => {
  const srv = await manual(t);
  const c = client(t, { url: srv.url });
  const clientErrors: WalcastError[] = [];
  c.on('error', (e) => clientErrors.push(e));
  const col = c.collection<Item>({ table: 'nope' });
  const s = await subscribeOf(await srv.connections(1));
  srv.last.send({ type: 'error', code: 'unknown_table', message: 'no table nope', id: s.id, ref: s.ref });
  await t.rejects(col.ready, { code: 'unknown_table' });
  t.match(clientErrors, [{ code: 'unknown_table' }]);
});

t.test('close(): unsubscribes, ready rejects, nothing applied after', async (t) => {
  const srv = await manual(t);
  const c = client(t, { url: srv.url });
  const col = c.collection<Item>({ table: 'items' });
  const conn = await srv.connections(1);
  const s = await subscribeOf(conn);
  conn.send({ type: 'snapshot', sub: s.id, rows: [{ id: 1 }] });
  await sleep(30);
  const closing = col.close();
  await t.rejects(col.ready, { code: 'client_closed' });
  const unsub = await conn.next((m) => m.type === 'unsubscribe');
  t.equal(unsub.id, s.id);
  conn.send({ type: 'unsubscribed', id: s.id, ref: unsub.ref });
  await closing;
  conn.send({ type: 'subscribed', id: s.id, position: '1/0:0', ref: s.ref });
  await sleep(50);
  t.equal(col.rows.size, 0, 'a late subscribed shows nothing');
  t.equal(col.state, 'ended');
});

t.test('the client closing ends its collections', async (t) => {
  const srv = await manual(t);
  const c = client(t, { url: srv.url });
  const col = c.collection<Item>({ table: 'items' });
  await subscribeOf(await srv.connections(1));
  await c.close();
  await t.rejects(col.ready, { code: 'client_closed' });
  t.equal(col.state, 'ended');
  t.throws(() => c.collection({ table: 'items' }), { code: 'client_closed' });
});

t.test('options are checked at the call', async (t) => {
  const srv = await manual(t);
  const c = client(t, { url: srv.url });
  t.throws(() => c.collection({ table: 'items', key: [] }), { name: 'TypeError', message: /key/ });
  t.throws(() => c.collection({ table: 'items', key: ['a', 'a'] }), { name: 'TypeError', message: /distinct/ });
  t.throws(() => c.collection({ table: 'items', key: '' }), { name: 'TypeError' });
  t.throws(() => c.collection({ table: 'items', snapshot: false as never }), { name: 'TypeError', message: /starts from a snapshot/ });
  t.throws(() => c.collection({ table: 'items', snapshot: { limit: 0 } }), { name: 'TypeError', message: /snapshot\.limit/ });
  await sleep(50);
  t.equal(srv.last.of('subscribe').length, 0, 'nothing subscribed');
});
