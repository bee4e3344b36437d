// End to end: unmodified @supabase/realtime-js in headless Chromium, on the browser's own
// WebSocket, against walcast's Supabase endpoint (/realtime/v1/websocket), once with each wire
// serializer (vsn 1.0.0: JSON objects; 2.0.0: JSON arrays). Two users, ann and bob, members of
// room 1; eve, who is not. The page (supabase-browser.page.js) and the library's ES modules are
// served from node_modules by the daemon's own HTTP routes, with an import map for the bare
// specifiers. Shown, in the browser: postgres_changes with a filter under row policies (typed
// values, nothing denied or outside the filter), no gap after SUBSCRIBED, broadcast with self
// and ack, presence join and leave. Needs Debian's chromium at /usr/bin/chromium: skipped
// without it, except under CI, where its absence is a failure. The WebSocket frames the page saw
// are printed when a scenario fails (always, with WALCAST_E2E_FRAMES=1).

import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { chromium, type Browser, type Page } from 'playwright-core';
import t, { type Test } from 'tap';
import { json, Responder } from '../../src/dev/http.js';
import { browserModules } from '../helpers/browser-modules.js';
import { sqlClient } from '../helpers/capture.js';
import { startTestDaemon } from '../helpers/daemon.js';
import { hsToken } from '../helpers/tokens.js';

const CHROMIUM = '/usr/bin/chromium';
/** Every wait in the browser is bounded by this. */
const STEP_MS = 15_000;
/** realtime-js's heartbeat interval here (25 s by default): short, so that the scenario sees some. */
const HEARTBEAT_MS = 300;
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PAGE_JS = fileURLToPath(new URL('./supabase-browser.page.js', import.meta.url));

// Messages: ann and bob read their own rows, and the shared rows of rooms they are members of
// (room_members, a declared relation); channels room:N admit the members of room N.
const SETUP = `
  create table room_members (user_id text not null, room_id int not null, primary key (user_id, room_id));
  select walcast.enable('room_members');
  insert into room_members values ('ann', 1), ('bob', 1);
  create table messages (id bigserial primary key, room_id int not null, owner text not null, body text,
                         meta jsonb, shared boolean not null default false, at timestamptz not null default now());
  alter table messages replica identity full;
  select walcast.enable('messages');
  insert into walcast.casbin_rule (ptype, v0, v1, v2, v3, v4) values
    ('p', '*', 'table', 'public.messages', 'read', 'r.obj.row.owner == r.sub.id || (r.obj.row.shared == true && g2(r.sub.id, "room:" + r.obj.row.room_id))'),
    ('p', '*', 'channel', 'room:*', 'join', 'g2(r.sub.id, r.obj.name)'),
    ('p', '*', 'channel', 'room:*', 'broadcast', 'g2(r.sub.id, r.obj.name)'),
    ('p', '*', 'channel', 'room:*', 'presence', 'g2(r.sub.id, r.obj.name)');`;
const RELATIONS = ['public.room_members {user_id} room:{room_id}'];

/** A postgres_changes payload as realtime-js hands it to the callback. */
interface Change {
  schema: string;
  table: string;
  commit_timestamp: string;
  eventType: string;
  new: Record<string, unknown>;
  old: Record<string, unknown>;
  errors: unknown;
}
interface PresenceEvent {
  event: 'join' | 'leave';
  key: string;
  metas: Record<string, unknown>[];
}
/** globalThis.results of the page. */
interface Results {
  statuses: Record<string, string[]>;
  changes: Record<string, Change[]>;
  broadcasts: Record<string, { type: string; event: string; payload: unknown }[]>;
  presence: Record<string, PresenceEvent[]>;
  subscribedAt: Record<string, number>;
  writes: Record<string, { status?: number; body?: { id: number }; error?: string }>;
  /** heartbeatCallback's statuses: sent, ok, error, timeout, disconnected. */
  heartbeats: Record<string, string[]>;
}
type PageApi = Record<string, (...args: unknown[]) => unknown>;

