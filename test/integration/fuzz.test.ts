// Protocol fuzz (issue #6, item 2): a real `walcast serve` process (JWT auth, a policy) under a
// few seconds of random and mutated client input, from several concurrent connections at once:
//
// - WebSocket fuzzers (the `ws` package): well-formed messages of every type, the same with
//   fields dropped, added or retyped, unknown types, byte flips and truncation, invalid UTF-8 in
//   text frames, deep nesting, numbers beyond doubles (1e400, 2^64, -0, long digit strings),
//   binary frames, fragmented messages (continuation frames, pings and pongs between them),
//   oversize frames, bursts, closes. With a valid token, none, or a bad one.
// - Raw TCP fuzzers (node:net): a real upgrade, then hand-built frames (test/helpers/raw-frames.ts,
//   RFC 6455 §5.2, https://www.rfc-editor.org/rfc/rfc6455#section-5.2): reserved bits, unknown
//   opcodes, unmasked frames, control frames over 125 bytes or fragmented, continuations out of
//   place, bogus 64-bit lengths, truncated frames, close frames with invalid codes, frames
//   written a byte at a time; and broken upgrade requests.
// - Connections whose token expires while they are subscribed and tracked.
//
// A connection the daemon closes is replaced by a new one. Meanwhile a well-behaved client stays
// subscribed while rows are committed steadily. Checked:
// - that client got every row exactly once, in order, and was never disconnected;
// - the daemon never exited, logged no error, stays healthy, leaks no sessions, subscriptions or
//   channels, its RSS stays bounded, and it still serves a new client;
// - every server frame is protocol: JSON objects of known types, welcome first, documented error
//   codes, close codes and resync reasons, refs echoed only from the connection's own messages;
//   within a subscription changes in position order; presence diffs consistent with the
//   presence_state before them; nothing a policy does not allow (a table, a channel);
// - every connection still open at its end answers a ping, and every ping sent before it.
//
// WALCAST_FUZZ_MS (default 9000) sets how long the fuzzers run; WALCAST_FUZZ_SEED replays the
// fuzzers' choices (printed at the start). Timing still differs from run to run (and `since`
// positions come from the server), so a replay sends the same kinds of frames in the same order
// per fuzzer, not necessarily interleaved the same way.

import { randomInt } from 'node:crypto';
import fs from 'node:fs';
import pg from 'pg';
import t from 'tap';
import WebSocket from 'ws';
import { CLOSE, WS_PATH } from '../../src/constants.js';
import { migrate } from '../../src/sql/migrate.js';
import { query, sleep } from '../helpers/capture.js';
import { spawnCli } from '../helpers/cli.js';
import {
  badUtf8,
  deepFrame,
  mutateObject,
  mutateText,
  oversizeBytes,
  paddedPing,
  readSent,
  refKey,
  Rng,
  STRICT_UTF8,
  toJson,
  validMessage,
  type GenContext,
} from '../helpers/fuzz-gen.js';
import { withPostgres } from '../helpers/pg.js';
import { closePayload, encodeFrame, OP, RawWsConnection, type ServerFrame } from '../helpers/raw-frames.js';
import { hsToken, inSeconds, noneToken, SECRET } from '../helpers/tokens.js';
import { comparePos, duplicates, orderViolations, servedPort, WsClient } from '../helpers/ws.js';

const FUZZ_MS = Math.max(0, Number(process.env.WALCAST_FUZZ_MS ?? 9_000));
const SEED = process.env.WALCAST_FUZZ_SEED ? Number(process.env.WALCAST_FUZZ_SEED) >>> 0 : randomInt(2 ** 32 - 1);
const WS_FUZZERS = 4;
const RAW_FUZZERS = 2;
/** The daemon's RSS may grow by at most this much over its baseline while fuzzed. */
const RSS_HEADROOM_KIB = 150 * 1024;
/** A connection still open at its end must answer a ping within this long (a hang otherwise). */
const PROBE_MS = 8_000;
/** The daemon's message limit (its default): larger frames are answered too_large, not parsed. */
const MAX_MESSAGE_BYTES = 64 * 1024;

t.comment(`fuzz seed ${SEED} (replay with WALCAST_FUZZ_SEED=${SEED}); fuzzing ${FUZZ_MS} ms with ${WS_FUZZERS} WebSocket and ${RAW_FUZZERS} raw TCP fuzzers`);

// ── what the docs allow ──────────────────────────────────────────────────────────────────────

/** The first value of each row of the first Markdown table after `heading` in `text`. */
function tableAfter(text: string, heading: RegExp): string[] {
  const at = text.search(heading);
  if (at < 0) return [];
  const lines = text.slice(at).split('\n');
  const start = lines.findIndex((l) => l.startsWith('|'));
  const rows: string[] = [];
  for (let i = start + 2; start >= 0 && i < lines.length && lines[i].startsWith('|'); i++) rows.push(lines[i].split('|')[1].trim().replace(/`/g, ''));
  return rows;
}

/** Wire error codes and close codes (docs/errors.md "Wire protocol"), resync reasons (docs/PROTOCOL.md §6). */
function documented(): { wireCodes: Set<string>; closeCodes: Set<number>; resyncReasons: Set<string> } {
  const errors = fs.readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
  const wire = errors.slice(errors.indexOf('## Wire protocol'));
  const protocol = fs.readFileSync(new URL('../../docs/PROTOCOL.md', import.meta.url), 'utf8');
  return {
    wireCodes: new Set(tableAfter(wire, /^\| code \| when/m)),
    closeCodes: new Set(tableAfter(wire, /^Close codes:/m).map(Number)),
    resyncReasons: new Set(tableAfter(protocol.slice(protocol.indexOf('### `resync`')), /^\| reason \|/m)),
  };
}
const DOCS = documented();
/** Close codes the server may close a fuzzed connection with: documented, walcast's own, and RFC 6455's for bad input. */
const ALLOWED_CLOSE = new Set<number>([...DOCS.closeCodes, ...Object.values(CLOSE), 1002, 1006, 1007, 1009]);
const SERVER_TYPES = new Set(['welcome', 'authenticated', 'subscribed', 'change', 'progress', 'resync', 'unsubscribed', 'joined', 'left', 'broadcast', 'presence_state', 'presence_diff', 'error', 'pong']);
/** Server messages that never carry a `ref` (docs/PROTOCOL.md §3). */
const NEVER_REF = new Set(['welcome', 'change', 'progress', 'broadcast', 'presence_state', 'presence_diff']);

// ── tallies and problems ─────────────────────────────────────────────────────────────────────

class Tally {
  readonly counts = new Map<string, number>();
  add(key: string, n = 1): void {
    this.counts.set(key, (this.counts.get(key) ?? 0) + n);
  }
  get(key: string): number {
    return this.counts.get(key) ?? 0;
  }
  toString(): string {
    return [...this.counts].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k}: ${n}`).join(', ') || '(none)';
  }
}
/**
 * A daemon bug this fuzz found (reported, not fixed here): ChannelPresence.state()
 * (src/hub/presence.ts) builds presence_state with `out[key] = [...]` on a plain object, so the
 * user id "__proto__" sets the object's prototype instead of a key and JSON.stringify leaves that
 * user out. Members who joined while such a user was tracked later get a presence_diff leave
 * of a meta they were never told about.
 */
const PROTO_PRESENCE_BUG = 'presence_state leaves out a user whose id is "__proto__"';
const sentFrames = new Tally();
const replies = new Tally();
const closes = new Tally();
const closeReasons = new Tally();
const clientErrors = new Tally();
const handshakes = new Tally();
const probes = new Tally();
const connections = new Tally();
let bytesSent = 0;
/** Problems by category, each with a few examples (connection, detail, the frames sent last). */
const problems = new Map<string, string[]>();
/** Positions seen by any fuzzer, for `since`. */
const positions: string[] = [];

