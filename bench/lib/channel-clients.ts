// Load-client process for bench/channels.ts (forked; commands over IPC). Holds many WebSocket
// connections (bench/lib/mini-ws.ts) to walcast, each authenticated as one user with
// `?token=<HS256 JWT, sub "u<n>">`, where n is the connection's global number.
//
//   connect    open `count` connections (numbers offset…offset+count-1); with `roomSize`, each
//              joins channel "room:<floor(n / roomSize)>" and is ready at its presence_state;
//              without it, ready at the welcome.
//   broadcast  one broadcast run, started at `startAt` (wall clock, the same in every client
//              process): each connection sends {type:"broadcast", channel, event, payload:{t, id},
//              self:true} to its room, either paced (`rate` per connection per second, spread
//              evenly) or as fast as its echoes come back with at most `window` of its own
//              broadcasts outstanding. A connection's own echo (the frame ends with its own
//              `"from"`) is one round-trip sample: arrival − t. Sending stops at the end of the
//              measured interval; the run returns once every own broadcast has come back.
//   missing    after a run, given every process's sends per room: how many broadcasts each
//              connection still lacks (and how many it got beyond what was sent: duplicates).
//   presence   at `startAt`, each connection sends join then presence {name} for `channel`
//              and applies presence_state and presence_diff, in order, to its own view (keys
//              = user ids, each with its metas by session); returns when every view holds
//              `expectKeys` keys, with each connection's time of getting there.
//   closeAll
//
// Times are nowMs() (wall clock, sub-millisecond), comparable across the bench's processes.
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { sleep, sleepUntil } from './common.js';
import { connectMany, countClose, parseBeforeReady, signTokens } from './connect-many.js';
import { MiniWs } from './mini-ws.js';
import { nowMs, serveCommands } from './rpc.js';

export interface ChannelConnectArgs {
  host: string;
  port: number;
  /** HS256 secret the daemon verifies tokens with. */
  secret: string;
  count: number;
  /** Global number of this process's first connection: user "u<offset + i>". */
  offset: number;
  /** Join "room:<floor(n / roomSize)>" once welcomed; absent: ready at the welcome. */
  roomSize?: number;
  /** Connections in flight at once. */
  concurrency?: number;
  timeoutMs?: number;
}

export interface BroadcastRunArgs {
  mode: 'paced' | 'window';
  /** paced: broadcasts per connection per second. */
  rate: number;
  /** window: own broadcasts outstanding per connection at most. */
  window: number;
  /** Wall-clock ms (nowMs) at which sending starts. */
  startAt: number;
  /** Sending before the measured interval, ms (not measured). */
  warmupMs: number;
  /** The measured interval, ms; sending stops at its end. */
  measureMs: number;
  /** How long to wait for the last own echoes. */
  drainTimeoutMs: number;
}

export interface BroadcastRunResult {
  connections: number;
  /** Broadcasts sent over the whole run (warm-up included), by room. */
  sentByRoom: number[];
  sentTotal: number;
  /** In the measured interval: broadcasts sent, own echoes, all broadcast frames received, their bytes. */
  sentMeasured: number;
  echoesMeasured: number;
  deliveriesMeasured: number;
  bytesMeasured: number;
  /** Round trips (ms) of broadcasts sent within the measured interval. */
  rtt: Float64Array;
  /** Own broadcasts still not back when the drain timed out (0 normally). */
  outstanding: number;
  /** When this process's last own echo came back. */
  drainedAt: number;
  /** Frames that were checked in full (JSON.parse) and the problems found, if any. */
  checked: number;
  problems: string[];
  /** Frames that were neither broadcasts nor expected (errors, …), with the first few. */
  other: number;
  otherSamples: string[];
  unexpectedCloses: number;
  closeCodes: Record<string, number>;
  /** Over the measured interval. */
  cpuMs: number;
  elu: number;
  /** This process's event-loop delay over the measured interval (p99 and max, ms). */
  loopDelayP99Ms: number;
  loopDelayMaxMs: number;
  /** How far the paced sender fell behind its schedule at worst, ms. */
  maxLagMs: number;
}

export interface MissingResult {
  /** Broadcasts of its room a connection should have got and did not, summed. */
  missing: number;
  /** Broadcasts beyond that (duplicates), summed. */
  extra: number;
  received: number;
}

export interface PresenceRunArgs {
  channel: string;
  startAt: number;
  /** Keys (users) each view must hold. */
  expectKeys: number;
  timeoutMs: number;
}

