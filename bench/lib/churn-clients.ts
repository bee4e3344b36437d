// Load-client process for bench/churn.ts and bench/soak.ts (forked; commands over IPC). It owns
// a fixed set of client identities (global numbers offset … offset+count-1); each holds at most
// one WebSocket connection (bench/lib/mini-ws.ts) at a time, with one subscription to the
// room-writer table (bench/lib/room-writer.ts): `room=eq.<its room>` (room n % rooms), or
// unfiltered for about `unfilteredPct`% of them. An identity keeps, across its connections,
// the last position it saw (change `pos`, `progress`, `subscribed.position`) and the last
// `seq` of each room it follows, so a reconnect can resume with `since` and be checked.
//
//   init     identities, table, rooms, tokens (HS256, when a secret is given: identity n is user
//            u<n>, member of room n % rooms).
//   connect  open a connection for every identity that has none (at most `concurrency`
//            handshakes in flight); `resumePct`% of those that have a position subscribe with
//            `since` = that position (the others subscribe from now, and start their checks
//            afresh). Resolves when each is subscribed or failed; per-connection times from
//            the TCP connect to `subscribed`.
//   drop     close every connection: `cleanPct`% with `unsubscribe` and a WebSocket close
//            frame (1000), waiting for the server's close frame; the rest abruptly (the socket
//            destroyed, no close frame: what a lost network or a killed tab looks like).
//   churn    (soak) from now on, `perSec` random live connections a second are dropped (clean
//            or abrupt as above) and reconnected at once with `since` = their last position;
//            unexpected closes reconnect after a second. `perSec` 0 stops it.
//   take     the counters since the last take, and the latency histogram of live deliveries.
//
// Checks on every change: a filtered subscription must get its room's rows only (else
// `foreign`), and each room's seq must go up by one (else `gaps` with the `missing` count, or
// `dups`). Changes sent before `subscribed` (the catch-up of a `since`) are counted as `catchup`
// and checked the same way; only live ones are latency samples (receive time − sent_at_ms).
import { connectMany, countClose, intAt, ProcessLoad, signTokens, valueAfter } from './connect-many.js';
import { Histogram, type HistogramData } from './histogram.js';
import { MiniWs, type MiniWsHandlers } from './mini-ws.js';
import { nowMs, serveCommands } from './rpc.js';

export interface ChurnInitArgs {
  host: string;
  port: number;
  offset: number;
  count: number;
  rooms: number;
  /** Qualified table name, e.g. public.bench_churn. */
  table: string;
  unfilteredPct: number;
  /** HS256 secret: identity n connects with a token for user u<n>. Absent: no token. */
  secret?: string;
}

export interface ChurnConnectArgs {
  resumePct: number;
  concurrency?: number;
  timeoutMs?: number;
}

export interface ChurnConnectResult {
  attempted: number;
  ready: number;
  failed: number;
  /** Subscribed with `since`. */
  resumed: number;
  ms: number;
  /** Per connection: from the TCP connect to `subscribed`, ms (successful ones). */
  times: Float64Array;
  failures: string[];
}

export interface ChurnDropArgs {
  cleanPct: number;
  timeoutMs?: number;
}

export interface ChurnDropResult {
  abrupt: number;
  clean: number;
  /** Clean closes the server answered with its close frame (1000) within the timeout. */
  cleanAnswered: number;
  cleanMs: number;
}

/** Counters since the previous take. */
export interface ChurnTake {
  /** Now: connections open, and of those subscribed (live). */
  open: number;
  live: number;
  deliveries: number;
  catchup: number;
  latency: HistogramData;
  foreign: number;
  gaps: number;
  missing: number;
  dups: number;
  resyncs: number;
  errors: number;
  errorSamples: string[];
  progress: number;
  unexpectedCloses: number;
  closeCodes: Record<string, number>;
  /** Soak: reconnects started (churn and after unexpected closes), and their times to `subscribed`. */
  reconnects: number;
  reconnectsResumed: number;
  reconnectFailures: number;
  reconnectTime: HistogramData;
  cpuMs: number;
  elu: number;
}

