// The good client of bench/abuse.ts, in a process of its own (forked; commands over IPC) so that
// the attackers' work in the orchestrator never delays what it measures. It holds:
//   - a writer: `rate` single-row INSERTs per second into public.messages of its room, each
//     body "good:<seq>:<send time ms>";
//   - a subscriber (user alice, `ws`): room_id=eq.<room> on public.messages; each change's
//     receipt time gives writer send → receipt and commit_time → receipt; reconnects when closed
//     (resuming with `since` = the last position it got), every close noted;
//   - a protocol ping every 100 ms on the same connection (ping → pong);
//   - GET /healthz every 500 ms on a fresh TCP connection (2 s timeout);
//   - the daemon's VmRSS and CPU time every 200 ms (/proc/<pid>).
// Everything is kept with its time stamp; report() summarises a time range afterwards, so rows
// sent during a flood and delivered after it still count for the flood.
import http from 'node:http';
import pg from 'pg';
import WebSocket from 'ws';
import type { MonitorInit, MonitorReport, MonitorReportArgs } from './abuse-types.js';
import { Histogram } from './histogram.js';
import { cpuMsOf, nowMs, rssOf, serveCommands } from './rpc.js';
import { median, round } from './stats.js';

const PING_MS = 100;
const HEALTH_MS = 500;
const HEALTH_TIMEOUT_MS = 2_000;
const HEALTH_SLOW_MS = 500;
const RSS_MS = 200;

interface Row {
  sent: number;
  recv: number;
  commit: number;
}
interface Ping {
  sent: number;
  rtt: number;
}
interface Probe {
  at: number;
  ms: number;
  ok: boolean;
  why: string;
}

let cfg: MonitorInit;
let pid = 0;
const rows = new Map<number, Row>();
const pings = new Map<number, Ping>();
const probes: Probe[] = [];
const rss: Array<{ at: number; v: number }> = [];
const cpu: Array<{ at: number; ms: number }> = [];
const closes: Array<{ at: number; what: string }> = [];
let ws: WebSocket | null = null;
let lastPos: string | null = null;
let subscribedOnce: (() => void) | null = null;
let stopping = false;
let seq = 0;
let pingRef = 0;

function connect(): void {
  if (stopping) return;
  const sock = new WebSocket(`ws://127.0.0.1:${cfg.port}/ws?token=${cfg.token}`, { perMessageDeflate: false });
  ws = sock;
  let opened = false;
  sock.on('open', () => {
    opened = true;
    sock.send(JSON.stringify({ type: 'subscribe', id: 'good', table: 'public.messages', filter: `room_id=eq.${cfg.room}`, since: lastPos, ref: 'sub' }));
  });
  sock.on('message', (data: Buffer) => onFrame(sock, data));
  sock.on('error', () => {}); // 'close' follows
  sock.on('close', (code: number, reason: Buffer) => {
    if (ws === sock) ws = null;
    if (!stopping) {
      if (opened) closes.push({ at: nowMs(), what: `${code} ${reason.toString()}`.trim() });
      setTimeout(connect, 250);
    }
  });
}

function onFrame(sock: WebSocket, data: Buffer): void {
  const recv = nowMs();
  let m: { type?: string; ref?: unknown; pos?: string; commit_time?: string; new?: { body?: string }; code?: string; reason?: string };
  try {
    m = JSON.parse(data.toString('utf8')) as typeof m;
  } catch {
    return;
  }
  switch (m.type) {
    case 'change': {
      if (m.pos) lastPos = m.pos;
      const parts = (m.new?.body ?? '').split(':');
      const r = rows.get(Number(parts[1]));
      if (parts[0] === 'good' && r && !(r.recv > 0)) {
        r.recv = recv;
        r.commit = m.commit_time ? Date.parse(m.commit_time) : Number.NaN;
      }
      break;
    }
    case 'progress':
      if (m.pos) lastPos = m.pos;
      break;
    case 'pong': {
      const p = pings.get(Number(m.ref));
      if (p && !(p.rtt >= 0)) p.rtt = recv - p.sent;
      break;
    }
    case 'subscribed':
      subscribedOnce?.();
      subscribedOnce = null;
      break;
    case 'resync':
      lastPos = null; // the window moved past it: from now on, without since
      sock.send(JSON.stringify({ type: 'subscribe', id: 'good', table: 'public.messages', filter: `room_id=eq.${cfg.room}`, ref: 'sub' }));
      break;
    case 'error':
      closes.push({ at: recv, what: `error ${m.code ?? '?'}` });
      break;
  }
}

function startWriter(db: pg.Client): void {
  const tick = (): void => {
    if (stopping) return;
    const k = ++seq;
    const sent = nowMs();
    rows.set(k, { sent, recv: Number.NaN, commit: Number.NaN });
    db.query({ name: 'good_insert', text: 'insert into public.messages (room_id, author, body) values ($1, $2, $3)', values: [cfg.room, 'alice', `good:${k}:${sent}`] }).catch(() => {
      rows.delete(k); // not written: not counted as undelivered
    });
  };
  setInterval(tick, 1000 / cfg.rate);
}

function startPings(): void {
  setInterval(() => {
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    const k = ++pingRef;
    pings.set(k, { sent: nowMs(), rtt: Number.NaN });
    ws.send(`{"type":"ping","ref":${k}}`);
  }, PING_MS);
}

