// The client's protocol logic against a stand-in server (client-fake-server.ts): connect and
// welcome, subscribe messages, routing of changes/errors/resyncs by id and ref, dedupe by
// position, progress, reconnects with `since`, close codes, tokens (per connect, refresh before
// exp, 4001), pings and timeouts. The same behaviours against the real daemon:
// test/integration/client.test.ts.

import t from 'tap';
import { createClient, WalcastError, type Change, type DisconnectInfo } from '../../src/client/index.js';
import { FakeServer, type FakeConn, type Msg, until, testClient as client, sleep, FAST } from './client-fake-server.js';

/** An unsigned JWT-shaped token with these claims (the client only reads `exp`). */
function fakeJwt(claims: Record<string, unknown>): string {
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}.c2ln`;
}

const change = (sub: unknown, pos: string, id: number): Msg => ({ type: 'change', sub, pos, commit_time: '2026-01-01T00:00:00.000000Z', op: 'insert', table: 'public.items', new: { id } });

t.test('without a WebSocket constructor in Node 20, createClient says what to pass', async (t) => {
  t.equal((globalThis as { WebSocket?: unknown }).WebSocket, undefined, 'Node 20 has no global WebSocket');
  t.throws(() => createClient({ url: 'ws://127.0.0.1:1/ws' }), /npm i ws/);
});

t.test('connect, welcome, subscribe: the messages on the wire', async (t) => {
  const srv = await FakeServer.start(t);
  const c = client(t, { url: srv.url });
  const states: string[] = [];
  c.on('state', (s) => states.push(s));
  const opened = new Promise<{ session: string; reconnect: boolean }>((r) => c.once('open', r));
  const sub = c.subscribe({ table: 'items', filter: 'a=eq.1', events: ['insert'] });
  const sub2 = c.subscribe({ table: 'public.items', since: '0/50:3' });
  t.equal(sub.state, 'subscribing');
  const open = await opened;
  t.equal(open.session, srv.last.session, 'the session of welcome');
  t.equal(open.reconnect, false);
  t.equal(c.session, srv.last.session);
  const m1 = await srv.last.next((m) => m.type === 'subscribe' && m.table === 'items');
  const m2 = await srv.last.next((m) => m.type === 'subscribe' && m.table === 'public.items');
  t.match(m1, { type: 'subscribe', id: sub.id, table: 'items', filter: 'a=eq.1', events: ['insert'] });
  t.notOk('since' in m1, 'no since: from now');
  t.match(m2, { type: 'subscribe', id: sub2.id, since: '0/50:3' });
  t.not(m1.ref, undefined, 'every request carries a ref');
  t.not(m1.ref, m2.ref, 'distinct refs');
  t.not(sub.id, sub2.id, 'distinct ids');
  await until(() => sub.state === 'live' && sub2.state === 'live', 3_000, 'subscribed');
  t.equal(sub.position, '0/100:2147483647', 'the position of subscribed');
  t.same(states, ['open'], 'connecting, then open');
  t.equal(c.state, 'open');
});

t.test('changes are routed by sub, handed on in order, once; positions from change, subscribed and progress', async (t) => {
  let holdB = true;
  const srv = await FakeServer.start(t, { onMessage: (_c, m) => m.type === 'subscribe' && m.table === 'b' && holdB });
  const c = client(t, { url: srv.url });
  const got: Record<string, number[]> = { a: [], b: [] };
  const a = c.subscribe({ table: 'a' }, { onChange: (ch) => got.a.push(ch.new?.id as number) });
  const b = c.subscribe({ table: 'b', since: '0/100:0' }, { onChange: (ch) => got.b.push(ch.new?.id as number) });
  const conn = await srv.connections(1);
  const subB = await conn.next((m) => m.type === 'subscribe' && m.table === 'b');
  await until(() => a.state === 'live');
  conn.send(change(a.id, '0/101:0', 1));
  conn.send(change(a.id, '0/101:1', 2));
  conn.send(change(a.id, '0/101:1', 2)); // the same again
  conn.send(change(a.id, '0/100:5', 0)); // older
  conn.send(change('nobody', '0/102:0', 99)); // unknown id
  conn.send(change(b.id, '0/100:1', 10)); // b catching up, before its subscribed
  conn.send(change(b.id, '0/100:0', 9)); // at b's since: not handed on
  conn.send({ type: 'progress', pos: '0/200:2147483647' });
  await until(() => got.b.length === 1 && got.a.length === 2);
  await sleep(50);
  t.same(got.a, [1, 2], 'a: in order, once');
  t.equal(a.duplicatesDropped, 2, 'two dropped by position');
  t.same(got.b, [10], 'b: catch-up changes before subscribed are delivered; one at since is not');
  t.equal(a.position, '0/200:2147483647', 'progress moves a live subscription');
  t.equal(b.position, '0/100:1', 'but not one still catching up');
  holdB = false;
  conn.send({ type: 'subscribed', id: b.id, position: '0/150:0', ref: subB.ref });
  await until(() => b.state === 'live');
  t.equal(b.position, '0/150:0', 'subscribed.position');
  conn.send({ type: 'progress', pos: '0/90:0' });
  await sleep(50);
  t.equal(a.position, '0/200:2147483647', 'an older progress never moves a position back');
});

t.test('a drop: reconnect with backoff, every subscription re-sent with since = its position, nothing handed on twice', async (t) => {
  const srv = await FakeServer.start(t);
  const c = client(t, { url: srv.url });
  const ids: number[] = [];
  const subscribed: boolean[] = [];
  const sub = c.subscribe<{ id: number }>({ table: 'items', filter: 'x=eq.1' }, { onChange: (ch) => ids.push(ch.new!.id), onSubscribed: (i) => subscribed.push(i.resumed) });
  const disconnects: DisconnectInfo[] = [];
  c.on('disconnect', (d) => disconnects.push(d));
  const opens: boolean[] = [];
  c.on('open', (o) => opens.push(o.reconnect));
  const first = await srv.connections(1);
  await until(() => sub.state === 'live');
  first.send(change(sub.id, '0/101:0', 1));
  first.send(change(sub.id, '0/102:0', 2));
  await until(() => ids.length === 2);
  const drops: ((x: FakeConn) => void)[] = [(x) => x.terminate(), (x) => x.close(1001, 'server shutting down'), (x) => x.close(4008, 'too slow')];
  for (let i = 0; i < drops.length; i++) {
    drops[i](srv.last);
    const next = await srv.connections(i + 2);
    const again = await next.next((m) => m.type === 'subscribe');
    t.match(again, { id: sub.id, table: 'items', filter: 'x=eq.1', since: sub.position }, `re-sent after drop ${i + 1} with since`);
    // The server replays from since: one already seen (overlap), then a new one.
    next.send(change(sub.id, '0/102:0', 2));
    next.send(change(sub.id, `0/${103 + i}:0`, 3 + i));
    await until(() => ids.length === 3 + i);
  }
  t.same(ids, [1, 2, 3, 4, 5], 'no loss, no duplicate');
  t.same(disconnects.map((d) => d.code), [1006, 1001, 4008], 'the close codes seen');
  t.ok(disconnects.every((d) => d.retryInMs !== null && d.retryInMs <= FAST.capMs), 'each retried within the backoff cap');
  t.same(opens, [false, true, true, true]);
  t.same(subscribed, [false, true, true, true], 'onSubscribed again after each reconnect, as a resume');
});

t.test('reconnects while the server is away, with growing full-jitter delays', async (t) => {
  const srv = await FakeServer.start(t);
  const port = srv.port;
  const c = client(t, { url: srv.url, backoff: { baseMs: 40, capMs: 200 } });
  await until(() => c.state === 'open');
  const delays: number[] = [];
  c.on('disconnect', (d) => delays.push(d.retryInMs ?? -1));
  await srv.stop();
  await until(() => delays.length >= 5, 5_000, 'five failed attempts');
  t.ok(delays.every((d) => d >= 0 && d < 200), `delays within the cap: ${delays}`);
  t.equal(c.state, 'reconnecting');
  const back = await FakeServer.start(t, {}, port);
  await until(() => c.state === 'open', 5_000, 'reconnected to the server on the same port');
  t.equal(back.conns.length, 1);
});

t.test('close() stops for good: no reconnect, closed event, subscriptions ended', async (t) => {
  const srv = await FakeServer.start(t);
  const c = client(t, { url: srv.url });
  const sub = c.subscribe({ table: 'items' });
  await until(() => sub.state === 'live');
  const closed = new Promise((r) => c.once('closed', r));
  await c.close();
  t.same(await closed, { code: 1000, reason: 'client closed', error: null });
  t.equal(c.state, 'closed');
  t.equal(sub.state, 'ended');
  await until(() => srv.conns[0].closed);
  t.equal(srv.conns[0].closed?.code, 1000, 'closed with 1000');
  await sleep(200);
  t.equal(srv.conns.length, 1, 'no reconnect');
  t.throws(() => c.subscribe({ table: 'x' }), WalcastError);
});

t.test('errors: by ref to the request, by id to the subscription, else to the client', async (t) => {
  const srv = await FakeServer.start(t, {
    onMessage: (c, m) => {
      if (m.type === 'subscribe' && m.table === 'nope') {
        c.send({ type: 'error', code: 'unknown_table', message: 'no table nope', ref: m.ref, id: m.id });
        return true;
      }
      return false;
    },
  });
  const c = client(t, { url: srv.url });
  const errs: WalcastError[] = [];
  const clientErrs: WalcastError[] = [];
  c.on('error', (e) => clientErrs.push(e));
  const bad = c.subscribe({ table: 'nope' }, { onError: (e) => errs.push(e) });
  const good = c.subscribe({ table: 'items' }, { onError: (e) => errs.push(e) });
  await until(() => errs.length === 1 && good.state === 'live');
  t.match(errs[0], { code: 'unknown_table', message: 'no table nope', id: bad.id });
  t.ok(errs[0] instanceof WalcastError);
  t.equal(bad.state, 'ended', 'a refused subscribe has ended');
  srv.last.send({ type: 'error', code: 'forbidden', message: 'no longer', id: good.id });
  await until(() => errs.length === 2);
  t.match(errs[1], { code: 'forbidden', id: good.id });
  t.equal(good.state, 'ended', 'forbidden after a refresh ends it');
  srv.last.send({ type: 'error', code: 'bad_request', message: 'what' });
  await until(() => clientErrs.length === 1);
  t.match(clientErrs[0], { code: 'bad_request', message: 'what' });
  // Ended subscriptions are not re-sent on reconnect.
  srv.last.terminate();
  const next = await srv.connections(2);
  await sleep(150);
  t.same(next.of('subscribe'), [], 'nothing re-sent');
  t.same(clientErrs.length, 1, 'routed errors do not reach the client');
  // A subscription without onError: its error reaches the client.
  const orphan = c.subscribe({ table: 'nope' });
  await until(() => clientErrs.length === 2);
  t.match(clientErrs[1], { code: 'unknown_table', id: orphan.id });
});

t.test('resync ends the subscription; resubscribe() starts anew from now under a new id', async (t) => {
  const srv = await FakeServer.start(t, {
    onMessage: (c, m) => {
      if (m.type === 'subscribe' && m.since === '0/1:0') {
        c.send({ type: 'resync', sub: m.id, reason: 'position_outside_window', ref: m.ref });
        return true;
      }
      return false;
    },
  });
  const c = client(t, { url: srv.url });
  const reasons: string[] = [];
  const ids: number[] = [];
  const sub = c.subscribe({ table: 'items', since: '0/1:0' }, { onResync: (r) => reasons.push(r), onChange: (ch) => ids.push(ch.new?.id as number) });
  await until(() => reasons.length === 1);
  t.same(reasons, ['position_outside_window']);
  t.equal(sub.state, 'ended');
  const oldId = sub.id;
  srv.last.send(change(oldId, '0/5:0', 1));
  sub.resubscribe();
  const again = await srv.last.next((m) => m.type === 'subscribe' && m.id !== oldId);
  t.notOk('since' in again, 'from now');
  t.not(sub.id, oldId, 'a new id');
  await until(() => sub.state === 'live');
  srv.last.send(change(oldId, '0/200:0', 2));
  srv.last.send(change(sub.id, '0/200:1', 3));
  await until(() => ids.length === 1);
  t.same(ids, [3], 'only changes of the new id');
  // a resync of a live subscription (slot recreated)
  srv.last.send({ type: 'resync', sub: sub.id, reason: 'slot_recreated' });
  await until(() => reasons.length === 2);
  t.equal(reasons[1], 'slot_recreated');
});

t.test('unsubscribe: confirmed by the server; also when it comes before the subscribe was answered', async (t) => {
  let hold = true;
  const held: Msg[] = [];
  const srv = await FakeServer.start(t, { onMessage: (_c, m) => m.type === 'subscribe' && m.table === 'slow' && hold && !!held.push(m) });
  const c = client(t, { url: srv.url });
  const ids: number[] = [];
  const sub = c.subscribe({ table: 'items' }, { onChange: (ch) => ids.push(ch.new?.id as number) });
  await until(() => sub.state === 'live');
  await sub.unsubscribe();
  t.match(await srv.last.next((m) => m.type === 'unsubscribe'), { id: sub.id });
  t.equal(sub.state, 'ended');
  srv.last.send(change(sub.id, '0/300:0', 1));
  await sleep(50);
  t.same(ids, [], 'nothing after unsubscribe');

  const slow = c.subscribe({ table: 'slow' });
  await until(() => held.length === 1);
  const done = slow.unsubscribe();
  hold = false;
  await srv.last.next((m) => m.type === 'unsubscribe' && m.id === slow.id);
  await done;
  // The server registers the subscription late and answers it: the client unsubscribes again.
  srv.last.send({ type: 'subscribed', id: slow.id, position: '0/1:0', ref: held[0].ref });
  await srv.last.next((m) => m.type === 'unsubscribe' && m.id === slow.id);
  t.pass('a late subscribed for an ended subscription is unsubscribed on the server');
});

t.test('tokens: asked on every connect and sent as ?token=', async (t) => {
  const srv = await FakeServer.start(t);
  let n = 0;
  const c = client(t, { url: `${srv.url}?x=1`, token: async () => `tok${++n}` });
  await until(() => c.state === 'open');
  t.equal(srv.last.token, 'tok1');
  srv.last.terminate();
  await srv.connections(2);
  t.equal(srv.last.token, 'tok2', 'a fresh token for the reconnect');
  t.equal(n, 2);
});

t.test('tokens: refreshed in-band before exp with the auth message', async (t) => {
  const srv = await FakeServer.start(t);
  const issued: string[] = [];
  const c = client(t, {
    url: srv.url,
    token: () => {
      const tok = fakeJwt({ sub: 'u', exp: Math.floor(Date.now() / 1000) + 3, n: issued.length });
      issued.push(tok);
      return tok;
    },
  });
  const auths: (string | null)[] = [];
  c.on('authenticated', (a) => auths.push(a.expiresAt));
  await until(() => c.state === 'open');
  const start = Date.now();
  const auth = await srv.last.next((m) => m.type === 'auth', 4_000);
  const after = Date.now() - start;
  t.ok(after < 3_000, `refreshed before exp (after ${after} ms)`);
  t.equal(auth.token, issued[1], 'with a fresh token from the function');
  await until(() => auths.length === 1);
  const auth2 = await srv.last.next((m) => m.type === 'auth', 4_000);
  t.equal(auth2.token, issued[2], 'and again before the new exp');
  t.equal(srv.conns.length, 1, 'on the same connection');
});

t.test('tokens: 4001 with a function: a fresh token and a reconnect; too many in a row: stop', async (t) => {
  const srv = await FakeServer.start(t, {
    onConnect: (conn) => {
      if (conn.token?.startsWith('bad')) {
        conn.close(4001, 'the token has expired');
        return true;
      }
    },
  });
  let n = 0;
  const c = client(t, { url: srv.url, token: () => (++n === 1 ? 'bad1' : `good${n}`) });
  await until(() => c.state === 'open');
  t.equal(srv.last.token, 'good2', 'asked again after 4001');
  const sub = c.subscribe({ table: 'x' });
  await until(() => sub.state === 'live');
  srv.last.close(4001, 'token expired');
  await srv.connections(3);
  await until(() => sub.state === 'live' && c.state === 'open');
  t.equal(srv.last.token, 'good3', 'and after an expiry on an open connection');

  const always = client(t, { url: srv.url, token: () => 'bad-forever', maxAuthFailures: 2 });
  const closed = await new Promise<{ error: WalcastError | null }>((r) => always.once('closed', r));
  t.match(closed.error, { code: 'unauthorized' }, 'gives up after maxAuthFailures refusals in a row');
  t.equal(always.state, 'closed');
});

t.test('tokens: 4001 with a fixed token or none: stop with unauthorized', async (t) => {
  const srv = await FakeServer.start(t, {
    onConnect: (conn) => {
      conn.close(4001, 'the token signature does not verify');
      return true;
    },
  });
  for (const token of ['fixed', undefined]) {
    const c = client(t, { url: srv.url, token });
    const errors: WalcastError[] = [];
    c.on('error', (e) => errors.push(e));
    const closed = await new Promise<{ code: number; error: WalcastError | null }>((r) => c.once('closed', r));
    t.equal(closed.code, 4001);
    t.match(closed.error, { code: 'unauthorized', message: /does not verify/ }, `${token ?? 'no token'}: unauthorized`);
    t.equal(errors.length, 1, 'also an error event');
  }
  const before = srv.conns.length;
  await sleep(150);
  t.equal(srv.conns.length, before, 'no reconnect');
});

t.test('tokens: a token function that throws: error and closed, no connection', async (t) => {
  const srv = await FakeServer.start(t);
  const c = client(t, { url: srv.url, token: async () => Promise.reject(new Error('idp down')) });
  const errors: WalcastError[] = [];
  c.on('error', (e) => errors.push(e));
  const closed = await new Promise<{ error: WalcastError | null }>((r) => c.once('closed', r));
  t.match(closed.error, { code: 'token_failed', message: /idp down/ });
  t.match(errors, [{ code: 'token_failed' }]);
  t.equal(srv.conns.length, 0);

  // ... and on a reconnect after 4001.
  let n = 0;
  const c2 = client(t, {
    url: srv.url,
    token: () => {
      if (++n > 1) throw new Error('session over');
      return 'one';
    },
  });
  await until(() => c2.state === 'open');
  srv.last.close(4001, 'token expired');
  const closed2 = await new Promise<{ error: WalcastError | null }>((r) => c2.once('closed', r));
  t.match(closed2.error, { code: 'token_failed', message: /session over/ });
});

t.test('pings: an idle connection is pinged; no reply drops it and the client reconnects', async (t) => {
  const quiet = await FakeServer.start(t, { pong: false });
  const c = client(t, { url: quiet.url, pingIntervalMs: 100 });
  const disconnects: DisconnectInfo[] = [];
  c.on('disconnect', (d) => disconnects.push(d));
  await quiet.connections(1);
  await quiet.conns[0].next((m) => m.type === 'ping', 1_000);
  await quiet.connections(2, 2_000);
  t.match(disconnects[0], { code: 1006, reason: /no reply to a ping/ });

  const talkative = await FakeServer.start(t);
  const c2 = client(t, { url: talkative.url, pingIntervalMs: 100 });
  await talkative.connections(1);
  await sleep(600);
  t.ok(talkative.conns[0].of('ping').length >= 2, 'pinged while idle');
  t.equal(talkative.conns.length, 1, 'answered pings keep the connection');
  t.equal(c2.state, 'open');
});

t.test('no welcome within connectTimeoutMs: retried', async (t) => {
  let silent = true;
  const srv = await FakeServer.start(t, { onConnect: () => silent });
  const c = client(t, { url: srv.url, connectTimeoutMs: 150 });
  await srv.connections(2, 2_000);
  silent = false;
  await until(() => c.state === 'open', 3_000);
  t.ok(srv.conns.length >= 3);
});

t.test('subscribe validates since', async (t) => {
  const srv = await FakeServer.start(t);
  const c = client(t, { url: srv.url });
  t.throws(() => c.subscribe({ table: 'x', since: '12' }), TypeError);
  t.throws(() => c.subscribe({ table: '' }), TypeError);
});

t.test('typed rows', async (t) => {
  const srv = await FakeServer.start(t);
  const c = client(t, { url: srv.url });
  const got: Change<{ id: number; title: string }>[] = [];
  const sub = c.subscribe<{ id: number; title: string }>({ table: 'todos' }, { onChange: (ch) => got.push(ch) });
  await until(() => sub.state === 'live');
  srv.last.send({ ...change(sub.id, '0/1000:0', 1), new: { id: 1, title: 'milk' } });
  await until(() => got.length === 1);
  t.equal(got[0].new?.title, 'milk');
});
