// Baseline for bench/delivery.ts: a bare uWebSockets.js server (forked, commands over IPC) that
// holds the load clients' connections and sends them given payloads as fast as it can. Same
// socket options as walcast's server (idle timeout, automatic pings); no per-connection state
// of its own. Each connection gets a welcome frame on open and is subscribed to one topic.
//
//   publish {payloads, mode, perTick}
//     mode "publish": app.publish(topic, payload) for each payload (uWS's pub/sub fans out)
//     mode "send":    for each payload, ws.cork(() => ws.send(payload)) on every connection
//     perTick payloads per event-loop turn (setImmediate between), so sockets drain meanwhile.
//   mem   full GC (run under --expose-gc), then process.memoryUsage()
import uWS from 'uWebSockets.js';
import { emit, fullGc, serveCommands } from './rpc.js';

const TOPIC = 'bench';
const WELCOME = '{"type":"welcome"}';
const sockets = new Set<uWS.WebSocket<unknown>>();
const app = uWS.App();
app.ws('/*', {
  maxPayloadLength: 1024 * 1024,
  // High enough that nothing is dropped: the clients check that every payload arrived.
  maxBackpressure: 256 * 1024 * 1024,
  idleTimeout: 60,
  sendPingsAutomatically: true,
  open: (ws) => {
    sockets.add(ws);
    ws.subscribe(TOPIC);
    ws.send(WELCOME, false);
  },
  close: (ws) => {
    sockets.delete(ws);
  },
});

interface PublishArgs {
  payloads: string[];
  mode: 'publish' | 'send';
  perTick: number;
}

async function publish(a: PublishArgs): Promise<{ ms: number; mode: string }> {
  const t0 = performance.now();
  const perTick = Math.max(1, a.perTick);
  for (let i = 0; i < a.payloads.length; ) {
    for (let k = 0; k < perTick && i < a.payloads.length; k++, i++) {
      const p = a.payloads[i];
      if (a.mode === 'publish') app.publish(TOPIC, p, false, false);
      else for (const ws of sockets) ws.cork(() => ws.send(p, false, false));
    }
    await new Promise((r) => setImmediate(r));
  }
  return { ms: performance.now() - t0, mode: a.mode };
}

app.listen('127.0.0.1', 0, (token) => {
  if (!token) {
    process.stderr.write('raw-server: cannot listen\n');
    process.exit(1);
  }
  emit('listening', uWS.us_socket_local_port(token));
});

serveCommands({
  publish,
  mem: () => ({ gc: fullGc(), clients: sockets.size, ...process.memoryUsage() }),
});
