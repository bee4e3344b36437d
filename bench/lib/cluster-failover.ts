// Part (b) of bench/cluster.ts: what clients see when the capture node is SIGKILLed under a
// steady write rate. One observer connection per node (the whole table) records every
// arrival (time, id, sent_at_ms). Each round: the capture node is killed; the time until
// another node's GET /status says role capture and replication streaming is the takeover; the
// observers on the nodes that were not killed give the delivery gap (the longest interval
// without an arrival from 1 s before the kill to 2 s after the takeover), the worst latency of
// a row written in that window, and rows missing or twice. The killed node is then started
// again (as an edge), and its time to be serving and caught up with the stream is kept too.
import { log, sleep } from './common.js';
import type { Arrivals } from './cluster-clients.js';
import type { StreamWatch } from './cluster-nats.js';
import { captureIndex, waitCapture, waitFollowed, type WalcastNode } from './cluster-nodes.js';
import type { ClusterClients } from './cluster-pool.js';
import { COLUMN, TABLE, type Writer } from './cluster-writer.js';
import { nowMs } from './rpc.js';
import { fmtInt, round } from './stats.js';

/** The window around a kill whose arrivals count. */
const BEFORE_MS = 1_000;
const AFTER_TAKEOVER_MS = 2_000;
/** Ids this close to an observer's first or last arrival are not judged (commit order ≠ id order over several connections). */
const EDGE_IDS = 500;

export interface FailoverOptions {
  rounds: number;
  rate: number;
  /** Steady writing before each kill. */
  steadyMs: number;
  takeoverTimeoutMs: number;
}

export interface FailoverRound {
  round: number;
  victim: string;
  next: string | null;
  epoch: number | null;
  /** Kill → another node reports role capture and replication streaming (polled every 50 ms). */
  takeoverMs: number | null;
  /** Longest interval without an arrival in the window, worst of the observers. */
  gapMs: number | null;
  gapByObserver: Record<string, number>;
  /** Worst receive − sent_at_ms of a row sent in the window, at any observer. */
  maxLatencyMs: number | null;
  /** Rows of the window that an observer did not get, summed over the observers; and rows got twice. */
  lost: number;
  duplicates: number;
  /** Restart of the killed node → serving and following the stream up to its last sequence. */
  restartMs: number | null;
}

export interface FailoverResult {
  rate: number;
  rounds: FailoverRound[];
  /** Over each observer's whole life (edges trimmed): rows it should have had but did not, and repeats. */
  lostOverall: number;
  duplicatesOverall: number;
  rowsWritten: number;
  writerFailures: number;
}

interface Observer {
  tag: string;
  node: string;
}

export async function measureFailovers(
  ctx: { nodes: WalcastNode[]; clients: ClusterClients; writer: Writer; watch: StreamWatch },
  o: FailoverOptions,
): Promise<FailoverResult> {
  const { nodes, clients, writer, watch } = ctx;
  const observers: Observer[] = [];
  const current = new Map<string, Observer>();
  const observe = async (n: WalcastNode): Promise<void> => {
    const ob = { tag: `o-${n.id}-${n.starts}`, node: n.id };
    await clients.openOne(ob.tag, n.port, TABLE, COLUMN, null);
    observers.push(ob);
    current.set(n.id, ob);
  };
  await clients.record({ arrivals: true });
  for (const n of nodes) await observe(n);
  const run = writer.run(o.rate, 1);
  const windows: Array<{ round: FailoverRound; from: number; to: number; observers: Observer[] }> = [];
  try {
    for (let round = 1; round <= o.rounds; round++) {
      await sleep(o.steadyMs);
      let victim = await captureIndex(nodes);
      if (victim < 0) victim = await waitCapture(nodes, o.takeoverTimeoutMs);
      if (victim < 0) throw new Error(`failover round ${round}: no node captures`);
      const survivors = nodes.filter((_, i) => i !== victim).map((n) => current.get(n.id)!);
      const killAt = nowMs();
      await nodes[victim].kill();
      const next = await waitCapture(nodes, o.takeoverTimeoutMs, victim);
      const takeoverMs = next >= 0 ? nowMs() - killAt : null;
      const st = next >= 0 ? await nodes[next].status() : null;
      await sleep(AFTER_TAKEOVER_MS);
      const to = nowMs();
      await clients.close(current.get(nodes[victim].id)!.tag);
      const r: FailoverRound = {
        round,
        victim: nodes[victim].id,
        next: next >= 0 ? nodes[next].id : null,
        epoch: st?.cluster?.capture?.epoch ?? null,
        takeoverMs: takeoverMs === null ? null : round1(takeoverMs),
        gapMs: null,
        gapByObserver: {},
        maxLatencyMs: null,
        lost: 0,
        duplicates: 0,
        restartMs: null,
      };
      windows.push({ round: r, from: killAt - BEFORE_MS, to, observers: survivors });
      log(`failover ${round}: killed ${r.victim}; ${r.next ?? 'no node'} captures after ${r.takeoverMs ?? '—'} ms (epoch ${r.epoch})`);
      const t0 = nowMs();
      await nodes[victim].start();
      const s = await watch.state();
      if (await waitFollowed([nodes[victim]], s.lastSeq, 60_000)) r.restartMs = round1(nowMs() - t0);
      await observe(nodes[victim]);
      log(`failover ${round}: ${r.victim} back as ${(await nodes[victim].status())?.cluster?.role ?? '?'}, caught up with the stream (seq ${fmtInt(s.lastSeq)}) in ${r.restartMs ?? '—'} ms`);
    }
  } finally {
    run.stop();
  }
  const w = await run.done;
  const s = await watch.state();
  await waitFollowed(nodes, s.lastSeq, 30_000);
  await sleep(500);

  const got = new Map<string, Arrivals>();
  for (const ob of observers) {
    const a = await clients.arrivals(ob.tag);
    if (a) got.set(ob.tag, a);
  }
  for (const win of windows) judge(win, got);
  let lostOverall = 0;
  let duplicatesOverall = 0;
  for (const a of got.values()) {
    const c = completeness(a);
    lostOverall += c.missing;
    duplicatesOverall += c.duplicates;
  }
  await clients.close();
  return { rate: o.rate, rounds: windows.map((x) => x.round), lostOverall, duplicatesOverall, rowsWritten: w.last - w.first + 1, writerFailures: w.failures };
}