export interface PresenceRunResult {
  connections: number;
  /** When this process sent its first join, and its last presence message. */
  firstJoinAt: number;
  lastSendAt: number;
  /** Per connection: when its view first held `expectKeys` keys (NaN if it never did). */
  convergedAt: Float64Array;
  /** Per connection: bytes and frames received from its join on. */
  bytes: Float64Array;
  frames: Float64Array;
  presenceStates: number;
  presenceDiffs: number;
  /** Views that did not end with exactly the expected keys, one meta each, the right states. */
  badViews: number;
  /** Metas whose state was not {name} of their key. */
  badMetas: number;
  errors: number;
  errorSamples: string[];
  unexpectedCloses: number;
  closeCodes: Record<string, number>;
  cpuMs: number;
  elu: number;
}

const BROADCAST_PREFIX = Buffer.from('{"type":"broadcast"');
const PRESENCE_PREFIX = Buffer.from('{"type":"presence_');
const T_KEY = Buffer.from('"t":');
const EVENT = 'bench';
/** Frames per process checked in full (JSON.parse) in each broadcast run. */
const CHECK_FRAMES = 200;

const userOf = (n: number): string => `u${n}`;
export const presenceName = (user: string): string => `User ${user.slice(1)}`;

interface Conn extends MiniWs {
  ready: boolean;
  /** Room (broadcast runs), -1 when it joined none. */
  room: number;
  /** `,"from":"u<n>"}`: how its own echoes end (the server appends `from` last). */
  ownTail: Buffer;
  /** `{"type":"broadcast","channel":"room:<r>","event":"bench","self":true,"payload":{"t":` */
  sendHead: string;
  outstanding: number;
  received: number;
  /** presence runs */
  view: Map<string, string[]> | null;
  keys: number;
  pBytes: number;
  pFrames: number;
  convergedAt: number;
}

type Mode = 'idle' | 'broadcast' | 'presence';

const conns: Conn[] = [];
let mode: Mode = 'idle';
let unexpectedCloses = 0;
let closeCodes: Record<string, number> = {};

// ── broadcast run state ───────────────────────────────────────────────────────────────────
let runArgs: BroadcastRunArgs | null = null;
let sending = false;
let mStart = 0;
let mEnd = 0;
let sentByRoom: number[] = [];
let sentTotal = 0;
let sentMeasured = 0;
let echoesMeasured = 0;
let deliveriesMeasured = 0;
let bytesMeasured = 0;
let rtt = new Float64Array(1 << 16);
let rttN = 0;
let outstandingTotal = 0;
let drainedAt = 0;
let checked = 0;
let problems: string[] = [];
let other = 0;
let otherSamples: string[] = [];
let onDrained: (() => void) | null = null;

// ── presence run state ────────────────────────────────────────────────────────────────────
let pArgs: PresenceRunArgs | null = null;
let convergedCount = 0;
let presenceStates = 0;
let presenceDiffs = 0;
let badMetas = 0;
let pErrors = 0;
let pErrorSamples: string[] = [];
let onConverged: (() => void) | null = null;

function sendBroadcast(c: Conn): void {
  const t = nowMs();
  c.sendText(`${c.sendHead}${t},"id":${c.index}}}`);
  c.outstanding++;
  outstandingTotal++;
  sentTotal++;
  sentByRoom[c.room] = (sentByRoom[c.room] ?? 0) + 1;
  if (t >= mStart && t < mEnd) sentMeasured++;
}

function note(list: string[], s: string): void {
  if (list.length < 5) list.push(s.length > 300 ? `${s.slice(0, 300)}…` : s);
}

function onBroadcastFrame(c: Conn, buf: Buffer, start: number, end: number): void {
  const now = nowMs();
  c.received++;
  const measured = now >= mStart && now < mEnd;
  if (measured) {
    deliveriesMeasured++;
    bytesMeasured += end - start;
  }
  const tail = c.ownTail;
  const own = end - start > tail.length && buf.compare(tail, 0, tail.length, end - tail.length, end) === 0;
  if (checked < CHECK_FRAMES) check(c, buf.toString('utf8', start, end), own);
  if (!own) return;
  const i = buf.indexOf(T_KEY, start);
  const t = i >= 0 && i < end ? parseFloat(buf.toString('latin1', i + T_KEY.length, Math.min(end, i + T_KEY.length + 24))) : Number.NaN;
  if (measured) echoesMeasured++;
  if (t >= mStart && t < mEnd) {
    if (rttN === rtt.length) {
      const bigger = new Float64Array(rtt.length * 2);
      bigger.set(rtt);
      rtt = bigger;
    }
    rtt[rttN++] = now - t;
  }
  c.outstanding--;
  outstandingTotal--;
  if (runArgs?.mode === 'window' && sending && now < mEnd) sendBroadcast(c);
  else if (!sending && outstandingTotal === 0) {
    drainedAt = now;
    onDrained?.();
  }
}

