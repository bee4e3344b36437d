// Resuming with `since`: after a client disconnect (with writes going on across the seam), an
// expired position (resync), a daemon killed with SIGKILL and restarted under write load, and a
// slow client closed with 4008. Every test checks every committed row arrives exactly once, in
// commit order: single-row transactions on a bigserial id, so commit order is id order.

import pg from 'pg';
import t, { type Test } from 'tap';
import { formatWalPosition as formatPosition } from '../../src/protocol/position.js';
import { resolveServeConfig, type ServeFlags } from '../../src/config.js';
import { startDaemon, type Daemon } from '../../src/daemon.js';
import { silentLogger } from '../../src/log.js';
import { migrate } from '../../src/sql/migrate.js';
import { query, sleep, sqlClient, waitUntil } from '../helpers/capture.js';
import { spawnCli, type CliProcess } from '../helpers/cli.js';
import { withPostgres } from '../helpers/pg.js';
import { comparePos, connectWs, duplicates, freePort, orderViolations, servedPort, WsClient, type ChangeMsg, type Msg } from '../helpers/ws.js';

const db = await withPostgres(t);
await migrate(db.url);
const url = db.url;
t.teardown(() => {
  if (!t.passing()) t.comment(db.logTail(30));
});

async function table(name: string, columns = 'id bigserial primary key, v text'): Promise<void> {
  await query(url, `create table ${name} (${columns})`);
  await query(url, `select walcast.enable('${name}')`);
}

async function daemonWith(flags: ServeFlags): Promise<Daemon> {
  const d = await startDaemon(resolveServeConfig({ db: url, port: '0', auth: false, ...flags }, {}), silentLogger);
  t.teardown(() => d.stop());
  return d;
}

async function tableIds(name: string): Promise<number[]> {
  return (await query<{ id: string }>(url, `select id::text as id from ${name} t order by t.id`)).map((r) => Number(r.id));
}

const idOf = (c: ChangeMsg) => Number((c.new ?? c.old)?.id);

