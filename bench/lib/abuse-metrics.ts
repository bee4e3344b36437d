// Item 11, /metrics blocks the loop: 500 concurrent GET /metrics, each asked again as soon as it
// is answered, for 10 s (keep-alive connections, one per loop). The good client's ping → pong
// (in the report's ping figures) shows whether the daemon's loop was blocked. With
// --metrics-port, the requests go to that port (the daemon is started with it).
import http from 'node:http';
import type { AbuseContext, AttackResult, Scenario } from './abuse-types.js';
import { fmtCounts } from './abuse-ws.js';
import { Histogram } from './histogram.js';
import { nowMs } from './rpc.js';
import { fmtInt, round } from './stats.js';

const TIMEOUT_MS = 5_000;

export const metrics: Scenario = {
  name: 'metrics',
  item: 11,
  title: '500 concurrent GET /metrics, repeated',

  async run(ctx: AbuseContext): Promise<AttackResult> {
    const concurrency = ctx.n(500, 5);
    const durationMs = ctx.floodMs(10);
    const port = ctx.options.metricsPort ?? ctx.rig.port;
    const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
    const lat = new Histogram();
    const outcomes: Record<string, number> = {};
    let bytes = 0;
    const t0 = nowMs();
    const endAt = t0 + durationMs;
    const one = (): Promise<void> =>
      new Promise((resolve) => {
        const at = nowMs();
        const done = (k: string): void => {
          outcomes[k] = (outcomes[k] ?? 0) + 1;
          resolve();
        };
        const req = http.get({ host: '127.0.0.1', port, path: '/metrics', agent, timeout: TIMEOUT_MS }, (res) => {
          res.on('data', (d: Buffer) => (bytes += d.length));
          res.on('end', () => {
            lat.add(nowMs() - at);
            done(`status ${res.statusCode}`);
          });
          res.on('error', (err) => done(err.message));
        });
        req.on('timeout', () => {
          req.destroy();
          done('timeout');
        });
        req.on('error', (err) => done((err as NodeJS.ErrnoException).code ?? err.message));
      });
    const loop = async (): Promise<void> => {
      while (nowMs() < endAt && !ctx.dead()) await one();
    };
    await Promise.all(Array.from({ length: concurrency }, loop));
    agent.destroy();
    const ms = nowMs() - t0;
    const s = lat.spread();
    return {
      params: { concurrency, seconds: durationMs / 1000, port: port === ctx.rig.port ? 'the WebSocket port' : port },
      figures: { requests: lat.n, outcomes, bytes, perSec: round(lat.n / (ms / 1000)), latency: s },
      summary: `${fmtInt(lat.n)} /metrics answered in ${round(ms / 1000, 1)} s (${fmtInt(lat.n / (ms / 1000))}/s, ${fmtInt(bytes / 1048576)} MiB), each p50 ${s.p50} / p99 ${s.p99} ms; outcomes ${fmtCounts(outcomes)}`,
    };
  },
};
