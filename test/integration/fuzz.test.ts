// Protocol fuzz (issue #6, item 2): a real `walcast serve` process (JWT auth, a policy) under a
// few seconds of random and mutated client input, from several concurrent connections at once:
//
// - WebSocket fuzzers (the `ws` package): well-formed messages of every type, the same with
//   fields dropped, added or retyped, unknown types, byte flips and truncation, invalid UTF-8 in
//   text frames, deep nesting, numbers beyond doubles (1e400, 2^64, -0, long digit strings),
//   binary frames, fragmented messages (continuation frames, pings and pongs between them),
//   oversize frames, bursts, closes. With a valid token, none, or a bad one.
// - Raw TCP fuzzers (node:net): a real upgrade, then hand-built frames (test/helpers/raw-frames.ts,
//   RFC 6455 §5.2, https://www.rfc-editor.org/rfc/rfc6455#section-5.2): reserved bits, unknown
//   opcodes, unmasked frames, control frames over 125 bytes or fragmented, continuations out of
//   place, bogus 64-bit lengths, truncated frames, close frames with invalid codes, frames
//   written a byte at a time; and broken upgrade requests.
// - Connections whose token expires while they are subscribed and tracked.
//
// A connection the daemon closes is replaced by a new one. Meanwhile a well-behaved client stays
// subscribed while rows are committed steadily. Checked:
// - that client got every row exactly once, in order, and was never disconnected;
// - the daemon never exited, logged no error, stays healthy, leaks no sessions, subscriptions or
//   channels, its RSS stays bounded, and it still serves a new client;
// - every server frame is protocol: JSON objects of known types, welcome first, documented error
//   codes, close codes and resync reasons, refs echoed only from the connection's own messages;
//   within a subscription changes in position order; presence diffs consistent with the
//   presence_state before them; nothing a policy does not allow (a table, a channel);
// - every connection still open at its end answers a ping, and every ping sent before it.
//
// WALCAST_FUZZ_MS (default 9000) sets how long the fuzzers run; WALCAST_FUZZ_SEED replays the
// fuzzers' choices (printed at the start). Timing still differs from run to run (and `since`
// positions come from the server), so a replay sends the same kinds of frames in the same order
// per fuzzer, not necessarily interleaved the same way.
//
// The fuzzers and their checks live in test/helpers/fuzz-*.ts: fuzz-ws.ts, fuzz-raw.ts and
// fuzz-expiry.ts drive connections; fuzz-conn.ts checks every server frame; fuzz-docs.ts reads
// what the docs allow; fuzz-tally.ts counts and collects problems; fuzz-gen.ts makes the input.
// This file starts the daemon, the writer and the well-behaved client, runs the fuzzers and asserts.

import { randomInt } from 'node:crypto';
import fs from 'node:fs';
import pg from 'pg';
import t from 'tap';
import { CLOSE, WS_PATH } from '../../src/constants.js';
import { migrate } from '../../src/sql/migrate.js';
import { query, sleep } from '../helpers/capture.js';
import { spawnCli } from '../helpers/cli.js';
import { PROTO_PRESENCE_BUG, type FuzzContext, type FuzzUser } from '../helpers/fuzz-conn.js';
import { documented } from '../helpers/fuzz-docs.js';
import { expiryFuzzer } from '../helpers/fuzz-expiry.js';
import { Rng } from '../helpers/fuzz-gen.js';
import { rawFuzzer } from '../helpers/fuzz-raw.js';
import { FuzzLog } from '../helpers/fuzz-tally.js';
import { wsFuzzer } from '../helpers/fuzz-ws.js';
import { withPostgres } from '../helpers/pg.js';
import { hsToken, inSeconds, noneToken, SECRET } from '../helpers/tokens.js';
import { duplicates, orderViolations, servedPort, WsClient } from '../helpers/ws.js';

const FUZZ_MS = Math.max(0, Number(process.env.WALCAST_FUZZ_MS ?? 9_000));
const SEED = process.env.WALCAST_FUZZ_SEED ? Number(process.env.WALCAST_FUZZ_SEED) >>> 0 : randomInt(2 ** 32 - 1);
const WS_FUZZERS = 4;
const RAW_FUZZERS = 2;
/** The daemon's RSS may grow by at most this much over its baseline while fuzzed. */
const RSS_HEADROOM_KIB = 150 * 1024;

t.comment(`fuzz seed ${SEED} (replay with WALCAST_FUZZ_SEED=${SEED}); fuzzing ${FUZZ_MS} ms with ${WS_FUZZERS} WebSocket and ${RAW_FUZZERS} raw TCP fuzzers`);

/** What the docs allow (error codes, close codes, resync reasons), read before anything starts. */
const DOCS = documented();

