// The states a real Capture goes through, checked against its transition table
// (src/capture/state.ts): a fatal error at the first start, downstream refusing a transaction, a
// temporary slot lost, and a walsender terminated then a stop. Every emitted change must be one
// the table lists, starting from idle; a fatal error ends in `failed` and stays there.
// The cluster allows one walsender (max_wal_senders = 1): a second stream is refused at once.
import t, { type Test } from 'tap';
import { Capture } from '../../src/capture/capture.js';
import { canMove } from '../../src/capture/state.js';
import type { CaptureState, Transaction } from '../../src/capture/types.js';
import { PUBLICATION } from '../../src/constants.js';
import { ReplicationLimitError, ReplicationLostError } from '../../src/errors.js';
import { migrate } from '../../src/sql/migrate.js';
import { query, slotInfo, startCollector, waitUntil } from '../helpers/capture.js';
import { withPostgres } from '../helpers/pg.js';

const db = await withPostgres(t, { settings: { max_wal_senders: 1 } });
await migrate(db.url);
const url = db.url;
await query(url, 'create table st (id bigserial primary key, v text)');
await query(url, "select walcast.enable('st')");

/** The changes of `states` (from idle) that the table does not list. */
function illegal(states: CaptureState[]): string[] {
  const bad: string[] = [];
  let from: CaptureState = 'idle';
  for (const to of states) {
    if (!canMove(from, to)) bad.push(`${from} → ${to}`);
    from = to;
  }
  return bad;
}

/** A Capture with its state and fatal history, stopped at the test's end. */
function watched(t: Test, slot: string, extra: { temporary?: boolean; onTransaction?: (tx: Transaction) => void } = {}) {
  const states: CaptureState[] = [];
  const fatal: Error[] = [];
  const capture = new Capture({ url, slot, publication: PUBLICATION, backoffBaseMs: 50, backoffCapMs: 200, ...extra });
  capture.on('state', (s: CaptureState) => states.push(s));
  capture.on('fatal', (err: Error) => fatal.push(err));
  t.teardown(() => capture.stop());
  return { capture, states, fatal };
}

/** The one walsender is free again (a stopped or failed capture's walsender has exited). */
const senderFree = () =>
  waitUntil(async () => (await query<{ n: number }>(url, 'select count(*)::int as n from pg_stat_replication'))[0].n === 0, 10_000, () => 'a walsender still running');

t.test('a fatal error at the first start (max_wal_senders reached) goes to failed, reported by start()', async (t) => {
  const holder = await startCollector(t, { url, slot: 'holder' }); // takes the only walsender
  const c = watched(t, 'second');
  const err = await c.capture.start().then(() => null, (e: Error) => e);
  t.type(err, ReplicationLimitError, 'start() rejects with the explained error');
  t.match(err, { hint: /max_wal_senders/ });
  t.same(c.states, ['connecting', 'failed'], 'connecting, then failed: not stopped first');
  t.same(illegal(c.states), [], 'every change is in the table');
  t.same(c.fatal, [], "reported through start() only, not also as 'fatal'");
  await c.capture.stop();
  t.equal(c.capture.current, 'failed', 'stop() afterwards leaves it failed');
  t.same(c.states, ['connecting', 'failed'], 'and emits nothing');
  await holder.stop();
  await senderFree();
});

t.test('downstream refusing a transaction: failed, fatal, the transaction not acknowledged', async (t) => {
  let refused: Transaction | null = null;
  const c = watched(t, 'downstream', {
    onTransaction: (tx) => {
      if (tx.changes.some((ch) => ch.relation.qualified === 'public.st')) {
        refused = tx;
        throw new Error('downstream is full');
      }
    },
  });
  await c.capture.start();
  await query(url, "insert into st (v) values ('refused')");
  await waitUntil(() => c.fatal.length > 0, 10_000, () => 'no fatal error');
  t.equal(c.capture.current, 'failed', 'failed while its owner shuts down');
  t.match(c.fatal, [{ message: 'downstream is full' }], 'the downstream error, once');
  t.same(c.states, ['connecting', 'streaming', 'failed']);
  t.same(illegal(c.states), []);
  await c.capture.stop();
  t.equal(c.capture.current, 'failed');
  await senderFree();
  const tx = refused as Transaction | null;
  t.ok(tx, 'the transaction reached downstream');
  if (tx) t.ok((await slotInfo(url, 'downstream')).confirmedFlush <= tx.lsn, 'the slot was not acknowledged past it');
});

t.test('a temporary slot whose walsender is terminated: failed, ReplicationLostError as fatal', async (t) => {
  const c = watched(t, 'states_tmp', { temporary: true });
  await c.capture.start();
  const [r] = await query<{ ok: boolean | null }>(url, "select pg_terminate_backend(active_pid) as ok from pg_replication_slots where slot_name = 'states_tmp'");
  t.ok(r?.ok, 'terminated');
  await waitUntil(() => c.fatal.length > 0, 10_000, () => 'no fatal error');
  t.type(c.fatal[0], ReplicationLostError);
  t.equal(c.fatal.length, 1);
  t.same(c.states, ['connecting', 'streaming', 'failed']);
  t.same(illegal(c.states), []);
  await c.capture.stop();
  t.equal(c.capture.current, 'failed');
  await senderFree();
});

t.test('a permanent slot survives its walsender terminated, then stops: backoff and back, stopping, stopped', async (t) => {
  const c = watched(t, 'states_perm');
  await c.capture.start();
  await query(url, "select pg_terminate_backend(active_pid) from pg_replication_slots where slot_name = 'states_perm'");
  await waitUntil(() => c.states.filter((s) => s === 'streaming').length >= 2, 15_000, () => `not streaming again: ${c.states.join(' → ')}`);
  await c.capture.stop();
  t.same(c.states.slice(0, 3), ['connecting', 'streaming', 'backoff'], 'lost, then backoff');
  t.same(c.states.slice(-3), ['streaming', 'stopping', 'stopped'], 'streaming again, then stopped in order');
  t.same(illegal(c.states), [], c.states.join(' → '));
  t.same(c.fatal, []);
});
