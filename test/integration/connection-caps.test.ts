// Issue #11 item 9: a flood of WebSockets, most never authenticating, must not exhaust the
// daemon's file descriptors. A real `walcast serve` with --max-connections 50 and
// --max-pending-auth 20: the sockets past a cap are refused at the upgrade with 503 and
// Retry-After and their descriptors freed at once; /healthz keeps answering; /status never
// shows more clients than the cap; the refusals are counted; and a good client gets in again as
// soon as an unauthenticated socket closes or times out.

import { readdirSync } from 'node:fs';
import t from 'tap';
import { migrate } from '../../src/sql/migrate.js';
import { waitUntil } from '../helpers/capture.js';
import { spawnCli } from '../helpers/cli.js';
import { withPostgres } from '../helpers/pg.js';
import { hsToken, SECRET } from '../helpers/tokens.js';
import { attemptUpgrade, samples } from '../helpers/upgrade.js';
import { servedPort, WsClient } from '../helpers/ws.js';

const MAX = 50;
const PENDING = 20;

const db = await withPostgres(t);
await migrate(db.url);
const proc = spawnCli(['serve', '--db', db.url, '--port', '0', '--slot', 'caps', '--max-connections', String(MAX), '--max-pending-auth', String(PENDING)], {
  env: { WALCAST_JWT_SECRET: SECRET },
  timeoutMs: 90_000,
});
t.teardown(() => proc.kill('SIGKILL'));
await proc.waitFor(() => servedPort(proc.stderr) !== null, 'serving line');
const port = servedPort(proc.stderr) as number;
const base = `http://127.0.0.1:${port}`;
const wsUrl = `ws://127.0.0.1:${port}/ws`;
const fds = () => readdirSync(`/proc/${proc.pid}/fd`).length;
const status = async () => (await (await fetch(`${base}/status`)).json()) as { clients: number };
const metrics = async () => samples(await (await fetch(`${base}/metrics`)).text());
const clients: WsClient[] = [];
t.teardown(() => Promise.all(clients.map((c) => c.close())));
const connect = async (u: string) => {
  const c = await WsClient.connect(u);
  clients.push(c);
  return c;
};
const withToken = async (sub: string) => `${wsUrl}?token=${await hsToken({ sub })}`;

const idle = fds();
let pendingSince = 0;
t.comment(`descriptors of the idle daemon: ${idle}`);

t.test('past --max-pending-auth, unauthenticated upgrades get 503', async (t) => {
  pendingSince = Date.now();
  const pending = await Promise.all(Array.from({ length: PENDING }, () => connect(wsUrl)));
  t.equal(pending.length, PENDING, `${PENDING} sockets without a token are in (welcome)`);
  const extra = await Promise.all(Array.from({ length: 10 }, () => attemptUpgrade(wsUrl)));
  t.same(extra.map((a) => a.status), Array(10).fill(503), 'the next 10 get 503');
  t.same(new Set(extra.map((a) => a.refused)), new Set(['max_pending_auth']), 'reason max_pending_auth');
  t.same(new Set(extra.map((a) => a.retryAfter)), new Set(['5']), 'Retry-After: 5');
  t.match(extra[0].body, /too many connections waiting to authenticate \(max_pending_auth: 20\)/, 'the body says why');
  // Authenticated clients are not held back by the unauthenticated ones.
  const good = await connect(await withToken('good-0'));
  t.ok(good.isOpen, 'a client with a token still gets in');
});

t.test(`past --max-connections (${MAX}), every upgrade gets 503; /healthz answers; fds freed`, async (t) => {
  const more = await Promise.all(Array.from({ length: MAX - PENDING - 1 }, async (_, i) => connect(await withToken(`good-${i + 1}`))));
  t.equal(more.length, MAX - PENDING - 1, 'authenticated clients fill the cap');
  t.equal((await status()).clients, MAX, `/status: ${MAX} clients`);
  // The flood: 200 upgrades at once, with and without tokens.
  const tokens = await Promise.all(Array.from({ length: 150 }, (_, i) => withToken(`flood-${i}`)));
  const [flood, health] = await Promise.all([
    Promise.all([...tokens, ...Array(50).fill(wsUrl)].map((u: string) => attemptUpgrade(u))),
    (async () => {
      const codes: number[] = [];
      for (let i = 0; i < 5; i++) codes.push((await fetch(`${base}/healthz`)).status);
      return codes;
    })(),
  ]);
  for (const a of flood) a.ws?.terminate();
  t.equal(flood.filter((a) => a.status === 503).length, 200, 'all 200 refused with 503');
  t.same(new Set(flood.map((a) => a.refused)), new Set(['max_connections']), 'reason max_connections');
  t.same(health, [200, 200, 200, 200, 200], '/healthz answered 200 during the flood');
  t.equal((await fetch(`${base}/healthz`)).status, 200, '/healthz 200 at the cap');
  const s = await status();
  t.ok(s.clients <= MAX, `/status clients ${s.clients} <= ${MAX}`);
  // A refused socket is closed by the server at once: nothing of the flood stays open.
  let n = 0;
  await waitUntil(() => (n = fds()) <= idle + MAX + 5, 10_000, () => `descriptors ${n}, idle ${idle} + ${MAX} sockets`);
  t.pass(`descriptors: ${n} (idle ${idle} + ${MAX} sockets), none held by the 200 refused`);
  const m = await metrics();
  t.equal(m.get('walcast_connections_refused_total{reason="max_pending_auth"}'), 10, 'refusals counted: max_pending_auth');
  t.equal(m.get('walcast_connections_refused_total{reason="max_connections"}'), 200, 'refusals counted: max_connections');
  t.equal(m.get('walcast_clients_pending_auth'), PENDING, 'walcast_clients_pending_auth');
  t.equal(m.get('walcast_clients'), MAX, 'walcast_clients');
});

t.test('a good client gets in once an unauthenticated socket closes', async (t) => {
  const lurker = clients.find((c) => !c.messages.some((m) => m.type === 'authenticated') && c.isOpen && !/token=/.test(c.ws.url));
  t.ok(lurker, 'an unauthenticated socket');
  t.equal((await attemptUpgrade(await withToken('late'))).status, 503, 'full: refused');
  await lurker!.close();
  await waitUntil(async () => (await status()).clients === MAX - 1, 10_000, () => 'the closed socket gone from /status');
  const late = await connect(await withToken('late'));
  t.equal((await late.request({ type: 'ping' })).type, 'pong', 'it is served: ping → pong');
  t.equal((await status()).clients, MAX, 'at the cap again');
});

t.test('unauthenticated sockets time out and free their places', async (t) => {
  const lurkers = clients.filter((c) => c.isOpen && !/token=/.test(c.ws.url));
  t.equal(lurkers.length, PENDING - 1, `${PENDING - 1} unauthenticated sockets left`);
  const closes = await Promise.all(lurkers.map((c) => c.waitClose(20_000)));
  t.same(new Set(closes.map((c) => c.code)), new Set([4001]), 'closed with 4001 at the auth timeout');
  t.comment(`the auth timeout came after ${Date.now() - pendingSince} ms`);
  await waitUntil(async () => (await status()).clients === MAX - (PENDING - 1), 10_000, () => 'timed-out sockets gone from /status');
  t.equal((await metrics()).get('walcast_clients_pending_auth'), 0, 'none pending');
  const c = await connect(wsUrl);
  const reply = await c.request({ type: 'auth', token: await hsToken({ sub: 'after' }) });
  t.equal(reply.type, 'authenticated', 'a new client without a token gets in and authenticates');
});
