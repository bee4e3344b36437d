// `walcast dev`'s pieces in-process: the demo schema and policies on a migrated database, the
// per-run demo key, and the dev-only HTTP routes on the daemon's port (static files without path
// traversal, tokens for the demo users only, membership checked on reads and writes, bounded
// bodies). The browser side is test/e2e/chat.test.ts.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import t from 'tap';
import { resolveServeConfig } from '../../src/config.js';
import { startDaemon } from '../../src/daemon.js';
import { devRoutes, MAX_REQUEST_BYTES } from '../../src/dev/routes.js';
import { packageRoot } from '../../src/util/package-root.js';
import { DEMO_RELATIONS, setupDemo } from '../../src/dev/schema.js';
import { createDemoKeys } from '../../src/dev/tokens.js';
import { silentLogger } from '../../src/log.js';
import { clientConfig } from '../../src/pg/connect.js';
import { migrate } from '../../src/sql/migrate.js';
import { withPostgres } from '../helpers/pg.js';
import { WsClient } from '../helpers/ws.js';

const db = await withPostgres(t);
await migrate(db.url);
await setupDemo(db.url);
const keys = createDemoKeys();
const pool = new pg.Pool({ ...clientConfig(db.url), max: 2 });
t.teardown(() => pool.end());
const daemon = await startDaemon(resolveServeConfig({ db: db.url, port: '0', jwtSecret: keys.secret, relation: DEMO_RELATIONS }, {}), silentLogger, {
  routes: devRoutes({ db: pool, keys, log: silentLogger }),
});
t.teardown(() => daemon.stop());
const base = `http://127.0.0.1:${daemon.port}`;

const get = (path: string, token?: string) => fetch(base + path, token ? { headers: { authorization: `Bearer ${token}` } } : {});
const post = (body: unknown) => fetch(`${base}/dev/messages`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });
const tokenOf = async (user: string) => ((await (await get(`/dev/token?user=${user}`)).json()) as { token: string }).token;

t.test('a random key per run; tokens for the demo users only, short-lived', async (t) => {
  t.match(keys.secret, /^[A-Za-z0-9_-]{43}$/, '32 random bytes, base64url');
  const other = createDemoKeys();
  t.not(other.secret, keys.secret, 'another run, another key');
  const alice = await tokenOf('alice');
  await t.rejects(other.verify(alice), 'a token of one run means nothing to another');
  const { identity, expiresAt } = await keys.verify(alice);
  t.equal(identity.id, 'alice');
  t.ok(expiresAt! - Date.now() <= 3600_000 && expiresAt! - Date.now() > 3500_000, 'expires in an hour');
  for (const user of ['eve', '', 'alice%20', '__proto__']) {
    const res = await get(`/dev/token?user=${user}`);
    t.equal(res.status, 404, `no token for ${JSON.stringify(user)}`);
  }
});

