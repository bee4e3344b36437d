// The client SDK when a resume is refused: a subscription whose table lost its only rule while
// the client was connected is re-sent with `since` after a reconnect and answered `forbidden`.
// It ends (state `ended`), the error goes to its `error` listener (or, without one, to the
// client's), it is not sent again on later reconnects, and the other subscriptions resume as
// usual. resubscribe({ since: sub.position }) takes it up again once a rule allows it.

import t from 'tap';
import WebSocket from 'ws';
import { comparePositions, createClient, type Subscription, type WalcastError } from '../../src/client/index.js';
import { query, waitUntil } from '../helpers/capture.js';
import { startTestDaemon } from '../helpers/daemon.js';
import { hsToken } from '../helpers/tokens.js';

const NOTES_RULE = ['p', '*', 'table', 'public.notes', 'read', 'true'];

const { url, daemon } = await startTestDaemon(
  t,
  `create table notes (id bigserial primary key, body text);
   create table kept (id bigserial primary key, body text);
   create table tick (id bigserial primary key);
   select walcast.enable('notes'), walcast.enable('kept'), walcast.enable('tick');
   insert into walcast.casbin_rule (ptype, v0, v1, v2, v3, v4) values
     ('p', '*', 'table', 'public.notes', 'read', 'true'),
     ('p', '*', 'table', 'public.kept', 'read', 'true');`,
  { progressInterval: '200ms' },
);

/** The client's sockets, newest last: terminating one is a network drop (1006) to the client. */
const sockets: WebSocket[] = [];
class TrackedWebSocket extends WebSocket {
  constructor(address: string) {
    super(address);
    sockets.push(this);
  }
}

t.test('a resume answered forbidden ends the subscription, surfaced, not retried; resubscribe once allowed', async (t) => {
  const client = createClient({ url: `ws://127.0.0.1:${daemon.port}/ws`, WebSocket: TrackedWebSocket, token: () => hsToken({ sub: 'ann' }), backoff: { baseMs: 20, capMs: 100 } });
  t.teardown(() => client.close());
  const clientErrors: WalcastError[] = [];
  client.on('error', (e) => clientErrors.push(e));
  let opens = 0;
  client.on('open', () => opens++);

  // Two subscriptions on the table that will lose its rule (one with an error handler, one
  // without) and one on a table that keeps it.
  const notesErrors: WalcastError[] = [];
  const notes = client.subscribe<{ body: string }>({ table: 'notes' }, { onError: (e) => notesErrors.push(e) });
  const silent = client.subscribe({ table: 'notes' });
  const keptResumes: boolean[] = [];
  const kept = client.subscribe({ table: 'kept' }, { onSubscribed: (i) => keptResumes.push(i.resumed) });
  const got: string[] = [];
  notes.on('change', (c) => got.push(c.new!.body));
  const live = (s: Subscription<never> | Subscription) => waitUntil(() => s.state === 'live', 10_000, () => `subscription ${s.id} live (is ${s.state})`);
  await Promise.all([live(notes), live(silent), live(kept)]);
  await query(url, "insert into notes (body) values ('before')");
  await waitUntil(() => got.length === 1, 10_000, () => 'the first note');

  // The only rule of notes goes. Live subscriptions stay (rows are authorized one by one);
  // once the positions have moved past the deletion, a resume has nothing that could allow it.
  await query(url, 'delete from walcast.casbin_rule where v2 = $1', [NOTES_RULE[3]]);
  const [{ lsn }] = await query<{ lsn: string }>(url, 'select pg_current_wal_lsn()::text as lsn');
  await query(url, 'insert into tick default values'); // committed after `lsn`
  const past = `${lsn}:0`;
  await waitUntil(() => [notes, silent].every((s) => s.position !== null && comparePositions(s.position, past) > 0), 10_000, () => `progress past the deletion (${past}): ${notes.position}, ${silent.position}`);
  t.equal(notes.state, 'live', 'the live subscription is not ended by the deletion itself');

  sockets.at(-1)!.terminate();
  await waitUntil(() => notesErrors.length === 1 && clientErrors.length === 1 && keptResumes.length === 2, 10_000, () => `the refusal: ${JSON.stringify({ notesErrors, clientErrors, keptResumes })}`);
  t.match(notesErrors[0], { code: 'forbidden', id: notes.id }, 'the resume is refused forbidden, on the subscription\'s error handler');
  t.equal(notes.state, 'ended', 'the subscription has ended');
  t.ok(notes.position !== null && comparePositions(notes.position, past) > 0, `its position is kept, to resubscribe from (${notes.position})`);
  t.match(clientErrors[0], { code: 'forbidden', id: silent.id }, 'a subscription without an error listener: on the client\'s error');
  t.equal(silent.state, 'ended');
  t.same(keptResumes, [false, true], 'the other subscription resumed');
  t.equal(kept.state, 'live');

  // Not sent again: another drop, and the other subscription's resume as the barrier.
  sockets.at(-1)!.terminate();
  await waitUntil(() => keptResumes.length === 3 && kept.state === 'live', 10_000, () => 'the second resume');
  t.equal(opens, 3, 'three connections');
  t.equal(notesErrors.length + clientErrors.length, 2, 'the ended subscriptions were not sent again');
  t.equal(notes.state, 'ended');

  // The rule is back: resubscribing from the kept position delivers what was committed since.
  // A row of the other table, once received, shows the daemon has applied the rule.
  const keptGot: unknown[] = [];
  kept.on('change', (c) => keptGot.push(c));
  await query(url, 'insert into walcast.casbin_rule (ptype, v0, v1, v2, v3, v4) values ($1, $2, $3, $4, $5, $6)', NOTES_RULE);
  await query(url, "insert into notes (body) values ('after')");
  await query(url, "insert into kept (body) values ('barrier')");
  await waitUntil(() => keptGot.length === 1, 10_000, () => 'the row after the rule');
  notes.resubscribe({ since: notes.position });
  await waitUntil(() => got.includes('after') && notes.state === 'live', 10_000, () => `resubscribed: ${JSON.stringify(got)}, ${notes.state}`);
  t.same(got, ['before', 'after'], 'each note once');
  t.equal(client.state, 'open');
});