/** The first frames of each run are parsed in full: the fast path's assumptions hold. */
function check(c: Conn, text: string, own: boolean): void {
  checked++;
  let m: { type?: unknown; channel?: unknown; event?: unknown; payload?: { t?: unknown; id?: unknown }; from?: unknown };
  try {
    m = JSON.parse(text) as typeof m;
  } catch {
    note(problems, `not JSON: ${text}`);
    return;
  }
  const room = `room:${c.room}`;
  if (m.type !== 'broadcast' || m.channel !== room || m.event !== EVENT) note(problems, `to ${userOf(c.index)} in ${room}: unexpected ${text}`);
  if (typeof m.payload?.t !== 'number' || typeof m.payload.id !== 'number') note(problems, `payload is not {t, id}: ${text}`);
  else if (m.from !== userOf(m.payload.id)) note(problems, `"from" is not the sender's user: ${text}`);
  if ((m.from === userOf(c.index)) !== own) note(problems, `own echo detection is wrong for ${userOf(c.index)}: ${text}`);
}

function onPresenceFrame(c: Conn, buf: Buffer, start: number, end: number): void {
  const m = JSON.parse(buf.toString('utf8', start, end)) as {
    type: string;
    state?: Record<string, Meta[]>;
    joins?: Record<string, Meta[]>;
    leaves?: Record<string, Meta[]>;
  };
  const view = (c.view ??= new Map());
  if (m.type === 'presence_state') {
    presenceStates++;
    view.clear();
    c.keys = 0;
    applyJoins(c, view, m.state ?? {});
  } else if (m.type === 'presence_diff') {
    presenceDiffs++;
    // Leaves first: a re-track is a leave of the old meta and a join of the new one (same session).
    for (const [key, metas] of Object.entries(m.leaves ?? {})) {
      const sessions = view.get(key);
      if (!sessions) continue;
      for (const meta of metas) {
        const i = sessions.indexOf(meta.session);
        if (i >= 0) sessions.splice(i, 1);
      }
      if (sessions.length === 0) {
        view.delete(key);
        c.keys--;
      }
    }
    applyJoins(c, view, m.joins ?? {});
  } else return;
  if (c.keys === pArgs?.expectKeys && Number.isNaN(c.convergedAt)) {
    c.convergedAt = nowMs();
    convergedCount++;
    if (convergedCount === conns.length) onConverged?.();
  }
}

interface Meta {
  session: string;
  state: { name?: unknown };
}

function applyJoins(c: Conn, view: Map<string, string[]>, joins: Record<string, Meta[]>): void {
  for (const [key, metas] of Object.entries(joins)) {
    let sessions = view.get(key);
    if (!sessions) {
      view.set(key, (sessions = []));
      c.keys++;
    }
    for (const meta of metas) {
      if (meta.state?.name !== presenceName(key)) badMetas++;
      if (!sessions.includes(meta.session)) sessions.push(meta.session);
    }
  }
}

function onText(c: Conn, buf: Buffer, start: number, end: number): void {
  if (mode === 'broadcast' && startsWith(buf, start, end, BROADCAST_PREFIX)) {
    onBroadcastFrame(c, buf, start, end);
    return;
  }
  if (mode === 'presence') {
    c.pBytes += end - start;
    c.pFrames++;
    if (startsWith(buf, start, end, PRESENCE_PREFIX)) {
      onPresenceFrame(c, buf, start, end);
      return;
    }
    const text = buf.toString('utf8', start, end);
    if (!text.startsWith('{"type":"joined"')) {
      pErrors++;
      note(pErrorSamples, `${userOf(c.index)}: ${text}`);
    }
    return;
  }
  other++;
  note(otherSamples, `${userOf(c.index)}: ${buf.toString('utf8', start, end)}`);
}

function startsWith(buf: Buffer, start: number, end: number, prefix: Buffer): boolean {
  return end - start >= prefix.length && buf.compare(prefix, 0, prefix.length, start, start + prefix.length) === 0;
}