// ── the daemon and its database ──────────────────────────────────────────────────────────────

const T0 = Date.now();
const db = await withPostgres(t);
await migrate(db.url);
const url = db.url;
t.teardown(() => {
  if (!t.passing()) t.comment(db.logTail(30));
});
await query(
  url,
  `create table feed (id bigserial primary key, seq int not null, body text);
   create table secret (id bigserial primary key, v text);
   select walcast.enable('feed'), walcast.enable('secret');
   insert into walcast.casbin_rule (ptype, v0, v1, v2, v3, v4) values
     ('p', '*', 'table', 'public.feed', 'read', 'true'),
     ('p', '*', 'channel', 'fz:*', 'join', 'true'),
     ('p', '*', 'channel', 'fz:*', 'broadcast', 'true'),
     ('p', '*', 'channel', 'fz:*', 'presence', 'true');`,
);

const proc = spawnCli(['serve', '--db', url, '--port', '0', '--slot', 'fuzz', '--jwt-secret', SECRET, '--progress-interval', '500ms'], { timeoutMs: 280_000 });
t.teardown(async () => {
  proc.kill('SIGKILL');
  await proc.closed.catch(() => {});
});
await proc.waitFor(() => servedPort(proc.stderr) !== null, 'the serving line', 30_000);
const port = servedPort(proc.stderr) as number;
const pid = proc.pid as number;
const wsUrl = `ws://127.0.0.1:${port}${WS_PATH}`;
const daemonGone = (): boolean => proc.exited;

