// Output of bench/cluster.ts: the JSON line (everything measured, a summary and the targets),
// then one table per part, the nodes' warnings, the targets and the machine line.
import type { DbLoad, ProcessLoad } from './cluster-db.js';
import type { FailoverResult } from './cluster-failover.js';
import type { LatencyResult } from './cluster-latency.js';
import type { StreamState } from './cluster-nats.js';
import type { TrafficResult } from './cluster-traffic.js';
import { ms2, printMachineLine, printTargets, type Machine, type Target } from './report.js';
import { fmtInt, percentile, round, table } from './stats.js';

export const GOALS = { trafficRatio: 1.1, gapP99Ms: 5_000, gapStretchMs: 2_000, p50AddedMs: 3, clusterP99Ms: 50 };

type LoadPeak = { peak: ProcessLoad; byNode: Record<string, ProcessLoad>; samples: number };

export interface ClusterReport {
  options: Record<string, unknown>;
  db: { single?: DbLoad; singleUnderLoad?: LoadPeak; cluster1?: DbLoad; cluster3?: DbLoad; cluster3UnderLoad?: LoadPeak };
  /** At the main rate; `…Low` at the low rate (the hop's own cost when the machine is not saturated). */
  latency: { single?: LatencyResult; cluster?: LatencyResult; singleLow?: LatencyResult; clusterLow?: LatencyResult };
  traffic: TrafficResult | null;
  failover: FailoverResult | null;
  /** First cluster node started → it captures and streams. */
  firstCaptureMs?: number;
  stream?: StreamState;
  nodeStatus?: Record<string, unknown>;
  /** Warning/error log lines of each walcast process (the last 20). */
  warnings: Record<string, string[]>;
  warningCounts?: Record<string, number>;
}

interface Dist {
  p50: number;
  p99: number;
  max: number;
  n: number;
}

function dist(values: Array<number | null>): Dist | null {
  const v = values.filter((x): x is number => x !== null).sort((a, b) => a - b);
  if (v.length === 0) return null;
  return { p50: percentile(v, 50), p99: percentile(v, 99), max: v[v.length - 1], n: v.length };
}