function hex(b: Buffer | string, max = 48): string {
  const buf = typeof b === 'string' ? Buffer.from(b) : b;
  return `${buf.subarray(0, max).toString('hex')}${buf.length > max ? '…' : ''} (${buf.length} B)`;
}

function problem(category: string, conn: Conn | null, detail: string): void {
  const list = problems.get(category) ?? [];
  problems.set(category, list);
  if (list.length < 3) list.push(`${conn ? `${conn.name}: ` : ''}${detail.slice(0, 400)}${conn ? `; last frames sent: ${conn.recent.join(' | ')}` : ''}`);
  else list.push('');
}

/** One fuzz connection's bookkeeping: what it sent (refs, last frames) and checks on what it got. */
class Conn {
  readonly sentRefs = new Set<string>();
  readonly pongRefs = new Set<string>();
  /** Refs of the well-formed pings sent (each must be answered while the connection lives). */
  readonly pings = new Set<string>();
  readonly recent: string[] = [];
  /** Presence per joined channel as this connection was told it: key → sessions (presence_state, then diffs). */
  readonly presence = new Map<string, Map<string, Set<string>>>();
  /** Last change position per subscription id, while that subscription lasts. */
  readonly lastPos = new Map<string, string>();
  messages = 0;
  sawUnauthorized = false;
  /** We closed it (close frame, FIN, RST, terminate). */
  selfClosed = false;
  closed = false;
  /** How it ended: "server 4001 token expired", "client-initiated 1000", ... */
  closeSeen: string | null = null;

  constructor(readonly name: string) {}

  /** Records a frame sent; a text payload's `ref` (as the server would read it) may come back. */
  noteSent(kind: string, bytes: Buffer | string, textPayload: Buffer | string | null = null): void {
    sentFrames.add(kind);
    bytesSent += typeof bytes === 'string' ? Buffer.byteLength(bytes) : bytes.length;
    this.recent.push(`${kind} ${hex(bytes)}`);
    if (this.recent.length > 6) this.recent.shift();
    if (textPayload !== null) this.noteRef(textPayload);
  }

  /** A whole text message sent (maybe in pieces): its `ref` may come back; a ping's must. */
  noteRef(textPayload: Buffer | string): void {
    const { ref, ping } = readSent(textPayload);
    if (!ref) return;
    this.sentRefs.add(ref);
    const bytes = typeof textPayload === 'string' ? Buffer.byteLength(textPayload) : textPayload.length;
    if (ping && bytes <= MAX_MESSAGE_BYTES) this.pings.add(ref);
  }

  /** After the probe's pong: every ping sent before it was answered (messages are handled in order). */
  checkPings(): void {
    const missing = [...this.pings].filter((k) => !this.pongRefs.has(k));
    if (missing.length > 0) problem('a ping left unanswered on a connection that answered later ones', this, missing.slice(0, 5).join(', '));
  }

  receivedText(text: string): void {
    let m: unknown;
    try {
      m = JSON.parse(text);
    } catch {
      problem('a server text frame is not JSON', this, text.slice(0, 200));
      return;
    }
    if (typeof m !== 'object' || m === null || Array.isArray(m) || !SERVER_TYPES.has((m as { type: string }).type)) {
      problem('a server message of unknown type or shape', this, text.slice(0, 200));
      return;
    }
    const msg = m as Record<string, unknown> & { type: string };
    if (msg.type === 'resync' && !DOCS.resyncReasons.has(String(msg.reason))) problem('a resync reason not in docs/PROTOCOL.md', this, text.slice(0, 200));
    if (this.messages++ === 0 && msg.type !== 'welcome') problem('the first message is not welcome', this, text.slice(0, 200));
    if (this.messages > 1 && msg.type === 'welcome') problem('welcome twice', this, text.slice(0, 200));
    replies.add(msg.type === 'error' ? `error ${String(msg.code)}` : msg.type);
    if (msg.type === 'error') {
      if (typeof msg.code !== 'string' || !DOCS.wireCodes.has(msg.code)) problem('an error code not in docs/errors.md', this, text.slice(0, 200));
      if (typeof msg.message !== 'string' || msg.message.length === 0) problem('an error without a message', this, text.slice(0, 200));
      if (/internal error/i.test(String(msg.message))) problem('an internal error answered', this, text.slice(0, 300));
      if (msg.code === 'unauthorized') this.sawUnauthorized = true;
    }
    if (Object.hasOwn(msg, 'ref')) {
      const k = refKey(msg.ref);
      if (NEVER_REF.has(msg.type)) problem('a ref on a message that never carries one', this, text.slice(0, 200));
      else if (!k || !this.sentRefs.has(k)) problem('a ref this connection never sent', this, text.slice(0, 200));
      else if (msg.type === 'pong') this.pongRefs.add(k);
    }
    // Authorization: the policies allow reading public.feed and channels fz:* only.
    if (msg.type === 'change' && msg.table !== 'public.feed') problem('a change of a table no policy allows', this, text.slice(0, 200));
    if ((msg.type === 'joined' || msg.type === 'broadcast' || msg.type.startsWith('presence_')) && !String(msg.channel).startsWith('fz:')) {
      problem('a channel no policy allows', this, text.slice(0, 200));
    }
    if (msg.type === 'broadcast' && msg.from !== undefined && !KNOWN_USERS.has(String(msg.from))) problem('a broadcast from an unknown user', this, text.slice(0, 200));
    this.checkPresence(msg, text);
    // Within a subscription, changes in position order; an ended subscription's id may start over.
    const sub = refKey(msg.type === 'change' || msg.type === 'resync' ? msg.sub : msg.id);
    if (msg.type === 'change' && sub && typeof msg.pos === 'string') {
      const last = this.lastPos.get(sub);
      if (last && comparePos(last, msg.pos) >= 0) problem('changes of one subscription out of order', this, `${last} then ${text.slice(0, 200)}`);
      this.lastPos.set(sub, msg.pos);
    } else if (sub && (msg.type === 'unsubscribed' || msg.type === 'resync' || msg.type === 'error')) this.lastPos.delete(sub);
    const pos = msg.type === 'change' || msg.type === 'progress' ? msg.pos : msg.type === 'subscribed' ? msg.position : undefined;
    if (typeof pos === 'string') {
      if (positions.length < 64) positions.push(pos);
      else positions[randomInt(64)] = pos;
    }
  }

  /**
   * presence_state, then presence_diffs applied in order (leaves, then joins), must agree: a diff
   * only takes away metas the connection was told about, and adds none twice.
   */
  private checkPresence(msg: Record<string, unknown> & { type: string }, text: string): void {
    const channel = String(msg.channel);
    if (msg.type === 'left') this.presence.delete(channel);
    if (msg.type === 'presence_state') {
      const model = new Map<string, Set<string>>();
      for (const [key, metas] of Object.entries((msg.state ?? {}) as Record<string, Array<{ session: string }>>)) model.set(key, new Set(metas.map((m) => m.session)));
      this.presence.set(channel, model);
    }
    if (msg.type !== 'presence_diff') return;
    const model = this.presence.get(channel);
    if (!model) {
      problem('a presence_diff for a channel without presence_state', this, text.slice(0, 200));
      return;
    }
    for (const [key, metas] of Object.entries((msg.leaves ?? {}) as Record<string, Array<{ session: string }>>)) {
      for (const m of metas) {
        if (!model.get(key)?.delete(m.session)) {
          problem(key === '__proto__' ? PROTO_PRESENCE_BUG : 'a presence_diff leave of a meta the connection was never told about', this, `key ${JSON.stringify(key)}: ${text.slice(0, 200)}`);
        }
      }
      if (model.get(key)?.size === 0) model.delete(key);
    }
    for (const [key, metas] of Object.entries((msg.joins ?? {}) as Record<string, Array<{ session: string }>>)) {
      const sessions = model.get(key) ?? new Set<string>();
      model.set(key, sessions);
      for (const m of metas) {
        if (sessions.has(m.session)) problem('a presence_diff join of a meta already there', this, `key ${JSON.stringify(key)}: ${text.slice(0, 200)}`);
        sessions.add(m.session);
      }
    }
  }

