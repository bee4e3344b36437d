// Load-client process for bench/delivery.ts (forked; commands over IPC). Holds many WebSocket
// connections (bench/lib/mini-ws.ts) to one server and counts what arrives:
//
//   connect  open `count` connections; each waits for a welcome frame and, for walcast, sends
//            one subscribe and waits for `subscribed`; on the Supabase endpoint, each sends one
//            phx_join (bench/lib/supabase-client.ts) and waits for its ok reply. Resolves when
//            all are ready.
//   reset    zero the counters and say what to count: text frames starting with `prefix` are
//            deliveries; with `latency`, each delivery's "sent_at_ms" is read and
//            now - sent_at_ms kept; with `record`, the first `record` deliveries of this
//            process's first connection are kept verbatim.
//   stats / latencies / recorded / closeAll
//
// Times are nowMs() (wall clock, sub-millisecond), comparable with the writer's.
import { connectMany, countClose, parseBeforeReady, ProcessLoad } from './connect-many.js';
import { MiniWs } from './mini-ws.js';
import { nowMs, serveCommands } from './rpc.js';
import { supabaseJoin, supabaseJoinReply } from './supabase-client.js';

export interface ConnectArgs {
  host: string;
  port: number;
  path: string;
  count: number;
  /** Global number of this process's first connection (filters and ids are derived from it). */
  offset: number;
  /** walcast: subscribe once welcomed. Absent: ready at the welcome frame. */
  subscribe?: { table: string; filterColumn?: string; filterMod?: number };
  /** The Supabase endpoint (`path` is its): join `topic` with `subscribe` as its postgres_changes binding. */
  supabase?: { topic: string };
  /** Connections in flight at once. */
  concurrency?: number;
  timeoutMs?: number;
}

export interface ResetArgs {
  prefix: string;
  latency?: boolean;
  /** With `latency`: deliveries stamped before this (nowMs) are left out (counted as `stale`). */
  sinceMs?: number;
  record?: number;
}

export interface ClientStats {
  open: number;
  deliveries: number;
  bytes: number;
  /** Text frames that were not deliveries (progress, …). */
  other: number;
  /** Deliveries of rows stamped before `sinceMs` (latency runs: the warm-up's tail). */
  stale: number;
  firstAt: number;
  lastAt: number;
  unexpectedCloses: number;
  closeCodes: Record<string, number>;
  cpuMs: number;
  /** Event-loop utilisation since the last reset (1 = the client process was saturated). */
  elu: number;
}

const SENT_KEY = Buffer.from('"sent_at_ms":');

interface Conn extends MiniWs {
  ready?: boolean;
}

const conns = new Set<Conn>();
let first: Conn | null = null;
let prefix = Buffer.alloc(0);
let latencyOn = false;
let sinceMs = 0;
let stale = 0;
let recordMax = 0;
let recorded: string[] = [];
let deliveries = 0;
let bytes = 0;
let other = 0;
let firstAt = 0;
let lastAt = 0;
let unexpectedCloses = 0;
let closeCodes: Record<string, number> = {};
let lat = new Float64Array(1 << 16);
let latN = 0;
const load = new ProcessLoad();

function onDelivery(ws: Conn, buf: Buffer, start: number, end: number): void {
  const t = nowMs();
  if (latencyOn) {
    const i = buf.indexOf(SENT_KEY, start);
    const sent = i >= 0 && i < end ? parseFloat(buf.toString('latin1', i + SENT_KEY.length, Math.min(end, i + SENT_KEY.length + 32))) : Number.NaN;
    if (sent < sinceMs) {
      stale++;
      return;
    }
    if (latN === lat.length) {
      const bigger = new Float64Array(lat.length * 2);
      bigger.set(lat);
      lat = bigger;
    }
    lat[latN++] = t - sent; // NaN when the frame had no sent_at_ms: shows up as a bad sample
  }
  if (deliveries === 0) firstAt = t;
  lastAt = t;
  deliveries++;
  bytes += end - start;
  if (recorded.length < recordMax && ws === first) recorded.push(buf.toString('utf8', start, end));
}

function isDelivery(buf: Buffer, start: number, end: number): boolean {
  return end - start >= prefix.length && buf.compare(prefix, 0, prefix.length, start, start + prefix.length) === 0;
}

async function connect(a: ConnectArgs): Promise<{ ready: number; ms: number }> {
  const t0 = performance.now();
  const sub = a.subscribe;
  const sb = a.supabase;
  const ready = await connectMany(a.count, a.concurrency ?? 200, a.timeoutMs ?? 60_000, (i, onReady, fail) => {
    const n = a.offset + i;
    const filter = sub?.filterColumn && sub.filterMod ? `${sub.filterColumn}=eq.${n % sub.filterMod}` : undefined;
    const ws: Conn = new MiniWs(
      a.host,
      a.port,
      a.path,
      {
        open: (c) => {
          if (sb) c.sendText(supabaseJoin(sb.topic, sub?.table ?? '', filter));
        },
        text: (c, buf, start, end) => {
          const w = c as Conn;
          if (w.ready) {
            if (isDelivery(buf, start, end)) onDelivery(w, buf, start, end);
            else other++;
            return;
          }
          const msg = parseBeforeReady<{ type?: string; code?: string; message?: string }>(buf, start, end, `connection ${n}`, fail);
          if (!msg) return;
          if (sb) {
            const r = supabaseJoinReply(msg);
            if (r === 'ok') onReady(w);
            else if (r) fail(`connection ${n}: ${r.error}`);
            else other++;
          } else if (msg.type === 'welcome') {
            if (!sub) onReady(w);
            else {
              w.sendText(JSON.stringify({ type: 'subscribe', id: 1, table: sub.table, filter, ref: n }));
            }
          } else if (msg.type === 'subscribed') {
            onReady(w);
          } else if (msg.type === 'error' || msg.type === 'resync') {
            fail(`connection ${n}: ${JSON.stringify(msg)}`);
          } else other++;
        },
        close: (c, code, reason) => {
          conns.delete(c);
          unexpectedCloses++;
          const k = countClose(closeCodes, code, reason);
          if (!(c as Conn).ready) fail(`connection ${n} closed before ready: ${k}`);
        },
      },
      n,
    );
    if (conns.size === 0 && !first) first = ws;
    conns.add(ws);
  });
  return { ready, ms: ready ? Math.round(performance.now() - t0) : 0 };
}

serveCommands({
  connect,
  reset: (a: ResetArgs) => {
    prefix = Buffer.from(a.prefix);
    latencyOn = !!a.latency;
    sinceMs = a.sinceMs ?? 0;
    recordMax = a.record ?? 0;
    recorded = [];
    deliveries = bytes = other = stale = firstAt = lastAt = latN = 0;
    unexpectedCloses = 0;
    closeCodes = {};
    load.reset();
    return true;
  },
  stats: (): ClientStats => {
    return {
      open: conns.size,
      deliveries,
      bytes,
      other,
      stale,
      firstAt,
      lastAt,
      unexpectedCloses,
      closeCodes,
      ...load.since(),
    };
  },
  latencies: () => lat.slice(0, latN),
  recorded: () => recorded,
  closeAll: () => {
    const n = conns.size;
    for (const c of conns) c.destroy();
    conns.clear();
    first = null;
    return n;
  },
});
