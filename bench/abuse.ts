// Abuse floods (issue #11): the daemon's RSS and a good client's delivery latency while each
// flood of the issue runs, and whether the daemon survives it.
//
// Set-up (bench/lib/abuse-rig.ts): a throwaway Postgres with the demo chat of `walcast dev`
// (rooms, room_members, messages, their policies and relations), mallory (the attacker, a member
// of room 2), a LOGIN-only role `intruder`, HS256 tokens; one `walcast serve` child with
// authorization on (--heap N: under NODE_OPTIONS=--max-old-space-size=N).
// Measuring (bench/lib/abuse-monitor.ts, a process of its own): a good client (alice) subscribed
// to room 1's messages while a writer commits --rate rows/s into room 1 (writer send → receipt
// and commit_time → receipt), a protocol ping every 100 ms, GET /healthz every 500 ms on a fresh
// connection, the daemon's VmRSS every 200 ms.
// Each scenario (bench/lib/abuse-<name>.ts): its set-up, --baseline seconds of quiet, the flood
// (bounded in count and time, 127.0.0.1 only, ends by itself), --settle seconds, then the report
// of the flood's time range. A daemon that died is restarted (a crash loop is detected and, after
// it, the slot dropped) before the next scenario.
//
// Prints, per scenario, one JSON line and one readable line; at the end a summary table. Exits 0
// whatever the figures; non-zero only when the benchmark itself failed.
// Run: npm run bench:abuse -- [--only catchup,joins] [--scale 0.1] [--heap 384]   (bench/README.md)
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { broadcast } from './lib/abuse-broadcast.js';
import { catchup } from './lib/abuse-catchup.js';
import { joins } from './lib/abuse-joins.js';
import { metrics } from './lib/abuse-metrics.js';
import { presence } from './lib/abuse-presence.js';
import { GOAL_P99_MS, readableLine, summaryTable, type ScenarioResult } from './lib/abuse-report.js';
import { AbuseRig } from './lib/abuse-rig.js';
import { slotBigtx } from './lib/abuse-slot-bigtx.js';
import { slotMessages } from './lib/abuse-slot-messages.js';
import { sockets } from './lib/abuse-sockets.js';
import type { AbuseContext, AttackResult, MonitorReport, Scenario } from './lib/abuse-types.js';
import { log, optionParsers, runMain, sleep } from './lib/common.js';
import { reapDaemonsOnExit } from './lib/daemon.js';
import { stallsBetween } from './lib/daemon-probe.js';
import { machine, printMachineLine } from './lib/report.js';
import { Helper, nowMs } from './lib/rpc.js';
import { round, Stopwatch } from './lib/stats.js';

const SCENARIOS: Scenario[] = [catchup, joins, presence, sockets, broadcast, metrics, slotMessages, slotBigtx];
const HARD_CAP_MS = 20 * 60_000;