  /** The connection is gone: its close code (1006 without a close frame), who started it. */
  onClose(code: number, reason: string, clientStarted: boolean): void {
    this.closed = true;
    this.closeSeen = `${clientStarted ? 'client-initiated' : 'server'} ${code} ${reason}`.trim();
    if (clientStarted) {
      closes.add(`client-initiated ${code}`);
      return;
    }
    closes.add(`server ${code}`);
    if (reason) closeReasons.add(`${code} ${reason.replace(/\d+/g, 'N').slice(0, 60)}`);
    if (!ALLOWED_CLOSE.has(code)) problem('an undocumented close code', this, `${code} ${reason}`);
    if (code === CLOSE.goingAway) problem('1001 (shutting down) while the daemon was not', this, reason);
    if (this.sawUnauthorized && code !== CLOSE.authFailed) problem('error unauthorized not followed by close 4001', this, `${code} ${reason}`);
  }

  /** Polls until `cond` holds or the connection closed; false on timeout. */
  async until(cond: () => boolean, ms: number): Promise<boolean> {
    const end = Date.now() + ms;
    while (!cond() && !this.closed) {
      if (Date.now() > end) return false;
      await sleep(10);
    }
    return true;
  }
}

const pause = (rng: Rng): Promise<void> => (rng.chance(0.6) ? new Promise((r) => setImmediate(r)) : sleep(rng.int(1, 5)));

// ── the daemon and its database ──────────────────────────────────────────────────────────────

const T0 = Date.now();
const db = await withPostgres(t);
await migrate(db.url);
const url = db.url;
t.teardown(() => {
  if (!t.passing()) t.comment(db.logTail(30));
});
await query(
  url,
  `create table feed (id bigserial primary key, seq int not null, body text);
   create table secret (id bigserial primary key, v text);
   select walcast.enable('feed'), walcast.enable('secret');
   insert into walcast.casbin_rule (ptype, v0, v1, v2, v3, v4) values
     ('p', '*', 'table', 'public.feed', 'read', 'true'),
     ('p', '*', 'channel', 'fz:*', 'join', 'true'),
     ('p', '*', 'channel', 'fz:*', 'broadcast', 'true'),
     ('p', '*', 'channel', 'fz:*', 'presence', 'true');`,
);

const proc = spawnCli(['serve', '--db', url, '--port', '0', '--slot', 'fuzz', '--jwt-secret', SECRET, '--progress-interval', '500ms'], { timeoutMs: 280_000 });
t.teardown(async () => {
  proc.kill('SIGKILL');
  await proc.closed.catch(() => {});
});
await proc.waitFor(() => servedPort(proc.stderr) !== null, 'the serving line', 30_000);
const port = servedPort(proc.stderr) as number;
const pid = proc.pid as number;
const wsUrl = `ws://127.0.0.1:${port}${WS_PATH}`;
const daemonGone = (): boolean => proc.exited;

