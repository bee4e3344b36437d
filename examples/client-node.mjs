// A Node 20 client of walcast (`walcast/client`): follows the messages of one room, keeps its
// position in a file so that a restart resumes exactly where it stopped, shows who is online in
// the room (presence) and who is typing (broadcast). Against `npx walcast dev` it runs as it is,
// taking its tokens from the demo's token route:
//
//   npm i walcast ws
//   npx walcast dev                              # in another terminal
//   node examples/client-node.mjs alice 1        # user alice, room 1 (#general)
//
// Insert a row (the command `walcast dev` prints), stop this with Ctrl-C, insert more, start it
// again: it prints exactly what it missed. Against your own deployment, set WALCAST_URL and
// WALCAST_TOKEN_URL (an endpoint of your backend that returns {"token": "<JWT>"} for the user).

import { readFileSync, writeFileSync } from 'node:fs';
import WebSocket from 'ws'; // Node 20 has no global WebSocket
import { createClient } from 'walcast/client';

const user = process.argv[2] ?? 'alice';
const room = Number(process.argv[3] ?? 1);
const positionFile = `.walcast-position-${user}-${room}`;
const tokenUrl = process.env.WALCAST_TOKEN_URL ?? `http://127.0.0.1:4000/dev/token?user=${encodeURIComponent(user)}`;

const client = createClient({
  url: process.env.WALCAST_URL ?? 'ws://127.0.0.1:4000/ws',
  WebSocket,
  // Called on every connect and again before the token expires (the refresh is sent in-band).
  token: async () => {
    const res = await fetch(tokenUrl);
    if (!res.ok) throw new Error(`token: HTTP ${res.status} ${await res.text()}`);
    return (await res.json()).token;
  },
});

client.on('open', ({ session, reconnect }) => console.error(`${reconnect ? 'reconnected' : 'connected'} as ${user} (session ${session})`));
client.on('disconnect', ({ code, reason, retryInMs }) => console.error(`disconnected ${code} ${reason}; ${retryInMs === null ? 'giving up' : `retry in ${retryInMs} ms`}`));
client.on('error', (err) => console.error(`error ${err.code}: ${err.message}`));
client.on('closed', ({ error }) => {
  console.error(`stopped${error ? `: ${error.message}` : ''}`);
  process.exitCode = error ? 1 : 0;
});

let since = null;
try {
  since = readFileSync(positionFile, 'utf8').trim() || null;
} catch {
  // first run: from now
}

const messages = client.subscribe(
  { table: 'public.messages', filter: `room_id=eq.${room}`, since },
  {
    onSubscribed: ({ position, resumed }) => console.error(`live at ${position}${resumed ? ' (resumed)' : ''}`),
    onChange: (change) => {
      const row = change.new ?? change.old;
      console.log(`${change.commit_time} ${change.op} #${row?.id} ${row?.author}: ${row?.body ?? ''}`);
    },
    onResync: (reason) => {
      // The saved position is older than the server's window: an app would reload the room by
      // query here, then follow from now.
      console.error(`resync (${reason}): following from now`);
      messages.resubscribe();
    },
    onError: (err) => console.error(`subscription refused: ${err.code} ${err.message}`),
  },
);

// Keep the position (it moves with changes and with the server's progress) for the next run.
const save = () => messages.position && writeFileSync(positionFile, messages.position);
const saver = setInterval(save, 1_000);

// Presence and typing indicators in the room's channel (members only).
const channel = client.channel(`room:${room}`);
channel.onJoin((who, metas) => console.error(`+ ${who} online (${metas.length} connection${metas.length === 1 ? '' : 's'})`));
channel.onLeave((who) => console.error(`- ${who} offline`));
channel.on('typing', (_payload, { from }) => console.error(`${from} is typing...`));
channel.onError((err) => console.error(`room:${room}: ${err.code} ${err.message}`));
channel.track({ name: user, client: 'node example' }); // sent once joined, again after every reconnect
channel.join().catch(() => {}); // a refusal is reported by onError

async function stop() {
  clearInterval(saver);
  save();
  await client.close();
}
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
