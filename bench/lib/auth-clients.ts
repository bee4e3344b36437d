// Load-client process for bench/auth.ts (forked; commands over IPC). Like bench/lib/clients.ts,
// many WebSocket connections (bench/lib/mini-ws.ts) to one walcast daemon, but each one is a
// user of the authorization scenario (bench/lib/auth-scenario.ts): connection n is user
// userOf(n), member of room roomOf(n), with a token for that user in its connect URL, and what
// arrives is checked per connection:
//
//   connect  open `count` connections (global numbers offset … offset+count-1); each connects
//            with ?token=<HS256 JWT, sub userOf(n)> when a secret is given, waits for welcome,
//            subscribes (unfiltered, or room_id=eq.<its room>) and waits for `subscribed`.
//   reset    zero the counters. mode `count`: a delivery is a text frame starting with the
//            change prefix, counted per connection, nothing parsed (for fan-outs of millions).
//            mode `check`: each delivery's row id and room_id are read; rows of the connection's
//            own room are counted (and their ids summed), rows of another room are "foreign"
//            (with authorization: a leak; the first few are kept as samples); rows with
//            id < minId (an earlier phase's tail) are counted apart as stale. With `latency`,
//            now − sent_at_ms of each delivery is kept too.
//   stats / detail (per-connection counts) / latencies / closeAll
//
// Times are nowMs() (wall clock, sub-millisecond), comparable with the writer's.
import type { ClientStats } from './clients.js';
import { connectMany, countClose, intAt, parseBeforeReady, ProcessLoad, signTokens, valueAfter } from './connect-many.js';
import { MiniWs } from './mini-ws.js';
import { nowMs, serveCommands } from './rpc.js';
import { roomOf, userOf } from './auth-scenario.js';

export interface AuthConnectArgs {
  host: string;
  port: number;
  count: number;
  /** Global number of this process's first connection. */
  offset: number;
  rooms: number;
  table: string;
  /** HS256 secret: each connection carries ?token= for its user. Absent: no token (--no-auth). */
  secret?: string;
  /** Subscribe with `room_id=eq.<its room>` instead of unfiltered. */
  filtered: boolean;
  /** Connections in flight at once. */
  concurrency?: number;
  timeoutMs?: number;
}

export interface AuthResetArgs {
  mode: 'count' | 'check';
  latency?: boolean;
  /** check mode: rows with a smaller id are stale (an earlier phase), not counted. */
  minId?: number;
}

/** Deliveries are the counted ones (check mode: stale ones excluded). */
export interface AuthClientStats extends ClientStats {
  /** check mode: deliveries of rows of another room than the connection's. */
  foreign: number;
}

export interface LeakSample {
  connection: number;
  user: string;
  room: number;
  rowId: number;
  rowRoom: number;
}

export interface AuthClientDetail {
  offset: number;
  /** Per connection (index − offset): deliveries of its own room's rows (all of them in count mode). */
  own: Float64Array;
  /** check mode: sum of those rows' ids (a duplicate and a miss cannot cancel out unseen). */
  ownIdSum: Float64Array;
  /** check mode: deliveries of other rooms' rows. */
  foreign: Float64Array;
  leakSamples: LeakSample[];
}

const CHANGE_PREFIX = Buffer.from('{"type":"change"');
const NEW_ID_KEY = Buffer.from('"new":{"id":');
const ROOM_KEY = Buffer.from('"room_id":');
const SENT_KEY = Buffer.from('"sent_at_ms":');

interface Conn extends MiniWs {
  ready?: boolean;
}

const conns = new Set<Conn>();
let offset = 0;
let rooms = 1;
let mode: 'count' | 'check' = 'count';
let latencyOn = false;
let minId = 0;
let own = new Float64Array(0);
let ownIdSum = new Float64Array(0);
let foreignPer = new Float64Array(0);
let leakSamples: LeakSample[] = [];
let deliveries = 0;
let foreign = 0;
let stale = 0;
let bytes = 0;
let other = 0;
let firstAt = 0;
let lastAt = 0;
let unexpectedCloses = 0;
let closeCodes: Record<string, number> = {};
let lat = new Float64Array(1 << 16);
/** The sent_at_ms of each latency sample (when the tail happened). */
let latSent = new Float64Array(1 << 16);
let latN = 0;
const load = new ProcessLoad();

