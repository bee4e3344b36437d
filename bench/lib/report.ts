// Report pieces shared by the benchmarks' output: the machine a run was on, the targets list,
// and the closing line.
import os from 'node:os';
import { round } from './stats.js';

export interface Machine {
  node: string;
  postgres: string;
  cpus: number;
  cpuModel: string;
  loadAverage: number[];
}

/** This machine, for the JSON line (`postgres`: the server's server_version). */
export function machine(postgres: string): Machine {
  return {
    node: process.version,
    postgres,
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    loadAverage: os.loadavg().map((v) => round(v, 2)),
  };
}

export interface Target {
  name: string;
  value: unknown;
  /** null: not measured in this run. */
  met: boolean | null;
}

/** The "Targets" block: each one met, MISSED, or not measured. */
export function printTargets(targets: readonly Target[]): void {
  process.stdout.write('\nTargets\n');
  for (const t of targets) {
    const v = t.value === null ? 'not measured' : String(t.value);
    process.stdout.write(`  ${t.met === null ? '-     ' : t.met ? 'met   ' : 'MISSED'}  ${t.name}: ${v}\n`);
  }
}

/** The closing line: node, Postgres, CPUs, load, how long the whole run took. */
export function printMachineLine(out: Machine & { totalSeconds: number }): void {
  process.stdout.write(`\nnode ${out.node}, Postgres ${out.postgres}, ${out.cpus} cpus (${out.cpuModel}), load ${out.loadAverage.join(' ')}, ${out.totalSeconds} s\n`);
}

/** Milliseconds with two decimals, '?' when not a number. */
export const ms2 = (v: number): string => (Number.isFinite(v) ? v.toFixed(2) : '?');