t.test('static files: the page, its files, the SDK modules; nothing else', async (t) => {
  const page = await get('/');
  t.equal(page.status, 200);
  t.match(page.headers.get('content-type'), /^text\/html/);
  t.match(await page.text(), /<script type="module" src="\/demo\/app.js">/);
  for (const [path, type] of [['/demo/app.js', /^text\/javascript/], ['/demo/style.css', /^text\/css/]] as const) {
    const res = await get(path);
    t.equal(res.status, 200, path);
    t.match(res.headers.get('content-type'), type, path);
  }
  if (existsSync(join(packageRoot(), 'dist/src/client/index.js'))) {
    const sdk = await get('/client/index.js');
    t.equal(sdk.status, 200, 'the SDK (built)');
    t.match(sdk.headers.get('content-type'), /^text\/javascript/);
    t.match(await sdk.text(), /export \{ createClient/);
  }
  for (const path of ['/client/..%2Fcli%2Findex.js', '/client/%2e%2e%2Fconfig.js', '/client/index.d.ts', '/client/Index.js', '/demo/..%2F..%2Fpackage.json', '/demo/index.html', '/demo/nope.js', '/client/nope.js']) {
    t.equal((await get(path)).status, 404, `${path}: 404`);
  }
  t.equal((await get('/healthz')).status, 200, "the daemon's own routes are still there");
});

t.test('GET /dev/rooms: the token names the user', async (t) => {
  const dave = await tokenOf('dave');
  const rooms = (await (await get('/dev/rooms', dave)).json()) as { user: string; rooms: { id: number; member: boolean }[]; friends: string[] };
  t.equal(rooms.user, 'dave');
  t.same(rooms.rooms.map((r) => [r.id, r.member]), [[1, false], [2, true], [3, true]], 'dave is not in room 1');
  t.same(rooms.friends, ['bob']);
  t.equal((await get('/dev/rooms')).status, 401, 'no token');
  t.equal((await get('/dev/rooms', 'not.a.token')).status, 401, 'bad token');
  // History is a snapshot subscription now (authorized by the policies), not an HTTP route.
  t.equal((await get('/dev/messages?room_id=1', await tokenOf('alice'))).status, 404, 'GET /dev/messages is gone');
});

t.test('POST /dev/messages: author from the token, members only, bounded; the change reaches members only', async (t) => {
  const alice = await tokenOf('alice');
  const dave = await tokenOf('dave');
  const ws = async (user: string) => {
    const c = await WsClient.connect(`ws://127.0.0.1:${daemon.port}/ws?token=${await tokenOf(user)}`);
    t.teardown(() => c.close());
    await c.subscribe({ id: 'm', table: 'public.messages', filter: 'room_id=eq.1' });
    return c;
  };
  const bobWs = await ws('bob');
  const daveWs = await ws('dave');
  t.match(await daveWs.request({ type: 'join', channel: 'room:1' }), { type: 'error', code: 'forbidden' }, "dave may not join room 1's channel");

  const res = await post({ token: alice, room_id: 1, body: 'hi from the test', author: 'bob' });
  t.equal(res.status, 201);
  const { message } = (await res.json()) as { message: { id: number; author: string } };
  t.equal(message.author, 'alice', 'the author is the token subject, whatever the body says');
  const change = await bobWs.next((m) => m.type === 'change');
  t.match(change, { op: 'insert', new: { id: message.id, author: 'alice', body: 'hi from the test', room_id: 1 } }, 'bob (a member) gets it live');

  const refused = await post({ token: dave, room_id: 1, body: 'let me in' });
  t.equal(refused.status, 403, 'dave may not write to room 1');
  t.equal((await pool.query("select 1 from messages where body = 'let me in'")).rowCount, 0, 'nothing inserted');
  t.equal((await post({ token: dave, room_id: 99, body: 'x' })).status, 403, 'no such room: not a member either');
  t.equal((await post({ token: 'x.y.z', room_id: 1, body: 'x' })).status, 401);
  t.equal((await post({ room_id: 1, body: 'x' })).status, 401, 'no token');
  t.equal((await post('{not json')).status, 400);
  t.equal((await post([1])).status, 400);
  t.equal((await post({ token: alice, room_id: 1, body: '   ' })).status, 400, 'blank body');
  t.equal((await post({ token: alice, room_id: 1, body: 'x'.repeat(2001) })).status, 400, 'too long');
  t.equal((await post({ token: alice, room_id: 'one', body: 'x' })).status, 400, 'bad room');
  t.equal((await post({ token: alice, room_id: 1, body: 'x'.repeat(MAX_REQUEST_BYTES) })).status, 413, 'request too large');
  t.equal((await fetch(`${base}/dev/nothing`)).status, 404);

  // The daemon sends bob's change and dave's (if any) in the same step: after a later one reaches bob, dave had his chance.
  await post({ token: alice, room_id: 1, body: 'second' });
  await bobWs.next((m) => m.type === 'change' && (m.new as { body: string }).body === 'second');
  t.equal(daveWs.messages.filter((m) => m.type === 'change').length, 0, 'dave, subscribed to room 1, received no message of it');
});
