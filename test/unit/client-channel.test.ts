// Channels in the client against the stand-in server (client-fake-server.ts), which implements
// broadcast and presence as issue 5 defines them: join/leave, broadcast to the others (self on
// request), presence keyed by user with one meta per connection, the merged view and key-level
// join/leave events, and everything restored after a reconnect (rejoin, re-track, the fresh
// presence_state replacing the view).

import t, { type Test } from 'tap';
import WebSocket from 'ws';
import { createClient, type Channel, type PresenceMeta, type PresenceState, type WalcastClient, type WalcastError } from '../../src/client/index.js';
import { FakeServer, until, sleep } from './client-fake-server.js';

function client(t: Test, srv: FakeServer, user: string): WalcastClient {
  const c = createClient({ url: srv.url, token: user, WebSocket, backoff: { baseMs: 20, capMs: 100 }, pingIntervalMs: 0 });
  t.teardown(() => c.close());
  return c;
}

/** key → sorted states, for comparisons. */
const states = (view: PresenceState) => Object.fromEntries(Object.keys(view).sort().map((k) => [k, view[k].map((m) => m.state)]));

interface Log {
  joins: string[];
  leaves: string[];
  views: PresenceState[];
}
function watch(ch: Channel): Log {
  const log: Log = { joins: [], leaves: [], views: [] };
  ch.onJoin((key) => log.joins.push(key));
  ch.onLeave((key) => log.leaves.push(key));
  ch.onPresence((view) => log.views.push(view));
  return log;
}

t.test('join, broadcast to the others, self on request, wildcard listeners', async (t) => {
  const srv = await FakeServer.start(t);
  const ann = client(t, srv, 'ann');
  const bob = client(t, srv, 'bob');
  const a = ann.channel('room:1');
  const b = bob.channel('room:1');
  t.equal(ann.channel('room:1'), a, 'one object per name');
  t.equal(a.send('typing', {}), false, 'not sent before the connection is open');
  await Promise.all([a.join(), b.join()]);
  t.ok(a.joined && b.joined);
  const atB: unknown[] = [];
  const allAtB: string[] = [];
  const atA: unknown[] = [];
  b.on('typing', (payload) => atB.push(payload));
  b.on('*', (_p, msg) => allAtB.push(`${msg.from}:${msg.event}`));
  a.on('typing', (payload) => atA.push(payload));
  t.ok(a.send('typing', { user: 'ann' }), 'sent');
  a.send('moved', [1, 2]);
  a.send('typing', { again: true }, { self: true });
  await until(() => atB.length === 2 && atA.length === 1);
  await sleep(50);
  t.same(atB, [{ user: 'ann' }, { again: true }], 'bob got both typings');
  t.same(allAtB, ['ann:typing', 'ann:moved', 'ann:typing'], '"*" gets every event, with its sender');
  t.same(atA, [{ again: true }], 'ann only got the one sent with self');
  const wire = srv.conns.find((c) => c.user === 'ann')!.of('broadcast');
  t.match(wire, [{ channel: 'room:1', event: 'typing', payload: { user: 'ann' } }, { event: 'moved' }, { event: 'typing', self: true }]);
  t.notOk('self' in wire[0], 'self left out unless asked');
  t.ok(wire.every((m) => m.ref !== undefined), 'with refs');
});

t.test('presence: the merged view, key joins on the first meta and leaves with the last', async (t) => {
  const srv = await FakeServer.start(t);
  const ann1 = client(t, srv, 'ann');
  const ann2 = client(t, srv, 'ann'); // a second tab of the same user
  const bob = client(t, srv, 'bob');
  const b = bob.channel('lobby');
  const log = watch(b);
  await b.join();
  b.track({ status: 'here' });
  await until(() => log.joins.includes('bob'));
  const a1 = ann1.channel('lobby');
  await a1.join();
  a1.track({ status: 'online' });
  await until(() => log.joins.includes('ann'));
  t.same(states(b.presenceState()), { ann: [{ status: 'online' }], bob: [{ status: 'here' }] }, 'both in bob\'s view');
  t.same(states(a1.presenceState()), { ann: [{ status: 'online' }], bob: [{ status: 'here' }] }, 'ann got the state on join, then her own join');

  const a2 = ann2.channel('lobby');
  a2.track({ status: 'tab2' }); // before joining: sent once joined
  await a2.join();
  await until(() => b.presenceState().ann?.length === 2);
  t.same(log.joins, ['bob', 'ann'], 'a second tab is no new join of ann');

  a1.track({ status: 'away' });
  await until(() => b.presenceState().ann?.some((m) => m.state?.status === 'away'));
  t.same(b.presenceState().ann.map((m) => m.state?.status).sort(), ['away', 'tab2'], 'an update replaces that tab\'s meta');
  t.same(log.leaves, [], 'an update is no leave');
  const last = log.views.length;

  a2.untrack();
  await until(() => log.views.length > last);
  t.same(log.leaves, [], 'ann still has a tab');
  await ann1.close();
  await until(() => log.leaves.includes('ann'));
  t.same(log.leaves, ['ann'], 'ann left with her last meta');
  t.same(states(b.presenceState()), { bob: [{ status: 'here' }] });
  const sessions = b.presenceState().bob.map((m: PresenceMeta) => m.session);
  t.same(sessions, [bob.session], 'metas carry the connection\'s session');
});