function onDelivery(ws: Conn, buf: Buffer, start: number, end: number): void {
  const t = nowMs();
  const k = ws.index - offset;
  if (mode === 'check') {
    const idAt = valueAfter(buf, NEW_ID_KEY, start, end);
    const roomAt = idAt < 0 ? -1 : valueAfter(buf, ROOM_KEY, idAt, end);
    const id = idAt < 0 ? Number.NaN : intAt(buf, idAt, end);
    const room = roomAt < 0 ? Number.NaN : intAt(buf, roomAt, end);
    if (id < minId) {
      stale++;
      return;
    }
    if (room === roomOf(ws.index, rooms)) {
      own[k]++;
      ownIdSum[k] += id;
    } else {
      // Another room's row (or a frame without one: NaN, counted here too, so it shows).
      foreign++;
      foreignPer[k]++;
      if (leakSamples.length < 5) leakSamples.push({ connection: ws.index, user: userOf(ws.index), room: roomOf(ws.index, rooms), rowId: id, rowRoom: room });
    }
    if (latencyOn) {
      const i = valueAfter(buf, SENT_KEY, start, end);
      const sent = i >= 0 ? parseFloat(buf.toString('latin1', i, Math.min(end, i + 32))) : Number.NaN;
      if (latN === lat.length) {
        const bigger = new Float64Array(lat.length * 2);
        bigger.set(lat);
        lat = bigger;
        const sents = new Float64Array(lat.length);
        sents.set(latSent);
        latSent = sents;
      }
      latSent[latN] = sent;
      lat[latN++] = t - sent; // NaN when the frame had no sent_at_ms: shows up as a bad sample
    }
  } else {
    own[k]++;
  }
  if (deliveries === 0) firstAt = t;
  lastAt = t;
  deliveries++;
  bytes += end - start;
}

function isDelivery(buf: Buffer, start: number, end: number): boolean {
  return end - start >= CHANGE_PREFIX.length && buf.compare(CHANGE_PREFIX, 0, CHANGE_PREFIX.length, start, start + CHANGE_PREFIX.length) === 0;
}

async function connect(a: AuthConnectArgs): Promise<{ ready: number; ms: number; tokenMs: number }> {
  const t0 = performance.now();
  offset = a.offset;
  rooms = a.rooms;
  own = new Float64Array(a.count);
  ownIdSum = new Float64Array(a.count);
  foreignPer = new Float64Array(a.count);
  // Tokens first (HS256 signing is cheap, but not free: keep it out of the connect timing).
  const tokens = a.secret ? await signTokens(a.secret, Array.from({ length: a.count }, (_, i) => userOf(a.offset + i))) : [];
  const tokenMs = Math.round(performance.now() - t0);
  const t1 = performance.now();
  const ready = await connectMany(a.count, a.concurrency ?? 200, a.timeoutMs ?? 90_000, (i, onReady, fail) => {
    const n = a.offset + i;
    const path = a.secret ? `/ws?token=${tokens[i]}` : '/ws';
    const ws: Conn = new MiniWs(
      a.host,
      a.port,
      path,
      {
        open: () => {},
        text: (c, buf, start, end) => {
          const w = c as Conn;
          if (w.ready) {
            if (isDelivery(buf, start, end)) onDelivery(w, buf, start, end);
            else other++;
            return;
          }
          const msg = parseBeforeReady<{ type?: string }>(buf, start, end, `connection ${n}`, fail);
          if (!msg) return;
          if (msg.type === 'welcome') {
            const filter = a.filtered ? `room_id=eq.${roomOf(n, a.rooms)}` : undefined;
            w.sendText(JSON.stringify({ type: 'subscribe', id: 1, table: a.table, filter, ref: n }));
          } else if (msg.type === 'subscribed') {
            onReady(w);
          } else if (msg.type === 'error' || msg.type === 'resync') {
            fail(`connection ${n} (${userOf(n)}): ${JSON.stringify(msg)}`);
          } else other++;
        },
        close: (c, code, reason) => {
          conns.delete(c);
          unexpectedCloses++;
          const k = countClose(closeCodes, code, reason);
          if (!(c as Conn).ready) fail(`connection ${n} (${userOf(n)}) closed before ready: ${k}`);
        },
      },
      n,
    );
    conns.add(ws);
  });
  return { ready, ms: ready ? Math.round(performance.now() - t1) : 0, tokenMs };
}

serveCommands({
  connect,
  reset: (a: AuthResetArgs) => {
    mode = a.mode;
    latencyOn = !!a.latency;
    minId = a.minId ?? 0;
    own.fill(0);
    ownIdSum.fill(0);
    foreignPer.fill(0);
    leakSamples = [];
    deliveries = foreign = stale = bytes = other = firstAt = lastAt = latN = 0;
    unexpectedCloses = 0;
    closeCodes = {};
    load.reset();
    return true;
  },
  stats: (): AuthClientStats => {
    return {
      open: conns.size,
      deliveries,
      foreign,
      stale,
      bytes,
      other,
      firstAt,
      lastAt,
      unexpectedCloses,
      closeCodes,
      ...load.since(),
    };
  },
  detail: (): AuthClientDetail => ({ offset, own, ownIdSum, foreign: foreignPer, leakSamples }),
  latencies: () => lat.slice(0, latN),
  /** [sent_at_ms, latency] of the samples above `overMs`. */
  slowSamples: (a: { overMs: number }): Float64Array => {
    const out: number[] = [];
    for (let i = 0; i < latN; i++) if (!(lat[i] <= a.overMs)) out.push(latSent[i], lat[i]);
    return Float64Array.from(out);
  },
  closeAll: () => {
    const n = conns.size;
    for (const c of conns) c.destroy();
    conns.clear();
    return n;
  },
});
