// `walcast serve` settings that reach the process (issue 12): --idle-timeout 0 is never (accepted
// by uWebSockets.js, which aborts on 1 to 7), and the log level from the flag or WALCAST_LOG_LEVEL,
// refused with bad_config when pino has no such level.
import t from 'tap';
import { migrate } from '../../src/sql/migrate.js';
import { query } from '../helpers/capture.js';
import { runCli, spawnCli } from '../helpers/cli.js';
import { withPostgres } from '../helpers/pg.js';
import { connectWs, servedPort } from '../helpers/ws.js';

t.test('bad values are refused before anything starts', async (t) => {
  const db = 'postgres://postgres@127.0.0.1:1/postgres';
  const [idle, flag, env] = await Promise.all([
    runCli(['serve', '--db', db, '--no-auth', '--idle-timeout', '5s']),
    runCli(['serve', '--db', db, '--no-auth', '--log-level', 'loud']),
    runCli(['serve', '--db', db, '--no-auth'], { env: { WALCAST_LOG_LEVEL: 'chatty' } }),
  ]);
  t.equal(idle.code, 1);
  t.match(idle.stderr, /bad --idle-timeout "5s": 0 \(never\), or 8s to 16m[\s\S]*code: bad_config/);
  t.equal(flag.code, 1);
  t.match(flag.stderr, /bad --log-level "loud"\n {2}fix: a log level is one of trace, debug, info, warn, error, fatal, silent\n {2}code: bad_config/);
  t.equal(env.code, 1);
  t.match(env.stderr, /bad WALCAST_LOG_LEVEL "chatty"[\s\S]*code: bad_config/, 'the variable named');
});

t.test('--idle-timeout 0: served, no pings, the socket stays; WALCAST_LOG_LEVEL=warn: no info lines', async (t) => {
  const pg = await withPostgres(t);
  await migrate(pg.url);
  await query(pg.url, "create table idle (id bigserial primary key, v text); select walcast.enable('idle')");
  const proc = spawnCli(['serve', '--db', pg.url, '--no-auth', '--port', '0', '--idle-timeout', '0'], { env: { WALCAST_LOG_LEVEL: 'warn' }, timeoutMs: 30_000 });
  t.teardown(() => proc.kill('SIGKILL'));
  await proc.waitFor(() => servedPort(proc.stderr) !== null, 'serving line');
  const c = await connectWs(t, `ws://127.0.0.1:${servedPort(proc.stderr)}/ws`);
  let pings = 0;
  c.ws.on('ping', () => pings++);
  await c.subscribe({ id: 1, table: 'idle' });
  await query(pg.url, "insert into idle (v) values ('x')");
  await c.waitChanges(1, 1);
  // Not the full minimum of a real timeout (8 s): enough to see the process kept running with 0.
  await new Promise((r) => setTimeout(r, 1_500));
  t.ok(c.isOpen, 'still open');
  t.equal(pings, 0, 'no pings');
  t.notOk(proc.exited, 'the daemon runs');
  proc.kill('SIGTERM');
  const res = await proc.wait(15_000);
  t.equal(res.code, 0, res.stderr.slice(-500));
  const levels = res.stderrLines.filter((l) => l.startsWith('{')).map((l) => (JSON.parse(l) as { level: number }).level);
  t.notOk(levels.some((l) => l < 40), `no JSON log line below warn (levels: ${levels.join(',')})`);
  t.match(res.stderr, /walcast: serving ws:/, 'the plain serving line all the same');
});