function rssKiB(): number | null {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** The daemon's V8 heap in use (MiB), from its /metrics; null if not there. */
async function heapMiB(): Promise<number | null> {
  try {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const m = /^walcast_process_nodejs_heap_size_used_bytes ([\d.e+]+)$/m.exec(text);
    return m ? Number(m[1]) / 1024 / 1024 : null;
  } catch {
    return null;
  }
}

// ── tokens ───────────────────────────────────────────────────────────────────────────────────

/** Every `sub` a token of this test names: broadcasts come `from` one of these. */
const KNOWN_USERS = new Set(['good', 'mallory', 'fresh']);
const goodToken = await hsToken({ sub: 'good' });
/**
 * The fuzzers' users, one each (the last one for the expiring tokens); two have ids that are
 * also names of Object.prototype members, as ids used as keys of plain objects would trip on.
 */
const FUZZ_SUBS = Array.from({ length: WS_FUZZERS + RAW_FUZZERS + 1 }, (_, i) => (i === WS_FUZZERS - 1 ? '__proto__' : i === WS_FUZZERS + RAW_FUZZERS - 1 ? 'constructor' : `fuzz${i}`));
const users: FuzzUser[] = await Promise.all(FUZZ_SUBS.map(async (sub) => ({ sub, token: await hsToken({ sub }) })));
for (const sub of FUZZ_SUBS) KNOWN_USERS.add(sub);
const otherUser = await hsToken({ sub: 'mallory' });
const flipped = goodToken.slice(0, -3) + (goodToken.endsWith('AAA') ? 'BBB' : 'AAA');
const BAD_TOKENS = [
  'garbage',
  'a.b.c',
  'x'.repeat(5000),
  noneToken({ sub: 'fuzz' }),
  await hsToken({ sub: 'fuzz' }, { secret: 'another-secret-that-is-long-enough-0123456789' }),
  await hsToken({ sub: 'fuzz' }, { exp: inSeconds(-120) }),
  await hsToken({}),
  flipped,
  'eyJhbGciOiJIUzI1NiJ9.e30.',
  '\u0000',
  '🙂',
];

// ── the well-behaved subscriber and the writer ───────────────────────────────────────────────

const good = await WsClient.connect(`${wsUrl}?token=${goodToken}`);
t.teardown(() => good.close());
await good.subscribe({ id: 'feed', table: 'feed' });

const writer = new pg.Client({ connectionString: url });
writer.on('error', () => {});
await writer.connect();
t.teardown(() => writer.end().catch(() => {}));
let written = 0;
let writing = true;
let writerError: Error | null = null;
const writerRng = new Rng(SEED ^ 0x5eed);
const writeLoop = (async () => {
  while (writing) {
    // One to three rows per transaction, seq numbering them in commit order.
    // Now and then a row of `secret`, which no policy lets anyone read.
    const k = writerRng.int(1, 3);
    try {
      await writer.query('insert into feed (seq, body) select s, $3 || s from generate_series($1::int, $2::int) s order by s', [written + 1, written + k, writerRng.pick(['row ', 'zeile ', 'ряд ', '行 '])]);
      if (writerRng.chance(0.2)) await writer.query("insert into secret (v) values ('nobody may read this')");
    } catch (err) {
      writerError = err as Error;
      return;
    }
    written += k;
    await sleep(writerRng.int(5, 30));
  }
})();

await sleep(500);
const baseline = Math.max(rssKiB() ?? 0, rssKiB() ?? 0);
const heapBefore = await heapMiB();
let peak = baseline;
/** RSS once a second while fuzzed (KiB). */
const trail: number[] = [];
let samples = 0;
const sampler = setInterval(() => {
  const r = rssKiB();
  if (r !== null && r > peak) peak = r;
  if (r !== null && samples++ % 10 === 0) trail.push(r);
}, 100);
sampler.unref();
t.teardown(() => clearInterval(sampler));

// ── the run ──────────────────────────────────────────────────────────────────────────────────

t.comment(`setup took ${Date.now() - T0} ms`);
const started = Date.now();
const until = started + FUZZ_MS;
const master = new Rng(SEED);
const log = new FuzzLog();
const fuzz: FuzzContext = { wsUrl, port, daemonGone, log, docs: DOCS, knownUsers: KNOWN_USERS, otherUser, badTokens: BAD_TOKENS, positions: [] };
const runs = [
  ...Array.from({ length: WS_FUZZERS }, (_, i) => wsFuzzer(fuzz, i, users[i], master.fork(), until)),
  ...Array.from({ length: RAW_FUZZERS }, (_, i) => rawFuzzer(fuzz, i, users[WS_FUZZERS + i].token, master.fork(), until)),
  expiryFuzzer(fuzz, users[WS_FUZZERS + RAW_FUZZERS].sub, master.fork(), until),
];
let guard: NodeJS.Timeout | undefined;
const settled = await Promise.race([Promise.allSettled(runs), new Promise<null>((resolve) => (guard = setTimeout(() => resolve(null), FUZZ_MS + 40_000)))]);
clearTimeout(guard);
const fuzzMs = Date.now() - started;
clearInterval(sampler);
const peakDuringFuzz = peak;
const heapAfter = await heapMiB();

writing = false;
await writeLoop;
const wantRows = written;
let goodComplete: Error | null = null;
await good.waitChanges('feed', wantRows, 30_000).catch((err: Error) => (goodComplete = err));

t.test('the fuzzers ran to their end', async (t) => {
  t.ok(settled, `every fuzzer finished (took ${fuzzMs} ms for ${FUZZ_MS} ms of fuzzing)`);
  for (const [i, s] of (settled ?? []).entries()) {
    if (s.status === 'rejected') t.fail(`fuzzer ${i} threw (a bug of the test): ${(s.reason as Error)?.stack ?? String(s.reason)}`);
  }
  t.comment(`connections: ${log.connections}`);
  t.comment(`frames sent: ${log.sentFrames} (${(log.bytesSent / 1024 / 1024).toFixed(1)} MiB)`);
  t.comment(`upgrades: ${log.handshakes}`);
  t.comment(`probes at the end of a connection: ${log.probes}`);
  t.comment(`connections whose token expired: ${log.expiries}`);
  t.comment(`ws client errors: ${log.clientErrors}`);
});

t.test('the daemon survived', async (t) => {
  t.notOk(daemonGone(), `the daemon process is still running${daemonGone() ? `; stderr: ${proc.stderr.slice(-3000)}` : ''}`);
  const logs = proc.stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => {
      try {
        return JSON.parse(l) as { level: number; msg: string; err?: string };
      } catch {
        return { level: 0, msg: l };
      }
    });
  const errors = logs.filter((l) => l.level >= 50);
  t.same(errors.map((l) => `${l.msg}: ${l.err ?? ''}`), [], 'it logged no error');
  const warns = logs.filter((l) => l.level === 40);
  t.comment(`daemon warnings: ${warns.length}${warns.length ? ` (${warns.slice(0, 3).map((l) => l.msg).join('; ')})` : ''}`);
  const health = await fetch(`http://127.0.0.1:${port}/healthz`).catch((err: Error) => err);
  t.equal(health instanceof Error ? health.message : health.status, 200, 'GET /healthz is 200');
});

t.test('the well-behaved subscriber got every row once, in order, and stayed connected', async (t) => {
  t.equal(writerError, null, 'the writer committed without error');
  t.ok(wantRows > 20, `rows were committed throughout (${wantRows})`);
  t.equal(goodComplete, null, `all ${wantRows} rows arrived`);
  const changes = good.changes('feed');
  const seqs = changes.map((c) => c.new?.seq);
  t.same(seqs, Array.from({ length: wantRows }, (_, i) => i + 1), 'every committed row exactly once, in commit order');
  t.same(orderViolations(changes.map((c) => c.pos)), [], 'positions strictly increasing');
  t.same(duplicates(changes.map((c) => c.pos)), [], 'no position twice');
  t.ok(changes.every((c) => c.op === 'insert' && c.table === 'public.feed'), 'all inserts of public.feed');
  t.equal(good.closeInfo, null, 'never disconnected');
  t.same(good.ofType('error'), [], 'no error');
  t.same(good.ofType('resync'), [], 'no resync');
  t.same(good.garbage, [], 'every frame a JSON message');
});

