// The naive approach, for bench/delivery.ts (forked, commands over IPC): a `ws` server that
// LISTENs on a channel fed by a row trigger calling pg_notify('bench', row_to_json(NEW)::text),
// and loops client.send(payload) over all its clients for each notification. The payload is the
// notification as it is (no re-rendering: the cheapest the naive way can be).
//
//   argv[2]: the database URL
import pg from 'pg';
import { WebSocket, WebSocketServer } from 'ws';
import { emit, fullGc, serveCommands } from './rpc.js';

const url = process.argv[2];
const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
wss.on('connection', (ws) => {
  ws.on('error', () => {});
  ws.send('{"type":"welcome"}');
});

let notifications = 0;
const db = new pg.Client({ connectionString: url });
db.on('notification', (n) => {
  notifications++;
  const payload = n.payload ?? '';
  for (const client of wss.clients) if (client.readyState === WebSocket.OPEN) client.send(payload);
});
db.on('error', (err) => {
  process.stderr.write(`naive-server: ${err.message}\n`);
  process.exit(1);
});

await db.connect();
await db.query('listen bench');
await new Promise<void>((resolve) => (wss.address() ? resolve() : wss.once('listening', resolve)));
emit('listening', (wss.address() as { port: number }).port);

serveCommands({
  mem: () => ({ gc: fullGc(), clients: wss.clients.size, notifications, ...process.memoryUsage() }),
});
