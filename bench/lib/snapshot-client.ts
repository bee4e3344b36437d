// Client process for bench/snapshot.ts (forked; commands over IPC), so that no client work is
// counted against the daemon's process (its CPU, its RSS):
//
//   pg         one plain `pg` query (default type parsers, rows as objects): rows, ms, cpu.
//   snapshots  `count` WebSocket connections (the `ws` package) each send one subscribe with a
//              snapshot at the same moment and read every frame (JSON.parse, as an app would)
//              until `subscribed`: rows, frames, bytes, time to the first row and to subscribed.
//   ttfr       one connection; `runs` times in a row: subscribe with a snapshot, time to the
//              first `snapshot` frame and to `subscribed`, then unsubscribe.
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import WebSocket from 'ws';
import { serveCommands } from './rpc.js';

export interface PgArgs {
  url: string;
  text: string;
}

export interface PgResult {
  rows: number;
  ms: number;
  cpuMs: number;
}

export interface SnapshotsArgs {
  wsUrl: string;
  count: number;
  /** The subscribe frame, without type and id. */
  subscribe: Record<string, unknown>;
  timeoutMs: number;
}

export interface SnapshotRun {
  rows: number;
  frames: number;
  bytes: number;
  firstRowMs: number;
  subscribedMs: number;
  end: string;
}

export interface SnapshotsResult {
  runs: SnapshotRun[];
  /** From the subscribes sent to the last `subscribed`. */
  ms: number;
  cpuMs: number;
}

export interface TtfrArgs {
  wsUrl: string;
  runs: number;
  table: string;
  rooms: number;
  snapshot: Record<string, unknown>;
  timeoutMs: number;
}

export interface TtfrResult {
  firstRowMs: number[];
  subscribedMs: number[];
  rows: number[];
}

type Msg = Record<string, unknown> & { type: string };

/** A WebSocket connection whose messages are parsed and handed to whoever waits for them. */
class Conn {
  private waiter: ((m: Msg, bytes: number) => boolean) | null = null;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => {
      const m = JSON.parse(data.toString('utf8')) as Msg;
      if (this.waiter && this.waiter(m, data.length)) this.waiter = null;
    });
  }

  static open(url: string, timeoutMs: number): Promise<Conn> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { perMessageDeflate: false });
      const c = new Conn(ws);
      const timer = setTimeout(() => reject(new Error(`no welcome from ${url} within ${timeoutMs} ms`)), timeoutMs);
      c.waiter = (m) => {
        if (m.type !== 'welcome') return false;
        clearTimeout(timer);
        resolve(c);
        return true;
      };
      ws.on('error', (err) => reject(err));
    });
  }

  send(m: unknown): void {
    this.ws.send(JSON.stringify(m));
  }

  /** Calls `on` with every message until it returns true; rejects on close or timeout. */
  until(on: (m: Msg, bytes: number) => boolean, timeoutMs: number, what: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${what}: nothing within ${timeoutMs} ms`)), timeoutMs);
      const closed = (code: number) => {
        clearTimeout(timer);
        reject(new Error(`${what}: closed (${code})`));
      };
      this.ws.once('close', closed);
      this.waiter = (m, bytes) => {
        if (!on(m, bytes)) return false;
        clearTimeout(timer);
        this.ws.off('close', closed);
        resolve();
        return true;
      };
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      if (this.ws.readyState === WebSocket.CLOSED) return resolve();
      this.ws.once('close', () => resolve());
      this.ws.close();
    });
  }
}

const cpuMsSince = (from: NodeJS.CpuUsage): number => {
  const c = process.cpuUsage(from);
  return (c.user + c.system) / 1000;
};

/** Reads a subscribe's snapshot up to `subscribed` (or an error / resync, which ends it too). */
function readSnapshot(c: Conn, id: string, t0: number, timeoutMs: number): Promise<SnapshotRun> {
  const run: SnapshotRun = { rows: 0, frames: 0, bytes: 0, firstRowMs: NaN, subscribedMs: NaN, end: '' };
  return c
    .until(
      (m, bytes) => {
        if (m.type === 'snapshot' && m.sub === id) {
          if (run.frames === 0) run.firstRowMs = performance.now() - t0;
          run.frames++;
          run.rows += (m.rows as unknown[]).length;
          run.bytes += bytes;
          return false;
        }
        if ((m.type === 'subscribed' && m.id === id) || (m.type === 'error' && m.id === id) || (m.type === 'resync' && m.sub === id)) {
          run.subscribedMs = performance.now() - t0;
          run.end = m.type === 'error' ? `error ${String(m.code)}: ${String(m.message)}` : m.type;
          return true;
        }
        return false;
      },
      timeoutMs,
      `snapshot ${id}`,
    )
    .then(() => run);
}

serveCommands({
  async pg(a: PgArgs): Promise<PgResult> {
    const client = new pg.Client({ connectionString: a.url });
    await client.connect();
    try {
      const cpu = process.cpuUsage();
      const t0 = performance.now();
      const r = await client.query(a.text);
      return { rows: r.rows.length, ms: performance.now() - t0, cpuMs: cpuMsSince(cpu) };
    } finally {
      await client.end();
    }
  },

  async snapshots(a: SnapshotsArgs): Promise<SnapshotsResult> {
    const conns = await Promise.all(Array.from({ length: a.count }, () => Conn.open(a.wsUrl, a.timeoutMs)));
    try {
      const cpu = process.cpuUsage();
      const t0 = performance.now();
      const runs = conns.map((c, i) => {
        const id = `s${i}`;
        const done = readSnapshot(c, id, t0, a.timeoutMs);
        c.send({ type: 'subscribe', id, ...a.subscribe });
        return done;
      });
      const all = await Promise.all(runs);
      return { runs: all, ms: performance.now() - t0, cpuMs: cpuMsSince(cpu) };
    } finally {
      await Promise.all(conns.map((c) => c.close()));
    }
  },

  async ttfr(a: TtfrArgs): Promise<TtfrResult> {
    const c = await Conn.open(a.wsUrl, a.timeoutMs);
    const out: TtfrResult = { firstRowMs: [], subscribedMs: [], rows: [] };
    try {
      for (let i = 0; i < a.runs; i++) {
        const id = `t${i}`;
        const t0 = performance.now();
        const done = readSnapshot(c, id, t0, a.timeoutMs);
        c.send({ type: 'subscribe', id, table: a.table, filter: `room=eq.${i % a.rooms}`, snapshot: a.snapshot });
        const run = await done;
        if (run.end !== 'subscribed') throw new Error(`run ${i}: ${run.end}`);
        out.firstRowMs.push(run.firstRowMs);
        out.subscribedMs.push(run.subscribedMs);
        out.rows.push(run.rows);
        const gone = c.until((m) => m.type === 'unsubscribed' && m.id === id, a.timeoutMs, `unsubscribe ${id}`);
        c.send({ type: 'unsubscribe', id });
        await gone;
      }
      return out;
    } finally {
      await c.close();
    }
  },
});