/** Fills in the round's gap, latency and losses from the arrivals of its observers. */
function judge(win: { round: FailoverRound; from: number; to: number; observers: Observer[] }, got: Map<string, Arrivals>): void {
  const r = win.round;
  // The window's rows: ids sent within it, as any observer saw them.
  let lo = Infinity;
  let hi = -Infinity;
  for (const ob of win.observers) {
    const a = got.get(ob.tag);
    if (!a) continue;
    for (let i = 0; i < a.at.length; i++) {
      if (a.sent[i] >= win.from && a.sent[i] <= win.to) {
        lo = Math.min(lo, a.id[i]);
        hi = Math.max(hi, a.id[i]);
      }
    }
  }
  for (const ob of win.observers) {
    const a = got.get(ob.tag);
    if (!a) continue;
    let prev = win.from;
    let gap = 0;
    let worst = 0;
    const seen = new Map<number, number>();
    for (let i = 0; i < a.at.length; i++) {
      const t = a.at[i];
      if (t >= win.from && t <= win.to) {
        gap = Math.max(gap, t - prev);
        prev = t;
      }
      if (a.sent[i] >= win.from && a.sent[i] <= win.to) worst = Math.max(worst, t - a.sent[i]);
      if (a.id[i] >= lo && a.id[i] <= hi) seen.set(a.id[i], (seen.get(a.id[i]) ?? 0) + 1);
    }
    gap = Math.max(gap, win.to - prev);
    r.gapByObserver[ob.node] = round1(gap);
    r.gapMs = Math.max(r.gapMs ?? 0, round1(gap));
    r.maxLatencyMs = Math.max(r.maxLatencyMs ?? 0, round1(worst));
    if (hi >= lo) r.lost += hi - lo + 1 - seen.size;
    for (const n of seen.values()) if (n > 1) r.duplicates += n - 1;
  }
}

/** Rows an observer missed between its first and last arrival (edges trimmed), and repeats. */
function completeness(a: Arrivals): { missing: number; duplicates: number } {
  if (a.id.length === 0) return { missing: 0, duplicates: 0 };
  let min = Infinity;
  let max = -Infinity;
  for (const id of a.id) {
    min = Math.min(min, id);
    max = Math.max(max, id);
  }
  const lo = min + EDGE_IDS;
  const hi = max - EDGE_IDS;
  const seen = new Set<number>();
  let duplicates = 0;
  for (const id of a.id) {
    if (seen.has(id)) duplicates++;
    seen.add(id);
  }
  let missing = 0;
  for (let id = lo; id <= hi; id++) if (!seen.has(id)) missing++;
  return { missing, duplicates };
}

function round1(v: number): number {
  return round(v, 1);
}