export function printReport(r: ClusterReport, m: Machine & { totalSeconds: number }): void {
  const fo = r.failover;
  const takeover = fo ? dist(fo.rounds.map((x) => x.takeoverMs)) : null;
  const gap = fo ? dist(fo.rounds.map((x) => x.gapMs)) : null;
  const worstLatency = fo ? dist(fo.rounds.map((x) => x.maxLatencyMs)) : null;
  const { single, cluster, singleLow, clusterLow } = r.latency;
  const diff = (a?: LatencyResult, b?: LatencyResult) => (a && b ? { p50: round(b.p50 - a.p50, 2), p99: round(b.p99 - a.p99, 2) } : null);
  const added = diff(single, cluster);
  const addedLow = diff(singleLow, clusterLow);
  const ratios = r.traffic?.nodes.map((n) => n.ratio) ?? [];
  const summary = { failover: fo ? { takeoverMs: takeover, gapMs: gap, maxLatencyMs: worstLatency, lost: fo.lostOverall, duplicates: fo.duplicatesOverall } : null, latencyAdded: added, latencyAddedLowRate: addedLow };
  const targets: Target[] = [
    {
      name: `(a) bytes from NATS per node ≤ its share + ${Math.round((GOALS.trafficRatio - 1) * 100)} % (ratio received/share ≤ ${GOALS.trafficRatio})`,
      value: r.traffic ? r.traffic.nodes.map((n) => `${n.node} ${n.ratio}`).join(', ') : null,
      met: r.traffic ? ratios.every((x) => x !== null && x <= GOALS.trafficRatio) : null,
    },
    { name: `(b) delivery gap after a capture SIGKILL: p99 ≤ ${GOALS.gapP99Ms} ms`, value: gap ? `${gap.p99} ms (of ${gap.n})` : null, met: gap ? gap.p99 <= GOALS.gapP99Ms && (fo?.lostOverall ?? 0) === 0 : null },
    { name: `(b) stretch: p99 ≤ ${GOALS.gapStretchMs} ms`, value: gap ? `${gap.p99} ms` : null, met: gap ? gap.p99 <= GOALS.gapStretchMs : null },
    { name: `(c) NATS hop adds ≤ ${GOALS.p50AddedMs} ms at p50`, value: added ? `+${added.p50} ms` : null, met: added && cluster ? added.p50 <= GOALS.p50AddedMs && cluster.complete : null },
    { name: `(c) cluster p99 ≤ ${GOALS.clusterP99Ms} ms`, value: cluster ? `${cluster.p99} ms` : null, met: cluster ? cluster.p99 <= GOALS.clusterP99Ms && cluster.complete : null },
    { name: '(d) three nodes hold one walsender, as one node does', value: r.db.cluster3 ? `${r.db.cluster3.walsenders} walsender(s), ${r.db.cluster3.activeSlots}/${r.db.cluster3.slots} slot(s) active` : null, met: r.db.cluster3 ? r.db.cluster3.walsenders === 1 : null },
  ];
  process.stdout.write(JSON.stringify({ bench: 'cluster', ...r, summary, targets, machine: m }) + '\n');

  const dbRows: string[][] = [];
  const dbRow = (name: string, l: DbLoad | undefined, peak: LoadPeak | undefined): void => {
    if (!l) return;
    const per = Object.entries(l.byNode)
      .filter(([k]) => k !== 'other')
      .map(([k, v]) => `${k} ${v.walsenders}w+${v.backends}b`)
      .join(', ');
    const walcast = Object.entries(l.byNode).filter(([k]) => k !== 'other');
    dbRows.push([
      name,
      String(l.walsenders),
      `${l.activeSlots}/${l.slots}`,
      String(walcast.reduce((n, [, v]) => n + v.backends, 0)),
      per || '-',
      peak ? `${peak.peak.walsenders}w+${peak.peak.backends}b` : '-',
      String(l.byNode.other ? l.byNode.other.walsenders + l.byNode.other.backends : 0),
    ]);
  };
  dbRow('single node (no --nats)', r.db.single, r.db.singleUnderLoad);
  dbRow('cluster, 1 node', r.db.cluster1, undefined);
  dbRow('cluster, 3 nodes', r.db.cluster3, r.db.cluster3UnderLoad);
  if (dbRows.length) {
    process.stdout.write('\n(d) Database load (walsenders: pg_stat_replication; backends: pg_stat_activity client backends of the walcast processes)\n');
    process.stdout.write(table(['setup', 'walsenders', 'slots active', 'backends', 'per process (w = walsender, b = backend)', 'peak under load', 'unattributed'], dbRows) + '\n');
    const names = new Set([r.db.single, r.db.cluster3].flatMap((l) => Object.keys(l?.names ?? {})));
    if (names.size) process.stdout.write(`  as seen in pg_stat_activity: ${[...names].join('; ')}\n`);
  }

  const lat = [single, cluster, singleLow, clusterLow].filter((x): x is LatencyResult => !!x);
  if (lat.length) {
    process.stdout.write(`\n(c) Commit-to-client latency (receive − sent_at_ms, statement and commit included), ms\n`);
    process.stdout.write(
      table(
        ['system', 'subscribers', 'per change', 'tx/s', 'p50', 'p90', 'p99', 'max', 'deliveries', 'commit p50', 'commit p99', 'cores: walcast', 'nats', 'pg', 'clients', 'machine', 'other'],
        lat.map((l) => [
          l.name,
          fmtInt(l.subscribers),
          String(l.perChange),
          fmtInt(l.txPerSec),
          ms2(l.p50),
          ms2(l.p90),
          ms2(l.p99),
          ms2(l.max),
          `${fmtInt(l.samples)}/${fmtInt(l.expected)}${l.complete ? '' : ' (INCOMPLETE)'}`,
          ms2(l.commitP50),
          ms2(l.commitP99),
          ...coreCells(l.cores),
        ]),
      ) + '\n',
    );
    for (const [a, b, d] of [[single, cluster, added], [singleLow, clusterLow, addedLow]] as const) {
      if (!a || !b || !d) continue;
      process.stdout.write(`  at ${fmtInt(a.txPerSec)} tx/s: cluster − single: p50 ${signed(d.p50)} ms, p99 ${signed(d.p99)} ms`);
      const st = b.stored;
      if (st) process.stdout.write(`; sent_at_ms → stored in the stream (its RePublished copy, read by the bench): p50 ${ms2(st.p50)}, p99 ${ms2(st.p99)} ms`);
      process.stdout.write('\n');
    }
  }

  const t = r.traffic;
  if (t) {
    process.stdout.write(`\n(a) Bytes from NATS per node (/connz out_bytes of connection "walcast <node>"), ${fmtInt(t.rows)} rows at ${fmtInt(t.rate)} tx/s\n`);
    process.stdout.write(
      table(
        ['node', 'role', 'rooms', 'share', 'deliveries', 'received B', 'B/row', 'sent B', 'of stream', 'received/share', 'idle B/s', 'server'],
        t.nodes.map((n) => [
          n.node,
          n.role,
          n.rooms.join(','),
          `${(n.share * 100).toFixed(1)}%`,
          `${fmtInt(n.deliveries)}/${fmtInt(n.expected)}`,
          n.conn ? fmtInt(n.conn.received) : '?',
          n.conn ? fmtInt(n.conn.received / t.rows) : '?',
          n.conn ? fmtInt(n.conn.sent) : '?',
          n.fractionOfStream === null ? '?' : n.fractionOfStream.toFixed(3),
          n.ratio === null ? '?' : `${n.ratio.toFixed(2)}x`,
          n.idleReceivedPerSec === null ? '?' : fmtInt(n.idleReceivedPerSec),
          `${n.conn?.server ?? '?'}${n.conn?.reconnected ? ' (reconnected)' : ''}`,
        ]),
      ) + '\n',
    );
    process.stdout.write(`  the stream grew by ${fmtInt(t.streamBytes)} B in ${fmtInt(t.streamMessages)} messages (${fmtInt(t.streamBytes / Math.max(1, t.streamMessages))} B each); goal: received/share ≤ ${GOALS.trafficRatio}x (every node reading the whole stream gives about 1/share)\n`);
  }

  if (fo) {
    process.stdout.write(`\n(b) Capture node SIGKILLed under ${fmtInt(fo.rate)} tx/s (gap: longest time without an arrival at the other nodes' clients, 1 s before the kill to 2 s after the takeover)\n`);
    process.stdout.write(
      table(
        ['round', 'killed', 'new capture', 'takeover ms', 'gap ms', 'gap by observer', 'worst latency ms', 'lost', 'twice', 'restart → caught up ms'],
        fo.rounds.map((x) => [
          String(x.round),
          x.victim,
          x.next ?? 'NONE',
          x.takeoverMs === null ? 'timeout' : fmtInt(x.takeoverMs),
          x.gapMs === null ? '?' : fmtInt(x.gapMs),
          Object.entries(x.gapByObserver).map(([k, v]) => `${k} ${fmtInt(v)}`).join(', '),
          x.maxLatencyMs === null ? '?' : fmtInt(x.maxLatencyMs),
          String(x.lost),
          String(x.duplicates),
          x.restartMs === null ? '?' : fmtInt(x.restartMs),
        ]),
      ) + '\n',
    );
    const d = (x: Dist | null): string => (x ? `p50 ${fmtInt(x.p50)}, p99 ${fmtInt(x.p99)}, max ${fmtInt(x.max)} ms` : '—');
    process.stdout.write(`  takeover ${d(takeover)}; gap ${d(gap)}; worst latency ${d(worstLatency)} (${fo.rounds.length} rounds: p99 is the max)\n`);
    process.stdout.write(`  ${fmtInt(fo.rowsWritten)} rows written (${fo.writerFailures} failed); over each observer's whole life: ${fo.lostOverall} rows missing, ${fo.duplicatesOverall} twice\n`);
  }

  const warned = Object.entries(r.warnings).filter(([, w]) => w.length > 0);
  if (warned.length) {
    process.stdout.write('\nWarnings logged by the walcast processes (last lines)\n');
    for (const [node, lines] of warned) {
      process.stdout.write(`  ${node} (${r.warningCounts?.[node] ?? lines.length}):\n`);
      for (const l of lines.slice(-4)) process.stdout.write(`    ${summarize(l)}\n`);
    }
  }
  if (r.firstCaptureMs !== undefined) process.stdout.write(`\nfirst cluster node started → capturing in ${fmtInt(r.firstCaptureMs)} ms; stream at the end: ${fmtInt(r.stream?.messages ?? 0)} messages, ${fmtInt(r.stream?.bytes ?? 0)} B\n`);
  printTargets(targets);
  printMachineLine(m);
}

