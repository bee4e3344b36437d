// Supabase's own client, @supabase/realtime-js, unmodified, against walcast's Supabase endpoint
// (docs/SUPABASE.md): the messages of one room (postgres_changes under walcast's row policies),
// who is online (presence) and who is typing (broadcast). Against `npx walcast dev` it runs as
// it is, taking its token from the demo's token route:
//
//   npm i @supabase/realtime-js ws
//   npx walcast dev                                # in another terminal
//   node examples/supabase-node.mjs alice 1        # user alice, room 1 (#general)
//
// Unlike examples/client-node.mjs (walcast's own client), it cannot resume: what is written
// while it is stopped is not replayed (docs/SUPABASE.md §7). Against your own deployment, set
// WALCAST_URL and SUPABASE_ANON_KEY (a JWT walcast verifies), and WALCAST_TOKEN_URL.

import WebSocket from 'ws'; // Node 20 has no global WebSocket
import { RealtimeClient } from '@supabase/realtime-js';

const user = process.argv[2] ?? 'alice';
const room = Number(process.argv[3] ?? 1);
const tokenUrl = process.env.WALCAST_TOKEN_URL ?? `http://127.0.0.1:4000/dev/token?user=${encodeURIComponent(user)}`;
const token = async () => {
  const res = await fetch(tokenUrl);
  if (!res.ok) throw new Error(`token: HTTP ${res.status} ${await res.text()}`);
  return (await res.json()).token;
};

// The apikey may be an anon key (a JWT with a `role` and no `sub`); the demo has none, so the
// user's own token serves as both.
const realtime = new RealtimeClient(process.env.WALCAST_URL ?? 'ws://127.0.0.1:4000/realtime/v1', {
  params: { apikey: process.env.SUPABASE_ANON_KEY ?? (await token()) },
  transport: WebSocket,
  accessToken: token, // asked again on every heartbeat: the session follows the user's token
});

const channel = realtime.channel(`room:${room}`, { config: { presence: { key: user } } });
channel
  .on('postgres_changes', { event: '*', schema: 'public', table: 'messages', filter: `room_id=eq.${room}` }, (p) => {
    const row = p.eventType === 'DELETE' ? p.old : p.new;
    console.log(`${p.commit_timestamp} ${p.eventType} #${row.id} ${row.author}: ${row.body ?? ''}`);
  })
  .on('presence', { event: 'join' }, ({ key }) => console.error(`+ ${key} online`))
  .on('presence', { event: 'leave' }, ({ key }) => console.error(`- ${key} offline`))
  .on('broadcast', { event: 'typing' }, ({ payload }) => console.error(`${payload?.user ?? 'someone'} is typing...`))
  .subscribe(async (status, err) => {
    console.error(`room:${room}: ${status}${err ? ` (${err.message})` : ''}`);
    // SUBSCRIBED means live: a row written from here on arrives.
    if (status === 'SUBSCRIBED') await channel.track({ name: user, client: 'supabase example' });
  });

process.on('SIGINT', async () => {
  await realtime.removeAllChannels();
  process.exit(0);
});
