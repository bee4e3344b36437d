// Preloaded into the walcast daemon by bench/delivery.ts (node --expose-gc --import this), and
// nothing else: on SIGUSR2 it runs full garbage collections and writes one line to stderr,
//   @@bench-mem {"gc":true,"rss":…,"heapUsed":…,…}
// so that memory can be read after collecting, without touching walcast's own code.
export const MEM_MARK = '@@bench-mem ';

process.on('SIGUSR2', () => {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc) {
    gc();
    gc();
  }
  process.stderr.write(`${MEM_MARK}${JSON.stringify({ gc: !!gc, ...process.memoryUsage() })}\n`);
});
