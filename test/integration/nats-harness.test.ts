// The throwaway NATS harness the cluster tests stand on: a server, a 3-server JetStream cluster
// whose replicated stream survives its leader's SIGKILL, and teardown that leaves nothing running.
import fs from 'node:fs';
import net from 'node:net';
import { jetstream, jetstreamManager, StorageType } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import t from 'tap';
import { startThrowawayNats } from '../../src/nats/throwaway.js';
import { withNats } from '../helpers/nats.js';
import { waitUntil } from '../helpers/capture.js';

/** How long one message may take to be stored, elections included (they take a few seconds). */
const PUBLISH_WITHIN_MS = 60_000;

const refused = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => { s.destroy(); resolve(false); });
    s.once('error', () => resolve(true));
  });

t.test('one server: named connections show in its monitoring; destroy leaves nothing', async (t) => {
  const nats = await startThrowawayNats();
  t.not(nats.servers[0]!.port, 4222, 'never the shared server');
  const nc = await connect({ servers: nats.urls, name: 'walcast test-node' });
  const sub = nc.subscribe('x.y', { max: 1, timeout: 10_000 });
  nc.publish('x.y', 'hello');
  for await (const m of sub) t.equal(m.string(), 'hello');
  const connz = await nats.servers[0]!.monitor<{ connections: { name?: string }[] }>('connz');
  t.ok(connz.connections.some((c) => c.name === 'walcast test-node'), 'the connection is named');
  await nc.close();
  await nats.destroy();
  t.notOk(fs.existsSync(nats.dir), 'directory removed');
  t.ok(await refused(nats.servers[0]!.port), 'server gone');
  await nats.destroy(); // idempotent
});

t.test('three servers: an R3 file stream keeps every message through its leader SIGKILLed', async (t) => {
  const nats = await withNats(t, { size: 3 });
  t.equal(nats.urls.split(',').length, 3);
  // Never give up reconnecting: the server this client is on may be the one killed.
  const nc = await connect({ servers: nats.urls, name: 'walcast harness', maxReconnectAttempts: -1, reconnectTimeWait: 250 });
  t.teardown(() => nc.close());
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: 'T', subjects: ['t.>'], storage: StorageType.File, num_replicas: 3 });
  const js = jetstream(nc, { timeout: 2_000 });
  // Retries while the stream has no leader (an election), within a bound: a stream that never
  // recovers fails with what the servers said, rather than hanging until the runner's timeout.
  const publish = async (i: number): Promise<boolean> => {
    const deadline = Date.now() + PUBLISH_WITHIN_MS;
    let lastErr = '';
    while (Date.now() < deadline) {
      try {
        return (await js.publish(`t.${i % 3}`, String(i), { msgID: `m${i}` })).duplicate;
      } catch (err) {
        lastErr = (err as Error).message;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const logs = nats.servers.map((s) => `--- ${s.name} (${s.running ? 'running' : 'down'})\n${s.logTail(15)}`).join('\n');
    throw new Error(`publishing message ${i} failed for ${PUBLISH_WITHIN_MS} ms (last error: ${lastErr}; client closed: ${nc.isClosed()})\n${logs}`);
  };
  for (let i = 0; i < 50; i++) await publish(i);
  const before = await jsm.streams.info('T');
  t.equal(before.state.messages, 50);
  t.equal(before.cluster?.replicas?.length, 2, 'two followers');
  const leader = nats.servers.find((s) => s.name === before.cluster?.leader);
  t.ok(leader, `leader ${before.cluster?.leader} is one of ours`);
  leader!.signal('SIGKILL');
  await waitUntil(() => !leader!.running, 5_000);
  for (let i = 50; i < 100; i++) await publish(i);
  t.equal(await publish(7), true, 'a retried message id is a duplicate, not stored twice');
  const after = await jsm.streams.info('T');
  t.equal(after.state.messages, 100, 'nothing lost, nothing doubled');
  t.not(after.cluster?.leader, leader!.name, 'another server leads');
  t.equal(after.state.last_seq, 100);

  await leader!.start(); // same ports and store: it rejoins and catches up
  await waitUntil(async () => {
    try {
      const jsz = await leader!.monitor<{ messages?: number }>('jsz');
      return jsz.messages === 100;
    } catch {
      return false;
    }
  }, 15_000);
  t.pass('the restarted server holds all 100 again');
});