// ── commands ──────────────────────────────────────────────────────────────────────────────

async function connect(a: ChannelConnectArgs): Promise<{ ready: number; ms: number }> {
  const t0 = performance.now();
  const tokens = await signTokens(a.secret, Array.from({ length: a.count }, (_, i) => userOf(a.offset + i)));
  const ready = await connectMany(a.count, a.concurrency ?? 200, a.timeoutMs ?? 60_000, (i, onReady, fail) => {
    const n = a.offset + i;
    const room = a.roomSize ? Math.floor(n / a.roomSize) : -1;
    const channel = `room:${room}`;
    const ws = new MiniWs(
      a.host,
      a.port,
      `/ws?token=${tokens[i]}`,
      {
        open: () => {},
        text: (c, buf, start, end) => {
          const w = c as Conn;
          if (w.ready) {
            onText(w, buf, start, end);
            return;
          }
          const msg = parseBeforeReady<{ type?: string }>(buf, start, end, userOf(n), fail);
          if (!msg) return;
          if (msg.type === 'welcome') {
            if (room < 0) onReady(w);
            else w.sendText(JSON.stringify({ type: 'join', channel, ref: n }));
          } else if (msg.type === 'presence_state') onReady(w);
          else if (msg.type !== 'joined') fail(`${userOf(n)}: ${buf.toString('utf8', start, Math.min(end, start + 300))}`);
        },
        close: (c, code, reason) => {
          const w = c as Conn;
          if (!w.ready) {
            fail(`${userOf(n)} closed before ready: ${`${code} ${reason}`.trim()}`);
            return;
          }
          unexpectedCloses++;
          countClose(closeCodes, code, reason);
        },
      },
      n,
    ) as Conn;
    Object.assign(ws, {
      ready: false,
      room,
      ownTail: Buffer.from(`,"from":${JSON.stringify(userOf(n))}}`),
      sendHead: `{"type":"broadcast","channel":${JSON.stringify(channel)},"event":"${EVENT}","self":true,"payload":{"t":`,
      outstanding: 0,
      received: 0,
      view: null,
      keys: 0,
      pBytes: 0,
      pFrames: 0,
      convergedAt: Number.NaN,
    });
    conns.push(ws);
  });
  return { ready, ms: ready ? Math.round(performance.now() - t0) : 0 };
}

async function broadcastRun(a: BroadcastRunArgs): Promise<BroadcastRunResult> {
  runArgs = a;
  mode = 'broadcast';
  mStart = a.startAt + a.warmupMs;
  mEnd = mStart + a.measureMs;
  sentByRoom = [];
  sentTotal = sentMeasured = echoesMeasured = deliveriesMeasured = bytesMeasured = rttN = outstandingTotal = 0;
  drainedAt = checked = other = 0;
  problems = [];
  otherSamples = [];
  unexpectedCloses = 0;
  closeCodes = {};
  for (const c of conns) c.received = c.outstanding = 0;
  const live = conns.filter((c) => !c.closed && c.room >= 0);
  let maxLagMs = 0;
  await sleepUntil(a.startAt);
  sending = true;
  let cpu0 = process.cpuUsage();
  let elu0 = performance.eventLoopUtilization();
  let cpuMs = 0;
  let elu = 0;
  let delay: IntervalHistogram | null = null;
  const measureTimers = [
    setTimeout(() => {
      cpu0 = process.cpuUsage();
      elu0 = performance.eventLoopUtilization();
      delay = monitorEventLoopDelay({ resolution: 5 });
      delay.enable();
    }, mStart - nowMs()),
  ];
  let loopDelayP99Ms = Number.NaN;
  let loopDelayMaxMs = Number.NaN;
  const endMeasure = (): void => {
    const c = process.cpuUsage(cpu0);
    cpuMs = (c.user + c.system) / 1000;
    elu = performance.eventLoopUtilization(elu0).utilization;
    const h = delay as IntervalHistogram | null;
    if (h) {
      h.disable();
      loopDelayP99Ms = h.percentile(99) / 1e6;
      loopDelayMaxMs = h.max / 1e6;
    }
  };
  if (a.mode === 'window') {
    for (const c of live) for (let k = 0; k < a.window; k++) sendBroadcast(c);
    await sleepUntil(mEnd);
  } else {
    // Each connection `rate` times a second, the process's sends spread evenly over time.
    const perSec = live.length * a.rate;
    const t0 = a.startAt;
    let i = 0;
    for (;;) {
      const now = nowMs();
      if (now >= mEnd) break;
      const due = Math.floor(((now - t0) * perSec) / 1000) + 1;
      if (due > i) maxLagMs = Math.max(maxLagMs, now - t0 - (i * 1000) / perSec);
      for (; i < due; i++) sendBroadcast(live[i % live.length]);
      // Until the next send is due (at least 1 ms, at most 50: the end is checked meanwhile).
      await sleep(Math.min(50, Math.max(1, t0 + (i * 1000) / perSec - nowMs())));
    }
  }
  sending = false;
  endMeasure();
  for (const t of measureTimers) clearTimeout(t);
  if (outstandingTotal > 0) {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, a.drainTimeoutMs);
      onDrained = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    onDrained = null;
  } else drainedAt = nowMs();
  return {
    connections: live.length,
    sentByRoom: Array.from(sentByRoom, (v) => v ?? 0),
    sentTotal,
    sentMeasured,
    echoesMeasured,
    deliveriesMeasured,
    bytesMeasured,
    rtt: rtt.slice(0, rttN),
    outstanding: outstandingTotal,
    drainedAt,
    checked,
    problems,
    other,
    otherSamples,
    unexpectedCloses,
    closeCodes,
    cpuMs,
    elu,
    loopDelayP99Ms,
    loopDelayMaxMs,
    maxLagMs,
  };
}