function probe(): void {
  const at = nowMs();
  let done = false;
  const finish = (ok: boolean, why: string): void => {
    if (done) return;
    done = true;
    probes.push({ at, ms: nowMs() - at, ok, why });
  };
  const req = http.get({ host: '127.0.0.1', port: cfg.port, path: '/healthz', agent: false, timeout: HEALTH_TIMEOUT_MS }, (res) => {
    res.resume();
    res.on('end', () => finish(res.statusCode === 200, `status ${res.statusCode}`));
    res.on('error', (err) => finish(false, err.message));
  });
  req.on('timeout', () => {
    finish(false, 'timeout');
    req.destroy();
  });
  req.on('error', (err) => finish(false, (err as NodeJS.ErrnoException).code ?? err.message));
}

function sampleDaemon(): void {
  const at = nowMs();
  try {
    rss.push({ at, v: rssOf(pid) });
    cpu.push({ at, ms: cpuMsOf(pid) });
  } catch {
    rss.push({ at, v: Number.NaN }); // gone
  }
}

const mib = (b: number): number => round(b / 1024 / 1024, 1);

function report(a: MonitorReportArgs): MonitorReport {
  const lat = new Histogram();
  const com = new Histogram();
  const quiet = new Histogram();
  for (const r of rows.values()) if (r.sent >= a.baselineFrom && r.sent < a.from && r.recv > 0) quiet.add(r.recv - r.sent);
  let written = 0;
  let delivered = 0;
  for (const r of rows.values()) {
    if (r.sent < a.from || r.sent >= a.to) continue;
    written++;
    if (r.recv > 0) {
      delivered++;
      lat.add(r.recv - r.sent);
      com.add(r.recv - r.commit);
    }
  }
  const ping = new Histogram();
  let pingCount = 0;
  for (const p of pings.values()) {
    if (p.sent < a.from || p.sent >= a.to) continue;
    pingCount++;
    ping.add(p.rtt);
  }
  const pr = probes.filter((p) => p.at >= a.from && p.at < a.to);
  const prMs = new Histogram();
  for (const p of pr) prMs.add(p.ms);
  const failures: Record<string, number> = {};
  for (const p of pr) if (!p.ok) failures[p.why] = (failures[p.why] ?? 0) + 1;
  const base = rss.filter((s) => s.at >= a.baselineFrom && s.at < a.from && s.v > 0).map((s) => s.v);
  const during = rss.filter((s) => s.at >= a.from && s.at <= a.to);
  const last = rss[rss.length - 1];
  const cpuIn = cpu.filter((s) => s.at >= a.from && s.at <= a.to);
  const cores = cpuIn.length > 1 ? (cpuIn[cpuIn.length - 1].ms - cpuIn[0].ms) / (cpuIn[cpuIn.length - 1].at - cpuIn[0].at) : Number.NaN;
  return {
    latency: lat.spread(),
    quietLatency: quiet.spread(),
    commitLatency: com.spread(),
    written,
    delivered,
    undelivered: written - delivered,
    ping: ping.spread(),
    pings: pingCount,
    pingsUnanswered: pingCount - ping.n,
    closes: closes.filter((c) => c.at >= a.from).map((c) => c.what),
    healthz: {
      probes: pr.length,
      ok: pr.filter((p) => p.ok).length,
      failed: pr.filter((p) => !p.ok).length,
      slow: pr.filter((p) => p.ms > HEALTH_SLOW_MS).length,
      p99: round(prMs.percentile(99), 1),
      max: round(prMs.max, 1),
      failures: Object.entries(failures).map(([k, v]) => `${v}× ${k}`),
    },
    rss: {
      baselineMiB: mib(median(base)),
      peakMiB: mib(during.reduce((m, s) => (s.v > 0 && !(s.v <= m) ? s.v : m), Number.NaN)),
      afterMiB: mib(last?.v ?? Number.NaN),
      gone: during.some((s) => !(s.v > 0)) || !(last?.v > 0),
    },
    daemonCores: round(cores, 2),
  };
}

/** Resolves when a row sent at or after `after` has been received (false after timeoutMs). */
async function live(a: { after: number; timeoutMs: number }): Promise<boolean> {
  const deadline = nowMs() + a.timeoutMs;
  while (nowMs() < deadline) {
    for (const r of rows.values()) if (r.sent >= a.after && r.recv > 0) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

serveCommands({
  async init(a: MonitorInit) {
    cfg = a;
    pid = a.pid;
    const db = new pg.Client({ connectionString: a.pgUrl });
    db.on('error', () => {}); // Postgres going away ends the run; the orchestrator says why
    await db.connect();
    const subscribed = new Promise<void>((resolve) => (subscribedOnce = resolve));
    connect();
    await subscribed;
    startWriter(db);
    startPings();
    setInterval(probe, HEALTH_MS);
    setInterval(sampleDaemon, RSS_MS);
    return true;
  },
  setPid(a: { pid: number }) {
    pid = a.pid;
    return true;
  },
  live,
  report,
  /** Forgets samples older than `before` (a long run keeps only what it may still report). */
  trim(a: { before: number }) {
    for (const [k, r] of rows) if (r.sent < a.before) rows.delete(k);
    for (const [k, p] of pings) if (p.sent < a.before) pings.delete(k);
    const cut = <T extends { at: number }>(xs: T[]): void => {
      const i = xs.findIndex((x) => x.at >= a.before);
      xs.splice(0, i < 0 ? xs.length : i);
    };
    cut(probes);
    cut(rss);
    cut(cpu);
    cut(closes);
    return true;
  },
  stop() {
    stopping = true;
    ws?.terminate();
    return true;
  },
});
