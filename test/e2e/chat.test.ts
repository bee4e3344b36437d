// End to end: the real `walcast dev` (built CLI, throwaway Postgres, authorization on) and its
// demo page in headless Chromium, driven by Playwright. Alice and Bob in #general see each other
// online, see each other type and get each other's messages; Dave, who is not a member, opens
// the same room and gets none of it. Needs Debian's chromium at /usr/bin/chromium: skipped
// without it, except under CI, where .ci/run installs it and its absence is a failure.

import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { chromium, type Browser, type Page } from 'playwright-core';
import t from 'tap';
import { spawnCli, type CliProcess } from '../helpers/cli.js';

const CHROMIUM = '/usr/bin/chromium';
/** Every wait in the browser is bounded by this. */
const STEP_MS = 15_000;
/** How long a page that must not receive something is given to (wrongly) receive it. */
const QUIET_MS = 1_000;

if (!existsSync(CHROMIUM)) {
  if (process.env.CI) t.fail(`${CHROMIUM} is missing: CI installs Debian's chromium in .ci/run (apt-get install chromium)`);
  else t.plan(0, `skipped: no ${CHROMIUM} (install Debian's chromium to run the browser test)`);
} else {
  t.test('demo chat in two browsers, and a non-member who sees nothing', { timeout: 180_000 }, async (t) => {
    const started = Date.now();
    const dev = spawnCli(['dev', '--port', '0'], { timeoutMs: 170_000 });
    const pages = new Map<string, Page>();
    const pageErrors: string[] = [];
    let browser: Browser | null = null;
    t.teardown(async () => {
      if (!t.passing()) await dumpFailure(dev, pages);
      await browser?.close().catch(() => {});
      dev.kill('SIGINT');
      await dev.wait(20_000);
    });

    let base = '';
    await dev.waitFor(() => !!(base = /demo chat at (http:\/\/\S+\/)/.exec(dev.stderr)?.[1] ?? ''), 'the demo URL on stderr', 60_000);
    t.comment(`walcast dev up at ${base} after ${Date.now() - started} ms`);

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      timeout: 30_000,
    });
    const b = browser;
    /** A page of its own (own context) for `user`, on room 1 (#general). */
    const open = async (user: string): Promise<Page> => {
      const page = await (await b.newContext()).newPage();
      page.setDefaultTimeout(STEP_MS);
      page.on('pageerror', (err) => pageErrors.push(`${user}: ${err.message}`));
      pages.set(user, page);
      await page.goto(`${base}?user=${user}&room=1`);
      return page;
    };
    const online = (page: Page) => page.locator('[data-testid="online"] li').allTextContents();
    const messages = (page: Page) => page.locator('[data-testid="message"] .body').allTextContents();
    const typing = (page: Page) => page.getByTestId('typing').textContent();
    const waitOnline = (page: Page, users: string[]) => until(`${users.join(', ')} online`, () => online(page), (v) => v.join() === users.join());

    const alice = await open('alice');
    const bob = await open('bob');
    for (const page of [alice, bob]) {
      await page.waitForSelector('[data-testid="room-status"][data-access="member"]');
      await page.waitForSelector('[data-testid="messages"][data-live="true"]');
    }
    await waitOnline(alice, ['alice', 'bob']);
    await waitOnline(bob, ['alice', 'bob']);
    t.same(await online(bob), ['alice', 'bob'], 'both online, on both pages');
    t.equal(await alice.getByTestId('room-name').textContent(), '#general');
    await bob.waitForSelector('[data-testid="message"][data-author="alice"]');
    t.same((await messages(bob)).slice(0, 2), ['Welcome to #general!', 'Hi all!'], 'the room history is shown (a snapshot subscription, members only)');

    // Typing: a broadcast on room:1, named by the sender's presence.
    await alice.getByTestId('message-input').pressSequentially('hello b');
    await until('"alice is typing…" on bob\'s page', () => typing(bob), (v) => v === 'alice is typing…');
    t.pass('bob sees "alice is typing…"');
    t.equal(await typing(alice), '', 'nobody sees their own typing');

    // A message: POST /dev/messages, then the change reaches bob through his subscription.
    const text = `hello bob ${Date.now()}`;
    await alice.getByTestId('message-input').fill(text);
    await alice.getByTestId('message-input').press('Enter');
    await until("alice's message on bob's page", () => messages(bob), (v) => v.includes(text));
    t.equal((await messages(bob)).at(-1), text, "alice's message arrives on bob's page, last");
    t.equal((await messages(alice)).filter((m) => m === text).length, 1, 'once on her own page too (the reply and the change merged by id)');
    await until("no typing on bob's page", () => typing(bob), (v) => v === '', 5_000);
    t.pass('her typing indicator goes with her message');
    await dev.waitFor(() => dev.lines.some((l) => l.includes(text)), 'the message in the tail on stdout', 5_000);
    t.pass('walcast dev tails the insert to stdout');

    // Dave is not a member of #general: his join is refused, and nothing of the room reaches him.
    const dave = await open('dave');
    await dave.waitForSelector('[data-testid="room-status"][data-access="forbidden"]');
    await dave.waitForSelector('[data-testid="messages"][data-live="true"]'); // subscribed: rows would arrive now if allowed
    t.match(await dave.getByTestId('room-status').textContent(), /not a member/, 'his page says why');
    t.ok(await dave.getByTestId('message-input').isDisabled(), 'no message box for him');
    await bob.getByTestId('message-input').pressSequentially('psst');
    const secret = `members only ${Date.now()}`;
    await bob.getByTestId('message-input').fill(secret);
    await bob.getByTestId('message-input').press('Enter');
    await until("bob's message on alice's page", () => messages(alice), (v) => v.includes(secret));
    await dave.waitForTimeout(QUIET_MS);
    t.same(await messages(dave), [], 'dave sees no message of #general (neither history nor live)');
    t.same(await online(dave), [], 'nobody online for him');
    t.equal(await typing(dave), '', 'no typing for him');
    t.same(await online(bob), ['alice', 'bob'], 'and he is not online for the members');
    // His friend list works (bob is his friend, and online), so his connection is fine: the room is what he may not see.
    await dave.waitForSelector('[data-testid="friends"] li[data-user="bob"][data-online="true"]');
    t.pass("dave sees his friend bob online (channel user:bob, friends only)");
    t.equal(await alice.locator('[data-testid="friends"] li[data-user="dave"]').count(), 0, 'alice, not his friend, does not list dave');

    // Made a member (a plain insert, as a psql user would), dave's page opens the room by itself:
    // the membership reaches it as a change, and the policies allow him from that commit on.
    const dbUrl = /Postgres (postgres:\/\/\S+)/.exec(dev.stderr)?.[1];
    t.ok(dbUrl, 'walcast dev prints the database URL');
    const sql = new pg.Client({ connectionString: dbUrl });
    await sql.connect();
    await sql.query("insert into room_members (user_id, room_id) values ('dave', 1)");
    await sql.end();
    await dave.waitForSelector('[data-testid="room-status"][data-access="member"]');
    await until("#general's messages on dave's page", () => messages(dave), (v) => v.includes(text) && v.includes(secret));
    await waitOnline(bob, ['alice', 'bob', 'dave']);
    t.pass('once a member, dave gets the history, and the members see him online');

    // Alice leaves: bob sees her go.
    await alice.context().close();
    pages.delete('alice');
    await waitOnline(bob, ['bob', 'dave']);
    t.same(await online(bob), ['bob', 'dave'], "closing alice's page shows her offline on bob's");

    t.same(pageErrors, [], 'no uncaught errors in the pages');
    t.comment(`scenario took ${Date.now() - started} ms (from spawning walcast dev)`);

    await browser.close();
    browser = null;
    dev.kill('SIGINT');
    const exit = await dev.wait(20_000);
    t.equal(exit.code, 0, `walcast dev exits 0 on Ctrl-C (stderr: ${exit.stderr.slice(-500)})`);
    t.notOk(exit.timedOut, 'and promptly');
  });
}

/** Polls `read` until `ok` holds; fails with the last value read after `timeoutMs`. */
async function until<T>(what: string, read: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = STEP_MS): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await read();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function dumpFailure(dev: CliProcess, pages: Map<string, Page>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'walcast-e2e-'));
  for (const [user, page] of pages) {
    await page.screenshot({ path: join(dir, `${user}.png`), fullPage: true, timeout: 5_000 }).catch(() => {});
  }
  console.error(`# e2e failed: screenshots in ${dir}\n# walcast dev stderr:\n${dev.stderr}\n# last stdout lines:\n${dev.lines.slice(-20).join('\n')}`);
}