const IDLE = 0;
const CONNECTING = 1; // socket opening, or subscribe sent
const LIVE = 2;

interface Ident {
  /** Global number. */
  n: number;
  /** Room of its filter; -1: unfiltered. */
  room: number;
  ws: MiniWs | null;
  state: number;
  t0: number;
  since: string | null;
  lastPos: string | null;
  /** Last seq seen per room (one entry when filtered); -1: none yet. */
  seq: Int32Array;
  /** When its current connection is subscribed or has failed (set while connecting). */
  done: ((ok: boolean, why?: string) => void) | null;
}

const CHANGE_PREFIX = Buffer.from('{"type":"change"');
const POS_KEY = Buffer.from('"pos":"');
const ROOM_KEY = Buffer.from('"room":');
const SEQ_KEY = Buffer.from('"seq":');
const SENT_KEY = Buffer.from('"sent_at_ms":');
const QUOTE = 0x22;

let cfg: ChurnInitArgs | null = null;
let idents: Ident[] = [];
let paths: string[] = [];
/** Connections closed cleanly by us, waiting for the server's close frame. */
const closingClean = new Map<MiniWs, () => void>();

let deliveries = 0;
let catchup = 0;
const latency = new Histogram();
let foreign = 0;
let gaps = 0;
let missing = 0;
let dups = 0;
let resyncs = 0;
let errors = 0;
let errorSamples: string[] = [];
let progress = 0;
let unexpectedCloses = 0;
let closeCodes: Record<string, number> = {};
let reconnects = 0;
let reconnectsResumed = 0;
let reconnectFailures = 0;
const reconnectTime = new Histogram();
const load = new ProcessLoad();
let autoReconnect = false;
let churnTimer: NodeJS.Timeout | null = null;

function error(msg: string): void {
  errors++;
  if (errorSamples.length < 5) errorSamples.push(msg);
}

function checkSeq(id: Ident, room: number, seq: number): void {
  if (id.room >= 0 && room !== id.room) {
    foreign++;
    return;
  }
  const k = id.room >= 0 ? 0 : room;
  if (!(k >= 0 && k < id.seq.length) || !(seq > 0)) {
    error(`identity ${id.n}: a change without a readable room/seq (room ${room}, seq ${seq})`);
    return;
  }
  const last = id.seq[k];
  if (last >= 0) {
    if (seq <= last) dups++;
    else if (seq > last + 1) {
      gaps++;
      missing += seq - last - 1;
    }
  }
  if (seq > last) id.seq[k] = seq;
}

function onChange(id: Ident, buf: Buffer, start: number, end: number): void {
  const t = nowMs();
  const posAt = valueAfter(buf, POS_KEY, start, end);
  if (posAt >= 0) {
    const q = buf.indexOf(QUOTE, posAt);
    if (q > posAt && q < end) id.lastPos = buf.toString('latin1', posAt, q);
  }
  const roomAt = valueAfter(buf, ROOM_KEY, start, end);
  const seqAt = roomAt < 0 ? -1 : valueAfter(buf, SEQ_KEY, roomAt, end);
  const sentAt = seqAt < 0 ? -1 : valueAfter(buf, SENT_KEY, seqAt, end);
  checkSeq(id, roomAt < 0 ? Number.NaN : intAt(buf, roomAt, end), seqAt < 0 ? Number.NaN : intAt(buf, seqAt, end));
  if (id.state !== LIVE) {
    catchup++;
    return;
  }
  deliveries++;
  if (sentAt >= 0) latency.add(t - parseFloat(buf.toString('latin1', sentAt, Math.min(end, sentAt + 32))));
}

function subscribe(id: Ident, ws: MiniWs): void {
  const c = cfg!;
  ws.sendText(JSON.stringify({ type: 'subscribe', id: 1, table: c.table, filter: id.room >= 0 ? `room=eq.${id.room}` : undefined, since: id.since ?? undefined, ref: id.n }));
}

function forget(id: Ident): void {
  id.seq.fill(-1);
  id.since = null;
}

