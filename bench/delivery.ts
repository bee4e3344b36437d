// Delivery: commit-to-client latency, fan-out throughput and memory per idle connection of the
// walcast daemon, beside a bare uWebSockets.js server and the naive pg_notify + `ws` approach,
// all on one throwaway Postgres, in one run.
//
// Processes: this one (orchestrator and SQL writer), the server under test in its own process
// (`node bin/walcast.js serve`, or bench/lib/raw-server.ts, or bench/lib/naive-server.ts), and
// load clients in their own processes (bench/lib/clients.ts; two by default), so that client
// work is never counted against a server.
//
//   latency   1,000 subscribers, each with `room=eq.<n % 100>`: every change reaches 10 of them;
//             1,000 single-row transactions/s for 10 s. Each row carries sent_at_ms, the
//             writer's clock just before it sends the INSERT; a client's sample is its receive
//             time minus that (commit-to-client, the commit itself included). Then the same
//             1,000 subscribers unfiltered (every change reaches all) at 100 transactions/s.
//   fan-out   5,000 connections, one unfiltered subscription each; 1,000 rows written in
//             single-row transactions as fast as a procedure can commit them; deliveries/s at
//             the clients from the first delivery to the last. The raw uWS server publishes
//             the very frames walcast sent (recorded by a client) to the same number of
//             clients; the naive server gets the same writes through a trigger's pg_notify.
//             Right after walcast's own, the same fan-out by the same daemon to as many clients
//             of its Supabase endpoint (Phoenix channels, bench/lib/supabase-client.ts), all
//             joined to one channel with one postgres_changes binding on the table.
//   memory    RSS of the server process (after full GCs) before and after 5,000 idle
//             connections, each with one unfiltered subscription (walcast), or subscribed to
//             the one topic (raw uWS), or tracked by the ws server (naive); and with walcast's
//             Supabase endpoint, each joined to the channel with its binding.
//
// Prints one JSON line, then readable tables and the targets, each marked met or missed. Exits 0
// whatever the figures; non-zero only when the benchmark itself failed.
// Run: npm run bench:delivery   (options: see usage() and bench/README.md)
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { startThrowawayPostgres, type ThrowawayPostgres } from '../src/pg/throwaway.js';
import { migrate } from '../src/sql/migrate.js';
import type { ClientStats, ConnectArgs, ResetArgs } from './lib/clients.js';
import { dropSlot, log, positive as positiveOf, runMain, sleep, sum } from './lib/common.js';
import { startWalcast } from './lib/daemon.js';
import { StatsPool } from './lib/pool.js';
import { pacedInserts, type PacedWrites } from './lib/writer.js';
import { machine, ms2, printMachineLine, printTargets, type Target } from './lib/report.js';
import { cpuMsOf, Helper, nowMs, rssOf } from './lib/rpc.js';
import { fmtInt, percentile, round, spread, Stopwatch, table, type Spread } from './lib/stats.js';
import { supabaseChangePrefix, supabasePath } from './lib/supabase-client.js';

const TARGETS = { p50Ms: 5, p99Ms: 25, vsRaw: 0.5, vsNaive: 5, supabaseVsNative: 0.8, bytesPerConnection: 4096 };
const HOST = '127.0.0.1';
const SLOT = 'bench_delivery';
const TABLE = 'bench_msgs';
const CHANGE_PREFIX = '{"type":"change"';
/** The one channel every Supabase client joins (so they share frames, as walcast's clients do). */
const SB_TOPIC = 'realtime:bench';
const SB_PREFIX = supabaseChangePrefix(SB_TOPIC);
/** row_to_json(NEW) of bench_msgs starts so. */
const NAIVE_PREFIX = '{"id":';
const MEM_MARK = '@@bench-mem '; // written by bench/lib/daemon-hook.ts
const here = path.dirname(fileURLToPath(import.meta.url)); // dist/bench

