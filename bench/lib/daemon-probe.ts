// A walcast daemon for the churn and soak benchmarks, with what they read from it: RSS and CPU
// time from /proc, GET /status and GET /metrics over HTTP, event-loop blocks and GC pauses from
// bench/lib/stall-hook.ts, and (with `gc`) full collections plus process.memoryUsage() from
// bench/lib/daemon-hook.ts on SIGUSR2. walcast's own code is not touched.
import { sleep } from './common.js';
import { startWalcast, type Walcast, type WalcastOptions } from './daemon.js';
import { cpuMsOf, rssOf } from './rpc.js';

const MEM_MARK = '@@bench-mem '; // bench/lib/daemon-hook.ts (not imported: it would install its handler here)
const STALL_MARK = '@@bench-stall '; // bench/lib/stall-hook.ts

export interface Stall {
  kind: 'block' | 'gc';
  /** Wall clock (ms since the epoch) when it began, about. */
  at: number;
  ms: number;
}

/** process.memoryUsage() of the daemon after full collections. */
export interface DaemonMem {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
  gc: boolean;
}

/** The parts of GET /status the benchmarks read. */
export interface DaemonStatus {
  clients: number;
  subscriptions: number;
  channels: number;
  replication: string;
  window: { transactions: number; bytes: number; ageSeconds: number };
}

export interface ProbedDaemon {
  walcast: Walcast;
  pid: number;
  port: number;
  /** Event-loop blocks and GC pauses of 20 ms or more, as reported. */
  stalls: Stall[];
  rss(): number;
  cpuMs(): number;
  /** Full GCs in the daemon, then its memory (needs `gc: true`). */
  mem(): Promise<DaemonMem>;
  status(): Promise<DaemonStatus>;
  /** Unlabelled samples of GET /metrics, by name. */
  metrics(): Promise<Map<string, number>>;
  stop(): Promise<void>;
}

export interface ProbeOptions {
  serveArgs: string[];
  env?: Record<string, string>;
  /** --expose-gc and the SIGUSR2 memory hook. */
  gc: boolean;
  profileDir: string | null;
}

export async function startProbedDaemon(o: ProbeOptions): Promise<ProbedDaemon> {
  const stalls: Stall[] = [];
  let memWaiter: ((m: DaemonMem) => void) | null = null;
  const hook = (name: string): string[] => ['--import', new URL(`./${name}`, import.meta.url).href];
  const opts: WalcastOptions = {
    nodeArgs: [...(o.gc ? ['--expose-gc', ...hook('daemon-hook.js')] : []), ...hook('stall-hook.js')],
    profileDir: o.profileDir,
    serveArgs: o.serveArgs,
    env: o.env,
    marks: {
      [STALL_MARK]: (rest) => {
        stalls.push(JSON.parse(rest) as Stall);
        if (stalls.length > 100_000) stalls.splice(0, 50_000);
      },
      [MEM_MARK]: (rest) => {
        memWaiter?.(JSON.parse(rest) as DaemonMem);
        memWaiter = null;
      },
    },
    startTimeoutMs: 60_000,
    stopTimeoutMs: 20_000,
  };
  const w = await startWalcast(opts);
  const base = `http://127.0.0.1:${w.port}`;
  const get = async (p: string): Promise<string> => {
    const res = await fetch(base + p, { signal: AbortSignal.timeout(10_000) });
    if (!res.ok) throw new Error(`GET ${p}: ${res.status}`);
    return res.text();
  };
  return {
    walcast: w,
    pid: w.pid,
    port: w.port,
    stalls,
    rss: () => rssOf(w.pid),
    cpuMs: () => cpuMsOf(w.pid),
    async mem() {
      if (!o.gc) throw new Error('mem() needs a daemon started with gc: true');
      const got = new Promise<DaemonMem>((resolve) => (memWaiter = resolve));
      w.child.kill('SIGUSR2');
      return Promise.race([got, sleep(15_000).then(() => Promise.reject(new Error('walcast: no memory report')))]);
    },
    async status() {
      return JSON.parse(await get('/status')) as DaemonStatus;
    },
    async metrics() {
      return parseMetrics(await get('/metrics'));
    },
    stop: () => w.stop(),
  };
}

/** Prometheus text: `name value` lines (labelled samples and comments are skipped). */
export function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#') || line.includes('{')) continue;
    const sp = line.indexOf(' ');
    if (sp > 0) out.set(line.slice(0, sp), Number(line.slice(sp + 1).split(' ')[0]));
  }
  return out;
}

/** Within [from, to] (wall clock): how many blocks, the longest block and the longest GC pause. */
export function stallsBetween(all: readonly Stall[], from: number, to: number): { blocks: number; blockMaxMs: number; gcMaxMs: number } {
  let blocks = 0;
  let blockMaxMs = 0;
  let gcMaxMs = 0;
  for (const s of all) {
    if (s.at < from || s.at > to) continue;
    if (s.kind === 'block') {
      blocks++;
      blockMaxMs = Math.max(blockMaxMs, s.ms);
    } else gcMaxMs = Math.max(gcMaxMs, s.ms);
  }
  return { blocks, blockMaxMs: Math.round(blockMaxMs), gcMaxMs: Math.round(gcMaxMs) };
}