const { positive, positiveNumber, nonNegative } = optionParsers(usage);
const { values: args } = parseArgs({
  options: {
    only: { type: 'string' },
    scale: { type: 'string', default: '1' },
    heap: { type: 'string' },
    seconds: { type: 'string' },
    rate: { type: 'string', default: '10' },
    baseline: { type: 'string', default: '3' },
    settle: { type: 'string', default: '3' },
    'bigtx-rows': { type: 'string' },
    messages: { type: 'string' },
    'slot-wait': { type: 'string', default: '600' },
    'restart-wait': { type: 'string', default: '120' },
    'metrics-port': { type: 'string' },
    'daemon-arg': { type: 'string', multiple: true, default: [] },
    'shared-daemon': { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (args.help) usage('');
const SCALE = positiveNumber(args.scale, 'scale');
const HEAP = args.heap === undefined ? null : positive(args.heap, 'heap');
const SECONDS = args.seconds === undefined ? null : positiveNumber(args.seconds, 'seconds');
const RATE = positiveNumber(args.rate, 'rate');
const BASELINE_MS = nonNegative(args.baseline, 'baseline') * 1000;
const SETTLE_MS = nonNegative(args.settle, 'settle') * 1000;
/** One daemon for every scenario (what one flood leaves behind meets the next), not a fresh one each. */
const SHARED = !!args['shared-daemon'];
const RESTART_WAIT_MS = positive(args['restart-wait'], 'restart-wait') * 1000;
const METRICS_PORT = args['metrics-port'] === undefined ? null : positive(args['metrics-port'], 'metrics-port');
const OPTIONS: Record<string, number | null> = {
  bigtxRows: args['bigtx-rows'] === undefined ? null : positive(args['bigtx-rows'], 'bigtx-rows'),
  messages: args.messages === undefined ? null : positive(args.messages, 'messages'),
  slotWait: positive(args['slot-wait'], 'slot-wait'),
  metricsPort: METRICS_PORT,
};
const DAEMON_ARGS = [...(args['daemon-arg'] ?? []), ...(METRICS_PORT ? ['--metrics-port', String(METRICS_PORT)] : [])];
const names = args.only ? args.only.split(',').map((s) => s.trim()) : SCENARIOS.map((s) => s.name);
for (const n of names) if (!SCENARIOS.some((s) => s.name === n)) usage(`unknown scenario ${JSON.stringify(n)}; there are ${SCENARIOS.map((s) => s.name).join(', ')}`);
const RUN = SCENARIOS.filter((s) => names.includes(s.name));

async function runScenario(s: Scenario, rig: AbuseRig, monitor: Helper): Promise<ScenarioResult> {
  const t = new Stopwatch();
  log(`── ${s.name} (item ${s.item}): ${s.title}`);
  const pidBefore = rig.pid;
  const ctx: AbuseContext = {
    rig,
    monitor,
    scale: SCALE,
    n: (full, min = 1) => Math.max(min, Math.round(full * SCALE)),
    floodMs: (seconds) => (SECONDS ?? seconds) * 1000,
    dead: () => rig.death !== null,
    options: OPTIONS,
  };
  if (!(await monitor.call<boolean>('live', { after: nowMs(), timeoutMs: 30_000 }, 40_000))) log('the good client receives nothing before the flood');
  await s.prepare?.(ctx);
  const baselineFrom = nowMs();
  await sleep(BASELINE_MS);
  const from = nowMs();
  let attack: AttackResult;
  let error: string | undefined;
  try {
    attack = await Promise.race([s.run(ctx), sleep(HARD_CAP_MS).then(() => Promise.reject(new Error(`not over after ${HARD_CAP_MS / 60_000} min`)))]);
  } catch (err) {
    error = (err as Error).message;
    attack = { params: {}, figures: {}, summary: `the flood failed: ${error}` };
    log(`${s.name}: ${error}`);
  }
  const to = nowMs();
  await sleep(SETTLE_MS);
  const healthyAtEnd = rig.alive() && (await rig.healthy());
  const rep = await monitor.call<MonitorReport>('report', { from, to, baselineFrom });
  const stalls = rig.daemon ? stallsBetween(rig.daemon.stalls, from, to) : { blocks: 0, blockMaxMs: Number.NaN };
  const exit = rig.death?.exit ?? null;
  const survived = exit === null && healthyAtEnd && rig.pid === pidBefore;
  const recovery = exit !== null ? await rig.recover(monitor, RESTART_WAIT_MS) : null;
  const { rss, daemonCores, healthz, ...good } = rep;
  const r: ScenarioResult = {
    bench: 'abuse',
    scenario: s.name,
    item: s.item,
    title: s.title,
    scale: SCALE,
    heapMiB: HEAP,
    params: attack.params,
    figures: attack.figures,
    attack: attack.summary,
    daemon: { pidBefore, survived, healthyAtEnd, exit, recovery, rss, cores: daemonCores, blocks: stalls.blocks, blockMaxMs: stalls.blockMaxMs },
    good: { ...good, closed: good.closes.some((c) => !c.startsWith('error')) },
    healthz,
    goalMet: good.latency.p99 <= GOAL_P99_MS && good.undelivered === 0,
    seconds: { flood: round((to - from) / 1000, 1), total: round(t.elapsedMs() / 1000, 1) },
    ...(error ? { error } : {}),
  };
  await monitor.call('trim', { before: to });
  return r;
}

async function main(): Promise<void> {
  reapDaemonsOnExit();
  const total = new Stopwatch();
  const rig = await AbuseRig.start({ heapMiB: HEAP, daemonArgs: DAEMON_ARGS });
  const monitor = Helper.fork('good-client', path.join(path.dirname(fileURLToPath(import.meta.url)), 'lib', 'abuse-monitor.js'));
  const results: ScenarioResult[] = [];
  try {
    log(`starting the daemon on 127.0.0.1:${rig.port}${HEAP ? ` under --max-old-space-size=${HEAP}` : ''}`);
    const d = await rig.startDaemon();
    await monitor.call('init', { pgUrl: rig.url, port: rig.port, token: rig.tokens.alice, room: 1, rate: RATE, pid: d.pid }, 60_000);
    for (const s of RUN) {
      if (!rig.alive()) {
        log('the daemon is not running: recovering it first');
        await rig.recover(monitor, RESTART_WAIT_MS);
      } else if (!SHARED && results.length > 0) {
        // A fresh daemon (same slot, same port): each scenario's RSS and latency are its own.
        await rig.stopDaemon();
        const fresh = await rig.startDaemon();
        await monitor.call('setPid', { pid: fresh.pid });
      }
      const r = await runScenario(s, rig, monitor);
      results.push(r);
      process.stdout.write(JSON.stringify(r) + '\n');
      process.stdout.write(readableLine(r));
    }
    const out = { ...machine(rig.serverVersion), totalSeconds: round(total.elapsedMs() / 1000, 1) };
    process.stdout.write(
      `\nAbuse floods (issue #11), --scale ${SCALE}${HEAP ? `, daemon under --max-old-space-size=${HEAP}` : ''}; good client: ${RATE} rows/s into room 1, latency = writer send → receipt, rows sent during the flood\n`,
    );
    process.stdout.write(summaryTable(results) + '\n');
    process.stdout.write(`  RSS in MiB (baseline: median of the ${BASELINE_MS / 1000} s before the flood; after: ${SETTLE_MS / 1000} s after it); latencies in ms.\n`);
    process.stdout.write(JSON.stringify({ bench: 'abuse', summary: true, scale: SCALE, heapMiB: HEAP, ...out, scenarios: results.map((r) => ({ scenario: r.scenario, survived: r.daemon.survived, goalMet: r.goalMet })) }) + '\n');
    printMachineLine(out);
  } finally {
    await monitor.call('stop').catch(() => {});
    await monitor.stop();
    await rig.destroy();
  }
}

function usage(msg: string): never {
  process.stderr.write(
    `${msg ? msg + '\n' : ''}usage: node dist/bench/abuse.js [--only ${SCENARIOS.map((s) => s.name).join(',')}] [--scale 1] [--heap MiB]\n` +
      `  [--seconds N (every flood's duration)] [--rate 10] [--baseline 3] [--settle 3] [--bigtx-rows N] [--messages N]\n` +
      `  [--slot-wait 600] [--restart-wait 120] [--metrics-port N] [--shared-daemon] [--daemon-arg=--serve-flag=value …]\n`,
  );
  process.exit(msg ? 2 : 0);
}

runMain(main);
