// `serve --nats` and the cluster settings (issue 13, increment 1): flag, then environment, then
// default; typed errors for bad values; refused without --nats; absent, a single node as before.
import { hostname } from 'node:os';
import t from 'tap';
import { parseNatsUrls, resolveServeConfig, type ServeFlags } from '../../src/config.js';
import { reconnectDelay, connectionName } from '../../src/cluster/connect.js';
import { clusterNames, streamConfig, streamDescription, wantedStream } from '../../src/cluster/stream.js';

const base = { db: 'postgres://h/db', jwtSecret: 'x'.repeat(40), port: '4100' };
const resolve = (flags: ServeFlags, env: Record<string, string> = {}) => resolveServeConfig({ ...base, ...flags }, env);

t.test('without --nats: no cluster, exactly as before', async (t) => {
  t.equal(resolve({}).cluster, null);
  t.equal(resolve({}, { WALCAST_NATS: '' }).cluster, null, 'an empty WALCAST_NATS is not given');
});

t.test('defaults', async (t) => {
  const c = resolve({ nats: 'nats://127.0.0.1:4222' }).cluster!;
  t.same(c.servers, ['nats://127.0.0.1:4222']);
  t.equal(c.tls, false);
  t.equal(c.nodeId, `${hostname()}:4100`, 'node id <hostname>:<port>');
  t.equal(c.namespace, 'walcast', 'namespace = the slot name');
  t.equal(resolve({ nats: 'nats://h:1', slot: 'orders' }).cluster!.namespace, 'orders');
  t.equal(c.streamMaxAgeMs, 3_600_000, '1h');
  t.equal(c.streamMaxBytes, 1024 ** 3, '1GiB');
  t.equal(c.streamReplicas, 3);
  t.equal(c.ackDelayMs, 6 * 60_000, '6m');
});

t.test('flag, then environment', async (t) => {
  const env = {
    WALCAST_NATS: 'nats://env:4222',
    WALCAST_NODE_ID: 'env-node',
    WALCAST_CLUSTER: 'env_ns',
    WALCAST_STREAM_MAX_AGE: '2h',
    WALCAST_STREAM_MAX_BYTES: '2GiB',
    WALCAST_STREAM_REPLICAS: '5',
    WALCAST_NATS_ACK_DELAY: '0',
  };
  const fromEnv = resolve({}, env).cluster!;
  t.same(fromEnv, { servers: ['nats://env:4222'], tls: false, nodeId: 'env-node', namespace: 'env_ns', streamMaxAgeMs: 7_200_000, streamMaxBytes: 2 * 1024 ** 3, streamReplicas: 5, ackDelayMs: 0 });
  const fromFlags = resolve({ nats: 'nats://a:1, nats://b:2', nodeId: 'n1', cluster: 'Prod-1', streamMaxAge: '30m', streamMaxBytes: '64MiB', streamReplicas: '1', natsAckDelay: '90s' }, env).cluster!;
  t.same(fromFlags, { servers: ['nats://a:1', 'nats://b:2'], tls: false, nodeId: 'n1', namespace: 'Prod-1', streamMaxAgeMs: 1_800_000, streamMaxBytes: 64 * 1024 ** 2, streamReplicas: 1, ackDelayMs: 90_000 });
  t.equal(resolve({ nats: 'nats://h:1', natsAckDelay: '0s' }).cluster!.ackDelayMs, 0, '0s is no delay');
});

t.test('--nats URLs', async (t) => {
  t.same(parseNatsUrls('tls://a:4222,tls://b'), { servers: ['tls://a:4222', 'tls://b'], tls: true });
  for (const bad of ['', ' , ', 'http://h:4222', 'h:4222', 'nats://', 'nats://h:4222/path', 'nats://h?x=1']) {
    t.throws(() => parseNatsUrls(bad), { code: 'bad_config' }, JSON.stringify(bad));
  }
  t.throws(() => parseNatsUrls('nats://a:1,tls://b:2'), { code: 'bad_config', message: /mixes/ });
  t.throws(() => parseNatsUrls('nats://user:secret@h:4222'), { code: 'bad_config', message: /credentials/ });
  t.notMatch((() => { try { parseNatsUrls('nats://user:secret@h:4222'); } catch (e) { return (e as Error).message; } return ''; })(), /secret/, 'the password is not repeated');
  t.throws(() => resolve({ nats: 'redis://h' }), { code: 'bad_config' }, 'through resolveServeConfig');
});