const handlers: MiniWsHandlers = {
  open: () => {},
  text: (ws, buf, start, end) => {
    const id = idents[ws.index];
    if (id.ws !== ws) return; // a connection being closed cleanly
    if (end - start >= CHANGE_PREFIX.length && buf.compare(CHANGE_PREFIX, 0, CHANGE_PREFIX.length, start, start + CHANGE_PREFIX.length) === 0) {
      onChange(id, buf, start, end);
      return;
    }
    let msg: { type?: string; pos?: string; position?: string; reason?: string; code?: string; message?: string };
    try {
      msg = JSON.parse(buf.toString('utf8', start, end)) as typeof msg;
    } catch {
      error(`identity ${id.n}: not JSON: ${buf.toString('utf8', start, Math.min(end, start + 120))}`);
      return;
    }
    switch (msg.type) {
      case 'welcome':
        subscribe(id, ws);
        break;
      case 'subscribed':
        if (msg.position) id.lastPos = msg.position;
        id.state = LIVE;
        id.done?.(true);
        id.done = null;
        break;
      case 'progress':
        progress++;
        if (msg.pos && id.state === LIVE) id.lastPos = msg.pos;
        break;
      case 'resync':
        // Position outside the window: start afresh, from now (what a client does after refetching).
        resyncs++;
        forget(id);
        id.lastPos = null;
        subscribe(id, ws);
        break;
      case 'error':
        error(`identity ${id.n}: ${JSON.stringify(msg)}`);
        id.done?.(false, `error ${msg.code}`);
        id.done = null;
        break;
      default:
        break; // unsubscribed, and anything else
    }
  },
  close: (ws, code, reason) => {
    const settle = closingClean.get(ws);
    if (settle) {
      closingClean.delete(ws);
      if (code === 1000) settle();
      return;
    }
    const id = idents[ws.index];
    if (id.ws !== ws) return;
    id.ws = null;
    id.state = IDLE;
    unexpectedCloses++;
    const k = countClose(closeCodes, code, reason);
    if (id.done) {
      id.done(false, `closed before subscribed: ${k}`);
      id.done = null;
    } else if (autoReconnect) {
      setTimeout(() => {
        if (autoReconnect && id.state === IDLE) reconnect(id);
      }, 1_000).unref();
    }
  },
};

/** Opens a connection for `id`; done(ok, why) once subscribed or failed. */
function open(id: Ident, since: string | null, done: (ok: boolean, why?: string) => void): void {
  const c = cfg!;
  if (since) id.since = since;
  else forget(id);
  id.state = CONNECTING;
  id.t0 = nowMs();
  id.done = done;
  id.ws = new MiniWs(c.host, c.port, paths[id.n - c.offset], handlers, id.n - c.offset);
}

function reconnect(id: Ident): void {
  reconnects++;
  const since = id.lastPos;
  if (since) reconnectsResumed++;
  open(id, since, (ok) => {
    if (ok) reconnectTime.add(nowMs() - id.t0);
    else reconnectFailures++;
  });
}

/** Closes id's connection: clean (unsubscribe + close 1000; settle() when the server answers) or abrupt. */
function close(id: Ident, clean: boolean, settle: () => void): void {
  const ws = id.ws;
  id.ws = null;
  id.state = IDLE;
  id.done = null;
  if (!ws) return;
  if (clean) {
    closingClean.set(ws, settle);
    ws.sendText(JSON.stringify({ type: 'unsubscribe', id: 1 }));
    ws.close(1000, 'bye');
    // No answer within 10 s: dropped (drop() reports it as a clean close not answered).
    setTimeout(() => {
      if (closingClean.delete(ws)) ws.destroy();
    }, 10_000).unref();
  } else ws.destroy();
}

async function connect(a: ChurnConnectArgs): Promise<ChurnConnectResult> {
  const todo = idents.filter((id) => id.state === IDLE && !id.ws);
  const times: number[] = [];
  const failures: string[] = [];
  let failed = 0;
  let resumed = 0;
  const t0 = performance.now();
  try {
    await connectMany(todo.length, a.concurrency ?? 200, a.timeoutMs ?? 120_000, (i, ready) => {
      const id = todo[i];
      const resume = id.lastPos !== null && Math.random() * 100 < a.resumePct;
      if (resume) resumed++;
      open(id, resume ? id.lastPos : null, (ok, why) => {
        if (ok) times.push(nowMs() - id.t0);
        else {
          failed++;
          if (failures.length < 5) failures.push(`identity ${id.n}: ${why}`);
        }
        ready({}); // a failure counts as done: the wave goes on, and reports it
      });
    });
  } catch (err) {
    failures.push((err as Error).message);
  }
  return { attempted: todo.length, ready: times.length, failed, resumed, ms: Math.round(performance.now() - t0), times: Float64Array.from(times), failures };
}