t.test('reconnect: rejoins, re-tracks, and the fresh presence_state replaces the view', async (t) => {
  const srv = await FakeServer.start(t);
  const ann = client(t, srv, 'ann');
  const bob = client(t, srv, 'bob');
  const a = ann.channel('room:7');
  const b = bob.channel('room:7');
  const aLog = watch(a);
  const bLog = watch(b);
  await Promise.all([a.join(), b.join()]);
  a.track({ typing: false });
  b.track({ typing: true });
  await until(() => Object.keys(a.presenceState()).length === 2 && Object.keys(b.presenceState()).length === 2);
  const annConn = srv.conns.find((c) => c.user === 'ann' && !c.closed)!;
  const oldSession = ann.session;
  const joinedAgain = new Promise<void>((r) => a.once('joined', () => r()));
  annConn.terminate();
  await joinedAgain;
  const newConn = srv.conns.find((c) => c.user === 'ann' && !c.closed)!;
  t.not(newConn, annConn);
  t.match(await newConn.next((m) => m.type === 'presence'), { channel: 'room:7', state: { typing: false } }, 're-tracked the last state');
  await until(() => b.presenceState().ann?.[0]?.session === ann.session && a.presenceState().ann?.[0]?.session === ann.session, 3_000, 'views with the new session');
  t.not(ann.session, oldSession);
  t.same(states(a.presenceState()), { ann: [{ typing: false }], bob: [{ typing: true }] }, 'ann\'s view after the reconnect');
  t.same(bLog.leaves, ['ann'], 'bob saw ann drop (the server dropped her connection) ...');
  t.same(bLog.joins.filter((k) => k === 'ann'), ['ann', 'ann'], '... and come back');
  t.same(aLog.leaves, ['ann'], 'ann\'s own view: the fresh state (taken before her re-track) has no ann: her old connection left ...');
  t.same(aLog.joins.filter((k) => k === 'ann'), ['ann', 'ann'], '... and her re-track joined again; bob never left');
  const replaced = aLog.views.at(-1)!;
  t.same(states(replaced), { ann: [{ typing: false }], bob: [{ typing: true }] });
});

t.test('leave: untracks, clears the view, no rejoin after a reconnect', async (t) => {
  const srv = await FakeServer.start(t);
  const ann = client(t, srv, 'ann');
  const bob = client(t, srv, 'bob');
  const a = ann.channel('r');
  const b = bob.channel('r');
  const bLog = watch(b);
  const aLog = watch(a);
  await Promise.all([a.join(), b.join()]);
  a.track({ x: 1 });
  b.track({ y: 1 });
  await until(() => bLog.joins.includes('ann') && aLog.joins.includes('bob'));
  await a.leave();
  t.notOk(a.joined);
  t.same(a.presenceState(), {}, 'view cleared');
  t.same(aLog.leaves.sort(), ['ann', 'bob'], 'reported as leaves');
  await until(() => bLog.leaves.includes('ann'));
  const got: unknown[] = [];
  a.on('ping', (p) => got.push(p));
  b.send('ping', 1);
  srv.conns.find((c) => c.user === 'ann' && !c.closed)!.terminate();
  await until(() => ann.state === 'open' && srv.conns.filter((c) => c.user === 'ann').length === 2);
  await sleep(100);
  t.same(srv.conns.filter((c) => c.user === 'ann').at(-1)!.of('join'), [], 'not rejoined');
  t.same(got, [], 'nothing after leaving');
});

