// Client process of bench/cluster.ts (forked; commands over IPC). Holds WebSocket connections
// (bench/lib/mini-ws.ts) to several walcast nodes at once, in named groups (one per node, or per
// observer), and records what arrives per group:
//
//   open     a group: one connection per entry of `rooms`, each subscribed to the table with
//            `<column>=eq.<room>` (null: the whole table); resolves when all are subscribed.
//   record   zero the counters; with `latency`, keep receive time − sent_at_ms of each delivery
//            (rows stamped before `sinceMs` are counted as stale, not kept); with `arrivals`,
//            keep (receive time, id, sent_at_ms) of each delivery, for gaps and lost rows.
//   stats / latencies / arrivals / close
//
// Times are nowMs() (wall clock, sub-millisecond), comparable with the writer's on one machine.
import { connectMany, countClose, intAt, parseBeforeReady, valueAfter } from './connect-many.js';
import { MiniWs } from './mini-ws.js';
import { nowMs, serveCommands } from './rpc.js';

export interface OpenArgs {
  tag: string;
  host: string;
  port: number;
  table: string;
  column: string;
  /** One connection per entry: the room it filters on, or null for the whole table. */
  rooms: Array<number | null>;
  timeoutMs?: number;
}

export interface RecordArgs {
  latency?: boolean;
  arrivals?: boolean;
  sinceMs?: number;
}

export interface GroupStats {
  tag: string;
  open: number;
  /** Connections that closed (the node went away), since open. */
  closed: number;
  closeCodes: Record<string, number>;
  deliveries: number;
  bytes: number;
  stale: number;
  lastAt: number;
}

export interface Arrivals {
  at: Float64Array;
  id: Float64Array;
  sent: Float64Array;
}

/** A Float64Array that doubles when full. */
class Grow {
  a = new Float64Array(1024);
  n = 0;
  push(v: number): void {
    if (this.n === this.a.length) {
      const b = new Float64Array(this.a.length * 2);
      b.set(this.a);
      this.a = b;
    }
    this.a[this.n++] = v;
  }
  take(): Float64Array {
    return this.a.slice(0, this.n);
  }
}

interface Group extends Omit<GroupStats, 'tag' | 'open'> {
  conns: Set<MiniWs>;
  lat: Grow;
  at: Grow;
  id: Grow;
  sent: Grow;
}

const PREFIX = Buffer.from('{"type":"change"');
const SENT_KEY = Buffer.from('"sent_at_ms":');
const ID_KEY = Buffer.from('"id":');
const groups = new Map<string, Group>();
let latencyOn = false;
let arrivalsOn = false;
let sinceMs = 0;

function group(tag: string): Group {
  let g = groups.get(tag);
  if (!g) {
    g = { conns: new Set(), closed: 0, closeCodes: {}, deliveries: 0, bytes: 0, stale: 0, lastAt: 0, lat: new Grow(), at: new Grow(), id: new Grow(), sent: new Grow() };
    groups.set(tag, g);
  }
  return g;
}

function onText(g: Group, buf: Buffer, start: number, end: number): void {
  if (end - start < PREFIX.length || buf.compare(PREFIX, 0, PREFIX.length, start, start + PREFIX.length) !== 0) return;
  const t = nowMs();
  g.deliveries++;
  g.bytes += end - start;
  g.lastAt = t;
  if (!latencyOn && !arrivalsOn) return;
  const s = valueAfter(buf, SENT_KEY, start, end);
  const sent = s < 0 ? Number.NaN : parseFloat(buf.toString('latin1', s, Math.min(end, s + 32)));
  if (latencyOn) {
    if (sent < sinceMs) g.stale++;
    else g.lat.push(t - sent);
  }
  if (arrivalsOn) {
    const i = valueAfter(buf, ID_KEY, start, end);
    g.at.push(t);
    g.id.push(i < 0 ? Number.NaN : intAt(buf, i, end));
    g.sent.push(sent);
  }
}

async function open(a: OpenArgs): Promise<number> {
  const g = group(a.tag);
  return connectMany(a.rooms.length, 100, a.timeoutMs ?? 60_000, (i, onReady, fail) => {
    const room = a.rooms[i];
    const ws: MiniWs & { ready?: boolean } = new MiniWs(
      a.host,
      a.port,
      '/ws',
      {
        open: () => {},
        text: (c, buf, start, end) => {
          if ((c as { ready?: boolean }).ready) {
            onText(g, buf, start, end);
            return;
          }
          const msg = parseBeforeReady<{ type?: string }>(buf, start, end, `${a.tag} connection ${i}`, fail);
          if (msg?.type === 'welcome') {
            const filter = room === null ? undefined : `${a.column}=eq.${room}`;
            c.sendText(JSON.stringify({ type: 'subscribe', id: 1, table: a.table, filter }));
          } else if (msg?.type === 'subscribed') onReady(c as MiniWs & { ready?: boolean });
          else if (msg?.type === 'error' || msg?.type === 'resync') fail(`${a.tag} connection ${i}: ${JSON.stringify(msg)}`);
        },
        close: (c, code, reason) => {
          if (!g.conns.delete(c)) return;
          g.closed++;
          countClose(g.closeCodes, code, reason);
          if (!(c as { ready?: boolean }).ready) fail(`${a.tag} connection ${i} closed before subscribed: ${code} ${reason}`);
        },
      },
      i,
    );
    g.conns.add(ws);
  });
}

serveCommands({
  open,
  record: (a: RecordArgs) => {
    latencyOn = !!a.latency;
    arrivalsOn = !!a.arrivals;
    sinceMs = a.sinceMs ?? 0;
    for (const g of groups.values()) {
      g.deliveries = g.bytes = g.stale = g.lastAt = 0;
      g.lat = new Grow();
      g.at = new Grow();
      g.id = new Grow();
      g.sent = new Grow();
    }
    return true;
  },
  stats: (): GroupStats[] =>
    [...groups].map(([tag, g]) => ({ tag, open: g.conns.size, closed: g.closed, closeCodes: g.closeCodes, deliveries: g.deliveries, bytes: g.bytes, stale: g.stale, lastAt: g.lastAt })),
  /** Samples of the groups whose tag starts with `prefix` (all when absent), unsorted. */
  latencies: (a: { prefix?: string }) => {
    const parts = [...groups].filter(([tag]) => !a.prefix || tag.startsWith(a.prefix)).map(([, g]) => g.lat.take());
    const out = new Float64Array(parts.reduce((n, p) => n + p.length, 0));
    let o = 0;
    for (const p of parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  },
  arrivals: (a: { tag: string }): Arrivals | null => {
    const g = groups.get(a.tag);
    return g ? { at: g.at.take(), id: g.id.take(), sent: g.sent.take() } : null;
  },
  /** Drops the group's connections (abruptly: the node sees the sockets close); what it recorded stays. */
  close: (a: { tag?: string }) => {
    let n = 0;
    for (const [tag, g] of groups) {
      if (a.tag !== undefined && tag !== a.tag) continue;
      for (const c of g.conns) c.destroy();
      n += g.conns.size;
      g.conns.clear();
    }
    return n;
  },
});