const { values: args } = parseArgs({
  options: {
    'latency-rate': { type: 'string', default: '1000' },
    'latency-seconds': { type: 'string', default: '10' },
    'latency-subscribers': { type: 'string', default: '1000' },
    rooms: { type: 'string', default: '100' },
    'unfiltered-rate': { type: 'string', default: '25' },
    'unfiltered-seconds': { type: 'string', default: '5' },
    'fanout-subscribers': { type: 'string', default: '5000' },
    'fanout-rows': { type: 'string', default: '400' },
    'memory-connections': { type: 'string', default: '5000' },
    'client-procs': { type: 'string', default: '2' },
    'raw-mode': { type: 'string', default: 'publish' },
    'raw-unbatched-rows': { type: 'string', default: '200' },
    systems: { type: 'string', default: 'walcast,supabase,raw,naive' },
    only: { type: 'string', default: 'latency,fanout,memory' },
    'profile-daemon': { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});
if (args.help) usage('');
const LAT_RATE = positive(args['latency-rate'], 'latency-rate');
const LAT_SECONDS = positive(args['latency-seconds'], 'latency-seconds');
const LAT_SUBS = positive(args['latency-subscribers'], 'latency-subscribers');
const ROOMS = positive(args.rooms, 'rooms');
const UNF_RATE = positive(args['unfiltered-rate'], 'unfiltered-rate');
const UNF_SECONDS = positive(args['unfiltered-seconds'], 'unfiltered-seconds');
const FAN_SUBS = positive(args['fanout-subscribers'], 'fanout-subscribers');
const FAN_ROWS = positive(args['fanout-rows'], 'fanout-rows');
const MEM_CONNS = positive(args['memory-connections'], 'memory-connections');
const CLIENT_PROCS = positive(args['client-procs'], 'client-procs');
/** Payloads for the diagnostic raw run that publishes one payload per event-loop turn (0: skip it). */
const RAW_UNBATCHED_ROWS = Number(args['raw-unbatched-rows']);
if (!Number.isInteger(RAW_UNBATCHED_ROWS) || RAW_UNBATCHED_ROWS < 0) usage(`--raw-unbatched-rows must be 0 or more, got ${JSON.stringify(args['raw-unbatched-rows'])}`);
const RAW_MODE = args['raw-mode'] as 'publish' | 'send';
if (RAW_MODE !== 'publish' && RAW_MODE !== 'send') usage(`--raw-mode is publish or send, got ${JSON.stringify(RAW_MODE)}`);
/** supabase: walcast's daemon again, its clients on the Supabase endpoint (fan-out and memory only). */
type System = 'walcast' | 'supabase' | 'raw' | 'naive';
const SYSTEMS = listOption<System>('systems', ['walcast', 'supabase', 'raw', 'naive']);
type Part = 'latency' | 'fanout' | 'memory';
const PARTS = listOption<Part>('only', ['latency', 'fanout', 'memory']);
const PROFILE_DIR = args['profile-daemon'] ? path.resolve(args['profile-daemon']) : null;

// ── rows ──────────────────────────────────────────────────────────────────────────────────
// Chat-message-shaped rows, the same whichever way they are written.

const author = (id: number): string => `user-${id % 1000}`;
const body = (id: number): string => 'lorem ipsum '.repeat(1 + (id % 8)) + id;
const INSERT = `insert into ${TABLE} (id, room, sent_at_ms, author, body) values ($1, $2, $3, $4, $5)`;

async function setup(db: pg.Client): Promise<void> {
  await db.query(`create table ${TABLE} (
    id bigint primary key, room int not null, sent_at_ms float8 not null, author text not null, body text not null)`);
  await db.query(`select walcast.enable('${TABLE}')`);
  // Single-row transactions as fast as the server commits them, with the same row contents.
  await db.query(`create procedure bench_burst(first bigint, n int, rooms int) language plpgsql as $$
    begin
      for i in first .. first + n - 1 loop
        insert into ${TABLE} (id, room, sent_at_ms, author, body)
          values (i, i % rooms, extract(epoch from clock_timestamp()) * 1000, 'user-' || (i % 1000), repeat('lorem ipsum ', (1 + i % 8)::int) || i);
        commit;
      end loop;
    end $$`);
  // The naive approach's trigger (attached only while the naive server runs).
  await db.query(`create function bench_notify() returns trigger language plpgsql as $$
    begin
      perform pg_notify('bench', row_to_json(new)::text);
      return null;
    end $$`);
}

let nextId = 1;

async function burst(db: pg.Client, n: number): Promise<{ ms: number }> {
  const w = new Stopwatch();
  await db.query('call bench_burst($1, $2, $3)', [nextId, n, ROOMS]);
  nextId += n;
  return { ms: w.elapsedMs() };
}

interface PacedResult extends PacedWrites {
  transactions: number;
  rooms: number[];
}

/** `rate` single-row transactions/s for `ms`, spread over the given connections. */
async function paced(conns: pg.Client[], rate: number, ms: number): Promise<PacedResult> {
  const total = Math.round((rate * ms) / 1000);
  const rooms: number[] = [];
  const next = (): { id: number; room: number } => {
    const id = nextId++;
    rooms.push(id % ROOMS);
    return { id, room: id % ROOMS };
  };
  const w = await pacedInserts(conns, rate, total, INSERT, next, (id, room, sent) => [id, room, sent, author(id), body(id)]);
  return { transactions: total, rooms, ...w };
}

// ── load clients ──────────────────────────────────────────────────────────────────────────

class ClientPool extends StatsPool<ClientStats> {
  static start(n: number): ClientPool {
    return new ClientPool(StatsPool.fork(n, 'clients.js'));
  }

  /** `total` connections, split over the client processes; resolves when all are ready. */
  async connect(port: number, total: number, subscribe?: ConnectArgs['subscribe'], supabase = false): Promise<number> {
    const w = new Stopwatch();
    // --no-auth: the apikey is not read.
    const how = supabase ? { path: supabasePath('bench'), supabase: { topic: SB_TOPIC } } : { path: '/ws' };
    await Promise.all(
      this.split(total, Math.ceil(total / this.procs.length)).map(({ count, offset }, i) => {
        const a: ConnectArgs = { host: HOST, port, ...how, count, offset, subscribe, timeoutMs: 90_000 };
        return this.procs[i].call('connect', a, 100_000);
      }),
    );
    return w.elapsedMs();
  }

  reset(a: ResetArgs): Promise<unknown> {
    return this.each('reset', a);
  }

  /**
   * Polls until `expected` deliveries arrived, nothing arrived for `idleMs`, or `timeoutMs`
   * passed; complete: exactly `expected` arrived.
   */
  async wait(expected: number, idleMs: number, timeoutMs: number): Promise<Awaited<ReturnType<StatsPool<ClientStats>['stats']>> & { complete: boolean }> {
    const s = await this.waitFor(expected, idleMs, timeoutMs, 100, nowMs);
    return { ...s, complete: !s.timedOut && s.deliveries === expected };
  }

  recorded(): Promise<string[]> {
    return this.procs[0].call<string[]>('recorded');
  }

  override async closeAll(): Promise<void> {
    await super.closeAll(300); // let the server see the closes
  }
}

// ── servers under test ───────────────────────────────────────────────────────────────────

interface Server {
  name: System;
  pid: number;
  port: number;
  /** Full GC in the server process, then its RSS (and heap figures when it can tell). */
  mem(): Promise<Mem>;
  stop(): Promise<void>;
}

interface Mem {
  rss: number;
  /** V8 heap in use, and committed (what the heap holds of the RSS). */
  heapUsed: number;
  heapTotal: number;
  gc: boolean;
}
type MemReport = { gc: boolean; heapUsed: number; heapTotal: number };

/** `node --expose-gc --import daemon-hook.js bin/walcast.js serve …`. */
async function startDaemon(url: string): Promise<Server> {
  let memWaiter: ((m: Mem) => void) | null = null;
  const w = await startWalcast({
    nodeArgs: ['--expose-gc', '--import', new URL('./lib/daemon-hook.js', import.meta.url).href],
    profileDir: PROFILE_DIR,
    profileFirst: true,
    serveArgs: ['--db', url, '--no-auth', '--port', '0', '--slot', SLOT, '--log-level', 'warn'],
    marks: {
      [MEM_MARK]: (rest) => {
        const m = JSON.parse(rest) as MemReport & { rss: number };
        memWaiter?.({ rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, gc: m.gc });
        memWaiter = null;
      },
    },
    startTimeoutMs: 30_000,
    stopTimeoutMs: 15_000,
  });
  return {
    name: 'walcast',
    pid: w.pid,
    port: w.port,
    async mem() {
      const got = new Promise<Mem>((resolve) => (memWaiter = resolve));
      w.child.kill('SIGUSR2');
      const m = await Promise.race([got, sleep(10_000).then(() => Promise.reject(new Error('walcast: no memory report')))]);
      return { ...m, rss: rssOf(w.pid) };
    },
    stop: () => w.stop(),
  };
}

async function startHelperServer(name: 'raw' | 'naive', script: string, argv: string[]): Promise<Server & { helper: Helper }> {
  const helper = Helper.fork(name, path.join(here, 'lib', script), argv, ['--expose-gc']);
  const port = await helper.next<number>('listening');
  return {
    name,
    helper,
    pid: helper.pid,
    port,
    async mem() {
      const m = await helper.call<MemReport>('mem');
      return { rss: rssOf(helper.pid), heapUsed: m.heapUsed, heapTotal: m.heapTotal, gc: m.gc };
    },
    stop: () => helper.stop(),
  };
}

// ── phases ────────────────────────────────────────────────────────────────────────────────

interface MemoryResult {
  connections: number;
  rssBefore: number;
  rssAfter: number;
  /** (RSS after − RSS before) / connections: includes one-time growth of the process. */
  averageBytesPerConnection: number;
  /** Marginal: RSS growth of the second half of the connections / their number. */
  bytesPerConnection: number;
  /** V8 heap in use (live JS objects) per connection. */
  heapBytesPerConnection: number;
  /** V8 heap committed per connection: part of the RSS figure, includes the heap's headroom. */
  heapCommittedBytesPerConnection: number;
  gcForced: boolean;
}

async function measureMemory(server: Server, clients: ClientPool, subscribe: ConnectArgs['subscribe'], supabase = false): Promise<MemoryResult> {
  await sleep(500);
  const before = await server.mem();
  // In two halves: the second half's growth is the marginal cost of a connection, free of
  // one-time growth the first burst causes (V8's young generation grows by tens of MB under
  // the allocation rate of thousands of connects; that is not a per-connection cost).
  const half = Math.floor(MEM_CONNS / 2);
  let connectMs = await clients.connect(server.port, half, subscribe, supabase);
  await sleep(1_500); // idle: let the server settle (welcome, subscribed, a progress tick)
  const mid = await server.mem();
  connectMs += await clients.connect(server.port, MEM_CONNS - half, subscribe, supabase);
  await sleep(1_500);
  const after = await server.mem();
  const r: MemoryResult = {
    connections: MEM_CONNS,
    rssBefore: before.rss,
    rssAfter: after.rss,
    averageBytesPerConnection: round((after.rss - before.rss) / MEM_CONNS),
    bytesPerConnection: round((after.rss - mid.rss) / (MEM_CONNS - half)),
    heapBytesPerConnection: round((after.heapUsed - before.heapUsed) / MEM_CONNS),
    heapCommittedBytesPerConnection: round((after.heapTotal - before.heapTotal) / MEM_CONNS),
    gcForced: before.gc && after.gc,
  };
  log(
    `${server.name}${supabase ? ' (supabase)' : ''}: ${fmtInt(MEM_CONNS)} idle connections in ${fmtInt(connectMs)} ms; RSS ${mib(before.rss)} → ${mib(after.rss)} MiB = ` +
      `${fmtInt(r.averageBytesPerConnection)} B/connection on average, ${fmtInt(r.bytesPerConnection)} B marginal (JS heap used ${fmtInt(r.heapBytesPerConnection)} B, committed ${fmtInt(r.heapCommittedBytesPerConnection)} B)`,
  );
  return r;
}

interface FanoutResult {
  subscribers: number;
  payloads: number;
  expected: number;
  deliveries: number;
  complete: boolean;
  /** Deliveries / (last delivery − first delivery), at the clients. */
  deliveriesPerSec: number;
  firstToLastMs: number;
  /** From the start of the writes (or of publishing) to the last delivery. */
  startToLastMs: number;
  avgPayloadBytes: number;
  serverCpuMs: number;
  /** Server CPU over start-to-last wall time (1 = one core). */
  serverCores: number;
  /** Event-loop utilisation of each client process (near 1: the clients set the pace). */
  clientElu: number[];
  /** CPU of all client processes over start-to-last wall time. */
  clientCores: number;
  unexpectedCloses: number;
  closeCodes: Record<string, number>;
  /** The server's RSS when the last delivery was counted (no GC forced). */
  serverRssAfter: number;
  detail: string;
}

/** The fan-out's connections (raw, naive): those of the memory phase when it left as many, or new ones. */
async function fanoutConnections(server: Server, clients: ClientPool): Promise<void> {
  if (PARTS.has('memory') && MEM_CONNS === FAN_SUBS) return;
  await clients.closeAll();
  await clients.connect(server.port, FAN_SUBS);
}

async function fanout(server: Server, clients: ClientPool, expected: number, payloads: number, run: () => Promise<unknown>, detail: string, name: string = server.name): Promise<FanoutResult> {
  const cpu0 = cpuMsOf(server.pid);
  const t0 = nowMs();
  await run();
  const s = await clients.wait(expected, 10_000, 150_000);
  const cpuMs = cpuMsOf(server.pid) - cpu0;
  const firstToLast = s.lastAt - s.firstAt;
  const startToLast = s.lastAt - t0;
  const r: FanoutResult = {
    subscribers: s.open,
    payloads,
    expected,
    deliveries: s.deliveries,
    complete: s.complete,
    deliveriesPerSec: round(s.deliveries / (firstToLast / 1000)),
    firstToLastMs: round(firstToLast, 1),
    startToLastMs: round(startToLast, 1),
    avgPayloadBytes: round(s.bytes / Math.max(1, s.deliveries), 1),
    serverCpuMs: round(cpuMs),
    serverCores: round(cpuMs / startToLast, 2),
    clientElu: s.elu,
    clientCores: round(s.cpuMs / startToLast, 2),
    unexpectedCloses: s.unexpectedCloses,
    closeCodes: s.closeCodes,
    serverRssAfter: rssOf(server.pid),
    detail,
  };
  log(
    `${name}: fan-out ${fmtInt(r.deliveries)}/${fmtInt(expected)} deliveries in ${fmtInt(firstToLast)} ms = ${fmtInt(r.deliveriesPerSec)}/s ` +
      `(server cpu ${fmtInt(cpuMs)} ms, ${r.serverCores} cores; clients ${r.clientCores} cores, ELU ${r.clientElu.join('/')})`,
  );
  return r;
}

interface LatencyResult extends Spread {
  name: string;
  subscribers: number;
  filter: string;
  txPerSec: number;
  seconds: number;
  transactions: number;
  deliveriesPerSec: number;
  expected: number;
  samples: number;
  /** Deliveries of warm-up rows that arrived after the measured run began (not samples). */
  lateWarmupDeliveries: number;
  complete: boolean;
  /** The writer's own INSERT round trip (statement + commit), for comparison. */
  commitP50: number;
  commitP99: number;
  writerMaxLagMs: number;
  serverCores: number;
  clientElu: number[];
  target: string | null;
  meetsTarget: boolean | null;
}

async function latency(
  server: Server,
  clients: ClientPool,
  writers: pg.Client[],
  o: { name: string; subscribers: number; rate: number; seconds: number; filtered: boolean; withTarget: boolean },
): Promise<LatencyResult> {
  const perRoom = (room: number): number => (o.filtered ? Math.floor(o.subscribers / ROOMS) + (room < o.subscribers % ROOMS ? 1 : 0) : o.subscribers);
  const connectMs = await clients.connect(server.port, o.subscribers, o.filtered ? { table: TABLE, filterColumn: 'room', filterMod: ROOMS } : { table: TABLE });
  log(`${o.name}: ${fmtInt(o.subscribers)} subscribers connected in ${fmtInt(connectMs)} ms; warming up 1 s`);
  await clients.reset({ prefix: CHANGE_PREFIX, latency: true });
  await paced(writers, o.rate, 1_000);
  // Rows stamped before this are the warm-up's: left out even if they arrive late.
  await clients.reset({ prefix: CHANGE_PREFIX, latency: true, sinceMs: nowMs() });
  const cpu0 = cpuMsOf(server.pid);
  const w = new Stopwatch();
  const res = await paced(writers, o.rate, o.seconds * 1000);
  const expected = sum(res.rooms.map(perRoom));
  const s = await clients.wait(expected, 3_000, 30_000);
  const cpuMs = cpuMsOf(server.pid) - cpu0;
  const wallMs = w.elapsedMs();
  const lat = await clients.latencies();
  const commits = res.commitMs.slice().sort();
  await clients.closeAll();
  const p50 = percentile(lat, 50);
  const p99 = percentile(lat, 99);
  const r: LatencyResult = {
    name: o.name,
    subscribers: o.subscribers,
    filter: o.filtered ? `room=eq.<n % ${ROOMS}> (${ROOMS} rooms: each change reaches ${o.subscribers / ROOMS} subscribers)` : 'none (each change reaches every subscriber)',
    txPerSec: o.rate,
    seconds: o.seconds,
    transactions: res.transactions,
    deliveriesPerSec: round(expected / o.seconds),
    expected,
    samples: lat.length,
    lateWarmupDeliveries: s.stale,
    complete: s.complete,
    ...spread(lat),
    commitP50: round(percentile(commits, 50), 2),
    commitP99: round(percentile(commits, 99), 2),
    writerMaxLagMs: round(res.maxLagMs, 1),
    serverCores: round(cpuMs / wallMs, 2),
    clientElu: s.elu,
    target: o.withTarget ? `p50 ≤ ${TARGETS.p50Ms} ms and p99 ≤ ${TARGETS.p99Ms} ms` : null,
    meetsTarget: o.withTarget ? p50 <= TARGETS.p50Ms && p99 <= TARGETS.p99Ms && s.complete : null,
  };
  log(`${o.name}: p50 ${r.p50} ms, p99 ${r.p99} ms, max ${r.max} ms over ${fmtInt(r.samples)}/${fmtInt(expected)} deliveries (commit p50 ${r.commitP50} ms)`);
  return r;
}

// ── main ──────────────────────────────────────────────────────────────────────────────────

async function main(): Promise<void> {
  const total = new Stopwatch();
  log('starting a throwaway Postgres');
  const pgServer: ThrowawayPostgres = await startThrowawayPostgres({});
  const url = pgServer.url;
  const db = new pg.Client({ connectionString: url });
  const writers = Array.from({ length: 4 }, () => new pg.Client({ connectionString: url }));
  const clients = ClientPool.start(CLIENT_PROCS);
  try {
    await migrate(url);
    await db.connect();
    for (const w of writers) await w.connect();
    await setup(db);
    const { rows: ver } = await db.query<{ v: string }>(`select current_setting('server_version') as v`);

    const memory: Partial<Record<System, MemoryResult>> = {};
    const fan: Partial<Record<System | 'rawUnbatched', FanoutResult>> = {};
    const lat: LatencyResult[] = [];
    let frames: string[] = [];

    const sub = { table: TABLE };
    const memOrFan = PARTS.has('memory') || PARTS.has('fanout');
    if (SYSTEMS.has('walcast') || SYSTEMS.has('supabase')) {
      log('walcast: starting the daemon');
      const daemon = await startDaemon(url);
      try {
        // walcast's own endpoint and its Supabase endpoint: both warmed up (not reported; code
        // paths, pools and the catalog, before the memory baselines), then the memory of each,
        // then the fan-out of each, one right after the other on connections made for it.
        const kinds = [false, true].filter((supabase) => SYSTEMS.has(supabase ? 'supabase' : 'walcast'));
        const prefixOf = (supabase: boolean): string => (supabase ? SB_PREFIX : CHANGE_PREFIX);
        for (const supabase of memOrFan ? kinds : []) {
          await clients.connect(daemon.port, 200, sub, supabase);
          await clients.reset({ prefix: prefixOf(supabase) });
          await burst(db, 50);
          await clients.wait(200 * 50, 5_000, 30_000);
          await clients.closeAll();
        }
        for (const supabase of PARTS.has('memory') ? kinds : []) {
          memory[supabase ? 'supabase' : 'walcast'] = await measureMemory(daemon, clients, sub, supabase);
          await clients.closeAll();
        }
        const writes = `${fmtInt(FAN_ROWS)} single-row transactions (a procedure committing after each insert)`;
        for (const supabase of PARTS.has('fanout') ? kinds : []) {
          await clients.connect(daemon.port, FAN_SUBS, sub, supabase);
          await sleep(1_000); // idle: let the server settle after the connects
          await clients.reset({ prefix: prefixOf(supabase), record: supabase ? 0 : FAN_ROWS });
          if (!supabase) {
            fan.walcast = await fanout(daemon, clients, FAN_SUBS * FAN_ROWS, FAN_ROWS, () => burst(db, FAN_ROWS), writes);
            frames = await clients.recorded();
          } else {
            const how = `the same daemon's /realtime/v1/websocket?apikey=…&vsn=2.0.0, every client joined to ${SB_TOPIC} with one postgres_changes binding on ${TABLE}; ${writes}`;
            fan.supabase = await fanout(daemon, clients, FAN_SUBS * FAN_ROWS, FAN_ROWS, () => burst(db, FAN_ROWS), how, 'walcast (supabase)');
          }
          await clients.closeAll();
        }

        if (SYSTEMS.has('walcast') && PARTS.has('latency')) {
          lat.push(await latency(daemon, clients, writers, { name: 'filtered', subscribers: LAT_SUBS, rate: LAT_RATE, seconds: LAT_SECONDS, filtered: true, withTarget: true }));
          lat.push(await latency(daemon, clients, writers, { name: 'unfiltered', subscribers: LAT_SUBS, rate: UNF_RATE, seconds: UNF_SECONDS, filtered: false, withTarget: false }));
        }
      } finally {
        await daemon.stop();
        await dropSlot(db, SLOT);
      }
    }

    if (SYSTEMS.has('raw') && memOrFan) {
      if (frames.length < FAN_ROWS) frames = syntheticFrames(FAN_ROWS);
      log(`raw uWS: starting (mode ${RAW_MODE})`);
      const raw = await startHelperServer('raw', 'raw-server.js', []);
      try {
        await clients.connect(raw.port, 200);
        await clients.reset({ prefix: CHANGE_PREFIX });
        await raw.helper.call('publish', { payloads: frames.slice(0, 50), mode: RAW_MODE, perTick: 1 });
        await clients.wait(200 * 50, 5_000, 30_000);
        await clients.closeAll();

        if (PARTS.has('memory')) memory.raw = await measureMemory(raw, clients, undefined);
        if (PARTS.has('fanout')) {
          await fanoutConnections(raw, clients);
          await clients.reset({ prefix: CHANGE_PREFIX });
          const payloads = frames.slice(0, FAN_ROWS);
          const how = RAW_MODE === 'publish' ? 'app.publish(topic, frame)' : 'ws.cork(() => ws.send(frame)) on every socket';
          // Max rate: every payload in one synchronous loop (uWS then writes each socket's share in
          // few syscalls). The figure the targets compare with.
          fan.raw = await fanout(raw, clients, FAN_SUBS * FAN_ROWS, FAN_ROWS, () => raw.helper.call('publish', { payloads, mode: RAW_MODE, perTick: payloads.length }, 150_000), `${how} for all ${fmtInt(FAN_ROWS)} payloads in one loop (max rate), walcast's recorded frames`);
          if (RAW_UNBATCHED_ROWS > 0) {
            // Diagnostic: one payload per event-loop turn, so each socket gets one write per payload.
            const few = payloads.slice(0, RAW_UNBATCHED_ROWS);
            await clients.reset({ prefix: CHANGE_PREFIX });
            fan.rawUnbatched = await fanout(raw, clients, FAN_SUBS * few.length, few.length, () => raw.helper.call('publish', { payloads: few, mode: RAW_MODE, perTick: 1 }, 150_000), `${how}, one payload per event-loop turn (setImmediate between), first ${fmtInt(few.length)} of walcast's recorded frames`);
          }
        }
        await clients.closeAll();
      } finally {
        await raw.stop();
      }
    }

    if (SYSTEMS.has('naive') && memOrFan) {
      log('naive: starting the ws + LISTEN server');
      const naive = await startHelperServer('naive', 'naive-server.js', [url]);
      await db.query(`create trigger bench_notify after insert on ${TABLE} for each row execute function bench_notify()`);
      try {
        await clients.connect(naive.port, 200);
        await clients.reset({ prefix: NAIVE_PREFIX });
        await burst(db, 50);
        await clients.wait(200 * 50, 5_000, 30_000);
        await clients.closeAll();

        if (PARTS.has('memory')) memory.naive = await measureMemory(naive, clients, undefined);
        if (PARTS.has('fanout')) {
          await fanoutConnections(naive, clients);
          await clients.reset({ prefix: NAIVE_PREFIX });
          fan.naive = await fanout(naive, clients, FAN_SUBS * FAN_ROWS, FAN_ROWS, () => burst(db, FAN_ROWS), `trigger pg_notify('bench', row_to_json(new)::text), ws server looping client.send(); same writes as walcast`);
        }
        await clients.closeAll();
      } finally {
        await db.query(`drop trigger if exists bench_notify on ${TABLE}`);
        await naive.stop();
      }
    }

    // ── report ──
    const vsRaw = fan.walcast && fan.raw ? round(fan.walcast.deliveriesPerSec / fan.raw.deliveriesPerSec, 3) : null;
    const vsNaive = fan.walcast && fan.naive ? round(fan.walcast.deliveriesPerSec / fan.naive.deliveriesPerSec, 2) : null;
    const sbVsNative = fan.walcast && fan.supabase ? round(fan.supabase.deliveriesPerSec / fan.walcast.deliveriesPerSec, 3) : null;
    // The same by the daemon's CPU per delivery: what the ratio would be with a core of its own
    // (the clients' work grows with the bytes too, and on 2 cores takes from the daemon's).
    const sbVsNativeCpu = fan.walcast && fan.supabase ? round(fan.walcast.serverCpuMs / fan.walcast.deliveries / (fan.supabase.serverCpuMs / fan.supabase.deliveries), 3) : null;
    const filtered = lat.find((l) => l.name === 'filtered');
    const targets: Target[] = [
      {
        name: `latency at ${fmtInt(LAT_RATE)} tx/s, ${fmtInt(LAT_SUBS)} subscribers: p50 ≤ ${TARGETS.p50Ms} ms`,
        value: filtered?.p50 ?? null,
        met: filtered ? filtered.p50 <= TARGETS.p50Ms && filtered.complete : null,
      },
      {
        name: `latency at ${fmtInt(LAT_RATE)} tx/s, ${fmtInt(LAT_SUBS)} subscribers: p99 ≤ ${TARGETS.p99Ms} ms`,
        value: filtered?.p99 ?? null,
        met: filtered ? filtered.p99 <= TARGETS.p99Ms && filtered.complete : null,
      },
      { name: `fan-out ≥ ${TARGETS.vsRaw * 100}% of raw uWS`, value: vsRaw, met: vsRaw === null ? null : vsRaw >= TARGETS.vsRaw && !!fan.walcast?.complete },
      { name: `fan-out ≥ ${TARGETS.vsNaive}x the naive approach`, value: vsNaive, met: vsNaive === null ? null : vsNaive >= TARGETS.vsNaive && !!fan.walcast?.complete },
      {
        name: `supabase fan-out ≥ ${TARGETS.supabaseVsNative * 100}% of native`,
        value: sbVsNative,
        met: sbVsNative === null ? null : sbVsNative >= TARGETS.supabaseVsNative && !!fan.supabase?.complete && !!fan.walcast?.complete,
      },
      {
        name: `≤ ${fmtInt(TARGETS.bytesPerConnection)} B per idle subscribed connection (marginal RSS)`,
        value: memory.walcast?.bytesPerConnection ?? null,
        met: memory.walcast ? memory.walcast.bytesPerConnection <= TARGETS.bytesPerConnection : null,
      },
    ];
    const out = {
      bench: 'delivery',
      timing:
        'latency = client receive time − sent_at_ms stamped by the writer just before sending the INSERT (commit-to-client, the commit included), ' +
        'wall clock with sub-ms resolution (performance.timeOrigin + now) in both processes; fan-out deliveries/s = deliveries / (last − first delivery) at the clients; ' +
        'memory = (server RSS after − before) / connections, full GCs before each reading',
      ...machine(ver[0].v),
      clientProcesses: CLIENT_PROCS,
      client: 'bench/lib/mini-ws.ts (minimal RFC 6455 client on net.Socket; counts frames, parses sent_at_ms only in latency runs)',
      latency: lat,
      fanout: {
        subscribers: FAN_SUBS,
        rows: FAN_ROWS,
        walcast: fan.walcast ?? null,
        supabase: fan.supabase ?? null,
        rawUws: fan.raw ?? null,
        rawUwsOnePerTurn: fan.rawUnbatched ?? null,
        naive: fan.naive ?? null,
        walcastVsRaw: vsRaw,
        walcastVsRawOnePerTurn: fan.walcast && fan.rawUnbatched ? round(fan.walcast.deliveriesPerSec / fan.rawUnbatched.deliveriesPerSec, 3) : null,
        walcastVsNaive: vsNaive,
        supabaseVsNative: sbVsNative,
        supabaseVsNativeByServerCpu: sbVsNativeCpu,
        rawMode: RAW_MODE,
      },
      memory: { connections: MEM_CONNS, walcast: memory.walcast ?? null, supabase: memory.supabase ?? null, rawUws: memory.raw ?? null, naive: memory.naive ?? null },
      targets,
      totalSeconds: round(total.elapsedMs() / 1000, 1),
    };
    process.stdout.write(JSON.stringify(out) + '\n');

    const ms = ms2;
    if (lat.length) {
      process.stdout.write(`\nCommit-to-client latency (walcast; ms; writer stamp before INSERT → client receive)\n`);
      process.stdout.write(
        table(
          ['run', 'subscribers', 'filter', 'tx/s', 'deliveries/s', 'samples', 'p50', 'p90', 'p99', 'p99.9', 'max', 'commit p50', 'commit p99', 'server cores', 'target'],
          lat.map((l) => [
            l.name,
            fmtInt(l.subscribers),
            l.name === 'filtered' ? `room=eq (${ROOMS} rooms)` : 'none',
            fmtInt(l.txPerSec),
            fmtInt(l.deliveriesPerSec),
            `${fmtInt(l.samples)}/${fmtInt(l.expected)}`,
            ms(l.p50),
            ms(l.p90),
            ms(l.p99),
            ms(l.p999),
            ms(l.max),
            ms(l.commitP50),
            ms(l.commitP99),
            l.serverCores.toFixed(2),
            l.meetsTarget === null ? '-' : l.meetsTarget ? 'met' : 'MISSED',
          ]),
        ) + '\n',
      );
    }
    const fanRows: Array<[string, FanoutResult]> = [];
    if (fan.walcast) fanRows.push(['walcast', fan.walcast]);
    if (fan.supabase) fanRows.push(['walcast supabase', fan.supabase]);
    if (fan.raw) fanRows.push(['raw uWS', fan.raw]);
    if (fan.rawUnbatched) fanRows.push(['raw uWS 1/turn', fan.rawUnbatched]);
    if (fan.naive) fanRows.push(['naive', fan.naive]);
    if (fanRows.length) {
      process.stdout.write(`\nFan-out to ${fmtInt(FAN_SUBS)} subscribers (deliveries/s from first to last delivery at the clients)\n`);
      process.stdout.write(
        table(
          ['server', 'deliveries/s', 'payloads', 'deliveries', 'first→last ms', 'start→last ms', 'bytes/frame', 'server cpu ms', 'server cores', 'server RSS MiB', 'client cores', 'client ELU'],
          fanRows.map(([n, f]) => [
            n,
            fmtInt(f.deliveriesPerSec),
            fmtInt(f.payloads),
            `${fmtInt(f.deliveries)}${f.complete ? '' : ' (INCOMPLETE)'}`,
            fmtInt(f.firstToLastMs),
            fmtInt(f.startToLastMs),
            fmtInt(f.avgPayloadBytes),
            fmtInt(f.serverCpuMs),
            f.serverCores.toFixed(2),
            mib(f.serverRssAfter),
            f.clientCores.toFixed(2),
            f.clientElu.join('/'),
          ]),
        ) + '\n',
      );
      for (const [n, f] of fanRows) process.stdout.write(`  ${n}: ${f.detail}\n`);
      if (sbVsNative !== null && sbVsNativeCpu !== null) {
        process.stdout.write(`  supabase / native = ${(sbVsNative * 100).toFixed(1)}% of deliveries/s; ${(sbVsNativeCpu * 100).toFixed(1)}% by the daemon's CPU time per delivery\n`);
      }
    }
    const memRows: Array<[string, MemoryResult, string]> = [];
    if (memory.walcast) memRows.push(['walcast', memory.walcast, 'one unfiltered subscription']);
    if (memory.supabase) memRows.push(['walcast supabase', memory.supabase, 'one channel, one postgres_changes binding']);
    if (memory.raw) memRows.push(['raw uWS', memory.raw, 'subscribed to one topic']);
    if (memory.naive) memRows.push(['naive', memory.naive, 'tracked by the ws server']);
    if (memRows.length) {
      process.stdout.write(`\nMemory per idle connection (${fmtInt(MEM_CONNS)} connections; server RSS after full GCs)\n`);
      process.stdout.write(
        table(
          ['server', 'each connection', 'RSS before MiB', 'RSS after MiB', 'B/conn (RSS, marginal)', 'B/conn (RSS, average)', 'JS heap used B/conn', 'JS heap committed B/conn'],
          memRows.map(([n, m, what]) => [
            n,
            what,
            mib(m.rssBefore),
            mib(m.rssAfter),
            fmtInt(m.bytesPerConnection),
            fmtInt(m.averageBytesPerConnection),
            fmtInt(m.heapBytesPerConnection),
            fmtInt(m.heapCommittedBytesPerConnection),
          ]),
        ) + '\n',
      );
    }
    printTargets(targets);
    printMachineLine(out);
    if (PROFILE_DIR) process.stdout.write(`walcast CPU profile written to ${PROFILE_DIR}\n`);
  } finally {
    await clients.stop().catch(() => {});
    for (const w of writers) await w.end().catch(() => {});
    await db.end().catch(() => {});
    await pgServer.destroy();
  }
}

/** Frames shaped like walcast's, for the raw baseline when walcast did not run (--systems). */
function syntheticFrames(n: number): string[] {
  return Array.from({ length: n }, (_, i) => {
    const id = i + 1;
    const row = { id, room: id % ROOMS, sent_at_ms: Date.now(), author: author(id), body: body(id) };
    return `{"type":"change","sub":1,"pos":"0/${(0x1a2b4f0 + i * 0x100).toString(16).toUpperCase()}:0","commit_time":"${new Date().toISOString().replace('Z', '000Z')}","op":"insert","table":"public.${TABLE}","new":${JSON.stringify(row)}}`;
  });
}

function mib(bytes: number): string {
  return (bytes / 1024 / 1024).toFixed(1);
}

/** A comma-separated option whose items are all in `allowed`, as a set. */
function listOption<T extends string>(name: 'systems' | 'only', allowed: readonly T[]): Set<T> {
  const items = (args[name] ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (items.length === 0 || items.some((s) => !allowed.includes(s as T))) usage(`--${name} takes ${allowed.join(',')}, got ${JSON.stringify(args[name])}`);
  return new Set(items as T[]);
}

function positive(v: string | undefined, name: string): number {
  return positiveOf(v, name, usage);
}

function usage(msg: string): never {
  process.stderr.write(
    `${msg ? msg + '\n' : ''}usage: node dist/bench/delivery.js [--latency-rate 1000] [--latency-seconds 10] [--latency-subscribers 1000] [--rooms 100]\n` +
      `  [--unfiltered-rate 25] [--unfiltered-seconds 5] [--fanout-subscribers 5000] [--fanout-rows 400] [--memory-connections 5000]\n` +
      `  [--client-procs 2] [--raw-mode publish|send] [--raw-unbatched-rows 200] [--systems walcast,supabase,raw,naive]\n` +
      `  [--only latency,fanout,memory] [--profile-daemon DIR]\n`,
  );
  process.exit(msg ? 2 : 0);
}

runMain(main);