t.test('errors: a refused join rejects join(); a refused broadcast reaches the channel by ref', async (t) => {
  const srv = await FakeServer.start(t, {
    onMessage: (c, m) => {
      if (m.type === 'join' && m.channel === 'secret') {
        c.send({ type: 'error', code: 'forbidden', message: 'no policy allows joining secret', ref: m.ref });
        return true;
      }
    },
  });
  const ann = client(t, srv, 'ann');
  const secret = ann.channel('secret');
  const errs: WalcastError[] = [];
  secret.onError((e) => errs.push(e));
  await t.rejects(secret.join(), { code: 'forbidden', message: /joining secret/ });
  t.equal(errs.length, 1);
  srv.last.terminate();
  await until(() => srv.conns.length === 2 && ann.state === 'open');
  await sleep(100);
  t.same(srv.last.of('join'), [], 'a refused join is not retried on reconnect');

  const open = ann.channel('open');
  const openErrs: WalcastError[] = [];
  open.onError((e) => openErrs.push(e));
  t.equal(open.send('hi', 1), false, 'not sent before joining');
  open.track({ a: 1 }); // kept for the join, not sent yet
  await sleep(50);
  t.same(srv.last.of('broadcast'), [], 'nothing on the wire');
  t.same(srv.last.of('presence'), []);
  await open.join();
  await srv.last.next((m) => m.type === 'presence', 1_000, 'the state tracked before joining');
  t.ok(open.send('big', 'x'), 'sent once joined');
  await until(() => srv.last.of('broadcast').length === 1);
  srv.last.send({ type: 'error', code: 'too_large', message: 'a broadcast payload is at most 32768 bytes of JSON', ref: srv.last.of('broadcast')[0].ref });
  await until(() => openErrs.length === 1);
  t.match(openErrs[0], { code: 'too_large' }, 'a refused broadcast reaches its channel by ref');
  t.ok(open.joined, 'and the channel stays joined');
});

t.test('removed by the server (right to join taken away): error, view cleared, no rejoin', async (t) => {
  const srv = await FakeServer.start(t);
  const ann = client(t, srv, 'ann');
  const bob = client(t, srv, 'bob');
  const a = ann.channel('room:9');
  const b = bob.channel('room:9');
  const aLog = watch(a);
  const errs: WalcastError[] = [];
  a.onError((e) => errs.push(e));
  const clientErrs: WalcastError[] = [];
  ann.on('error', (e) => clientErrs.push(e));
  await Promise.all([a.join(), b.join()]);
  a.track({ x: 1 });
  b.track({ y: 1 });
  await until(() => aLog.joins.length === 2);
  srv.evict(srv.conns.find((c) => c.user === 'ann' && !c.closed)!, 'room:9');
  await until(() => errs.length === 1);
  t.match(errs[0], { code: 'forbidden', message: /removed this connection from channel room:9/ });
  t.match(clientErrs, [{ code: 'forbidden', message: /may no longer join/ }], 'the server\'s own error (it names no channel) reaches the client');
  t.notOk(a.joined);
  t.same(a.presenceState(), {});
  t.same(aLog.leaves.sort(), ['ann', 'bob']);
  t.equal(a.send('x', 1), false);
  srv.conns.find((c) => c.user === 'ann' && !c.closed)!.terminate();
  await until(() => ann.state === 'open' && srv.conns.filter((c) => c.user === 'ann').length === 2);
  await sleep(100);
  t.same(srv.conns.filter((c) => c.user === 'ann').at(-1)!.of('join'), [], 'not rejoined');
});

t.test('join() waits for a connection; close() rejects a join still waiting', async (t) => {
  const srv = await FakeServer.start(t, { onConnect: () => true }); // never welcomes
  const ann = client(t, srv, 'ann');
  const p = ann.channel('x').join();
  await srv.connections(1);
  void ann.close();
  await t.rejects(p, { code: 'client_closed' });
});

t.test('the channel event names stay channel events; onBroadcast reaches any name', async (t) => {
  const srv = await FakeServer.start(t);
  const ann = client(t, srv, 'ann');
  const a = ann.channel('c');
  await a.join();
  const got: unknown[] = [];
  a.onBroadcast('join', (p) => got.push(p));
  a.send('join', 'a broadcast named join', { self: true });
  await until(() => got.length === 1);
  t.same(got, ['a broadcast named join']);
});
