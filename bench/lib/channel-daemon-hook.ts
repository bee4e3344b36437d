// Preloaded into the walcast daemon by bench/channels.ts (node --import this), and nothing else:
// it writes a line on stderr for each garbage-collection pause and for each time the event loop
// was blocked for 10 ms or more, so that the round-trip tail can be matched with what the daemon
// was doing at the time:
//   @@bench-pause {"kind":"gc","at":<ms since the epoch>,"ms":…}
//   @@bench-pause {"kind":"block","at":…,"ms":…}
// A 5 ms timer that fires late by more than the threshold means the loop was busy that long
// (a block includes the GC pauses within it). walcast's own code is not touched.
import { PerformanceObserver } from 'node:perf_hooks';

const PAUSE_MARK = '@@bench-pause '; // bench/channels.ts reads these lines
const BLOCK_MS = 10;
const TICK_MS = 5;

const r2 = (v: number): number => Math.round(v * 100) / 100;
const emit = (kind: string, at: number, ms: number, cpuMs?: number): void => {
  process.stderr.write(`${PAUSE_MARK}${JSON.stringify({ kind, at: Math.round(at * 10) / 10, ms: r2(ms), cpuMs: cpuMs === undefined ? undefined : r2(cpuMs) })}\n`);
};

let last = performance.now();
let lastCpu = process.cpuUsage();
setInterval(() => {
  const now = performance.now();
  const late = now - last - TICK_MS;
  if (late >= BLOCK_MS) {
    // The process's CPU time over the gap: about the gap when the loop was busy, much less when
    // the process was not running (descheduled: the machine was busy elsewhere).
    const c = process.cpuUsage(lastCpu);
    emit('block', performance.timeOrigin + last + TICK_MS, late, (c.user + c.system) / 1000);
  }
  last = now;
  lastCpu = process.cpuUsage();
}, TICK_MS).unref();

new PerformanceObserver((list) => {
  for (const e of list.getEntries()) emit('gc', performance.timeOrigin + e.startTime, e.duration);
}).observe({ entryTypes: ['gc'] });
