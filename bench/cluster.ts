// Cluster mode (issue 13): three `walcast serve --nats` nodes (child processes: each can use its
// own core and be SIGKILLed), three NATS servers (a JetStream cluster, the stream R3) and one
// Postgres, all throwaway, all on this machine. Four measurements:
//
//   (d) database load: walsenders and backends of walcast with one single node (no --nats),
//       then one cluster node, then three.
//   (c) commit-to-client latency at --latency-rate tx/s, each change reaching 10 subscribers:
//       the single node first, the three-node cluster later in the same run (subscribers spread
//       over the nodes); the difference is what the NATS hop adds.
//   (a) bytes each node receives from NATS (/connz of the servers, connection `walcast <id>`)
//       against its share of the interest (its clients' rooms, disjoint from the others').
//   (b) the capture node SIGKILLed under --failover-rate tx/s, --failovers times: takeover time
//       and the delivery gap seen by clients on the other nodes.
//
// Prints one JSON line, then readable tables and the targets. Exits 0 whatever the figures;
// non-zero only when the benchmark itself failed. Everything it started is stopped and removed.
// Run: npm run bench:cluster   (options: see usage() and bench/README.md)
import { parseArgs } from 'node:util';
import pg from 'pg';
import { startThrowawayNats, type ThrowawayNats } from '../src/nats/throwaway.js';
import { startThrowawayPostgres, type ThrowawayPostgres } from '../src/pg/throwaway.js';
import { migrate } from '../src/sql/migrate.js';
import { dropSlot, log, optionParsers, runMain, sleep } from './lib/common.js';
import { reapDaemonsOnExit } from './lib/daemon.js';
import { CpuMeter, natsPids, postgresPids } from './lib/cluster-cpu.js';
import { BENCH_APP, dbLoad, sampleDbLoad } from './lib/cluster-db.js';
import { measureFailovers } from './lib/cluster-failover.js';
import { measureLatency } from './lib/cluster-latency.js';
import { StreamWatch } from './lib/cluster-nats.js';
import { clusterNodes, singleNode, waitCapture, type WalcastNode } from './lib/cluster-nodes.js';
import { ClusterClients } from './lib/cluster-pool.js';
import { printReport, type ClusterReport } from './lib/cluster-report.js';
import { measureTraffic } from './lib/cluster-traffic.js';
import { createTable, Writer } from './lib/cluster-writer.js';
import { machine } from './lib/report.js';
import { round, Stopwatch } from './lib/stats.js';

const SINGLE_SLOT = 'bench_single';
const CLUSTER_SLOT = 'bench_cluster';
const NAMESPACE = 'bench';
const NODES = 3;
/** Rooms of the traffic run's clients per node: disjoint, shares 1/2, 1/3, 1/6. */
const TRAFFIC_ROOMS = [[0, 1, 2], [3, 4], [5]];
const PARTS = ['db', 'latency', 'traffic', 'failover'] as const;
type Part = (typeof PARTS)[number];

const { positive, nonNegative } = optionParsers(usage);
const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    failovers: { type: 'string' },
    'failover-rate': { type: 'string', default: '500' },
    'latency-rate': { type: 'string', default: '1000' },
    'latency-low-rate': { type: 'string', default: '100' },
    'latency-seconds': { type: 'string' },
    'latency-subscribers': { type: 'string' },
    'per-change': { type: 'string', default: '10' },
    'traffic-rate': { type: 'string', default: '500' },
    'traffic-seconds': { type: 'string' },
    'traffic-subscribers': { type: 'string', default: '2' },
    'nats-ack-delay': { type: 'string', default: '0' },
    'stream-max-bytes': { type: 'string', default: '256MiB' },
    'stream-replicas': { type: 'string', default: '3' },
    'client-procs': { type: 'string', default: '2' },
    help: { type: 'boolean', default: false },
  },
});
if (args.help) usage('');
const QUICK = args.quick ?? false;
const ONLY = new Set<Part>(args.only ? (args.only.split(',').map((s) => s.trim()) as Part[]) : PARTS);
if ([...ONLY].some((p) => !PARTS.includes(p))) usage(`--only takes ${PARTS.join(',')}, got ${JSON.stringify(args.only)}`);
const FAILOVERS = positive(args.failovers ?? (QUICK ? '2' : '5'), 'failovers');
const FAILOVER_RATE = positive(args['failover-rate'], 'failover-rate');
const LAT_RATE = positive(args['latency-rate'], 'latency-rate');
const LOW_RATE = nonNegative(args['latency-low-rate'], 'latency-low-rate');
const LAT_SECONDS = positive(args['latency-seconds'] ?? (QUICK ? '4' : '10'), 'latency-seconds');
const LAT_SUBS = positive(args['latency-subscribers'] ?? (QUICK ? '300' : '1000'), 'latency-subscribers');
const PER_CHANGE = positive(args['per-change'], 'per-change');
const LAT_ROOMS = Math.max(1, Math.round(LAT_SUBS / PER_CHANGE));
const TRAFFIC_RATE = positive(args['traffic-rate'], 'traffic-rate');
const TRAFFIC_SECONDS = positive(args['traffic-seconds'] ?? (QUICK ? '3' : '8'), 'traffic-seconds');
const TRAFFIC_SUBS = positive(args['traffic-subscribers'], 'traffic-subscribers');
const ACK_DELAY = args['nats-ack-delay'] ?? '0';
const STREAM_MAX_BYTES = args['stream-max-bytes'] ?? '256MiB';
const CLIENT_PROCS = positive(args['client-procs'], 'client-procs');
const REPLICAS = positive(args['stream-replicas'], 'stream-replicas');
if (REPLICAS > NODES) usage(`--stream-replicas is at most ${NODES} (the NATS servers)`);