/** Exactly the table's rows, once each, in id (= commit) order, positions strictly increasing. */
function checkExactlyOnce(t: Test, got: ChangeMsg[], want: number[], what: string): void {
  const ids = got.map(idOf);
  t.equal(got.length, want.length, `${what}: ${got.length} changes for ${want.length} rows`);
  t.same(duplicates(ids), [], `${what}: no row twice`);
  t.same(orderViolations(got.map((c) => c.pos)), [], `${what}: positions strictly increasing`);
  const firstDiff = ids.findIndex((id, i) => id !== want[i]);
  t.equal(firstDiff, -1, `${what}: the table's ids in order${firstDiff < 0 ? '' : ` (first difference at #${firstDiff}: got ${ids[firstDiff]}, want ${want[firstDiff]})`}`);
}

/** Inserts single-row transactions into `name` until stopped; reconnects when the server goes away. */
function writer(name: string, opts: { gapMs?: number; payload?: string } = {}) {
  let stop = false;
  let count = 0;
  const done = (async () => {
    let client: pg.Client | null = null;
    while (!stop) {
      try {
        if (!client) {
          client = new pg.Client({ connectionString: url });
          client.on('error', () => {});
          await client.connect();
        }
        await client.query(`insert into ${name} (v) values ($1)`, [opts.payload ?? `w${count}`]);
        count++;
        if (opts.gapMs) await sleep(opts.gapMs);
      } catch {
        await client?.end().catch(() => {});
        client = null;
        await sleep(20);
      }
    }
    await client?.end().catch(() => {});
  })();
  return {
    get count() {
      return count;
    },
    async stop() {
      stop = true;
      await done;
    },
  };
}

// Created before the daemons start: a table enabled within a second of a catalog read is not
// found yet (see serve.test.ts).
for (const n of ['r1', 'r2', 'r3', 'r4', 'r5']) await table(n);
await table('rm', 'id int primary key, k text');
// One daemon for the disconnect and slow-client tests, one with a 1 s window for expiry.
const daemon = await daemonWith({ maxBackpressure: '64KiB', progressInterval: '300ms' });
const wsUrl = `ws://127.0.0.1:${daemon.port}/ws`;
const shortWindow = await daemonWith({ slot: 'short', historyAge: '1s', progressInterval: '300ms' });
const shortUrl = `ws://127.0.0.1:${shortWindow.port}/ws`;

/** Where the `subscribed` of `sub` is among `c`'s messages, and the changes before/after it. */
function seam(c: WsClient, sub: string) {
  const at = c.messages.findIndex((m) => m.type === 'subscribed' && m.id === sub);
  const isChange = (m: Msg): m is ChangeMsg => m.type === 'change' && m.sub === sub;
  return {
    subscribed: c.messages[at],
    before: c.messages.slice(0, Math.max(at, 0)).filter(isChange),
    after: c.messages.slice(at + 1).filter(isChange),
  };
}

t.test('resume after a disconnect: the missed rows, then subscribed, then live; no gap or duplicate at the seam', async (t) => {
  const c1 = await connectWs(t, wsUrl);
  await c1.subscribe({ id: 's', table: 'r1' });
  for (let i = 0; i < 20; i++) await query(url, `insert into r1 (v) values ('a${i}')`);
  const first = await c1.waitChanges('s', 20);
  await c1.close();
  const lastPos = first[19].pos;
  for (let i = 0; i < 20; i++) await query(url, `insert into r1 (v) values ('b${i}')`);

  // Simple case first: exactly the 20 missed rows, then subscribed, then live rows.
  const c2 = await connectWs(t, wsUrl);
  const reply = await c2.subscribe({ id: 's', table: 'r1', since: lastPos });
  const s2 = seam(c2, 's');
  t.same(s2.before.map(idOf), Array.from({ length: 20 }, (_, i) => 21 + i), 'the 20 missed rows before subscribed');
  t.ok(comparePos(reply.position as string, lastPos) >= 0, 'subscribed.position >= since');
  t.ok(s2.before.every((c) => comparePos(c.pos, reply.position as string) <= 0), 'catch-up changes are at or before subscribed.position');
  await query(url, "insert into r1 (v) values ('live')");
  const live = (await c2.waitChanges('s', 21))[20];
  t.equal(idOf(live), 41, 'then the live row');
  t.ok(comparePos(live.pos, reply.position as string) > 0, 'live change after subscribed.position');
  await c2.close();

  // Stress: a writer runs throughout while the client drops and resumes several times.
  const all: ChangeMsg[] = [...first, ...c2.changes('s')];
  let pos = live.pos;
  const w = writer('r1', { gapMs: 2 });
  let withCatchUp = 0;
  for (let round = 0; round < 6; round++) {
    await sleep(50 + Math.floor(Math.random() * 200)); // rows accumulate while disconnected
    const c = await connectWs(t, wsUrl);
    const r = await c.subscribe({ id: 's', table: 'r1', since: pos });
    t.equal(r.type, 'subscribed', `round ${round}: subscribed`);
    await sleep(100 + Math.floor(Math.random() * 200));
    await c.close();
    const sm = seam(c, 's');
    if (sm.before.length > 0) withCatchUp++;
    if (sm.before.some((x) => comparePos(x.pos, r.position as string) > 0)) t.fail(`round ${round}: a catch-up change after subscribed.position`);
    if (sm.after.some((x) => comparePos(x.pos, r.position as string) <= 0)) t.fail(`round ${round}: a live change at or before subscribed.position`);
    const got = c.changes('s');
    all.push(...got);
    if (got.length > 0) pos = got[got.length - 1].pos;
  }
  await w.stop();
  // Collect the tail, up to a last row: once it is in, everything before it has arrived.
  const c = await connectWs(t, wsUrl);
  await c.subscribe({ id: 's', table: 'r1', since: pos });
  await query(url, "insert into r1 (v) values ('last')");
  const want = await tableIds('r1');
  await c.waitFor(() => c.changes('s').some((x) => idOf(x) === want[want.length - 1]), 10_000, 'the last row').catch(() => {});
  all.push(...c.changes('s'));
  t.ok(withCatchUp >= 3, `most rounds resumed with a catch-up (${withCatchUp} of 6)`);
  t.ok(w.count > 100, `${w.count} rows written during the resumes`);
  checkExactlyOnce(t, all, want, 'across 8 connections');
});

t.test('resume from the middle of a transaction, with a filter; no stale progress after catch-up', async (t) => {
  const c1 = await connectWs(t, wsUrl);
  await c1.subscribe({ id: 'm', table: 'rm', filter: 'k=neq.skip' });
  await query(url, "insert into rm values (1, 'a'), (2, 'skip'), (3, 'b'), (4, 'c'), (5, 'skip'), (6, 'd')");
  const first = await c1.waitChanges('m', 4);
  t.same(first.map(idOf), [1, 3, 4, 6], 'filtered rows of one transaction');
  t.same(first.map((c) => c.pos.split(':')[1]), ['0', '2', '3', '5'], 'indexes within the transaction count every change');
  await c1.close();

  const c2 = await connectWs(t, wsUrl);
  await c2.subscribe({ id: 'm', table: 'rm', filter: 'k=neq.skip', since: first[1].pos });
  t.same(seam(c2, 'm').before.map(idOf), [4, 6], 'since the 2nd change of the transaction: the rest of it, filtered');
  // Idle for several progress intervals: nothing it already has is announced again.
  await sleep(1_200);
  const stale = c2.ofType('progress').filter((m) => comparePos(m.pos as string, first[3].pos) <= 0);
  t.same(stale, [], `no progress at or before the last change it received (${first[3].pos}; got ${JSON.stringify(stale.map((m) => m.pos))})`);
  await c2.close();
});

t.test('resync: a position older than the window', async (t) => {
  const c = await connectWs(t, shortUrl);
  const onMain = await connectWs(t, wsUrl);
  await c.subscribe({ id: 'x', table: 'r2' });
  await onMain.subscribe({ id: 'x', table: 'r2' });
  await query(url, "insert into r2 (v) values ('first')");
  const [first] = await c.waitChanges('x', 1);
  t.equal((await onMain.waitChanges('x', 1))[0].pos, first.pos, 'two daemons on two slots give the change the same position');
  await onMain.close();
  // Writes go on until the 1 s window has moved past `first` (eviction runs every second).
  const w = writer('r2', { gapMs: 100 });
  const floorPos = () => formatPosition(shortWindow.hub.ring.floor.lsn, shortWindow.hub.ring.floor.index);
  await waitUntil(() => comparePos(floorPos(), first.pos) > 0, 15_000, () => `the window to move past ${first.pos} (floor ${floorPos()})`).finally(() => w.stop());
  t.ok(comparePos(floorPos(), first.pos) > 0, 'precondition: the window starts after the position');

  const c2 = await connectWs(t, shortUrl);
  const reply = await c2.subscribe({ id: 'x', table: 'r2', since: first.pos }, { allowFailure: true });
  t.same(reply, { type: 'resync', sub: 'x', reason: 'position_outside_window', ref: reply.ref }, 'resync position_outside_window, ref echoed');
  t.ok(typeof reply.ref === 'string', 'the resync carries the ref of the subscribe');
  t.equal(c2.changes('x').length, 0, 'no changes for it');
  // The id is free again after a resync.
  const again = await c2.subscribe({ id: 'x', table: 'r2' }, { allowFailure: true });
  t.equal(again.type, 'subscribed', 'the id can be subscribed anew');

  // A position far before the slot: resync on both daemons.
  for (const [name, u] of [['short window', shortUrl], ['default window', wsUrl]] as const) {
    const c3 = await connectWs(t, u);
    const r = await c3.subscribe({ id: 9, table: 'r2', since: '0/1:0' }, { allowFailure: true });
    t.match(r, { type: 'resync', sub: 9, reason: 'position_outside_window' }, `${name}: since 0/1:0 → resync`);
  }

  // A position ahead of the server: live at once, subscribed.position = since.
  const c4 = await connectWs(t, wsUrl);
  const ahead = await c4.subscribe({ id: 'a', table: 'r2', since: 'FF/0:5' }, { allowFailure: true });
  t.match(ahead, { type: 'subscribed', id: 'a', position: 'FF/0:5' }, 'a since ahead of the server: subscribed at that position');
  // A second subscription from now gets the row: by then `a` would have had it too.
  await c4.subscribe({ id: 'b', table: 'r2' });
  await query(url, "insert into r2 (v) values ('not for a')");
  await c4.waitChanges('b', 1);
  t.equal(c4.changes('a').length, 0, 'nothing at or before since is sent');
});

t.test('resume across SIGKILLs of walcast serve under a steady write load', async (t) => {
  const SLOT = 's1';
  const port = await freePort();
  const procs: CliProcess[] = [];
  t.teardown(() => procs.forEach((p) => p.kill('SIGKILL')));

  /** Starts a serve process and waits until it serves; retries while the killed one's walsender holds the slot. */
  let slotBusy = 0;
  const startServe = async (): Promise<CliProcess> => {
    for (let attempt = 0; ; attempt++) {
      const p = spawnCli(['serve', '--db', url, '--no-auth', '--port', String(port), '--slot', SLOT, '--progress-interval', '300ms'], { timeoutMs: 60_000 });
      procs.push(p);
      try {
        await p.waitFor(() => servedPort(p.stderr) !== null, 'the serving line', 15_000);
        return p;
      } catch (err) {
        const r = await p.wait(2_000);
        if (attempt < 50 && /in use|address in use|cannot listen/i.test(r.stderr)) {
          if (/in use/.test(r.stderr)) slotBusy++;
          await sleep(100);
          continue;
        }
        throw err;
      }
    }
  };

  // A client that reconnects until stopped, resuming with its last position.
  const seen: ChangeMsg[] = [];
  const resyncs: Msg[] = [];
  let lastPos: string | null = null;
  let connections = 0;
  let caughtUp = 0; // changes received before `subscribed` (catch-up from the rebuilt ring)
  let stopClient = false;
  let current: WsClient | null = null;
  const client = (async () => {
    while (!stopClient) {
      let c: WsClient;
      try {
        c = await WsClient.connect(`ws://127.0.0.1:${port}/ws`, { timeoutMs: 2_000 });
      } catch {
        await sleep(50);
        continue;
      }
      current = c;
      connections++;
      let live = false;
      c.onMessage((m) => {
        if (m.type === 'change' && m.sub === 'k') {
          seen.push(m as ChangeMsg);
          lastPos = m.pos as string;
          if (!live) caughtUp++;
        } else if (m.type === 'subscribed') live = true;
        else if (m.type === 'progress' && live) lastPos = m.pos as string;
        else if (m.type === 'resync') resyncs.push(m);
      });
      c.send({ type: 'subscribe', id: 'k', table: 'r3', ...(lastPos ? { since: lastPos } : {}) });
      await c.closed;
      current = null;
    }
  })();

  let proc = await startServe();
  await waitUntil(() => connections === 1 && current?.messages.some((m) => m.type === 'subscribed') === true, 10_000, () => 'first subscription');
  const w = writer('r3', { gapMs: 3 });
  for (let k = 0; k < 2; k++) {
    await sleep(800 + Math.floor(Math.random() * 600));
    const before = seen.length;
    proc.kill('SIGKILL');
    const r = await proc.wait(5_000);
    t.equal(r.signal, 'SIGKILL', `kill ${k + 1}: died of SIGKILL after ${before} rows delivered`);
    proc = await startServe();
  }
  await sleep(500); // the writer goes on a while against the last serve
  await w.stop();
  // A last row: once the client has it, everything committed before it has arrived (a
  // duplicate included: it would come before, in position order).
  await query(url, "insert into r3 (v) values ('last')");
  const want = await tableIds('r3');
  const lastId = want[want.length - 1];
  await waitUntil(() => seen.some((c) => idOf(c) === lastId), 20_000, () => `the last row ${lastId}; have ${seen.length} of ${want.length}`).catch(() => {});
  stopClient = true;
  (current as WsClient | null)?.terminate();
  await client;
  proc.kill('SIGTERM');
  t.equal((await proc.wait(10_000)).code, 0, 'the last serve exits 0 on SIGTERM');

  t.same(resyncs, [], 'no resync');
  t.ok(connections >= 3, `the client reconnected after each kill (${connections} connections)`);
  t.ok(want.length > 200, `${want.length} rows written`);
  checkExactlyOnce(t, seen, want, 'across 2 kills');
  t.comment(`slot-in-use retries at restart: ${slotBusy}; changes received in catch-up: ${caughtUp}`);
});

t.test('a slow client is closed with 4008 and resumes with nothing lost', async (t) => {
  const slowCloses0 = daemon.server.slowCloses;
  const good = await connectWs(t, wsUrl);
  const slow = await connectWs(t, wsUrl);
  await good.subscribe({ id: 'g', table: 'r4' });
  await slow.subscribe({ id: 's', table: 'r4' });
  const sqlc = await sqlClient(t, url);
  await sqlc.query("insert into r4 (v) values ('warm-up')");
  await slow.waitChanges('s', 1);
  slow.pause();

  // 16 KB rows, one per transaction, until the daemon gives up on the slow client.
  const big = 'x'.repeat(16 * 1024);
  let rows = 1;
  while (daemon.server.slowCloses === slowCloses0 && rows < 2000) {
    await sqlc.query('insert into r4 (v) values ($1)', [`${rows}:${big}`]);
    rows++;
    if (rows % 20 === 0) await sleep(5);
  }
  t.equal(daemon.server.slowCloses, slowCloses0 + 1, `the slow client was closed after ${rows} rows of 16 KiB`);
  for (let i = 0; i < 50; i++) await sqlc.query('insert into r4 (v) values ($1)', [`after ${i}`]);
  rows += 50;

  slow.resume();
  const info = await slow.waitClose(10_000);
  t.equal(info.code, 4008, `closed with 4008 (${info.code} ${info.reason})`);
  const before = slow.changes('s');
  t.ok(before.length < rows, `it had received ${before.length} of ${rows} rows`);

  const again = await connectWs(t, wsUrl);
  const since = before[before.length - 1].pos;
  await again.subscribe({ id: 's', table: 'r4', since });
  // A last row: once both have it, everything before it has arrived.
  await sqlc.query("insert into r4 (v) values ('last')");
  rows++;
  const want = await tableIds('r4');
  t.equal(want.length, rows, 'rows in the table');
  const hasLast = (c: WsClient, sub: string) => c.changes(sub).some((x) => idOf(x) === want[want.length - 1]);
  await good.waitFor(() => hasLast(good, 'g'), 20_000, 'the last row');
  await again.waitFor(() => hasLast(again, 's'), 20_000, 'the last row after the resume');
  checkExactlyOnce(t, [...before, ...again.changes('s')], want, 'slow client, before and after 4008');
  checkExactlyOnce(t, good.changes('g'), want, 'well-behaved client');
  t.ok(good.isOpen, 'the well-behaved client is still connected');
});

t.test('a long catch-up of large rows to a client reading at full speed', async (t) => {
  const c0 = await connectWs(t, wsUrl);
  await c0.subscribe({ id: 'z', table: 'r5' });
  await query(url, "insert into r5 (v) values ('start')");
  const [start] = await c0.waitChanges('z', 1);
  await c0.close();
  // 600 single-row transactions of 16 KiB: 9.6 MiB of history after `start`.
  const sqlc = await sqlClient(t, url);
  const ROWS = 600;
  await sqlc.query(`do $$ begin for i in 1..${ROWS} loop insert into r5 (v) values (repeat(md5(i::text), 512)); commit; end loop; end $$`);
  const want = (await tableIds('r5')).slice(1);
  t.equal(want.length, ROWS, `${ROWS} rows committed`);

  // Resume from `start`, reading normally; on a close, resume from the last change received.
  const slowCloses0 = daemon.server.slowCloses;
  const got: ChangeMsg[] = [];
  const closeCodes: number[] = [];
  let since = start.pos;
  for (let attempt = 0; attempt < 20 && got.length < ROWS; attempt++) {
    const c = await connectWs(t, wsUrl);
    c.send({ type: 'subscribe', id: 'z', table: 'r5', since });
    await c.waitFor(() => got.length + c.changes('z').length >= ROWS && c.ofType('subscribed').length > 0, 15_000, 'the whole catch-up').catch(() => {});
    got.push(...c.changes('z'));
    if (got.length > 0) since = got[got.length - 1].pos;
    if (c.closeInfo) closeCodes.push(c.closeInfo.code);
    await c.close();
  }
  t.same(closeCodes, [], `never closed while reading at full speed (closes: ${JSON.stringify(closeCodes)}, slow closes counted: ${daemon.server.slowCloses - slowCloses0})`);
  t.same(closeCodes.filter((code) => code !== 4008), [], 'a client closed for backpressure gets close code 4008');
  checkExactlyOnce(t, got, want, 'catch-up, resumed after every close');
});