function rssKiB(): number | null {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** The daemon's V8 heap in use (MiB), from its /metrics; null if not there. */
async function heapMiB(): Promise<number | null> {
  try {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const m = /^walcast_process_nodejs_heap_size_used_bytes ([\d.e+]+)$/m.exec(text);
    return m ? Number(m[1]) / 1024 / 1024 : null;
  } catch {
    return null;
  }
}

// ── tokens ───────────────────────────────────────────────────────────────────────────────────

/** Every `sub` a token of this test names: broadcasts come `from` one of these. */
const KNOWN_USERS = new Set(['good', 'mallory', 'fresh']);
const goodToken = await hsToken({ sub: 'good' });
/**
 * The fuzzers' users, one each (the last one for the expiring tokens); two have ids that are
 * also names of Object.prototype members, as ids used as keys of plain objects would trip on.
 */
const FUZZ_SUBS = Array.from({ length: WS_FUZZERS + RAW_FUZZERS + 1 }, (_, i) => (i === WS_FUZZERS - 1 ? '__proto__' : i === WS_FUZZERS + RAW_FUZZERS - 1 ? 'constructor' : `fuzz${i}`));
const fuzzTokens = await Promise.all(FUZZ_SUBS.map((sub) => hsToken({ sub })));
for (const sub of FUZZ_SUBS) KNOWN_USERS.add(sub);
const otherUser = await hsToken({ sub: 'mallory' });
const flipped = goodToken.slice(0, -3) + (goodToken.endsWith('AAA') ? 'BBB' : 'AAA');
const BAD_TOKENS = [
  'garbage',
  'a.b.c',
  'x'.repeat(5000),
  noneToken({ sub: 'fuzz' }),
  await hsToken({ sub: 'fuzz' }, { secret: 'another-secret-that-is-long-enough-0123456789' }),
  await hsToken({ sub: 'fuzz' }, { exp: inSeconds(-120) }),
  await hsToken({}),
  flipped,
  'eyJhbGciOiJIUzI1NiJ9.e30.',
  '\u0000',
  '🙂',
];

// ── the well-behaved subscriber and the writer ───────────────────────────────────────────────

const good = await WsClient.connect(`${wsUrl}?token=${goodToken}`);
t.teardown(() => good.close());
await good.subscribe({ id: 'feed', table: 'feed' });

const writer = new pg.Client({ connectionString: url });
writer.on('error', () => {});
await writer.connect();
t.teardown(() => writer.end().catch(() => {}));
let written = 0;
let writing = true;
let writerError: Error | null = null;
const writerRng = new Rng(SEED ^ 0x5eed);
const writeLoop = (async () => {
  while (writing) {
    // One to three rows per transaction, seq numbering them in commit order.
    // Now and then a row of `secret`, which no policy lets anyone read.
    const k = writerRng.int(1, 3);
    try {
      await writer.query('insert into feed (seq, body) select s, $3 || s from generate_series($1::int, $2::int) s order by s', [written + 1, written + k, writerRng.pick(['row ', 'zeile ', 'ряд ', '行 '])]);
      if (writerRng.chance(0.2)) await writer.query("insert into secret (v) values ('nobody may read this')");
    } catch (err) {
      writerError = err as Error;
      return;
    }
    written += k;
    await sleep(writerRng.int(5, 30));
  }
})();

await sleep(500);
const baseline = Math.max(rssKiB() ?? 0, rssKiB() ?? 0);
const heapBefore = await heapMiB();
let peak = baseline;
/** RSS once a second while fuzzed (KiB). */
const trail: number[] = [];
let samples = 0;
const sampler = setInterval(() => {
  const r = rssKiB();
  if (r !== null && r > peak) peak = r;
  if (r !== null && samples++ % 10 === 0) trail.push(r);
}, 100);
sampler.unref();
t.teardown(() => clearInterval(sampler));

// ── WebSocket fuzzers ────────────────────────────────────────────────────────────────────────

type WsAction =
  | 'valid' | 'mutated' | 'mutated-text' | 'huge-number' | 'deep' | 'oversize' | 'binary' | 'fragmented'
  | 'bad-utf8' | 'random' | 'ws-ping' | 'ws-pong' | 'burst' | 'close' | 'terminate';

const WS_ACTIONS: ReadonlyArray<readonly [number, WsAction]> = [
  [28, 'valid'],
  [22, 'mutated'],
  [8, 'mutated-text'],
  [4, 'huge-number'],
  [5, 'deep'],
  [3, 'oversize'],
  [5, 'binary'],
  [9, 'fragmented'],
  [2, 'bad-utf8'],
  [3, 'random'],
  [3, 'ws-ping'],
  [1, 'ws-pong'],
  [1, 'burst'],
  [1, 'close'],
  [1, 'terminate'],
];

function hugeNumberMessage(ctx: GenContext): string {
  const rng = ctx.rng;
  const n = rng.pick(['1e400', '-1e400', '18446744073709551616', '-0', '1' + '0'.repeat(rng.int(20, 600)), '9007199254740993', '1e-400', '0.1e1']);
  const r = JSON.stringify(`${ctx.refPrefix}-${++ctx.n}`);
  return rng.pick([
    `{"type":"ping","ref":${n}}`,
    `{"type":"subscribe","id":${n},"table":"feed","ref":${r}}`,
    `{"type":"unsubscribe","id":${n},"ref":${r}}`,
    `{"type":"broadcast","channel":"fz:1","event":"e","payload":${n},"self":${n},"ref":${r}}`,
    `{"type":"presence","channel":"fz:1","state":{"n":${n}},"ref":${r}}`,
    `{"type":"subscribe","id":1,"table":"feed","since":${n},"events":[${n}],"ref":${r}}`,
    `{"type":${n},"ref":${r}}`,
  ]);
}

interface WsConn {
  ws: WebSocket;
  /** Resolves once the close is recorded. */
  closed: Promise<void>;
  isOpen: () => boolean;
  /** Sends a text frame (any bytes) and records it. */
  text: (kind: string, payload: string | Buffer) => void;
  /** Closes from our side (recorded as client-initiated). */
  clientClose: (how: () => void) => void;
}

/** A `ws` connection whose every frame and close is checked by `conn`; null if it did not open. */
async function openWs(conn: Conn, token: string | null): Promise<WsConn | null> {
  const ws = new WebSocket(token === null ? wsUrl : `${wsUrl}?token=${encodeURIComponent(token)}`, { perMessageDeflate: false, handshakeTimeout: 5_000, maxPayload: 64 * 1024 * 1024 });
  let clientStarted = false;
  ws.on('message', (raw: WebSocket.RawData, isBinary: boolean) => {
    const data = Buffer.isBuffer(raw) ? raw : Array.isArray(raw) ? Buffer.concat(raw) : Buffer.from(raw);
    if (isBinary) problem('a binary frame from the server', conn, hex(data));
    else conn.receivedText(data.toString('utf8'));
  });
  ws.on('error', (err: Error) => {
    clientErrors.add(err.message.replace(/\d+/g, 'N').slice(0, 80));
    if (/Invalid WebSocket frame|Unexpected server response|Invalid Sec-WebSocket|handshake has timed out/i.test(err.message)) problem('the ws client refused what the server sent', conn, err.message);
  });
  const closed = new Promise<void>((resolve) =>
    ws.on('close', (code: number, reason: Buffer) => {
      conn.onClose(code, reason.toString(), clientStarted);
      resolve();
    }),
  );
  const opened = await new Promise<boolean>((resolve) => {
    ws.once('open', () => resolve(true));
    ws.once('close', () => resolve(false));
  });
  if (!opened) {
    problem('a WebSocket connection could not be opened', conn, token === null ? 'without a token' : 'with ?token=');
    return null;
  }
  const isOpen = () => ws.readyState === WebSocket.OPEN;
  return {
    ws,
    closed,
    isOpen,
    text: (kind, payload) => {
      if (!isOpen()) return;
      ws.send(payload, { binary: false });
      conn.noteSent(kind, payload, payload);
    },
    clientClose: (how) => {
      clientStarted = true;
      conn.selfClosed = true;
      how();
    },
  };
}

const expiries = new Tally();

/**
 * Connections whose token expires while they are subscribed, in a channel and tracked: each must
 * be closed with 4001 `token expired` (within a few seconds of `exp`, or it is a hang).
 */
async function expiryFuzzer(rng: Rng, until: number): Promise<void> {
  const sub = FUZZ_SUBS[WS_FUZZERS + RAW_FUZZERS];
  for (let n = 1; Date.now() < until - 1_000 && !daemonGone(); n++) {
    const conn = new Conn(`exp.${n}`);
    connections.add('ws expiring token');
    const exp = inSeconds(rng.int(1, 2));
    const c = await openWs(conn, await hsToken({ sub }, { exp }));
    if (!c) continue;
    const ctx: GenContext = { rng, refPrefix: `e.${n}`, positions, authTokens: [], n: 0 };
    c.text('expiring', toJson({ type: 'subscribe', id: 'x', table: 'feed', ref: `${ctx.refPrefix}-s` }));
    c.text('expiring', toJson({ type: 'join', channel: 'fz:1', ref: `${ctx.refPrefix}-j` }));
    c.text('expiring', toJson({ type: 'presence', channel: 'fz:1', state: { status: 'expiring' }, ref: `${ctx.refPrefix}-p` }));
    while (c.isOpen() && Date.now() < exp * 1000 - 200) {
      c.text('expiring', toJson(rng.chance(0.5) ? { type: 'ping', ref: `${ctx.refPrefix}-${++ctx.n}` } : validMessage(ctx)));
      await sleep(rng.int(20, 200));
    }
    const inTime = await conn.until(() => false, Math.max(0, exp * 1000 - Date.now()) + 5_000);
    if (!inTime) {
      problem('a connection outlived its token', conn, `exp ${new Date(exp * 1000).toISOString()}, now ${new Date().toISOString()}`);
      c.clientClose(() => c.ws.terminate());
    }
    await c.closed;
    expiries.add(conn.closeSeen ?? 'none');
  }
}

async function wsFuzzer(idx: number, rng: Rng, until: number): Promise<void> {
  const ownToken = fuzzTokens[idx];
  const authTokens = [ownToken, ownToken, ownToken, otherUser, ...BAD_TOKENS];
  let big = 0; // frames over 64 KiB, bounded per fuzzer
  for (let n = 1; Date.now() < until && !daemonGone(); n++) {
    const conn = new Conn(`ws${idx}.${n}`);
    const mode = rng.weighted<string>([
      [45, 'query-token'],
      [5, 'query-short-lived'],
      [18, 'auth-message'],
      [12, 'none'],
      [10, 'query-bad'],
      [10, 'auth-bad'],
    ]);
    connections.add(`ws ${mode}`);
    let token: string | null = null;
    if (mode === 'query-token') token = ownToken;
    else if (mode === 'query-short-lived') token = await hsToken({ sub: FUZZ_SUBS[idx] }, { exp: inSeconds(rng.int(1, 3)) });
    else if (mode === 'query-bad') token = rng.pick(BAD_TOKENS);
    const c = await openWs(conn, token);
    if (!c) {
      await sleep(50);
      continue;
    }
    const { ws, closed, isOpen, text, clientClose } = c;
    const ctx: GenContext = { rng, refPrefix: `w${idx}.${n}`, positions, authTokens, n: 0 };
    if (mode === 'auth-message') text('auth', toJson({ type: 'auth', token: ownToken, ref: `${ctx.refPrefix}-auth` }));
    if (mode === 'auth-bad') text('auth-bad', toJson({ type: 'auth', token: rng.pick([...BAD_TOKENS, otherUser]), ref: `${ctx.refPrefix}-auth` }));

    const budget = rng.int(5, 150);
    for (let i = 0; i < budget && isOpen() && Date.now() < until; i++) {
      const action = rng.weighted(WS_ACTIONS);
      switch (action) {
        case 'valid':
          text(action, toJson(validMessage(ctx)));
          break;
        case 'mutated':
          text(action, toJson(mutateObject(ctx, validMessage(ctx))));
          break;
        case 'mutated-text':
          text(action, mutateText(rng, toJson(validMessage(ctx))));
          break;
        case 'huge-number':
          text(action, hugeNumberMessage(ctx));
          break;
        case 'deep':
          text(action, deepFrame(ctx));
          break;
        case 'oversize': {
          const size = oversizeBytes(rng);
          if (big++ > 25 || (size > 1024 * 1024 && big > 6)) text('valid', toJson(validMessage(ctx)));
          else text(size > 1024 * 1024 ? 'oversize >1MiB' : 'oversize', paddedPing(ctx, size, rng.chance(0.3)));
          break;
        }
        case 'binary': {
          const payload = rng.chance(0.6) ? Buffer.from(toJson(validMessage(ctx))) : rng.bytes(rng.int(0, 300));
          ws.send(payload, { binary: true });
          conn.noteSent(action, payload);
          break;
        }
        case 'fragmented': {
          // One message in 2..6 frames (FIN clear, then continuations), maybe with pings and
          // pongs between them; sometimes binary, sometimes over 1 MiB in total, sometimes
          // abandoned halfway (the connection is then closed).
          const binary = rng.chance(0.15);
          const overs = big < 4 && rng.chance(0.04);
          if (overs) big++;
          const payload = overs
            ? Buffer.from(paddedPing(ctx, rng.int(1024 * 1024 + 1, 1400 * 1024)))
            : rng.chance(0.8)
              ? Buffer.from(toJson(rng.chance(0.6) ? validMessage(ctx) : mutateObject(ctx, validMessage(ctx))))
              : rng.chance(0.5)
                ? badUtf8(rng)
                : Buffer.from(deepFrame(ctx));
          const pieces = rng.int(2, 6);
          const cuts = [0, ...Array.from({ length: pieces - 1 }, () => rng.int(0, payload.length)).sort((a, b) => a - b), payload.length];
          const abandonAt = rng.chance(0.08) ? rng.int(1, pieces - 1) : -1;
          if (!binary && abandonAt < 0) conn.noteRef(payload); // before: the reply may come while we pause
          for (let p = 0; p < pieces && isOpen(); p++) {
            if (p === abandonAt) {
              clientClose(() => (rng.chance(0.5) ? ws.terminate() : ws.close(1000)));
              break;
            }
            const piece = payload.subarray(cuts[p], cuts[p + 1]);
            ws.send(piece, { binary, fin: p === pieces - 1 });
            conn.noteSent(p === 0 ? `fragment ${binary ? 'binary' : 'text'}` : 'continuation', piece);
            if (rng.chance(0.3) && isOpen()) {
              const ctl = rng.bytes(rng.int(0, 125));
              if (rng.chance(0.7)) ws.ping(ctl);
              else ws.pong(ctl);
              conn.noteSent('control between fragments', ctl);
            }
            if (rng.chance(0.3)) await pause(rng);
          }
          break;
        }
        case 'bad-utf8':
          text(action, badUtf8(rng));
          break;
        case 'random':
          text(action, rng.chance(0.5) ? rng.bytes(rng.int(0, 200)) : rng.ascii(rng.int(0, 200)));
          break;
        case 'ws-ping':
          ws.ping(rng.bytes(rng.int(0, 125)));
          conn.noteSent(action, Buffer.alloc(0));
          break;
        case 'ws-pong':
          ws.pong(rng.bytes(rng.int(0, 125)));
          conn.noteSent(action, Buffer.alloc(0));
          break;
        case 'burst': {
          if (rng.chance(0.3)) {
            // Presence faster than 20 at once, then 10 a second: limit_exceeded.
            text('burst', toJson({ type: 'join', channel: 'fz:1', ref: `${ctx.refPrefix}-${++ctx.n}` }));
            for (let b = rng.int(20, 40); b > 0; b--) text('burst', toJson({ type: 'presence', channel: 'fz:1', state: { b }, ref: `${ctx.refPrefix}-${++ctx.n}` }));
            break;
          }
          // More than the 64 messages held while a token is verified: 4400 if one is.
          if (rng.chance(0.5)) text('auth', toJson({ type: 'auth', token: ownToken, ref: `${ctx.refPrefix}-burst` }));
          for (let b = rng.int(60, 80); b > 0; b--) text('burst', toJson(rng.chance(0.7) ? { type: 'ping', ref: `${ctx.refPrefix}-${++ctx.n}` } : validMessage(ctx)));
          break;
        }
        case 'close':
          clientClose(() => ws.close(rng.pick([1000, 1001, 1003, 1008, 3000, 4000, 4999]), rng.ascii(rng.int(0, 100))));
          break;
        case 'terminate':
          clientClose(() => ws.terminate());
          break;
      }
      if (ws.bufferedAmount > 256 * 1024) await conn.until(() => ws.bufferedAmount < 64 * 1024, 5_000);
      await pause(rng);
    }

    // Still open: it must answer a ping, then we close it one way or another.
    if (isOpen() && !conn.selfClosed) {
      const ref = `probe-${conn.name}`;
      text('probe', toJson({ type: 'ping', ref }));
      const answered = await conn.until(() => conn.pongRefs.has(`s:${ref}`), PROBE_MS);
      probes.add(conn.pongRefs.has(`s:${ref}`) ? 'ws: pong' : answered ? 'ws: closed before the pong' : 'ws: no answer');
      if (conn.pongRefs.has(`s:${ref}`)) conn.checkPings();
      if (!answered) problem('an open connection did not answer a ping', conn, `no pong within ${PROBE_MS} ms`);
    }
    if (isOpen()) clientClose(() => (rng.chance(0.6) ? ws.close(1000) : ws.terminate()));
    const timer = setTimeout(() => ws.terminate(), 3_000);
    await closed;
    clearTimeout(timer);
  }
}

// ── raw TCP fuzzers ──────────────────────────────────────────────────────────────────────────

type RawAction =
  | 'text' | 'fragmented' | 'byte-by-byte' | 'ping' | 'pong' | 'binary' | 'rsv' | 'opcode' | 'unmasked'
  | 'big-control' | 'fragmented-control' | 'continuation-first' | 'data-during-fragment' | 'bogus-length'
  | 'non-minimal-length' | 'truncated' | 'close-frame' | 'bad-utf8' | 'random-bytes' | 'zero-mask' | 'burst';

const RAW_ACTIONS: ReadonlyArray<readonly [number, RawAction]> = [
  [20, 'text'],
  [8, 'fragmented'],
  [2, 'byte-by-byte'],
  [4, 'ping'],
  [2, 'pong'],
  [3, 'binary'],
  [3, 'rsv'],
  [3, 'opcode'],
  [2, 'unmasked'],
  [3, 'big-control'],
  [3, 'fragmented-control'],
  [2, 'continuation-first'],
  [2, 'data-during-fragment'],
  [3, 'bogus-length'],
  [2, 'non-minimal-length'],
  [3, 'truncated'],
  [3, 'close-frame'],
  [2, 'bad-utf8'],
  [2, 'random-bytes'],
  [1, 'zero-mask'],
  [1, 'burst'],
];

/** Raw actions a conforming server must accept (and answer, where there is something to answer). */
const BENIGN = new Set<RawAction>(['text', 'fragmented', 'byte-by-byte', 'ping', 'pong', 'binary', 'non-minimal-length', 'zero-mask', 'burst']);

/** Upgrade requests that are not quite right; the daemon must survive them, whatever it answers. */
function brokenHandshake(rng: Rng): [string, Buffer] {
  const key = 'dGhlIHNhbXBsZSBub25jZQ==';
  const std = (path: string, extra = '') => `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`;
  const variants: Array<[string, string | Buffer]> = [
    ['no key', 'GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n'],
    ['version 99', std('/ws').replace('Version: 13', 'Version: 99')],
    ['garbage', Buffer.concat([rng.bytes(rng.int(1, 300)), Buffer.from('\r\n\r\n')])],
    ['POST', 'POST /ws HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello'],
    ['huge header', std('/ws', `X-Fuzz: ${'a'.repeat(rng.int(5_000, 40_000))}\r\n`)],
    ['bad percent-encoding in the token', std('/ws?token=%ZZ%')],
    ['a 10 KB token', std(`/ws?token=${'a'.repeat(10_000)}`)],
    ['two tokens', std('/ws?token=&token=abc')],
    ['another path', std('/wss')],
    ['HTTP/1.0', std('/ws').replace('HTTP/1.1', 'HTTP/1.0')],
    ['no Upgrade header', std('/ws').replace('Upgrade: websocket\r\n', '')],
    ['a subprotocol and an extension', std('/ws', 'Sec-WebSocket-Protocol: walcast, x\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n')],
  ];
  const [name, req] = rng.pick(variants);
  return [name, Buffer.isBuffer(req) ? req : Buffer.from(req)];
}

async function rawFuzzer(idx: number, rng: Rng, until: number): Promise<void> {
  const ownToken = fuzzTokens[WS_FUZZERS + idx];
  const authTokens = [ownToken, ownToken, otherUser, ...BAD_TOKENS];
  for (let n = 1; Date.now() < until && !daemonGone(); n++) {
    const conn = new Conn(`raw${idx}.${n}`);
    let r: RawWsConnection;
    try {
      r = await RawWsConnection.connect(port);
    } catch (err) {
      problem('a TCP connection was refused', conn, (err as Error).message);
      await sleep(50);
      continue;
    }
    // State of this connection, for what may be checked.
    let desynced = false; // the server may now read our bytes differently from how we framed them
    let sentClose = false;
    let closedByUs = false; // our close frame went out before any from the server
    let fragmentOpen = false;
    const pings = new Set<string>();
    const onFrame = (f: ServerFrame) => {
      if (f.masked) problem('a masked frame from the server', conn, hex(f.payload));
      if (f.rsv !== 0) problem('a server frame with RSV bits', conn, `rsv ${f.rsv}`);
      switch (f.opcode) {
        case OP.text: {
          let text: string;
          try {
            text = STRICT_UTF8.decode(f.payload);
          } catch {
            problem('a server text frame that is not UTF-8', conn, hex(f.payload));
            return;
          }
          conn.receivedText(text);
          return;
        }
        case OP.binary:
          problem('a binary frame from the server', conn, hex(f.payload));
          return;
        case OP.close:
          return;
        case OP.ping:
          if (!sentClose) r.write(encodeFrame({ opcode: OP.pong, payload: f.payload }));
          return;
        case OP.pong:
          replies.add('(raw) pong frame');
          if (!desynced && !pings.has(f.payload.toString('hex'))) problem('a pong for a ping never sent', conn, hex(f.payload));
          return;
        default:
          problem('an unknown opcode from the server', conn, `opcode ${f.opcode}`);
      }
    };

    if (rng.chance(0.12)) {
      const [name, req] = brokenHandshake(rng);
      connections.add('raw broken upgrade');
      const up = await r.upgrade({ rawRequest: req, timeoutMs: 1_500 }, onFrame);
      handshakes.add(`${name}: ${up.status?.replace(/^HTTP\/1\.1 /, '') ?? (up.timedOut ? 'no answer within 1.5 s' : 'closed')}`);
      if (up.upgraded) await Promise.race([r.closed, sleep(300)]);
      conn.selfClosed = true;
      r.destroy();
      await r.closed;
      continue;
    }

    const mode = rng.weighted<string>([
      [55, 'query-token'],
      [15, 'auth-message'],
      [15, 'none'],
      [15, 'query-bad'],
    ]);
    connections.add(`raw ${mode}`);
    const path = mode === 'query-token' ? `${WS_PATH}?token=${ownToken}` : mode === 'query-bad' ? `${WS_PATH}?token=${encodeURIComponent(rng.pick(BAD_TOKENS))}` : WS_PATH;
    const up = await r.upgrade({ path, timeoutMs: 5_000 }, onFrame);
    if (!up.upgraded) {
      problem(up.timedOut ? 'an upgrade was not answered within 5 s' : 'an upgrade was refused', conn, String(up.status));
      r.destroy();
      await r.closed;
      continue;
    }
    handshakes.add('well-formed: 101');
    void r.closed.then(() => {
      // An empty close frame (1005) is uWebSockets.js echoing a close it read from us: one we
      // sent, or, once out of step, bytes it took for one.
      if (r.serverClose) conn.onClose(r.serverClose.code, r.serverClose.reason, closedByUs || (desynced && r.serverClose.code === 1005));
      else conn.onClose(1006, '', conn.selfClosed);
    });

    const ctx: GenContext = { rng, refPrefix: `r${idx}.${n}`, positions, authTokens, n: 0 };
    const write = (kind: string, bytes: Buffer, textPayload: Buffer | null = null) => {
      if (r.write(bytes)) conn.noteSent(kind, bytes, textPayload);
    };
    const message = () => Buffer.from(toJson(rng.chance(0.7) ? validMessage(ctx) : mutateObject(ctx, validMessage(ctx))));
    const textFrame = (kind: string, payload: Buffer) => write(kind, encodeFrame({ opcode: OP.text, payload }), payload);
    const ping = (payload: Buffer): Buffer => {
      pings.add(payload.toString('hex'));
      return encodeFrame({ opcode: OP.ping, payload });
    };
    const endFrom = async (how: 'fin' | 'rst' | 'continue') => {
      if (how === 'continue') return;
      conn.selfClosed = true;
      if (how === 'fin') await r.end(1_000);
      else r.destroy();
    };
    if (mode === 'auth-message') textFrame('auth', Buffer.from(toJson({ type: 'auth', token: ownToken, ref: `${ctx.refPrefix}-auth` })));

    // Half the connections keep to frames a server must accept, so that they end in step and
    // can be asked for a pong; the others take anything.
    const actions = rng.chance(0.5) ? RAW_ACTIONS.filter(([, a]) => BENIGN.has(a)) : RAW_ACTIONS;
    const budget = rng.int(3, 60);
    for (let i = 0; i < budget && r.open && Date.now() < until; i++) {
      const action = rng.weighted(actions);
      // The server should drop the connection now (or may be reading us out of step). Any data
      // frame while a fragmented message is open is a violation.
      let fatal = fragmentOpen;
      switch (action) {
        case 'text':
          textFrame(action, message());
          break;
        case 'fragmented': {
          const payload = message();
          const pieces = rng.int(2, 5);
          const cuts = [0, ...Array.from({ length: pieces - 1 }, () => rng.int(0, payload.length)).sort((a, b) => a - b), payload.length];
          conn.noteRef(payload);
          for (let p = 0; p < pieces; p++) {
            write(p === 0 ? 'fragment' : 'continuation', encodeFrame({ opcode: p === 0 ? OP.text : OP.continuation, fin: p === pieces - 1, payload: payload.subarray(cuts[p], cuts[p + 1]) }));
            if (p < pieces - 1 && rng.chance(0.4)) write('control between fragments', rng.chance(0.7) ? ping(rng.bytes(rng.int(0, 125))) : encodeFrame({ opcode: OP.pong, payload: rng.bytes(rng.int(0, 20)) }));
            if (rng.chance(0.3)) await pause(rng);
          }
          break;
        }
        case 'byte-by-byte': {
          // One frame written in many small pieces: must be read as one.
          const payload = Buffer.from(toJson({ type: 'ping', ref: `${ctx.refPrefix}-${++ctx.n}` }));
          const bytes = encodeFrame({ opcode: OP.text, payload });
          conn.noteRef(payload);
          for (let at = 0; at < bytes.length && r.open; ) {
            const step = rng.int(1, 3);
            r.write(bytes.subarray(at, at + step));
            at += step;
            await new Promise((res) => setImmediate(res));
          }
          conn.noteSent(action, bytes);
          break;
        }
        case 'ping':
          write(action, ping(rng.bytes(rng.int(0, 125))));
          break;
        case 'pong':
          write(action, encodeFrame({ opcode: OP.pong, payload: rng.bytes(rng.int(0, 125)) }));
          break;
        case 'binary':
          write(action, encodeFrame({ opcode: OP.binary, payload: rng.chance(0.5) ? message() : rng.bytes(rng.int(0, 200)) }));
          break;
        case 'rsv':
          write(action, encodeFrame({ opcode: rng.pick([OP.text, OP.binary, OP.ping]), rsv: rng.int(1, 7), payload: message() }));
          fatal = true;
          break;
        case 'opcode':
          write(action, encodeFrame({ opcode: rng.pick([3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf]), payload: rng.bytes(rng.int(0, 40)) }));
          fatal = true;
          break;
        case 'unmasked':
          // RFC 6455 §5.1: a server must close on an unmasked client frame. uWebSockets.js reads
          // the first 4 payload bytes as the key instead, so the stream is out of step from here.
          write(action, encodeFrame({ opcode: OP.text, mask: false, payload: message() }));
          fatal = true;
          desynced = true;
          break;
        case 'big-control':
          write(action, encodeFrame({ opcode: rng.pick([OP.ping, OP.pong, OP.close]), payload: Buffer.concat([closePayload(1000), rng.bytes(rng.int(124, 400))]) }));
          fatal = true;
          break;
        case 'fragmented-control':
          write(action, encodeFrame({ opcode: rng.pick([OP.ping, OP.pong]), fin: false, payload: rng.bytes(rng.int(0, 50)) }));
          if (rng.chance(0.5)) write('continuation', encodeFrame({ opcode: OP.continuation, payload: rng.bytes(rng.int(0, 50)) }));
          fatal = true;
          break;
        case 'continuation-first':
          if (!fragmentOpen) {
            write(action, encodeFrame({ opcode: OP.continuation, fin: rng.chance(0.7), payload: message() }));
            fatal = true;
          }
          break;
        case 'data-during-fragment': {
          const a = message();
          write('fragment', encodeFrame({ opcode: OP.text, fin: false, payload: a.subarray(0, a.length >> 1) }));
          if (rng.chance(0.3)) {
            // Left open: the next data frame of any other action is the violation.
            fragmentOpen = true;
          } else {
            write(action, encodeFrame({ opcode: rng.pick([OP.text, OP.binary]), payload: message() }));
            fatal = true;
          }
          break;
        }
        case 'bogus-length': {
          const payload = message();
          const declared = rng.pick<number | bigint>([0x8000000000000000n, 0xffffffffffffffffn, 2n ** 40n, 2n ** 32n + 5n, 1024 * 1024 + 1, rng.int(payload.length + 1, 900_000)]);
          write(action, encodeFrame({ opcode: OP.text, payload, declaredLength: declared }));
          fatal = true;
          desynced = true;
          break;
        }
        case 'non-minimal-length': {
          const payload = message();
          write(action, encodeFrame({ opcode: OP.text, payload, lengthEncoding: rng.pick(['16', '64'] as const) }), payload);
          break;
        }
        case 'truncated': {
          const bytes = encodeFrame({ opcode: rng.pick([OP.text, OP.ping, OP.close]), payload: message().subarray(0, 120) });
          write(action, bytes.subarray(0, rng.int(1, bytes.length - 1)));
          desynced = true;
          await endFrom(rng.weighted<'fin' | 'rst' | 'continue'>([[5, 'fin'], [3, 'rst'], [2, 'continue']]));
          break;
        }
        case 'close-frame': {
          const payload = rng.weighted<Buffer>([
            [3, closePayload(rng.pick([1000, 1001, 3000, 4999]), rng.ascii(rng.int(0, 60)))],
            [3, closePayload(rng.pick([0, 999, 1004, 1005, 1006, 1015, 2999, 5000, 65535]))],
            [1, Buffer.from([rng.int(0, 255)])],
            [1, Buffer.concat([closePayload(1000), Buffer.from([0xff, 0xfe])])],
            [1, closePayload(1000, 'r'.repeat(123))],
            [1, Buffer.alloc(0)],
          ]);
          sentClose = true;
          closedByUs = !r.serverClose;
          conn.selfClosed = true;
          write(action, encodeFrame({ opcode: OP.close, payload }));
          break;
        }
        case 'bad-utf8':
          write(action, encodeFrame({ opcode: OP.text, payload: badUtf8(rng) }));
          fatal = true;
          break;
        case 'random-bytes':
          write(action, rng.bytes(rng.int(1, 64)));
          fatal = true;
          desynced = true;
          break;
        case 'zero-mask': {
          const payload = message();
          write(action, encodeFrame({ opcode: OP.text, payload, maskKey: Buffer.alloc(4) }), payload);
          break;
        }
        case 'burst': {
          const frames: Buffer[] = [];
          for (let b = rng.int(60, 80); b > 0; b--) {
            const payload = Buffer.from(toJson({ type: 'ping', ref: `${ctx.refPrefix}-${++ctx.n}` }));
            frames.push(encodeFrame({ opcode: OP.text, payload }));
            conn.noteRef(payload);
          }
          write(action, Buffer.concat(frames));
          break;
        }
      }
      if (sentClose) break;
      if (fatal) {
        // Give the server a moment to drop the connection; either way the fuzzing goes on.
        await Promise.race([r.closed, sleep(rng.int(20, 200))]);
        if (!conn.closed) desynced = true;
      }
      await pause(rng);
    }

    // Still open and in step: it must answer a ping. Then close: a close frame, FIN, or RST.
    if (r.open && !desynced && !sentClose && !fragmentOpen) {
      const ref = `probe-${conn.name}`;
      textFrame('probe', Buffer.from(toJson({ type: 'ping', ref })));
      const answered = await conn.until(() => conn.pongRefs.has(`s:${ref}`), PROBE_MS);
      probes.add(conn.pongRefs.has(`s:${ref}`) ? 'raw: pong' : answered ? 'raw: closed before the pong' : 'raw: no answer');
      if (conn.pongRefs.has(`s:${ref}`)) conn.checkPings();
      if (!answered) problem('an open connection did not answer a ping', conn, `no pong within ${PROBE_MS} ms`);
    }
    if (r.open) {
      conn.selfClosed = true;
      const how = rng.pick(['close frame', 'fin', 'rst']);
      if (how === 'close frame' && !sentClose) {
        sentClose = true;
        closedByUs = !r.serverClose;
        write('close-frame', encodeFrame({ opcode: OP.close, payload: closePayload(1000) }));
        await Promise.race([r.closed, sleep(2_000)]);
        r.destroy();
      } else if (how === 'fin') await r.end(2_000);
      else r.destroy();
    }
    await r.closed;
  }
}

// ── the run ──────────────────────────────────────────────────────────────────────────────────

t.comment(`setup took ${Date.now() - T0} ms`);
const started = Date.now();
const until = started + FUZZ_MS;
const master = new Rng(SEED);
const runs = [
  ...Array.from({ length: WS_FUZZERS }, (_, i) => wsFuzzer(i, master.fork(), until)),
  ...Array.from({ length: RAW_FUZZERS }, (_, i) => rawFuzzer(i, master.fork(), until)),
  expiryFuzzer(master.fork(), until),
];
let guard: NodeJS.Timeout | undefined;
const settled = await Promise.race([Promise.allSettled(runs), new Promise<null>((resolve) => (guard = setTimeout(() => resolve(null), FUZZ_MS + 40_000)))]);
clearTimeout(guard);
const fuzzMs = Date.now() - started;
clearInterval(sampler);
const peakDuringFuzz = peak;
const heapAfter = await heapMiB();

writing = false;
await writeLoop;
const wantRows = written;
let goodComplete: Error | null = null;
await good.waitChanges('feed', wantRows, 30_000).catch((err: Error) => (goodComplete = err));

t.test('the fuzzers ran to their end', async (t) => {
  t.ok(settled, `every fuzzer finished (took ${fuzzMs} ms for ${FUZZ_MS} ms of fuzzing)`);
  for (const [i, s] of (settled ?? []).entries()) {
    if (s.status === 'rejected') t.fail(`fuzzer ${i} threw (a bug of the test): ${(s.reason as Error)?.stack ?? String(s.reason)}`);
  }
  t.comment(`connections: ${connections}`);
  t.comment(`frames sent: ${sentFrames} (${(bytesSent / 1024 / 1024).toFixed(1)} MiB)`);
  t.comment(`upgrades: ${handshakes}`);
  t.comment(`probes at the end of a connection: ${probes}`);
  t.comment(`connections whose token expired: ${expiries}`);
  t.comment(`ws client errors: ${clientErrors}`);
});

t.test('the daemon survived', async (t) => {
  t.notOk(daemonGone(), `the daemon process is still running${daemonGone() ? `; stderr: ${proc.stderr.slice(-3000)}` : ''}`);
  const logs = proc.stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => {
      try {
        return JSON.parse(l) as { level: number; msg: string; err?: string };
      } catch {
        return { level: 0, msg: l };
      }
    });
  const errors = logs.filter((l) => l.level >= 50);
  t.same(errors.map((l) => `${l.msg}: ${l.err ?? ''}`), [], 'it logged no error');
  const warns = logs.filter((l) => l.level === 40);
  t.comment(`daemon warnings: ${warns.length}${warns.length ? ` (${warns.slice(0, 3).map((l) => l.msg).join('; ')})` : ''}`);
  const health = await fetch(`http://127.0.0.1:${port}/healthz`).catch((err: Error) => err);
  t.equal(health instanceof Error ? health.message : health.status, 200, 'GET /healthz is 200');
});

