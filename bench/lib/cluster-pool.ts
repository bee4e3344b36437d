// The orchestrator's side of bench/lib/cluster-clients.ts: a few client processes, groups of
// connections spread over them, their counters summed per group and their samples pooled.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Arrivals, GroupStats, OpenArgs, RecordArgs } from './cluster-clients.js';
import { concatSorted, log, sleep, sum } from './common.js';
import { Helper } from './rpc.js';
import { fmtInt } from './stats.js';

const LIB = path.dirname(fileURLToPath(import.meta.url)); // dist/bench/lib
const HOST = '127.0.0.1';

export class ClusterClients {
  private constructor(private readonly procs: Helper[]) {}

  static start(n: number): ClusterClients {
    return new ClusterClients(Array.from({ length: n }, (_, i) => Helper.fork(`cluster-client-${i}`, path.join(LIB, 'cluster-clients.js'))));
  }

  get pids(): number[] {
    return this.procs.map((p) => p.pid);
  }

  /** A group of connections to `port`, one per entry of `rooms`, split over the processes. */
  async open(tag: string, port: number, table: string, column: string, rooms: Array<number | null>): Promise<void> {
    const per = Math.ceil(rooms.length / this.procs.length);
    await Promise.all(
      this.procs.map((p, i) => {
        const mine = rooms.slice(i * per, (i + 1) * per);
        if (mine.length === 0) return null;
        const a: OpenArgs = { tag, host: HOST, port, table, column, rooms: mine, timeoutMs: 60_000 };
        return p.call('open', a, 70_000);
      }),
    );
  }

  /** One connection in the first process (an observer whose arrivals are read back whole). */
  async openOne(tag: string, port: number, table: string, column: string, room: number | null): Promise<void> {
    const a: OpenArgs = { tag, host: HOST, port, table, column, rooms: [room], timeoutMs: 30_000 };
    await this.procs[0].call('open', a, 40_000);
  }

  async record(a: RecordArgs): Promise<void> {
    await Promise.all(this.procs.map((p) => p.call('record', a)));
  }

  /** Counters per group, summed over the processes. */
  async stats(): Promise<Map<string, GroupStats>> {
    const out = new Map<string, GroupStats>();
    for (const list of await Promise.all(this.procs.map((p) => p.call<GroupStats[]>('stats')))) {
      for (const s of list) {
        const o = out.get(s.tag);
        if (!o) {
          out.set(s.tag, { ...s, closeCodes: { ...s.closeCodes } });
          continue;
        }
        o.open += s.open;
        o.closed += s.closed;
        o.deliveries += s.deliveries;
        o.bytes += s.bytes;
        o.stale += s.stale;
        o.lastAt = Math.max(o.lastAt, s.lastAt);
        for (const [k, v] of Object.entries(s.closeCodes)) o.closeCodes[k] = (o.closeCodes[k] ?? 0) + v;
      }
    }
    return out;
  }

  /** Deliveries of every group together. */
  async deliveries(prefix = ''): Promise<number> {
    return sum([...(await this.stats())].filter(([tag]) => tag.startsWith(prefix)).map(([, s]) => s.deliveries));
  }

  /**
   * Polls until the groups starting with `prefix` have `expected` deliveries, nothing arrived for
   * `idleMs`, or `timeoutMs` passed. Resolves with the deliveries seen.
   */
  async waitDeliveries(prefix: string, expected: number, idleMs: number, timeoutMs: number): Promise<number> {
    const t0 = Date.now();
    let last = -1;
    let lastChange = Date.now();
    for (;;) {
      const n = await this.deliveries(prefix);
      if (n >= expected) return n;
      if (n !== last) {
        last = n;
        lastChange = Date.now();
      }
      if (Date.now() - lastChange > idleMs || Date.now() - t0 > timeoutMs) {
        log(`  incomplete: ${fmtInt(n)} of ${fmtInt(expected)} deliveries`);
        return n;
      }
      await sleep(100);
    }
  }

  /** Latency samples of the groups starting with `prefix`, sorted. */
  async latencies(prefix = ''): Promise<Float64Array> {
    return concatSorted(await Promise.all(this.procs.map((p) => p.call<Float64Array>('latencies', { prefix }))));
  }

  /** An observer's arrivals (openOne puts it in the first process). */
  async arrivals(tag: string): Promise<Arrivals | null> {
    return this.procs[0].call<Arrivals | null>('arrivals', { tag });
  }

  async close(tag?: string): Promise<void> {
    await Promise.all(this.procs.map((p) => p.call('close', { tag })));
  }

  async stop(): Promise<void> {
    await Promise.all(this.procs.map((p) => p.stop()));
  }
}