async function main(): Promise<void> {
  const total = new Stopwatch();
  reapDaemonsOnExit();
  log(`starting a throwaway Postgres and ${NODES} NATS servers`);
  let pgServer: ThrowawayPostgres | null = null;
  let nats: ThrowawayNats | null = null;
  const nodes: WalcastNode[] = [];
  let single: WalcastNode | null = null;
  let clients: ClusterClients | null = null;
  let watch: StreamWatch | null = null;
  const conns: pg.Client[] = [];
  try {
    [pgServer, nats] = await Promise.all([startThrowawayPostgres({}), startThrowawayNats({ size: NODES })]);
    const url = pgServer.url;
    await migrate(url);
    const client = async (): Promise<pg.Client> => {
      const c = new pg.Client({ connectionString: url, application_name: BENCH_APP });
      await c.connect();
      conns.push(c);
      return c;
    };
    const db = await client();
    const writer = new Writer(await Promise.all([client(), client(), client(), client()]));
    await createTable(db);
    const { rows: ver } = await db.query<{ v: string }>(`select current_setting('server_version') as v`);
    clients = ClusterClients.start(CLIENT_PROCS);
    const [pgDir, natsDir, cl] = [pgServer.dataDir, nats.dir, clients];
    const cpuMeter = (ns: WalcastNode[]): CpuMeter =>
      new CpuMeter({
        ...Object.fromEntries(ns.map((n) => [n.id, () => [n.pid]])),
        nats: () => natsPids(natsDir),
        postgres: () => postgresPids(pgDir),
        clients: () => cl.pids,
      });
    const report: ClusterReport = {
      options: { quick: QUICK, parts: [...ONLY], failovers: FAILOVERS, failoverRate: FAILOVER_RATE, latencyRate: LAT_RATE, latencyLowRate: LOW_RATE, latencySeconds: LAT_SECONDS, latencySubscribers: LAT_SUBS, perChange: PER_CHANGE, trafficRate: TRAFFIC_RATE, trafficSeconds: TRAFFIC_SECONDS, trafficSubscribersPerRoom: TRAFFIC_SUBS, natsAckDelay: ACK_DELAY, streamMaxBytes: STREAM_MAX_BYTES, replicas: REPLICAS },
      db: {},
      latency: {},
      traffic: null,
      failover: null,
      warnings: {},
    };

    // ── one single node ──
    if (ONLY.has('db') || ONLY.has('latency')) {
      single = singleNode(url, SINGLE_SLOT);
      log('single node: starting');
      await single.start();
      await waitStreaming(single);
      await sleep(1_000);
      const procs = (): Array<{ id: string; pid: number }> => (single ? [{ id: single.id, pid: single.pid }] : []);
      report.db.single = await dbLoad(db, procs());
      if (ONLY.has('latency')) {
        const sampler = sampleDbLoad(db, procs);
        const one = single;
        report.latency.single = await measureLatency({ nodes: [one], clients, writer, cpu: cpuMeter([one]) }, latencyOptions('single node', LAT_RATE));
        if (LOW_RATE > 0) report.latency.singleLow = await measureLatency({ nodes: [one], clients, writer, cpu: cpuMeter([one]) }, latencyOptions('single node', LOW_RATE));
        report.db.singleUnderLoad = await sampler.stop();
      }
      report.warnings.single = single.warnings.slice();
      await single.stop();
      single = null;
      await dropSlot(db, SINGLE_SLOT);
    }

    // ── the cluster ──
    nodes.push(...clusterNodes(NODES, { db: url, nats: nats.urls, slot: CLUSTER_SLOT, namespace: NAMESPACE, ackDelay: ACK_DELAY, streamMaxBytes: STREAM_MAX_BYTES, replicas: REPLICAS }));
    const procs = (): Array<{ id: string; pid: number }> => nodes.filter((n) => n.w).map((n) => ({ id: n.id, pid: n.pid }));
    log(`cluster: starting ${nodes[0].id}`);
    const sw = new Stopwatch();
    await nodes[0].start();
    if ((await waitCapture(nodes, 30_000)) < 0) throw new Error(`${nodes[0].id} did not become the capture node`);
    report.firstCaptureMs = round(sw.elapsedMs());
    await sleep(1_000);
    report.db.cluster1 = await dbLoad(db, procs());
    log(`cluster: starting ${nodes.slice(1).map((n) => n.id).join(', ')}`);
    for (const n of nodes.slice(1)) await n.start();
    await waitHealthy(nodes);
    await sleep(1_000);
    report.db.cluster3 = await dbLoad(db, procs());
    watch = await StreamWatch.open(nats, `WALCAST_${NAMESPACE}`);

    if (ONLY.has('traffic')) {
      report.traffic = await measureTraffic({ nodes, clients, writer, nats, watch }, { rate: TRAFFIC_RATE, seconds: TRAFFIC_SECONDS, idleSeconds: QUICK ? 1 : 3, subsPerRoom: TRAFFIC_SUBS, roomsByNode: TRAFFIC_ROOMS });
    }
    if (ONLY.has('latency')) {
      const sampler = sampleDbLoad(db, procs);
      const w = watch;
      const tap = (since: number) => w.tap(`walcast.${NAMESPACE}.r.d.>`, since);
      const name = `${NODES}-node cluster (R${REPLICAS})`;
      report.latency.cluster = await measureLatency({ nodes, clients, writer, cpu: cpuMeter(nodes), tap }, latencyOptions(name, LAT_RATE));
      if (LOW_RATE > 0) report.latency.clusterLow = await measureLatency({ nodes, clients, writer, cpu: cpuMeter(nodes), tap }, latencyOptions(name, LOW_RATE));
      report.db.cluster3UnderLoad = await sampler.stop();
    }
    if (ONLY.has('failover')) {
      report.failover = await measureFailovers({ nodes, clients, writer, watch }, { rounds: FAILOVERS, rate: FAILOVER_RATE, steadyMs: 1_500, takeoverTimeoutMs: 30_000 });
    }
    report.stream = await watch.state();
    report.nodeStatus = Object.fromEntries(await Promise.all(nodes.map(async (n) => [n.id, (await n.status())?.cluster ?? null] as const)));
    for (const n of nodes) report.warnings[n.id] = n.warnings.slice();
    report.warningCounts = Object.fromEntries(nodes.map((n) => [n.id, n.warningCount]));
    printReport(report, { ...machine(ver[0].v), totalSeconds: round(total.elapsedMs() / 1000, 1) });
  } finally {
    await Promise.all(nodes.map((n) => n.kill().catch(() => {})));
    await single?.kill().catch(() => {});
    await watch?.close();
    await clients?.stop().catch(() => {});
    for (const c of conns) await c.end().catch(() => {});
    await nats?.destroy();
    await pgServer?.destroy();
  }
}