t.test('every reply was protocol', async (t) => {
  t.comment(`replies: ${log.replies}`);
  t.comment(`closes: ${log.closes}`);
  t.comment(`close reasons (server): ${log.closeReasons}`);
  t.ok(DOCS.wireCodes.has('bad_request') && DOCS.closeCodes.has(4001) && DOCS.resyncReasons.size > 0, `the docs list the codes (${[...DOCS.wireCodes].join(', ')}; ${[...DOCS.closeCodes].join(', ')}; ${[...DOCS.resyncReasons].join(', ')})`);
  if (FUZZ_MS >= 3_000) {
    t.ok(log.replies.get('error bad_request') > 0 && log.replies.get('pong') > 0, 'the fuzz reached the parser (bad_request) and got through it (pong)');
    t.ok(log.closes.get('server 1006') > 0 && log.closes.get(`server ${CLOSE.authFailed}`) > 0, 'and the WebSocket layer (dropped connections) and authentication (4001)');
  }
  const expired = [...log.expiries.counts.keys()];
  t.ok(expired.every((k) => /^server 4001 (token expired|the token has expired)$/.test(k)), `a token expiring mid-session closes its connection with 4001 (${log.expiries})`);
  for (const [category, examples] of log.problems) {
    t.comment(`${category}: ${examples.length} time(s); ${examples.filter(Boolean).join('\n    ')}`);
  }
  t.same([...log.problems.keys()], [], 'no protocol violation, undocumented code, stray ref or hang');
  t.equal(log.problems.get(PROTO_PRESENCE_BUG)?.length ?? 0, 0, 'presence_state and presence_diff agree, also for a user whose id is "__proto__"');
});

t.test('memory stayed bounded', { skip: baseline === 0 ? 'no /proc/<pid>/status VmRSS here' : false }, async (t) => {
  const mib = (k: number) => `${(k / 1024).toFixed(1)} MiB`;
  t.comment(`daemon RSS: baseline ${mib(baseline)}, peak while fuzzed ${mib(peakDuringFuzz)} (+${mib(peakDuringFuzz - baseline)}), now ${mib(rssKiB() ?? 0)}`);
  t.comment(`daemon RSS each second while fuzzed (MiB): ${trail.map((k) => (k / 1024).toFixed(0)).join(' ')}`);
  t.comment(`daemon V8 heap used: ${heapBefore?.toFixed(1)} MiB before, ${heapAfter?.toFixed(1)} MiB right after the fuzz`);
  t.ok(peakDuringFuzz < baseline + RSS_HEADROOM_KIB, `peak RSS under baseline + ${mib(RSS_HEADROOM_KIB)}`);
});

t.test('after the fuzz: no leftovers, and a new client is served', async (t) => {
  type Status = { clients: number; subscriptions: number; channels: number };
  let status: Status | undefined;
  const deadline = Date.now() + 10_000;
  do {
    status = (await (await fetch(`http://127.0.0.1:${port}/status`)).json()) as Status;
    if (status.clients === 1 && status.subscriptions === 1 && status.channels === 0) break;
    await sleep(100);
  } while (Date.now() < deadline);
  t.match(status, { clients: 1, subscriptions: 1, channels: 0 }, 'only the well-behaved client is left: no session, subscription or channel leaked');

  const fresh = await WsClient.connect(`${wsUrl}?token=${await hsToken({ sub: 'fresh' })}`);
  t.teardown(() => fresh.close());
  await fresh.subscribe({ id: 'f', table: 'public.feed' });
  await query(url, "insert into feed (seq, body) values (-1, 'after the fuzz')");
  const [row] = await fresh.waitChanges('f', 1);
  t.match(row.new, { seq: -1, body: 'after the fuzz' }, 'a fresh client subscribes and gets a new row');
  await good.waitChanges('feed', wantRows + 1);
  t.equal(good.changes('feed')[wantRows]?.new?.seq, -1, 'so does the well-behaved one');
  t.equal(good.closeInfo, null, 'still connected');
  await fresh.close();
  await good.close();
  proc.kill('SIGTERM');
  const res = await proc.wait(15_000);
  t.equal(res.code, 0, 'SIGTERM: exit 0');
  t.comment(`${Date.now() - T0} ms since the start`);
});
