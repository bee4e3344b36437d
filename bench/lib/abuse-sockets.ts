// Item 9, no connection cap: 20,000 WebSocket connections without a token, held for 20 s (each
// one the daemon closes is reopened), spread over processes of at most 9,000 sockets each
// (bench/lib/abuse-sockets-worker.ts), so that no process of the bench runs out of file
// descriptors under this machine's `ulimit -n` (20000, and it cannot be raised here) while the
// daemon, which has the same limit, has to hold all of them. /healthz during the flood is
// probed by the good-client process (failed and slow probes, in the report's healthz figures).
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { addCounts, fmtCounts } from './abuse-ws.js';
import type { AbuseContext, AttackResult, Scenario } from './abuse-types.js';
import { openFilesLimit } from './common.js';
import { fmtInt, round } from './stats.js';

const PER_PROCESS = 9_000;
const CONCURRENCY = 500;

interface WorkerResult {
  target: number;
  attempts: number;
  upgrades: number;
  peakOpen: number;
  openAtEnd: number;
  reachedTargetMs: number | null;
  refused: Record<string, number>;
  closes: Record<string, number>;
}

function runWorker(port: number, count: number, durationMs: number): Promise<WorkerResult> {
  const script = path.join(path.dirname(fileURLToPath(import.meta.url)), 'abuse-sockets-worker.js');
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, String(port), String(count), String(durationMs), String(CONCURRENCY)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => (out += d));
    child.on('exit', (code) => {
      try {
        resolve(JSON.parse(out) as WorkerResult);
      } catch {
        reject(new Error(`sockets worker exited (${code}) without a result`));
      }
    });
  });
}

export const sockets: Scenario = {
  name: 'sockets',
  item: 9,
  title: 'many unauthenticated WebSocket connections, held',

  async run(ctx: AbuseContext): Promise<AttackResult> {
    const total = ctx.n(20_000);
    const durationMs = ctx.floodMs(20);
    const procs = Math.ceil(total / PER_PROCESS);
    const shares = Array.from({ length: procs }, (_, i) => Math.min(PER_PROCESS, total - i * PER_PROCESS));
    const rs = await Promise.all(shares.map((n) => runWorker(ctx.rig.port, n, durationMs)));
    const refused: Record<string, number> = {};
    const closes: Record<string, number> = {};
    for (const r of rs) {
      addCounts(refused, r.refused);
      addCounts(closes, r.closes);
    }
    const sum = (f: (r: WorkerResult) => number): number => rs.reduce((a, r) => a + f(r), 0);
    const peak = sum((r) => r.peakOpen);
    const reached = rs.every((r) => r.reachedTargetMs !== null && r.reachedTargetMs >= 0) ? Math.max(...rs.map((r) => r.reachedTargetMs ?? 0)) : null;
    let fdLimit: number | string;
    try {
      fdLimit = openFilesLimit().soft;
    } catch {
      fdLimit = 'unknown';
    }
    return {
      params: { sockets: total, processes: procs, seconds: durationMs / 1000, daemonOpenFilesLimit: fdLimit },
      figures: { attempts: sum((r) => r.attempts), upgrades: sum((r) => r.upgrades), peakOpen: peak, openAtEnd: sum((r) => r.openAtEnd), reachedTargetMs: reached, refused, closes },
      summary:
        `${fmtInt(total)} sockets without a token over ${procs} processes for ${durationMs / 1000} s (daemon ulimit -n ${fdLimit}): peak ${fmtInt(peak)} open (sum of per-process peaks), ` +
        `${fmtInt(sum((r) => r.upgrades))} upgrades of ${fmtInt(sum((r) => r.attempts))} attempts, target ${reached === null ? 'NOT reached' : `reached in ${round(reached / 1000, 1)} s`}; ` +
        `refused ${fmtCounts(refused)}; closed ${fmtCounts(closes)}`,
    };
  },
};