t.test('the well-behaved subscriber got every row once, in order, and stayed connected', async (t) => {
  t.equal(writerError, null, 'the writer committed without error');
  t.ok(wantRows > 20, `rows were committed throughout (${wantRows})`);
  t.equal(goodComplete, null, `all ${wantRows} rows arrived`);
  const changes = good.changes('feed');
  const seqs = changes.map((c) => c.new?.seq);
  t.same(seqs, Array.from({ length: wantRows }, (_, i) => i + 1), 'every committed row exactly once, in commit order');
  t.same(orderViolations(changes.map((c) => c.pos)), [], 'positions strictly increasing');
  t.same(duplicates(changes.map((c) => c.pos)), [], 'no position twice');
  t.ok(changes.every((c) => c.op === 'insert' && c.table === 'public.feed'), 'all inserts of public.feed');
  t.equal(good.closeInfo, null, 'never disconnected');
  t.same(good.ofType('error'), [], 'no error');
  t.same(good.ofType('resync'), [], 'no resync');
  t.same(good.garbage, [], 'every frame a JSON message');
});

t.test('every reply was protocol', async (t) => {
  t.comment(`replies: ${replies}`);
  t.comment(`closes: ${closes}`);
  t.comment(`close reasons (server): ${closeReasons}`);
  t.ok(DOCS.wireCodes.has('bad_request') && DOCS.closeCodes.has(4001) && DOCS.resyncReasons.size > 0, `the docs list the codes (${[...DOCS.wireCodes].join(', ')}; ${[...DOCS.closeCodes].join(', ')}; ${[...DOCS.resyncReasons].join(', ')})`);
  if (FUZZ_MS >= 3_000) {
    t.ok(replies.get('error bad_request') > 0 && replies.get('pong') > 0, 'the fuzz reached the parser (bad_request) and got through it (pong)');
    t.ok(closes.get('server 1006') > 0 && closes.get(`server ${CLOSE.authFailed}`) > 0, 'and the WebSocket layer (dropped connections) and authentication (4001)');
  }
  const expired = [...expiries.counts.keys()];
  t.ok(expired.every((k) => /^server 4001 (token expired|the token has expired)$/.test(k)), `a token expiring mid-session closes its connection with 4001 (${expiries})`);
  for (const [category, examples] of problems) {
    t.comment(`${category}: ${examples.length} time(s); ${examples.filter(Boolean).join('\n    ')}`);
  }
  t.same([...problems.keys()], [], 'no protocol violation, undocumented code, stray ref or hang');
  t.equal(problems.get(PROTO_PRESENCE_BUG)?.length ?? 0, 0, 'presence_state and presence_diff agree, also for a user whose id is "__proto__"');
});