async function drop(a: ChurnDropArgs): Promise<ChurnDropResult> {
  let abrupt = 0;
  let clean = 0;
  let answered = 0;
  const waits: Array<Promise<void>> = [];
  const t0 = performance.now();
  for (const id of idents) {
    if (!id.ws) continue;
    const isClean = Math.random() * 100 < a.cleanPct;
    if (isClean) {
      clean++;
      waits.push(new Promise<void>((resolve) => close(id, true, () => (answered++, resolve()))));
    } else {
      abrupt++;
      close(id, false, () => {});
    }
  }
  const timeoutMs = a.timeoutMs ?? 10_000;
  await Promise.race([Promise.all(waits), new Promise((r) => setTimeout(r, timeoutMs))]);
  const cleanMs = Math.round(performance.now() - t0);
  // Whatever did not answer in time is dropped too (and shows as clean − cleanAnswered).
  for (const ws of closingClean.keys()) ws.destroy();
  closingClean.clear();
  return { abrupt, clean, cleanAnswered: answered, cleanMs };
}

function churn(a: { perSec: number; cleanPct: number }): boolean {
  if (churnTimer) clearInterval(churnTimer);
  churnTimer = null;
  autoReconnect = a.perSec > 0;
  if (a.perSec <= 0) return true;
  let quota = 0;
  churnTimer = setInterval(() => {
    quota += a.perSec / 10;
    let tries = 0;
    while (quota >= 1 && tries++ < 50) {
      const id = idents[Math.floor(Math.random() * idents.length)];
      if (id.state !== LIVE) continue;
      quota--;
      close(id, Math.random() * 100 < a.cleanPct, () => {});
      reconnect(id);
    }
    quota = Math.min(quota, a.perSec); // do not pile up when few are live
  }, 100);
  return true;
}

serveCommands({
  init: async (a: ChurnInitArgs) => {
    cfg = a;
    idents = Array.from({ length: a.count }, (_, i) => {
      const n = a.offset + i;
      // A scattered ~unfilteredPct% of identities subscribe without a filter.
      const unfiltered = ((n * 7919) % 1000) < a.unfilteredPct * 10;
      return { n, room: unfiltered ? -1 : n % a.rooms, ws: null, state: IDLE, t0: 0, since: null, lastPos: null, seq: new Int32Array(unfiltered ? a.rooms : 1).fill(-1), done: null };
    });
    const tokens = a.secret ? await signTokens(a.secret, idents.map((id) => `u${id.n}`)) : [];
    paths = idents.map((_, i) => (a.secret ? `/ws?token=${tokens[i]}` : '/ws'));
    return { unfiltered: idents.filter((id) => id.room < 0).length };
  },
  connect,
  drop,
  churn,
  take: (): ChurnTake => {
    let open = 0;
    let live = 0;
    for (const id of idents) {
      if (id.ws) open++;
      if (id.state === LIVE) live++;
    }
    const t: ChurnTake = {
      open,
      live,
      deliveries,
      catchup,
      latency: latency.take(),
      foreign,
      gaps,
      missing,
      dups,
      resyncs,
      errors,
      errorSamples,
      progress,
      unexpectedCloses,
      closeCodes,
      reconnects,
      reconnectsResumed,
      reconnectFailures,
      reconnectTime: reconnectTime.take(),
      ...load.since(),
    };
    deliveries = catchup = foreign = gaps = missing = dups = resyncs = errors = progress = unexpectedCloses = 0;
    reconnects = reconnectsResumed = reconnectFailures = 0;
    errorSamples = [];
    closeCodes = {};
    load.reset();
    return t;
  },
});
