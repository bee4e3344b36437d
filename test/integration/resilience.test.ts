// Resilience of capture against real failures: the tail process killed with SIGKILL and resumed
// with --since, Postgres restarted (fast and immediate), the walsender terminated from outside,
// and the slot dropped from outside. Real Postgres, real processes.

import pg from 'pg';
import t, { type Test } from 'tap';
import { Capture } from '../../src/capture/capture.js';
import { compareWalPositions as comparePositions, parseWalPosition as parsePosition } from '../../src/protocol/position.js';
import type { CaptureState, Transaction } from '../../src/capture/types.js';
import { PUBLICATION } from '../../src/constants.js';
import { migrate } from '../../src/sql/migrate.js';
import { spawnCli, type CliProcess } from '../helpers/cli.js';
import { withPostgres } from '../helpers/pg.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const rand = (lo: number, hi: number) => lo + Math.floor(Math.random() * (hi - lo + 1));

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => {});
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => {});
  }
}

const sql = <R extends pg.QueryResultRow = pg.QueryResultRow>(url: string, text: string, params: unknown[] = []) =>
  withClient(url, async (c) => (await c.query<R>(text, params)).rows);

async function tableIds(url: string, table: string): Promise<string[]> {
  const rows = await sql<{ id: string }>(url, `select id::text as id from ${table} order by id`);
  return rows.map((r) => r.id);
}

async function slotPid(url: string, slot: string): Promise<number | null> {
  const rows = await sql<{ active_pid: number | null }>(url, 'select active_pid from pg_replication_slots where slot_name = $1', [slot]);
  return rows[0]?.active_pid ?? null;
}

async function until<T>(what: string, fn: () => Promise<T | null | undefined | false>, timeoutMs = 15_000, everyMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => null);
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** Positions must be strictly increasing; returns the first few violations (empty when fine). */
function orderViolations(positions: string[]): string[] {
  const bad: string[] = [];
  for (let i = 1; i < positions.length && bad.length < 5; i++) {
    if (comparePositions(parsePosition(positions[i - 1]), parsePosition(positions[i])) >= 0) {
      bad.push(`#${i - 1} ${positions[i - 1]} then #${i} ${positions[i]}`);
    }
  }
  return bad;
}

function duplicates(values: string[]): string[] {
  const seen = new Set<string>();
  const dup = new Set<string>();
  for (const v of values) (seen.has(v) ? dup : seen).add(v);
  return [...dup].slice(0, 10);
}

/** Inserts `count` transactions of 1..maxRows rows into table, a few ms apart, reconnecting on failure. */
async function writer(url: string, table: string, count: number, opts: { maxRows?: number; gapMs?: [number, number] } = {}) {
  const maxRows = opts.maxRows ?? 1;
  const [gLo, gHi] = opts.gapMs ?? [0, 0];
  let client: pg.Client | null = null;
  let done = 0;
  let retries = 0;
  while (done < count) {
    try {
      if (!client) {
        client = new pg.Client({ connectionString: url });
        client.on('error', () => {});
        await client.connect();
      }
      await client.query(`insert into ${table} (v) select 'row ' || g from generate_series(1, $1::int) g`, [rand(1, maxRows)]);
      done++;
      if (gHi > 0) await sleep(rand(gLo, gHi));
    } catch {
      // The server restarts or our backend was terminated: a failed autocommit insert did not commit.
      retries++;
      await client?.end().catch(() => {});
      client = null;
      await sleep(50);
    }
  }
  await client?.end().catch(() => {});
  return { retries };
}

interface Seen {
  pos: string;
  id: string;
  table: string;
}

/** An in-process Capture collecting the inserts of one table, with its state history. */
function startCapture(url: string, slot: string, table: string, opts: { backoffBaseMs?: number; backoffCapMs?: number } = {}) {
  const seen: Seen[] = [];
  const states: CaptureState[] = [];
  const slotCreated: Array<{ invalidated: boolean }> = [];
  const fatal: Error[] = [];
  const capture = new Capture({
    url,
    slot,
    publication: PUBLICATION,
    backoffBaseMs: opts.backoffBaseMs ?? 50,
    backoffCapMs: opts.backoffCapMs ?? 500,
    onTransaction: (tx: Transaction) => {
      for (const c of tx.changes) {
        if (c.tag !== 'insert' || c.relation.qualified !== table) continue;
        seen.push({ pos: `${tx.lsnText}:${c.index}`, id: String(c.new.id), table: c.relation.qualified });
      }
    },
  });
  capture.on('state', (s: CaptureState) => states.push(s));
  capture.on('slotCreated', (info: { invalidated: boolean }) => slotCreated.push({ invalidated: info.invalidated }));
  capture.on('fatal', (err: Error) => fatal.push(err));
  return { capture, seen, states, slotCreated, fatal };
}