function missing(a: { sentByRoom: number[] }): MissingResult {
  let miss = 0;
  let extra = 0;
  let received = 0;
  for (const c of conns) {
    if (c.room < 0) continue;
    const expected = a.sentByRoom[c.room] ?? 0;
    received += c.received;
    if (c.received < expected) miss += expected - c.received;
    else extra += c.received - expected;
  }
  return { missing: miss, extra, received };
}

async function presenceRun(a: PresenceRunArgs): Promise<PresenceRunResult> {
  pArgs = a;
  mode = 'presence';
  convergedCount = presenceStates = presenceDiffs = badMetas = pErrors = 0;
  pErrorSamples = [];
  unexpectedCloses = 0;
  closeCodes = {};
  const live = conns.filter((c) => !c.closed);
  for (const c of conns) {
    c.view = null;
    c.keys = c.pBytes = c.pFrames = 0;
    c.convergedAt = Number.NaN;
  }
  const channel = JSON.stringify(a.channel);
  const converged = new Promise<void>((resolve) => (onConverged = resolve));
  await sleepUntil(a.startAt);
  const cpu0 = process.cpuUsage();
  const elu0 = performance.eventLoopUtilization();
  const firstJoinAt = nowMs();
  for (const c of live) {
    c.sendText(`{"type":"join","channel":${channel}}`);
    c.sendText(`{"type":"presence","channel":${channel},"state":${JSON.stringify({ name: presenceName(userOf(c.index)) })}}`);
  }
  const lastSendAt = nowMs();
  if (live.length > 0) await Promise.race([converged, sleep(a.timeoutMs)]);
  onConverged = null;
  const c1 = process.cpuUsage(cpu0);
  const elu = performance.eventLoopUtilization(elu0).utilization;
  let badViews = 0;
  for (const c of live) {
    const v = c.view;
    let ok = !!v && v.size === a.expectKeys;
    if (v && ok) for (const sessions of v.values()) if (sessions.length !== 1) ok = false;
    if (!ok) badViews++;
  }
  mode = 'idle';
  const result: PresenceRunResult = {
    connections: live.length,
    firstJoinAt,
    lastSendAt,
    convergedAt: Float64Array.from(live, (c) => c.convergedAt),
    bytes: Float64Array.from(live, (c) => c.pBytes),
    frames: Float64Array.from(live, (c) => c.pFrames),
    presenceStates,
    presenceDiffs,
    badViews,
    badMetas,
    errors: pErrors,
    errorSamples: pErrorSamples,
    unexpectedCloses,
    closeCodes,
    cpuMs: (c1.user + c1.system) / 1000,
    elu,
  };
  for (const c of live) c.view = null; // let the views go before the next command
  return result;
}

serveCommands({
  connect,
  broadcast: broadcastRun,
  missing,
  presence: presenceRun,
  closeAll: () => {
    const n = conns.length;
    for (const c of conns) c.destroy();
    conns.length = 0;
    mode = 'idle';
    return n;
  },
});