if (!existsSync(CHROMIUM)) {
  if (process.env.CI) t.fail(`${CHROMIUM} is missing: CI installs Debian's chromium in .ci/run (apt-get install chromium)`);
  else t.plan(0, `skipped: no ${CHROMIUM} (install Debian's chromium to run the browser test)`);
} else {
  const started = Date.now();
  const modules = browserModules(`${ROOT}node_modules`, 'sb/npm', ['@supabase/realtime-js', '@supabase/phoenix', 'tslib']);
  const html = `<!doctype html><meta charset="utf-8"><title>walcast: realtime-js</title>
<link rel="icon" href="data:,">
<script type="importmap">${JSON.stringify(modules.importMap)}</script>
<script type="module" src="/sb/page.js"></script>\n`;
  /** The connection the page's write route inserts with (set once the database is up). */
  let writer: pg.Client | null = null;
  const routeErrors: string[] = [];

  const { url, daemon } = await startTestDaemon(t, SETUP, { relation: RELATIONS }, {
    routes: (app) => {
      modules.routes(app);
      app.get('/sb/', (res) => new Responder(res).send({ status: 200, body: html, type: 'text/html; charset=utf-8' }));
      app.get('/sb/page.js', (res) => new Responder(res).send({ status: 200, body: readFileSync(PAGE_JS), type: 'text/javascript; charset=utf-8' }));
      // A write the page starts itself (no round trip through Node): room 1, unshared.
      app.post('/sb/write', (res, req) => {
        const r = new Responder(res);
        const owner = req.getQuery('owner') ?? '';
        const body = req.getQuery('body') ?? '';
        const insert = async () => {
          if (!writer) throw new Error('no database connection yet');
          const q = await writer.query<{ id: string }>(`insert into messages (room_id, owner, body, meta) values (1, $1, $2, '{"first": true}') returning id`, [owner, body]);
          return json(200, { id: Number(q.rows[0].id) });
        };
        r.reply(insert(), (err) => routeErrors.push(String(err)));
      });
    },
  });
  writer = await sqlClient(t, url);
  const base = `http://127.0.0.1:${daemon.port}`;
  const anon = await hsToken({ role: 'anon' });
  const tokens = { ann: await hsToken({ sub: 'ann' }), bob: await hsToken({ sub: 'bob' }), eve: await hsToken({ sub: 'eve' }) };

  const browser: Browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: 30_000,
  });
  t.teardown(() => browser.close().catch(() => {}));
  t.comment(`daemon and browser up after ${Date.now() - started} ms`);

  for (const vsn of ['1.0.0', '2.0.0'] as const) {
    await t.test(`realtime-js in Chromium, vsn ${vsn}`, { timeout: 60_000 }, (t) => scenario(t, vsn));
  }
  t.same(routeErrors, [], 'the write route never failed');
  t.comment(`both serializers took ${Date.now() - started} ms (from starting Postgres)`);

  async function scenario(t: Test, vsn: '1.0.0' | '2.0.0'): Promise<void> {
    const page = await (await browser.newContext()).newPage();
    page.setDefaultTimeout(STEP_MS);
    const pageErrors: string[] = [];
    const frames: string[] = [];
    page.on('pageerror', (err) => pageErrors.push(err.message));
    page.on('console', (m) => {
      if (m.type() === 'error') pageErrors.push(`console: ${m.text()}`);
    });
    let sockets = 0;
    page.on('websocket', (ws) => {
      const n = ++sockets; // the page's sockets in the order opened: ann, bob, late, eve
      ws.on('framesent', (f) => frames.push(`${n} -> ${String(f.payload).slice(0, 600)}`));
      ws.on('framereceived', (f) => frames.push(`${n} <- ${String(f.payload).slice(0, 600)}`));
      ws.on('close', () => frames.push(`${n} closed`));
    });
    t.teardown(async () => {
      if (!t.passing() || process.env.WALCAST_E2E_FRAMES) console.error(`# vsn ${vsn}: frames seen by the page (last 80)\n${frames.slice(-80).join('\n')}\n# page errors: ${JSON.stringify(pageErrors)}`);
      await page.context().close().catch(() => {});
    });

    await page.goto(`${base}/sb/`);
    await page.waitForFunction(() => (globalThis as unknown as { ready?: boolean }).ready === true);
    const sb = <T>(fn: string, ...args: unknown[]): Promise<T> =>
      page.evaluate(([fn, args]) => (globalThis as unknown as { sb: PageApi }).sb[fn](...args), [fn, args] as [string, unknown[]]) as Promise<T>;
    const results = (): Promise<Results> => page.evaluate(() => (globalThis as unknown as { results: Results }).results);
    const tag = (s: string) => `${s}-${vsn}`;

    for (const user of ['ann', 'bob'] as const) {
      t.equal(await sb('connect', user, { vsn, apikey: anon, token: tokens[user], heartbeatMs: HEARTBEAT_MS }), vsn, `${user}'s client speaks vsn ${vsn}`);
    }

    // ── 1, 2: postgres_changes, filtered, under row policies; no gap after SUBSCRIBED ───────
    const filter = 'room_id=eq.1';
    const first = tag('first');
    t.equal(await sb('join', 'ann', { filter, key: 'ann-key', writeUrl: `/sb/write?owner=ann&body=${first}` }), 'SUBSCRIBED', 'ann: SUBSCRIBED');
    t.equal(await sb('join', 'bob', { filter, key: 'bob-key', writeUrl: null }), 'SUBSCRIBED', 'bob: SUBSCRIBED');

    // The insert the page POSTed from inside the SUBSCRIBED callback arrives.
    const r0 = await until(page, 'the write made at SUBSCRIBED, back as a change', results, (r) => (r.changes.ann ?? []).some((c) => c.new.body === first));
    t.equal(r0.writes.ann?.status, 200, 'the page wrote at once from the SUBSCRIBED callback');
    const firstChange = r0.changes.ann[0];
    t.equal(firstChange.eventType, 'INSERT', 'a write made right after SUBSCRIBED arrives (no gap): the first change of the channel');
    t.equal(firstChange.new.id, r0.writes.ann.body?.id, 'the row written');

    const sql = await sqlClient(t, url);
    const run = async (text: string, params: unknown[] = []) => (await sql.query(text, params)).rows as Record<string, unknown>[];
    const [a] = await run(
      `insert into messages (room_id, owner, body, meta) values (1, 'ann', $1, '{"n": 1, "tags": ["x", "y"], "nested": {"ok": true}}')
       returning id, floor(extract(epoch from at) * 1000)::text as at_ms`,
      [tag('a')],
    );
    const [secret] = await run(`insert into messages (room_id, owner, body) values (1, 'bob', $1) returning id`, [tag('bob-secret')]); // ann may not read it
    await run(`insert into messages (room_id, owner, body) values (2, 'ann', $1)`, [tag('elsewhere')]); // ann's, outside her filter
    const [shared] = await run(`insert into messages (room_id, owner, body, shared) values (1, 'bob', $1, true) returning id`, [tag('shared')]); // both, via room_members
    await run(`update messages set body = $2, meta = '{"n": 2}' where id = $1`, [a.id, tag('a2')]);
    await run(`update messages set body = $2 where id = $1`, [secret.id, tag('bob-secret2')]);
    await run(`delete from messages where id = $1`, [a.id]); // ann's last
    await run(`delete from messages where id = $1`, [secret.id]); // bob's last

    const summary = (cs: Change[] = []) => cs.map((c) => `${c.eventType} ${String(c.new.body ?? c.old.body)}`);
    const r1 = await until(page, "ann's delete and bob's", results, (r) =>
      summary(r.changes.ann).includes(`DELETE ${tag('a2')}`) && summary(r.changes.bob).includes(`DELETE ${tag('bob-secret2')}`),
    );
    t.same(
      summary(r1.changes.ann),
      [`INSERT ${first}`, `INSERT ${tag('a')}`, `INSERT ${tag('shared')}`, `UPDATE ${tag('a2')}`, `DELETE ${tag('a2')}`],
      "ann gets her rows of room 1 and the shared one, in commit order; never bob's private row nor her row of room 2",
    );
    t.same(
      summary(r1.changes.bob),
      [`INSERT ${tag('bob-secret')}`, `INSERT ${tag('shared')}`, `UPDATE ${tag('bob-secret2')}`, `DELETE ${tag('bob-secret2')}`],
      "bob gets his own rows and the shared one; none of ann's private rows",
    );
    const [, ins, sharedIns, upd, del] = r1.changes.ann;
    t.match(ins, { schema: 'public', table: 'messages', commit_timestamp: String, errors: null }, 'the payload names the table');
    t.equal(ins.new.id, Number(a.id), 'int8 id: a number');
    t.equal(ins.new.room_id, 1, 'int4: a number');
    t.same(ins.new.meta, { n: 1, tags: ['x', 'y'], nested: { ok: true } }, 'jsonb: an object');
    t.equal(ins.new.shared, false, 'bool: a boolean');
    t.equal(ins.new.owner, 'ann');
    t.type(ins.new.at, 'string', 'timestamptz: a string');
    t.ok(Math.abs(Date.parse(ins.new.at as string) - Number(a.at_ms)) <= 1, `timestamptz: the row's instant (${String(ins.new.at)})`);
    t.same(ins.old, {}, 'an insert has no old');
    t.equal(upd.new.body, tag('a2'));
    t.same(upd.new.meta, { n: 2 });
    t.equal(upd.old.body, tag('a'), 'UPDATE: old is the previous row (replica identity full)');
    t.same(upd.old.meta, { n: 1, tags: ['x', 'y'], nested: { ok: true } });
    t.same(del.new, {}, 'DELETE: no new');
    t.equal(del.old.id, Number(a.id), 'DELETE: old carries the row');
    t.equal(sharedIns.new.id, Number(shared.id), "bob's shared row, read through ann's membership of room 1");

    // ── 3: broadcast between the two clients, with self and ack ─────────────────────────────
    t.equal(await sb('broadcast', 'ann', { text: tag('hi bob'), n: 1 }), 'ok', "ann's send() resolves 'ok' (ack)");
    const r2 = await until(page, "ann's broadcast at both", results, (r) => (r.broadcasts.ann ?? []).length >= 1 && (r.broadcasts.bob ?? []).length >= 1);
    t.match(r2.broadcasts.bob, [{ type: 'broadcast', event: 'msg', payload: { text: tag('hi bob'), n: 1 } }], 'bob receives it');
    t.match(r2.broadcasts.ann, [{ type: 'broadcast', event: 'msg', payload: { text: tag('hi bob'), n: 1 } }], 'ann receives her own (self)');
    t.equal(await sb('broadcast', 'bob', { text: tag('hi ann') }), 'ok', "bob's send() resolves 'ok'");
    const r3 = await until(page, "bob's broadcast at both", results, (r) => r.broadcasts.ann.length >= 2 && r.broadcasts.bob.length >= 2);
    t.same(r3.broadcasts.ann.map((m) => m.payload), [{ text: tag('hi bob'), n: 1 }, { text: tag('hi ann') }], 'ann: both, once each, in order');
    t.same(r3.broadcasts.bob.map((m) => m.payload), [{ text: tag('hi bob'), n: 1 }, { text: tag('hi ann') }], 'bob: both, once each, in order');

    // ── 4: presence under config.presence.key ───────────────────────────────────────────────
    const joins = (r: Results, user: string, key: string) => (r.presence[user] ?? []).filter((e) => e.event === 'join' && e.key === key);
    const leaves = (r: Results, user: string, key: string) => (r.presence[user] ?? []).filter((e) => e.event === 'leave' && e.key === key);
    t.equal(await sb('track', 'ann', { status: 'online', name: 'Ann' }), 'ok', "ann's track() resolves 'ok'");
    const r4 = await until(page, "ann's join at bob", results, (r) => joins(r, 'bob', 'ann-key').length >= 1);
    t.same(joins(r4, 'bob', 'ann-key')[0].metas, [{ status: 'online', name: 'Ann' }], "bob sees 'join' of ann-key with what she tracks");
    t.same((await sb<Record<string, unknown[]>>('presenceState', 'bob'))['ann-key'], [{ status: 'online', name: 'Ann' }], "bob's presenceState() holds ann-key");
    t.equal(await sb('untrack', 'ann'), 'ok', "ann's untrack() resolves 'ok'");
    const r5 = await until(page, "ann's leave at bob", results, (r) => leaves(r, 'bob', 'ann-key').length >= 1);
    t.same(leaves(r5, 'bob', 'ann-key')[0].metas, [{ status: 'online', name: 'Ann' }], "untrack: bob sees 'leave' of ann-key");
    t.notOk('ann-key' in (await sb<Record<string, unknown>>('presenceState', 'bob')), "and ann-key is gone from bob's presenceState()");

    t.equal(await sb('track', 'bob', { status: 'away' }), 'ok', "bob's track() resolves 'ok'");
    await until(page, "bob's join at ann", results, (r) => joins(r, 'ann', 'bob-key').length >= 1);
    t.pass("ann sees 'join' of bob-key");
    t.equal(await sb('track', 'ann', { status: 'back' }), 'ok', 'ann tracks again');
    await until(page, "ann's second join at bob", results, (r) => joins(r, 'bob', 'ann-key').length >= 2);

    // A late joiner (bob on a second client) gets the state as it is: presence_state at its join.
    await sb('connect', 'late', { vsn, apikey: anon, token: tokens.bob, heartbeatMs: HEARTBEAT_MS });
    t.equal(await sb('join', 'late', { filter: null, key: 'late-key', writeUrl: null }), 'SUBSCRIBED', 'a second client of bob: SUBSCRIBED (broadcast and presence only)');
    await until(page, "ann-key and bob-key in the late joiner's state", () => sb<Record<string, unknown>>('presenceState', 'late'), (s) => 'ann-key' in s && 'bob-key' in s);
    t.same(await sb('presenceState', 'late'), { 'ann-key': [{ status: 'back' }], 'bob-key': [{ status: 'away' }] }, "the late joiner's presenceState(): everyone tracked, by key");

    // Heartbeats (every HEARTBEAT_MS) were answered all along.
    const before = await until(page, 'an answered heartbeat on each socket', results, (r) => ['ann', 'bob'].every((u) => (r.heartbeats[u] ?? []).includes('ok')));
    for (const u of ['ann', 'bob']) {
      t.same(before.heartbeats[u].filter((h) => h !== 'sent' && h !== 'ok'), [], `${u}: every heartbeat answered ok (${before.heartbeats[u].filter((h) => h === 'ok').length} of them)`);
    }
    t.same(before.statuses.ann, ['SUBSCRIBED'], "ann's channel reported SUBSCRIBED only so far (no error, no rejoin)");
    t.same(before.statuses.bob, ['SUBSCRIBED'], "bob's too");
    await sb('disconnect', 'ann');
    const r6 = await until(page, "ann's leave at bob after her socket closed", results, (r) => leaves(r, 'bob', 'ann-key').length >= 2);
    t.same(leaves(r6, 'bob', 'ann-key')[1].metas, [{ status: 'back' }], "closing ann's client: bob sees 'leave' of ann-key");
    await until(page, "ann's leave at the late joiner", () => sb<Record<string, unknown>>('presenceState', 'late'), (s) => !('ann-key' in s));
    t.same(Object.keys(await sb<Record<string, unknown>>('presenceState', 'bob')).sort(), ['bob-key'], "bob's presenceState(): only himself (the late joiner tracks nothing)");

    // ── eve is no member of room 1: a broadcast and presence channel refuses her ─────────────
    await sb('connect', 'eve', { vsn, apikey: anon, token: tokens.eve, heartbeatMs: HEARTBEAT_MS });
    const eve = await sb<string>('join', 'eve', { filter: null, key: 'eve-key', writeUrl: null });
    t.match(eve, /^CHANNEL_ERROR/, `eve's join is refused (${eve})`);

    t.equal(await sb('leave', 'late'), 'ok', "the late joiner's removeChannel() resolves 'ok' (phx_leave answered)");
    t.same((await results()).statuses.late, ['SUBSCRIBED', 'CLOSED'], 'and its channel reports CLOSED');
    for (const name of ['bob', 'late', 'eve']) await sb('disconnect', name);
    t.comment(`statuses reported: ${JSON.stringify((await results()).statuses)}`);
    t.same(pageErrors, [], 'no uncaught errors in the page');
  }
}

/** Polls `read` until `ok` holds; fails with the last value read after `timeoutMs`. */
async function until<T>(page: Page, what: string, read: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = STEP_MS): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await read();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last: ${JSON.stringify(v).slice(0, 4000)}`);
    await page.waitForTimeout(50);
  }
}
