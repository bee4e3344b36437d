// Issue #11 items 11 and 12, against real `walcast serve` processes.
// 12: a second serve on a taken port (or a metrics port taken) exits with port_in_use instead
//     of sharing it by SO_REUSEPORT; with --reuse-port on both, both serve.
// 11: 200 concurrent GET /metrics all answer, the process metrics rendered at most once a second
//     between them, while a WebSocket client's ping still gets its pong; --metrics-port moves
//     /metrics and /status off the main port (which keeps /ws and /healthz).

import net from 'node:net';
import t from 'tap';
import { migrate } from '../../src/sql/migrate.js';
import { spawnCli, type CliProcess } from '../helpers/cli.js';
import { withPostgres } from '../helpers/pg.js';
import { connectWs, freePort, servedPort } from '../helpers/ws.js';

const db = await withPostgres(t);
await migrate(db.url);

/** A serve process, waited for until it serves (or exits). */
async function serve(args: string[]): Promise<CliProcess> {
  const p = spawnCli(['serve', '--db', db.url, '--no-auth', ...args], { timeoutMs: 60_000 });
  t.teardown(() => p.kill('SIGKILL'));
  await p.waitFor(() => servedPort(p.stderr) !== null, 'the serving line').catch(() => {});
  return p;
}
const metricsPortOf = (stderr: string) => Number(/metrics, status at http:\/\/[^\s:]+:(\d+)\/metrics/.exec(stderr)?.[1] ?? NaN);

t.test('a taken port: the second serve exits with port_in_use', async (t) => {
  const first = await serve(['--port', '0', '--slot', 'first']);
  const port = servedPort(first.stderr);
  t.ok(port, `the first serves on ${port}`);
  const run = (args: string[]) => spawnCli(['serve', '--db', db.url, '--no-auth', ...args], { timeoutMs: 30_000 }).wait(30_000);
  const [res, res3, res4] = await Promise.all([
    run(['--port', String(port), '--slot', 'second']),
    // The metrics listener is exclusive too.
    run(['--port', '0', '--metrics-port', String(port), '--slot', 'third']),
    // Sharing needs both: a --reuse-port serve cannot slip onto the exclusive port either.
    run(['--port', String(port), '--reuse-port', '--slot', 'fourth']),
  ]);
  t.equal(res.code, 1, 'exit code 1');
  t.equal(servedPort(res.stderr), null, 'it never said it serves');
  t.match(res.stderr, new RegExp(`walcast: port 127\\.0\\.0\\.1:${port} is already in use`), 'the line names the port');
  t.match(res.stderr, /fix: .*--reuse-port/, 'the fix names --reuse-port for deliberate sharing');
  t.match(res.stderr, /code: port_in_use \(docs\/errors\.md\)/, 'code port_in_use');
  t.equal((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200, 'the first one still answers');

  t.equal(res3.code, 1, 'a taken --metrics-port: exit code 1');
  t.match(res3.stderr, /code: port_in_use/, 'port_in_use');
  t.match(res3.stderr, /another --metrics-port/, 'the fix names --metrics-port');

  t.equal(res4.code, 1, '--reuse-port on the second only: exit code 1');
  t.match(res4.stderr, /code: port_in_use/, 'port_in_use');
});

t.test('walcast dev on a taken port: port_in_use', async (t) => {
  const holder = net.createServer();
  await new Promise<void>((r) => holder.listen(0, '127.0.0.1', r));
  t.teardown(() => holder.close());
  const port = (holder.address() as net.AddressInfo).port;
  const res = await spawnCli(['dev', '--port', String(port)], { timeoutMs: 30_000 }).wait(30_000);
  t.equal(res.code, 1, 'exit code 1');
  t.match(res.stderr, new RegExp(`walcast: port 127\\.0\\.0\\.1:${port} is already in use`), 'the line names the port');
  t.match(res.stderr, /code: port_in_use/, 'port_in_use');
  t.notMatch(res.stderr, /demo chat at/, 'it never served');
});

t.test('--reuse-port on both: both serve on the one port', async (t) => {
  // A fixed port: a port picked by the kernel (0) is not shared by uWS.
  const port = await freePort();
  const a = await serve(['--port', String(port), '--slot', 'share_a', '--reuse-port']);
  t.equal(servedPort(a.stderr), port, `the first serves on ${port}`);
  const b = await serve(['--port', String(port), '--slot', 'share_b', '--reuse-port']);
  t.equal(servedPort(b.stderr), port, `the second serves on ${port} too`);
  t.notOk(b.exited, 'and keeps running');
  t.equal((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200, '/healthz answers');
});

t.test('200 concurrent /metrics on --metrics-port; a ping still answered; /metrics off the main port', async (t) => {
  const p = await serve(['--port', '0', '--slot', 'metrics', '--metrics-port', '0']);
  const port = servedPort(p.stderr) as number;
  const mport = metricsPortOf(p.stderr);
  t.ok(Number.isInteger(mport) && mport > 0 && mport !== port, `metrics on ${mport}, clients on ${port}`);
  const main = `http://127.0.0.1:${port}`;
  const ops = `http://127.0.0.1:${mport}`;

  const c = await connectWs(t, `ws://127.0.0.1:${port}/ws`);
  const started = Date.now();
  const [bodies, pong] = await Promise.all([
    Promise.all(Array.from({ length: 200 }, async () => {
      const r = await fetch(`${ops}/metrics`);
      return { status: r.status, type: r.headers.get('content-type'), text: await r.text() };
    })),
    c.request({ type: 'ping' }, 30_000),
  ]);
  const elapsed = Date.now() - started;
  t.equal(pong.type, 'pong', 'the ping sent with the 200 requests got its pong');
  t.same(new Set(bodies.map((b) => b.status)), new Set([200]), 'all 200 answered 200');
  t.match(bodies[0].type, /^text\/plain/, 'Prometheus text');
  t.ok(bodies.every((b) => /^walcast_clients 1$/m.test(b.text) && /^walcast_process_process_cpu_user_seconds_total /m.test(b.text)), 'each has walcast_* and walcast_process_* metrics');
  // The process metrics (milliseconds to collect) are shared: at most one rendering per second.
  const processParts = new Set(bodies.map((b) => b.text.split('\n').filter((l) => l.startsWith('walcast_process_')).join('\n')));
  const allowed = Math.floor(elapsed / 1000) + 1;
  t.ok(processParts.size <= allowed, `${processParts.size} renderings of the process metrics for 200 requests in ${elapsed} ms (at most ${allowed})`);

  t.equal((await fetch(`${main}/metrics`)).status, 404, 'the main port no longer serves /metrics');
  t.equal((await fetch(`${main}/status`)).status, 404, 'nor /status');
  t.equal((await fetch(`${main}/healthz`)).status, 200, 'it still serves /healthz');
  t.equal((await fetch(`${ops}/healthz`)).status, 200, '/healthz on the metrics port');
  const status = (await (await fetch(`${ops}/status`)).json()) as { clients: number; slot: string };
  t.equal(status.slot, 'metrics', '/status on the metrics port');
  t.equal((await fetch(`${ops}/ws`)).status, 404, 'no WebSocket on the metrics port');
});