t.test('typed errors for bad cluster values', async (t) => {
  const nats = 'nats://h:4222';
  t.throws(() => resolve({ nats, nodeId: 'has space' }), { code: 'bad_config', message: /node-id/ });
  t.throws(() => resolve({ nats, nodeId: 'x'.repeat(65) }), { code: 'bad_config' });
  t.equal(resolve({ nats, nodeId: 'x'.repeat(64) }).cluster!.nodeId.length, 64, '64 characters is fine');
  t.throws(() => resolve({ nats, nodeId: 'tab\there' }), { code: 'bad_config' });
  t.throws(() => resolve({ nats, port: '0' }), { code: 'bad_config', message: /--port 0/ }, 'port 0 needs a --node-id');
  t.equal(resolve({ nats, port: '0', nodeId: 'n' }).cluster!.nodeId, 'n');
  for (const ns of ['a.b', 'a*', 'a>', 'a b', '', 'x'.repeat(65)]) {
    if (ns === '') continue; // empty counts as not given
    t.throws(() => resolve({ nats, cluster: ns }), { code: 'bad_config', message: /cluster name/ }, JSON.stringify(ns));
  }
  t.equal(resolve({ nats, slot: 'x'.repeat(63) }).cluster!.namespace, 'x'.repeat(63), 'every slot name (at most 63) is a namespace: the default always works');
  t.throws(() => resolve({ nats, streamReplicas: '0' }), { code: 'bad_config' });
  t.throws(() => resolve({ nats, streamReplicas: '6' }), { code: 'bad_config', message: /stream-replicas/ });
  t.throws(() => resolve({ nats, streamReplicas: '2.5' }), { code: 'bad_config' });
  t.throws(() => resolve({ nats, streamMaxAge: 'forever' }), { code: 'bad_config', message: /stream-max-age/ });
  t.throws(() => resolve({ nats, streamMaxBytes: 'lots' }), { code: 'bad_config', message: /stream-max-bytes/ });
  t.throws(() => resolve({ nats, natsAckDelay: '-1m' }), { code: 'bad_config', message: /nats-ack-delay/ });
});

t.test('cluster settings without --nats are refused, not ignored', async (t) => {
  t.throws(() => resolve({ nodeId: 'n1' }), { code: 'bad_config', message: /--node-id given without --nats/ });
  t.throws(() => resolve({}, { WALCAST_CLUSTER: 'c', WALCAST_STREAM_REPLICAS: '1' }), { code: 'bad_config', message: /--cluster, --stream-replicas given without --nats/ });
  t.equal(resolve({}, { WALCAST_NODE_ID: '' }).cluster, null, 'empty values count as not given');
});

t.test('names: connection, stream, subjects, buckets, description', async (t) => {
  t.equal(connectionName('web-1:4000'), 'walcast web-1:4000');
  t.same(clusterNames('Prod-1'), {
    stream: 'WALCAST_Prod-1',
    stored: 'walcast.Prod-1.s.>',
    republished: 'walcast.Prod-1.r.>',
    clusterBucket: 'walcast_Prod-1_cluster',
    interestBucket: 'walcast_Prod-1_interest',
  });
  t.equal(streamDescription({ systemId: '7714851196644796936', dbname: 'app' }, 'walcast'), 'walcast db=7714851196644796936/app slot=walcast');
  const sc = streamConfig(wantedStream({ namespace: 'n', streamMaxAgeMs: 1000, streamMaxBytes: 2048, streamReplicas: 3 }, 'd'));
  t.match(sc, { name: 'WALCAST_n', subjects: ['walcast.n.s.>'], max_age: 1e9, max_bytes: 2048, num_replicas: 3, duplicate_window: 30e9, discard: 'old', storage: 'file', retention: 'limits', allow_direct: true, deny_delete: true, deny_purge: true, republish: { src: 'walcast.n.s.>', dest: 'walcast.n.r.>' } });
  // nats-server 2.9.10: none of the 2.10+ stream features.
  for (const k of ['metadata', 'subject_transform', 'compression', 'first_seq', 'allow_msg_ttl', 'subject_delete_marker_ttl']) t.notOk(k in sc, `no ${k}`);
});

t.test('reconnect wait grows with the outage, within bounds, jittered', async (t) => {
  const mid = () => 0.5;
  t.equal(reconnectDelay(0, 0, mid), 250, 'at once: the minimum');
  t.equal(reconnectDelay(0, 2_000, mid), 1_000, 'half the outage so far');
  t.equal(reconnectDelay(0, 60_000, mid), 5_000, 'capped');
  t.equal(reconnectDelay(0, 2_000, () => 0), 800, '-20 %');
  t.equal(reconnectDelay(0, 2_000, () => 1), 1_200, '+20 %');
});
