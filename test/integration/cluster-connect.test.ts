// Cluster increment 1 (issue 13): `serve --nats` connects as `walcast <node-id>`, makes the
// stream WALCAST_<ns> and the KV buckets as docs/dev/cluster-plan.md §2 says, a second node
// reuses them (and brings changed limits in line), a stream of another database or made
// otherwise is refused with stream_mismatch, an unreachable NATS with nats_unreachable, and
// GET /status carries the cluster block. One Postgres and one 3-server NATS cluster for all.
import { jetstreamManager, type JetStreamManager, StorageType } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import t from 'tap';
import { startClusterNode } from '../../src/cluster/node.js';
import { resolveServeConfig, type ServeFlags } from '../../src/config.js';
import { startDaemon } from '../../src/daemon.js';
import { silentLogger } from '../../src/log.js';
import { migrate } from '../../src/sql/migrate.js';
import { freePort } from '../../src/util/free-port.js';
import { query, waitUntil } from '../helpers/capture.js';
import { runCli } from '../helpers/cli.js';
import { withNats } from '../helpers/nats.js';
import { withPostgres } from '../helpers/pg.js';
import { SECRET } from '../helpers/tokens.js';
import pg from 'pg';

const NS_PER_MS = 1_000_000;

t.test('serve --nats', async (t) => {
  const [db, nats] = await Promise.all([withPostgres(t), withNats(t, { size: 3 })]);
  await migrate(db.url);
  const [{ id, name: dbname }] = await query<{ id: string; name: string }>(db.url, 'select system_identifier::text as id, current_database() as name from pg_control_system()');
  const nc = await connect({ servers: nats.urls, name: 'walcast test-observer' });
  t.teardown(() => nc.close());
  const jsm: JetStreamManager = await jetstreamManager(nc);
  // The throwaway servers' stores hold 1GB each and nats-server reserves a stream's max_bytes:
  // small streams, so that several fit.
  const config = (flags: ServeFlags) => resolveServeConfig({ db: db.url, port: '0', jwtSecret: SECRET, nats: nats.urls, streamMaxBytes: '64MiB', ...flags }, {});

  const a = await startDaemon(config({ nodeId: 'node-a', cluster: 'c1' }), silentLogger);
  t.teardown(() => a.stop());

  await t.test('the stream and buckets are made as the plan says', async (t) => {
    const info = await jsm.streams.info('WALCAST_c1');
    const c = info.config;
    t.equal(c.description, `walcast db=${id}/${dbname} slot=walcast`, 'description names the database and slot');
    t.same(c.subjects, ['walcast.c1.s.>']);
    t.equal(c.storage, StorageType.File);
    t.equal(c.retention, 'limits');
    t.equal(c.discard, 'old');
    t.equal(c.num_replicas, 3);
    t.equal(info.cluster?.replicas?.length, 2, 'a leader and two followers');
    t.equal(c.max_age, 60 * 60 * 1000 * NS_PER_MS, 'max_age 1h');
    t.equal(c.max_bytes, 64 * 1024 ** 2, 'max_bytes from --stream-max-bytes');
    t.equal(c.duplicate_window, 30_000 * NS_PER_MS, 'duplicate_window 30s');
    t.equal(c.allow_direct, true);
    t.equal(c.deny_delete, true);
    t.equal(c.deny_purge, true);
    t.match(c.republish, { src: 'walcast.c1.s.>', dest: 'walcast.c1.r.>' });
    for (const bucket of ['walcast_c1_cluster', 'walcast_c1_interest']) {
      const kv = await jsm.streams.info(`KV_${bucket}`);
      t.equal(kv.config.num_replicas, 3, `${bucket}: replicas 3`);
      t.equal(kv.config.max_msgs_per_subject, 1, `${bucket}: history 1`);
    }
  });

  await t.test('the connection is named walcast <node-id> in the servers\' /connz', async (t) => {
    const names = (await Promise.all(nats.servers.map((s) => s.monitor<{ connections?: { name?: string }[] }>('connz'))))
      .flatMap((z) => z.connections ?? []).map((c) => c.name);
    t.ok(names.includes('walcast node-a'), `connections: ${names.join(', ')}`);
  });

  await t.test('GET /status has the cluster block', async (t) => {
    // The only node: elected capture node.
    await waitUntil(() => a.cluster?.capture?.current === 'streaming', 10_000, () => 'node-a capturing');
    const s = (await (await fetch(`http://127.0.0.1:${a.port}/status`)).json()) as { cluster?: unknown; replication: string };
    t.match(s.cluster, { node: 'node-a', role: 'capture', capture: { node: 'node-a', epoch: Number }, follower: { seq: Number, gaps: 0 } });
    t.equal(s.replication, 'streaming', 'replication: its capture streams');
  });

  await t.test('a second live node under the same --node-id: node_id_in_use', async (t) => {
    await t.rejects(startDaemon(config({ nodeId: 'node-a', cluster: 'c1' }), silentLogger), { code: 'node_id_in_use', message: /node-a/ });
    const slots = await query<{ n: number }>(db.url, 'select count(*)::int as n from pg_replication_slots where active');
    t.equal(slots[0].n, 1, 'the refused node touched no slot');
  });

  await t.test('a second node reuses the stream and brings changed limits in line', async (t) => {
    const before = await jsm.streams.info('WALCAST_c1');
    const pool = new pg.Pool({ connectionString: db.url, max: 1 });
    t.teardown(() => pool.end());
    const cluster = config({ nodeId: 'node-b', cluster: 'c1', streamMaxAge: '2h', streamMaxBytes: '32MiB' }).cluster!;
    const b = await startClusterNode({ cluster, slot: 'walcast', pool }, silentLogger);
    t.teardown(() => b.close());
    t.equal(b.stream.created, before.created, 'the same stream, not a new one');
    const after = await jsm.streams.info('WALCAST_c1');
    t.equal(after.config.max_age, 2 * 60 * 60 * 1000 * NS_PER_MS, 'max_age updated');
    t.equal(after.config.max_bytes, 32 * 1024 ** 2, 'max_bytes updated');
    t.equal(after.config.description, before.config.description);
    const names = (await Promise.all(nats.servers.map((s) => s.monitor<{ connections?: { name?: string }[] }>('connz'))))
      .flatMap((z) => z.connections ?? []).map((c) => c.name);
    t.ok(names.includes('walcast node-b'), 'the second node is connected under its own name');
    await b.close();
  });

  await t.test('a stream of another database, or made otherwise: stream_mismatch', async (t) => {
    await jsm.streams.add({ name: 'WALCAST_other', subjects: ['walcast.other.s.>'], description: 'walcast db=1/elsewhere slot=walcast', num_replicas: 1 });
    await t.rejects(startDaemon(config({ nodeId: 'node-c', cluster: 'other', streamReplicas: '1' }), silentLogger), { code: 'stream_mismatch', message: /belongs to/ });
    // The right description but no RePublish (which nats-server 2.9 cannot add to a stream).
    await jsm.streams.add({ name: 'WALCAST_norepub', subjects: ['walcast.norepub.s.>'], description: `walcast db=${id}/${dbname} slot=walcast`, num_replicas: 1, deny_delete: true, deny_purge: true });
    await t.rejects(startDaemon(config({ nodeId: 'node-c', cluster: 'norepub', streamReplicas: '1' }), silentLogger), { code: 'stream_mismatch', message: /republish none/ });
    const slots = await query<{ n: number }>(db.url, 'select count(*)::int as n from pg_replication_slots where active');
    t.equal(slots[0].n, 1, 'the refused starts left no walsender behind (only node-a\'s)');
  });

  await t.test('more replicas than servers: jetstream_failed with a hint', async (t) => {
    await t.rejects(startDaemon(config({ nodeId: 'node-d', cluster: 'five', streamReplicas: '5' }), silentLogger), { code: 'jetstream_failed', hint: /needs 5 JetStream servers/ });
  });

  await t.test('an unreachable --nats: nats_unreachable, in-process and from the CLI', async (t) => {
    const url = `nats://127.0.0.1:${await freePort()}`;
    const started = Date.now();
    await t.rejects(startDaemon(resolveServeConfig({ db: db.url, port: '0', jwtSecret: SECRET, nats: url, nodeId: 'node-e' }, {}), silentLogger), { code: 'nats_unreachable' });
    t.ok(Date.now() - started < 10_000, 'refused at once, not after retrying');
    const r = await runCli(['serve', '--db', db.url, '--port', '0', '--nats', url, '--node-id', 'node-e'], { env: { WALCAST_JWT_SECRET: SECRET }, timeoutMs: 20_000 });
    t.equal(r.code, 1, 'exit code 1');
    t.match(r.stderr, /nats_unreachable/);
    t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
  });

  await t.test('a lost NATS server: the node reconnects to another; with all gone, it still stops at once', async (t) => {
    const connzNames = async (i: number) => ((await nats.servers[i]!.monitor<{ connections?: { name?: string }[] }>('connz')).connections ?? []).map((c) => c.name);
    const holder = (await Promise.all(nats.servers.map((_, i) => connzNames(i)))).findIndex((names) => names.includes('walcast node-a'));
    t.ok(holder >= 0, `node-a is connected to server ${holder}`);
    await nats.servers[holder]!.stop();
    await waitUntil(async () => {
      for (let i = 0; i < nats.servers.length; i++) if (i !== holder && (await connzNames(i)).includes('walcast node-a')) return true;
      return false;
    }, 15_000, () => 'node-a to reconnect to another server');
    t.pass('reconnected to another server');
    const s = (await (await fetch(`http://127.0.0.1:${a.port}/status`)).json()) as { replication: string };
    t.equal(s.replication, 'streaming', 'capture went on meanwhile');
    await Promise.all(nats.servers.map((srv) => srv.stop()));
    const started = Date.now();
    await a.stop();
    t.ok(Date.now() - started < 5_000, `stopped in ${Date.now() - started} ms with NATS down`);
  });
});