t.test('memory stayed bounded', { skip: baseline === 0 ? 'no /proc/<pid>/status VmRSS here' : false }, async (t) => {
  const mib = (k: number) => `${(k / 1024).toFixed(1)} MiB`;
  t.comment(`daemon RSS: baseline ${mib(baseline)}, peak while fuzzed ${mib(peakDuringFuzz)} (+${mib(peakDuringFuzz - baseline)}), now ${mib(rssKiB() ?? 0)}`);
  t.comment(`daemon RSS each second while fuzzed (MiB): ${trail.map((k) => (k / 1024).toFixed(0)).join(' ')}`);
  t.comment(`daemon V8 heap used: ${heapBefore?.toFixed(1)} MiB before, ${heapAfter?.toFixed(1)} MiB right after the fuzz`);
  t.ok(peakDuringFuzz < baseline + RSS_HEADROOM_KIB, `peak RSS under baseline + ${mib(RSS_HEADROOM_KIB)}`);
});

t.test('after the fuzz: no leftovers, and a new client is served', async (t) => {
  type Status = { clients: number; subscriptions: number; channels: number };
  let status: Status | undefined;
  const deadline = Date.now() + 10_000;
  do {
    status = (await (await fetch(`http://127.0.0.1:${port}/status`)).json()) as Status;
    if (status.clients === 1 && status.subscriptions === 1 && status.channels === 0) break;
    await sleep(100);
  } while (Date.now() < deadline);
  t.match(status, { clients: 1, subscriptions: 1, channels: 0 }, 'only the well-behaved client is left: no session, subscription or channel leaked');

  const fresh = await WsClient.connect(`${wsUrl}?token=${await hsToken({ sub: 'fresh' })}`);
  t.teardown(() => fresh.close());
  await fresh.subscribe({ id: 'f', table: 'public.feed' });
  await query(url, "insert into feed (seq, body) values (-1, 'after the fuzz')");
  const [row] = await fresh.waitChanges('f', 1);
  t.match(row.new, { seq: -1, body: 'after the fuzz' }, 'a fresh client subscribes and gets a new row');
  await good.waitChanges('feed', wantRows + 1);
  t.equal(good.changes('feed')[wantRows]?.new?.seq, -1, 'so does the well-behaved one');
  t.equal(good.closeInfo, null, 'still connected');
  await fresh.close();
  await good.close();
  proc.kill('SIGTERM');
  const res = await proc.wait(15_000);
  t.equal(res.code, 0, 'SIGTERM: exit 0');
  t.comment(`${Date.now() - T0} ms since the start`);
});
