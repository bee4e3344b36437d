// An attacker's review of the Supabase endpoint, end to end (the races themselves are made at
// will in test/unit/supabase-review.test.ts): an anonymous client that tracks presence, signs
// in as a user and goes must leave nothing behind, to others or in memory.

import t from 'tap';
import WebSocket from 'ws';
import { startTestDaemon } from '../helpers/daemon.js';
import { hsToken } from '../helpers/tokens.js';
import { Waiters } from '../helpers/waiters.js';

const { daemon } = await startTestDaemon(
  t,
  `insert into walcast.casbin_rule (ptype, v0, v1, v2, v3, v4) values
     ('p', '*', 'channel', 'room:*', 'join', 'true'),
     ('p', '*', 'channel', 'room:*', 'presence', 'true');`,
);

type Frame = [string | null, string | null, string, string, Record<string, unknown>];

/** A raw vsn 2.0.0 Phoenix client. */
class Raw {
  readonly frames: Frame[] = [];
  private readonly waiters = new Waiters();
  private ref = 0;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data, binary) => {
      if (!binary) this.frames.push(JSON.parse(data.toString()) as Frame);
      this.waiters.notify();
    });
  }

  static async open(apikey: string): Promise<Raw> {
    const ws = new WebSocket(`ws://127.0.0.1:${daemon.port}/realtime/v1/websocket?apikey=${apikey}&vsn=2.0.0`);
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    t.teardown(() => ws.close());
    return new Raw(ws);
  }

  push(topic: string, event: string, payload: unknown, joinRef: string | null = null): string {
    const ref = String(++this.ref);
    this.ws.send(JSON.stringify([joinRef, ref, topic, event, payload]));
    return ref;
  }

  reply(ref: string): Promise<{ status: string; response: Record<string, unknown> }> {
    return this.next((f) => f[3] === 'phx_reply' && f[1] === ref).then((f) => f[4] as never);
  }

  next(pred: (f: Frame) => boolean): Promise<Frame> {
    return this.waiters.wait<Frame>(
      (s) => {
        const f = this.frames.find(pred);
        if (!f) return false;
        s.resolve(f);
        return true;
      },
      10_000,
      () => new Error(`no such frame; have ${JSON.stringify(this.frames.slice(-5))}`),
    );
  }
}

const joinPayload = { config: { presence: { enabled: true }, postgres_changes: [] } };

t.test('an anonymous presence does not outlive its client once it signed in', async (t) => {
  const anon = await hsToken({ role: 'anon' });
  for (const room of ['room:a', 'room:b']) {
    const c = await Raw.open(anon);
    const jr = c.push(`realtime:${room}`, 'phx_join', joinPayload);
    t.match(await c.reply(jr), { status: 'ok' });
    t.match(await c.reply(c.push(`realtime:${room}`, 'presence', { type: 'presence', event: 'track', payload: { here: true } }, jr)), { status: 'ok' });
    c.push(`realtime:${room}`, 'access_token', { access_token: await hsToken({ sub: 'ann' }) }, jr); // signs in
    await c.reply(c.push('phoenix', 'heartbeat', {})); // the token was read
    if (room === 'room:a') await c.reply(c.push(`realtime:${room}`, 'phx_leave', {}, jr));
    c.ws.close();
    await new Promise((resolve) => c.ws.once('close', resolve));
  }
  const channels = daemon.hub.channels;
  for (let i = 0; i < 100 && channels?.count !== 0; i++) await new Promise((r) => setTimeout(r, 20));
  t.equal(channels?.count, 0, 'no channel kept by a presence nobody can untrack');
  const bob = await Raw.open(await hsToken({ sub: 'bob' }));
  t.match(await bob.reply(bob.push('realtime:room:a', 'phx_join', joinPayload)), { status: 'ok' });
  const state = await bob.next((f) => f[2] === 'realtime:room:a' && f[3] === 'presence_state');
  t.same(state[4], {}, 'nobody is shown in the room');
});
