// Where the CPU went during a run of bench/cluster.ts (Linux /proc): the walcast nodes, the NATS
// servers, Postgres (postmaster and its children), the load clients, this process, and the
// whole machine (/proc/stat), so that what other work on a shared machine took shows as the rest.
import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { cpuMsOf } from './rpc.js';
import { round } from './stats.js';

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
  } catch {
    return '';
  }
}

function ppid(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return -1;
  }
}

function pids(): number[] {
  return readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number);
}

/** nats-server processes whose config file lies in `dir` (the throwaway servers' directory). */
export function natsPids(dir: string): number[] {
  return pids().filter((p) => {
    const c = cmdline(p);
    return c.includes('nats-server') && c.includes(dir);
  });
}

/** The postmaster of `dataDir` and its children (backends, walsenders, background processes). */
export function postgresPids(dataDir: string): number[] {
  let master: number;
  try {
    master = Number(readFileSync(`${dataDir}/postmaster.pid`, 'utf8').split('\n')[0]);
  } catch {
    return [];
  }
  return [master, ...pids().filter((p) => ppid(p) === master)];
}

/** Busy and total jiffies of the machine, from the first line of /proc/stat. */
function machineTicks(): { busy: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  const idle = f[3] + (f[4] ?? 0); // idle + iowait
  return { busy: total - idle, total };
}

function cpuOf(pid: number): number {
  try {
    return cpuMsOf(pid);
  } catch {
    return Number.NaN; // gone
  }
}

/** Cores used (1 = one core) per named group of processes over [start, stop]. */
export class CpuMeter {
  private before = new Map<number, number>();
  private machine0 = machineTicks();
  private t0 = Date.now();
  private self0 = process.cpuUsage();

  constructor(private readonly groups: Record<string, () => number[]>) {}

  start(): void {
    this.before = new Map();
    for (const f of Object.values(this.groups)) for (const p of f()) this.before.set(p, cpuOf(p));
    this.machine0 = machineTicks();
    this.self0 = process.cpuUsage();
    this.t0 = Date.now();
  }

  /** Cores per group, `bench` (this process), `machine` (all CPUs busy) and `other` (the machine minus the rest). */
  stop(): Record<string, number> {
    const wall = Date.now() - this.t0;
    const out: Record<string, number> = {};
    let known = 0;
    for (const [name, f] of Object.entries(this.groups)) {
      let ms = 0;
      for (const p of f()) {
        const a = this.before.get(p) ?? 0; // started during the run: all of its time
        const b = cpuOf(p);
        if (b === b && a === a) ms += b - a;
      }
      out[name] = round(ms / wall, 2);
      known += ms;
    }
    const self = process.cpuUsage(this.self0);
    const selfMs = (self.user + self.system) / 1000;
    out.bench = round(selfMs / wall, 2);
    known += selfMs;
    const m = machineTicks();
    const cores = os.cpus().length;
    const busy = (m.busy - this.machine0.busy) / Math.max(1, m.total - this.machine0.total);
    out.machine = round(busy * cores, 2);
    out.other = round(Math.max(0, busy * cores - known / wall), 2);
    return out;
  }
}
