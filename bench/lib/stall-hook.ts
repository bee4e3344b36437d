// Preloaded into the walcast daemon by bench/auth.ts (node --import this), and nothing else:
// it reports, on stderr, each time the daemon's event loop was blocked for 20 ms or more and
// each garbage-collection pause of 20 ms or more, so that the latency tail can be matched
// with what the daemon was doing:
//   @@bench-stall {"kind":"block","at":<ms since the epoch the block began, about>,"ms":…}
//   @@bench-stall {"kind":"gc","at":…,"ms":…}
// A 10 ms timer that fires late by more than the threshold means the loop was busy that long.
// It costs the daemon about one timer callback per 10 ms; walcast's own code is not touched.
import { PerformanceObserver } from 'node:perf_hooks';

export const STALL_MARK = '@@bench-stall ';
const THRESHOLD_MS = 20;
const TICK_MS = 10;

const emit = (kind: string, at: number, ms: number): void => {
  process.stderr.write(`${STALL_MARK}${JSON.stringify({ kind, at: Math.round(at * 10) / 10, ms: Math.round(ms * 10) / 10 })}\n`);
};

let last = performance.now();
setInterval(() => {
  const now = performance.now();
  const late = now - last - TICK_MS;
  if (late >= THRESHOLD_MS) emit('block', performance.timeOrigin + last + TICK_MS, late);
  last = now;
}, TICK_MS).unref();

new PerformanceObserver((list) => {
  for (const e of list.getEntries()) if (e.duration >= THRESHOLD_MS) emit('gc', performance.timeOrigin + e.startTime, e.duration);
}).observe({ entryTypes: ['gc'] });
