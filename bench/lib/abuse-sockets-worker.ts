// One process of bench/lib/abuse-sockets.ts's flood (spawned, not forked: it only prints its
// result): `count` WebSocket connections without a token, opened `concurrency` at a time, each
// reopened 250 ms after it ends (the daemon closes unauthenticated ones after its auth timeout)
// until `durationMs` has passed; then all are dropped and one JSON line goes to stdout.
// Separate processes, because each has its own open-file limit (one process could not hold
// 20,000 sockets under `ulimit -n` 20000 and still open anything else).
// argv: port count durationMs concurrency
import { MiniWs } from './mini-ws.js';
import { nowMs } from './rpc.js';

const [port, count, durationMs, concurrency] = process.argv.slice(2).map(Number);
const UPGRADE_TIMEOUT_MS = 5_000;
const REOPEN_MS = 250;

const t0 = nowMs();
const endAt = t0 + durationMs;
const live = new Set<MiniWs>();
let open = 0;
let pending = 0;
let peakOpen = 0;
let attempts = 0;
let upgrades = 0;
let reachedMs = Number.NaN;
const refused: Record<string, number> = {};
const closes: Record<string, number> = {};
const bump = (t: Record<string, number>, k: string): void => {
  t[k] = (t[k] ?? 0) + 1;
};

function top(): void {
  while (pending < concurrency && open + pending < count && nowMs() < endAt) openOne();
}

function openOne(): void {
  pending++;
  attempts++;
  let upgraded = false;
  let ended = false;
  const end = (): void => {
    ended = true;
    live.delete(ws);
    if (upgraded) open--;
    else pending--;
    setTimeout(top, REOPEN_MS);
  };
  const timer = setTimeout(() => {
    if (upgraded || ended) return;
    bump(refused, 'no upgrade within 5 s');
    ws.destroy(); // reports no close: ended here
    end();
  }, UPGRADE_TIMEOUT_MS);
  const ws: MiniWs = new MiniWs(
    '127.0.0.1',
    port,
    '/ws',
    {
      open: () => {
        clearTimeout(timer);
        upgraded = true;
        upgrades++;
        pending--;
        open++;
        if (open > peakOpen) peakOpen = open;
        if (open >= count && !(reachedMs >= 0)) reachedMs = nowMs() - t0;
      },
      text: () => {},
      close: (_ws, code, reason) => {
        clearTimeout(timer);
        if (ended) return;
        bump(upgraded ? closes : refused, `${code} ${reason}`.trim());
        end();
      },
    },
    attempts,
  );
  live.add(ws);
}

top();
const tick = setInterval(top, 100);
setTimeout(() => {
  clearInterval(tick);
  const stillOpen = open;
  for (const ws of live) ws.destroy();
  process.stdout.write(
    JSON.stringify({ target: count, attempts, upgrades, peakOpen, openAtEnd: stillOpen, reachedTargetMs: Math.round(reachedMs), refused, closes }) + '\n',
    () => process.exit(0),
  );
}, durationMs);