/** walcast processes (a/b/c), then NATS, Postgres, clients, machine, other. */
function coreCells(c: Record<string, number>): string[] {
  const fixed = ['nats', 'postgres', 'clients', 'bench', 'machine', 'other'];
  const walcast = Object.entries(c).filter(([k]) => !fixed.includes(k)).map(([, v]) => v.toFixed(2)).join('/');
  const f = (k: string): string => (c[k] === undefined ? '?' : c[k].toFixed(2));
  return [walcast, f('nats'), f('postgres'), f('clients'), f('machine'), f('other')];
}

function signed(v: number): string {
  return `${v >= 0 ? '+' : ''}${v.toFixed(2)}`;
}

/** A pino line as `level msg {err, code}` (short). */
function summarize(line: string): string {
  try {
    const o = JSON.parse(line) as { level: number; msg?: string; err?: unknown; code?: unknown };
    const extra = [o.err, o.code].filter((x) => x !== undefined).map((x) => (typeof x === 'string' ? x : JSON.stringify(x)));
    return `${o.level === 40 ? 'warn' : o.level === 50 ? 'error' : 'fatal'}: ${o.msg ?? ''}${extra.length ? ` (${extra.join('; ').slice(0, 200)})` : ''}`;
  } catch {
    return line.slice(0, 240);
  }
}
