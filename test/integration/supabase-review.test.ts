// An attacker's review of the Supabase endpoint, end to end (the races themselves are made at
// will in test/unit/supabase-review.test.ts): an anonymous client that tracks presence, signs
// in as a user and goes must leave nothing behind, to others or in memory.

import t from 'tap';
import { startTestDaemon } from '../helpers/daemon.js';
import { hsToken } from '../helpers/tokens.js';
import { RawPhoenix } from '../helpers/supabase.js';

const { daemon } = await startTestDaemon(
  t,
  `insert into walcast.casbin_rule (ptype, v0, v1, v2, v3, v4) values
     ('p', '*', 'channel', 'room:*', 'join', 'true'),
     ('p', '*', 'channel', 'room:*', 'presence', 'true');`,
);


const joinPayload = { config: { presence: { enabled: true }, postgres_changes: [] } };

t.test('an anonymous presence does not outlive its client once it signed in', async (t) => {
  const anon = await hsToken({ role: 'anon' });
  for (const room of ['room:a', 'room:b']) {
    const c = await RawPhoenix.open(t, daemon.port, anon);
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
  const bob = await RawPhoenix.open(t, daemon.port, await hsToken({ sub: 'bob' }));
  t.match(await bob.reply(bob.push('realtime:room:a', 'phx_join', joinPayload)), { status: 'ok' });
  const state = await bob.next((f) => f[2] === 'realtime:room:a' && f[3] === 'presence_state');
  t.same(state[4], {}, 'nobody is shown in the room');
});