function latencyOptions(name: string, rate: number): Parameters<typeof measureLatency>[1] {
  return { name, subscribers: LAT_SUBS, rooms: LAT_ROOMS, rate, seconds: LAT_SECONDS, warmupSeconds: 2 };
}

async function waitStreaming(n: WalcastNode): Promise<void> {
  const until = Date.now() + 30_000;
  while ((await n.status())?.replication !== 'streaming') {
    if (Date.now() > until) throw new Error(`${n.id}: replication not streaming after 30 s`);
    await sleep(100);
  }
}

/** Every node answers /healthz 200 (it reads the stream) and one captures. */
async function waitHealthy(nodes: WalcastNode[]): Promise<void> {
  const until = Date.now() + 30_000;
  for (;;) {
    const ok = await Promise.all(
      nodes.map(async (n) => {
        try {
          return (await fetch(`http://127.0.0.1:${n.port}/healthz`, { signal: AbortSignal.timeout(1_000) })).ok;
        } catch {
          return false;
        }
      }),
    );
    if (ok.every(Boolean) && (await waitCapture(nodes, 0)) >= 0) return;
    if (Date.now() > until) throw new Error(`cluster not healthy after 30 s: ${nodes.map((n, i) => `${n.id} ${ok[i] ? 'ok' : 'not ok'}`).join(', ')}`);
    await sleep(200);
  }
}

function usage(msg: string): never {
  process.stderr.write(
    `${msg ? msg + '\n' : ''}usage: node dist/bench/cluster.js [--quick] [--only db,latency,traffic,failover]\n` +
      `  [--failovers 5] [--failover-rate 500] [--latency-rate 1000] [--latency-low-rate 100] [--latency-seconds 10] [--latency-subscribers 1000] [--per-change 10]\n` +
      `  [--traffic-rate 500] [--traffic-seconds 8] [--traffic-subscribers 2] [--nats-ack-delay 0] [--stream-max-bytes 256MiB] [--stream-replicas 3] [--client-procs 2]\n` +
      `  --quick: --failovers 2 --latency-seconds 4 --latency-subscribers 300 --traffic-seconds 3 (each still overridable)\n`,
  );
  process.exit(msg ? 2 : 0);
}

runMain(main);