function checkExactlyOnce(t: Test, seen: Seen[], ids: string[], what: string) {
  t.equal(seen.length, ids.length, `${what}: as many changes as rows`);
  t.same(orderViolations(seen.map((s) => s.pos)), [], `${what}: positions strictly increasing`);
  t.same(duplicates(seen.map((s) => s.id)), [], `${what}: no id twice`);
  t.same([...new Set(seen.map((s) => s.id))].sort(), [...ids].sort(), `${what}: the ids are the table's ids`);
  // One writer: ids grow in commit order.
  const idOrder = seen.findIndex((s, i) => i > 0 && BigInt(s.id) <= BigInt(seen[i - 1].id));
  t.equal(idOrder, -1, `${what}: ids arrive in commit order`);
}

/**
 * Writes one last row and waits until the capture has it: everything committed before it has
 * arrived by then (a duplicate included: it would come first, in commit order).
 */
async function lastRow(url: string, table: string, c: { seen: Seen[] }, timeoutMs = 20_000): Promise<void> {
  const [{ id }] = await sql<{ id: string }>(url, `insert into ${table} (v) values ('last') returning id::text as id`);
  await until(`the last row ${id} of ${table}`, async () => c.seen.some((s) => s.id === id), timeoutMs);
}

/** Counts the state path streaming → backoff → ... → streaming. */
function recoveries(states: CaptureState[]): number {
  let n = 0;
  let inBackoff = false;
  for (const s of states) {
    if (s === 'backoff') inBackoff = true;
    else if (s === 'streaming' && inBackoff) {
      n++;
      inBackoff = false;
    }
  }
  return n;
}

const db = await withPostgres(t);
await migrate(db.url);
t.teardown(() => {
  if (!t.passing()) t.comment(db.logTail(40));
});

t.test('tail --slot: SIGKILL three times mid-stream, resumed with --since: nothing lost, nothing twice', async (t) => {
  const started = Date.now();
  await sql(db.url, 'create table t (id bigserial primary key, v text)');
  await sql(db.url, "select walcast.enable('t')");
  const SLOT = 'durable';
  const all: string[] = []; // complete lines of every process, in order
  const procs: CliProcess[] = [];
  const tail = (since?: string) => {
    const p = spawnCli(['tail', '--db', db.url, '--slot', SLOT, ...(since ? ['--since', since] : [])], { timeoutMs: 60_000 });
    procs.push(p);
    return p;
  };
  t.teardown(() => procs.forEach((p) => p.kill('SIGKILL')));
  const lastPos = () => (JSON.parse(all[all.length - 1]) as { pos: string }).pos;

  /** Starts a tail and waits until it holds the slot; retries when the killed one's walsender still does. */
  let slotBusyRetries = 0;
  const startTail = async (since: string | undefined, oldWalsender: number | null): Promise<CliProcess> => {
    for (;;) {
      const p = tail(since);
      let exited = false;
      void p.closed.then(() => (exited = true));
      const pid = await until(`a walsender for tail pid ${p.pid}`, async () => {
        if (exited) return -1;
        const pid = await slotPid(db.url, SLOT);
        return pid !== null && pid !== oldWalsender ? pid : null;
      });
      if (pid !== -1) return p;
      const r = await p.closed;
      if (!/in use/.test(r.stderr)) throw new Error(`tail exited ${r.code} at start: ${r.stderr}`);
      slotBusyRetries++;
      await sleep(20);
    }
  };

  let proc = await startTail(undefined, null);
  const TXS = 3000;
  const writing = writer(db.url, 't', TXS, { maxRows: 5, gapMs: [0, 3] });
  let writerDone = false;
  void writing.then(() => (writerDone = true));

  const kills: Array<{ atLines: number; since: string }> = [];
  for (let k = 0; k < 3; k++) {
    await sleep(rand(300, 1500));
    await proc.waitForLines(1); // kill it while it streams, not while it starts
    const walsender = await slotPid(db.url, SLOT);
    proc.kill('SIGKILL');
    const r = await proc.closed;
    t.equal(r.signal, 'SIGKILL', `kill ${k + 1}: died of SIGKILL`);
    all.push(...r.lines);
    const since = lastPos();
    kills.push({ atLines: all.length, since });
    proc = await startTail(since, walsender);
  }
  t.notOk(writerDone, 'the three kills happened while the writer was still writing');
  const { retries } = await writing;
  t.equal(retries, 0, 'writer never failed');

  const [{ n }] = await sql<{ n: string }>(db.url, 'select count(*)::text as n from t');
  const total = Number(n);
  t.ok(total >= TXS, `${total} rows written in ${TXS} transactions`);
  const before = all.length;
  await proc.waitFor(() => before + proc.lines.length >= total, `the last tail to catch up to ${total} rows`, 20_000);
  const finalWalsender = await slotPid(db.url, SLOT);
  proc.kill('SIGINT');
  const last = await proc.closed;
  t.equal(last.code, 0, 'SIGINT: exit 0');
  t.equal(last.stderr, '', 'no error output');
  all.push(...last.lines);

  const changes = all.map((l) => JSON.parse(l) as { pos: string; op: string; table: string; new: { id: number | string } });
  t.ok(changes.every((c) => c.op === 'insert' && c.table === 'public.t'), 'only inserts into public.t');
  t.same(orderViolations(changes.map((c) => c.pos)), [], 'positions strictly increasing across all four processes');
  t.equal(changes.length, total, 'as many lines as rows');
  const ids = changes.map((c) => String(c.new.id));
  t.same(duplicates(ids), [], 'no id twice');
  t.same([...new Set(ids)].sort(), (await tableIds(db.url, 't')).sort(), "the set of ids is the table's");
  t.comment(`kills after ${kills.map((k) => k.atLines).join(', ')} lines; slot-in-use retries at restart: ${slotBusyRetries}`);

  // SIGINT acknowledged everything it printed: a restart without --since repeats nothing.
  {
    const p = await startTail(undefined, finalWalsender);
    await sql(db.url, "insert into t (v) values ('after sigint')");
    await p.waitForLines(1);
    t.match(p.lines[0], /"after sigint"/, 'after a SIGINT, a restart without --since starts with the next new row');
    all.push(...p.lines);
    p.kill('SIGINT');
    t.equal((await p.closed).code, 0, 'SIGINT: exit 0');
  }

  // Without --since a restart replays what was written but not yet acknowledged (acks go out
  // once a second): the slot kept it. A kill right after an ack can leave nothing to replay,
  // so try a few times.
  let replayed = false;
  for (let attempt = 1; attempt <= 3 && !replayed; attempt++) {
    const p = await startTail(lastPos(), await slotPid(db.url, SLOT));
    const n0 = p.lines.length;
    await sql(db.url, "insert into t (v) values ('probe')");
    await p.waitForLines(n0 + 1);
    const walsender = await slotPid(db.url, SLOT);
    p.kill('SIGKILL');
    const seen = await p.closed;
    const lastSeen = (JSON.parse(seen.lines[seen.lines.length - 1]) as { pos: string }).pos;
    all.push(...seen.lines);

    const fresh = await startTail(undefined, walsender);
    await sql(db.url, "insert into t (v) values ('marker')");
    await fresh.waitForLines(1);
    const first = (JSON.parse(fresh.lines[0]) as { pos: string }).pos;
    replayed = comparePositions(parsePosition(first), parsePosition(lastSeen)) <= 0;
    t.comment(`attempt ${attempt}: last seen ${lastSeen}, first after restart without --since ${first}`);
    await fresh.waitFor(() => fresh.lines.some((l) => l.includes('"marker"')), 'the marker row');
    all.push(...fresh.lines);
    fresh.kill('SIGINT');
    t.equal((await fresh.closed).code, 0, 'SIGINT: exit 0');
  }
  t.ok(replayed, 'a restart without --since starts at or before the last line seen (unacknowledged data kept)');
  t.comment(`took ${Date.now() - started} ms`);
});

t.test('Capture survives Postgres restarts (fast, then immediate)', async (t) => {
  const started = Date.now();
  await sql(db.url, 'create table t2 (id bigserial primary key, v text)');
  await sql(db.url, "select walcast.enable('t2')");
  const c = startCapture(db.url, 'restarts', 'public.t2');
  t.teardown(() => c.capture.stop());
  await c.capture.start();

  // Each restart hits a streaming capture (with a 500 ms cap it may otherwise still be waiting
  // out the previous one); the rows just written need not have arrived yet.
  const streaming = () => until('streaming', async () => c.capture.status.state === 'streaming', 15_000);
  await writer(db.url, 't2', 200);
  await db.restart('fast');
  await writer(db.url, 't2', 200);
  await streaming();
  await db.restart('immediate');
  await writer(db.url, 't2', 200);

  await lastRow(db.url, 't2', c);
  checkExactlyOnce(t, c.seen, await tableIds(db.url, 't2'), 'after two restarts');
  t.equal(c.seen.length, 601, 'exactly 600 changes, and the last row');
  t.ok(recoveries(c.states) >= 2, `backoff then streaming again, once per restart (${c.states.join(' → ')})`);
  t.same(c.fatal, [], 'no fatal error');
  t.same(c.slotCreated, [{ invalidated: false }], 'the slot was created once, at the first start, and kept');
  t.comment(`took ${Date.now() - started} ms`);
});

t.test('Capture survives its walsender being terminated while writes continue', async (t) => {
  const started = Date.now();
  await sql(db.url, 'create table t3 (id bigserial primary key, v text)');
  await sql(db.url, "select walcast.enable('t3')");
  const SLOT = 'terminated';
  const c = startCapture(db.url, SLOT, 'public.t3');
  t.teardown(() => c.capture.stop());
  await c.capture.start();

  const writing = writer(db.url, 't3', 1500, { maxRows: 3, gapMs: [0, 2] });
  let writerDone = false;
  void writing.then(() => (writerDone = true));
  let terminated = 0;
  while (terminated < 3) {
    await sleep(rand(200, 600));
    await until('a streaming capture', async () => c.capture.status.state === 'streaming' && c.seen.length > 0);
    const [r] = await sql<{ ok: boolean | null }>(
      db.url,
      'select pg_terminate_backend(active_pid) as ok from pg_replication_slots where slot_name = $1 and active_pid is not null',
      [SLOT],
    );
    if (r?.ok) terminated++;
  }
  t.notOk(writerDone, 'the walsender was terminated three times while writes went on');
  t.equal((await writing).retries, 0, 'writer never failed');
  await lastRow(db.url, 't3', c);
  checkExactlyOnce(t, c.seen, await tableIds(db.url, 't3'), 'after three terminations');
  t.ok(recoveries(c.states) >= 3, `reconnected after each termination (${recoveries(c.states)} recoveries)`);
  t.same(c.fatal, [], 'no fatal error');
  t.comment(`took ${Date.now() - started} ms`);
});

t.test('Capture recreates a slot dropped from outside while it was in backoff, and carries on', async (t) => {
  const started = Date.now();
  await sql(db.url, 'create table t4 (id bigserial primary key, v text)');
  await sql(db.url, "select walcast.enable('t4')");
  const SLOT = 'dropped';
  // A longer backoff than the other tests, so that the drop usually lands while it waits.
  const c = startCapture(db.url, SLOT, 'public.t4', { backoffBaseMs: 300, backoffCapMs: 1000 });
  t.teardown(() => c.capture.stop());
  await c.capture.start();
  t.same(c.slotCreated, [{ invalidated: false }], 'slot created at start');

  await writer(db.url, 't4', 50);
  await until('the first 50 rows', async () => c.seen.length >= 50);
  const beforeDrop = c.seen.length;

  let attempts = 0;
  let stateAtDrop: CaptureState | null = null;
  await until(
    'the slot dropped',
    async () => {
      attempts++;
      await sql(db.url, 'select pg_terminate_backend(active_pid) from pg_replication_slots where slot_name = $1 and active_pid is not null', [SLOT]);
      await sql(db.url, 'select pg_drop_replication_slot($1)', [SLOT]); // fails while the slot is active
      stateAtDrop = c.capture.status.state;
      return true;
    },
    10_000,
    5,
  );
  t.comment(`dropped after ${attempts} attempts, capture state then: ${stateAtDrop}`);
  t.not(stateAtDrop, 'streaming', 'the capture was not streaming when its slot was dropped');

  await until('slotCreated', async () => c.slotCreated.length >= 2, 10_000);
  t.same(c.slotCreated[1], { invalidated: false }, "'slotCreated' emitted for the recreated slot");
  await until('streaming again', async () => c.capture.status.state === 'streaming', 10_000);
  t.not(await slotPid(db.url, SLOT), null, 'the recreated slot is in use by the capture');

  const [{ max }] = await sql<{ max: string }>(db.url, 'select max(id)::text as max from t4');
  await writer(db.url, 't4', 100);
  await lastRow(db.url, 't4', c, 10_000);
  const after = c.seen.filter((s) => BigInt(s.id) > BigInt(max));
  const expected = (await tableIds(db.url, 't4')).filter((id) => BigInt(id) > BigInt(max));
  checkExactlyOnce(t, after, expected, 'rows written after the slot was recreated');
  checkExactlyOnce(t, c.seen.slice(0, beforeDrop), (await tableIds(db.url, 't4')).filter((id) => BigInt(id) <= BigInt(max)), 'rows before the drop');
  t.same(orderViolations(c.seen.map((s) => s.pos)), [], 'positions strictly increasing across the recreation');
  t.same(c.fatal, [], 'no fatal error');
  t.equal(c.capture.status.state, 'streaming', 'still streaming');
  t.comment(`took ${Date.now() - started} ms`);
});
