// Generators for the protocol fuzz test (test/integration/fuzz.test.ts): a seeded PRNG, JSON text
// with literals JSON.stringify cannot write (1e400, -0, 2^64, long digit strings), well-formed
// walcast client messages, and mutations of them (fields dropped, added, retyped; bytes flipped,
// cut, inserted), deep nesting and oversize frames. Everything is a pure function of the Rng, so
// a fuzzer's sequence of frames is replayed by its seed.

/** mulberry32: small, fast, good enough to pick test inputs; the whole state is one uint32. */
export class Rng {
  private s: number;

  constructor(seed: number) {
    this.s = seed >>> 0;
  }

  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) | 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)];
  }

  /** One of the values, with probability proportional to its weight. */
  weighted<T>(xs: ReadonlyArray<readonly [number, T]>): T {
    let total = 0;
    for (const [w] of xs) total += w;
    let r = this.next() * total;
    for (const [w, v] of xs) {
      r -= w;
      if (r < 0) return v;
    }
    return xs[xs.length - 1][1];
  }

  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = Math.floor(this.next() * 256);
    return b;
  }

  /** Printable ASCII (no quote or backslash: stays inside a JSON string as is). */
  ascii(n: number): string {
    let s = '';
    for (let i = 0; i < n; i++) {
      let c = 32 + Math.floor(this.next() * 95);
      if (c === 34 || c === 92) c = 95;
      s += String.fromCharCode(c);
    }
    return s;
  }

  /** An independent generator derived from this one. */
  fork(): Rng {
    return new Rng(Math.floor(this.next() * 4294967296));
  }
}

/** JSON text written verbatim by toJson (numbers and strings JSON.stringify would change). */
export class Raw {
  constructor(readonly text: string) {}
}

/** JSON text of a value that may hold Raw pieces (objects and arrays are walked, shallowly nested). */
export function toJson(v: unknown): string {
  if (v instanceof Raw) return v.text;
  if (Array.isArray(v)) return `[${v.map(toJson).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    return `{${Object.entries(v as Record<string, unknown>)
      .map(([k, x]) => `${JSON.stringify(k)}:${toJson(x)}`)
      .join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

/** A value nested `depth` levels (arrays or objects). */
export function nested(depth: number, kind: 'array' | 'object' = 'array'): Raw {
  return kind === 'array' ? new Raw('['.repeat(depth) + ']'.repeat(depth)) : new Raw('{"a":'.repeat(depth) + '1' + '}'.repeat(depth));
}

export interface GenContext {
  rng: Rng;
  /** Prefix of this connection's refs (unique per fuzzer). */
  refPrefix: string;
  /** Positions seen lately (from change, subscribed, progress), for `since`. */
  positions: readonly string[];
  /** Tokens to put in `auth` messages: good and bad ones. */
  authTokens: readonly string[];
  /** Counter for refs. */
  n: number;
}

export const TABLES = [
  'feed',
  'public.feed',
  'FEED',
  '"feed"',
  'public."feed"',
  'secret',
  'nope',
  'walcast.casbin_rule',
  'walcast.migrations',
  'a.b.c',
  '"unterminated',
  'public.',
  ' feed',
  'pg_catalog.pg_class',
  'x'.repeat(600),
];
export const FILTERS = [
  'seq=gt.10',
  'seq=eq.1',
  'body=eq.x',
  'seq=in.(1,2,3)',
  'seq=lt.5&body=neq.a',
  'id=is.not_null',
  'body=is.null',
  'seq=like.1',
  'nope=eq.1',
  'seq=eq.abc',
  'seq=in.(1,',
  '&&',
  '=',
  `seq=gt.${'9'.repeat(60)}`,
  `body=eq.${'é'.repeat(100)}`,
  `body=in.(${Array.from({ length: 200 }, (_, i) => i).join(',')})`,
  '',
];
export const IDS: ReadonlyArray<string | number> = [1, 2, 3, 'a', 'b', 'feed', 0, -7, 'x'.repeat(128)];
export const CHANNELS = ['fz:1', 'fz:2', 'fz:🙂', `fz:${'c'.repeat(252)}`, 'other', 'room:1', 'fz:*', 'fz:'];
const EVENT_NAMES = ['e', 'typing', 'x'.repeat(255), '🙂'];
const FIXED_POSITIONS = ['0/0:0', 'FFFFFFFF/FFFFFFFF:2147483647', '0/1:0', '0/16B3748:3', '0/16b3748:0', '1/0:0'];

/** Values of every JSON kind, including numbers beyond doubles and strings JS mangles. */
export function oddValue(rng: Rng): unknown {
  switch (rng.int(0, 31)) {
    case 0: return null;
    case 1: return true;
    case 2: return false;
    case 3: return 0;
    case 4: return -1;
    case 5: return 1.5;
    case 6: return new Raw('-0');
    case 7: return new Raw('1e400');
    case 8: return new Raw('-1e400');
    case 9: return new Raw('18446744073709551616'); // 2^64
    case 10: return new Raw('1' + '0'.repeat(rng.int(20, 400)));
    case 11: return new Raw('0.' + '9'.repeat(rng.int(20, 400)));
    case 12: return new Raw('1e-400');
    case 13: return new Raw('9007199254740993'); // 2^53 + 1
    case 14: return Number.MAX_VALUE;
    case 15: return '';
    case 16: return 'x'.repeat(rng.int(100, 3000));
    case 17: return '\u0000';
    case 18: return new Raw('"\\ud800"'); // a lone surrogate, valid JSON
    case 19: return new Raw('"\\udfff\\ud800x"');
    case 20: return '🙂'.repeat(rng.int(1, 80));
    case 21: return [];
    case 22: return {};
    case 23: return [1, [2, [3, null]]];
    case 24: return { a: { b: { c: 1 } } };
    case 25: return nested(rng.int(50, 200), rng.chance(0.5) ? 'array' : 'object');
    case 26: return rng.pick(['subscribe', 'ping', 'auth', 'join', 'change', 'welcome']);
    case 27: return rng.ascii(rng.int(0, 40));
    case 28: return new Raw('123e45678901234567890');
    case 29: return new Raw(`-${'9'.repeat(rng.int(17, 40))}`);
    case 30: return new Raw('"\\u0000ping"');
    default: return rng.int(-1e9, 1e9);
  }
}

function ref(ctx: GenContext): unknown {
  const n = ++ctx.n;
  return ctx.rng.weighted<unknown>([
    [7, `${ctx.refPrefix}-${n}`],
    [2, n],
    [1, undefined],
  ]);
}

function position(ctx: GenContext): string {
  if (ctx.positions.length > 0 && ctx.rng.chance(0.7)) return ctx.rng.pick(ctx.positions);
  return ctx.rng.pick(FIXED_POSITIONS);
}

function events(rng: Rng): unknown {
  const all = ['insert', 'update', 'delete'];
  if (rng.chance(0.8)) return all.filter(() => rng.chance(0.6)).sort(() => rng.next() - 0.5);
  return rng.pick<unknown>([['insert', 'insert'], ['upsert'], 'insert', [], [null], [1]]);
}

function payload(rng: Rng): unknown {
  switch (rng.int(0, 7)) {
    case 0: return null;
    case 1: return { n: rng.int(0, 1000), s: rng.ascii(rng.int(0, 30)) };
    case 2: return rng.ascii(rng.int(0, 200));
    case 3: return [1, 2, 3];
    case 4: return nested(rng.int(95, 102), rng.chance(0.5) ? 'array' : 'object');
    case 5: return { big: 'x'.repeat(rng.int(30_000, 34_000)) };
    case 6: return oddValue(rng);
    default: return undefined;
  }
}

function presenceState(rng: Rng): unknown {
  switch (rng.int(0, 5)) {
    case 0: return null;
    case 1: return { status: rng.pick(['online', 'away', 'typing']) };
    case 2: return { big: 'x'.repeat(rng.int(30_000, 34_000)) };
    case 3: return { deep: nested(rng.int(97, 102)) };
    case 4: return oddValue(rng);
    default: return { n: rng.int(0, 1e6) };
  }
}

/** A client message, well-formed field by field (though not necessarily allowed). */
export function validMessage(ctx: GenContext): Record<string, unknown> {
  const rng = ctx.rng;
  const type = rng.weighted<string>([
    [15, 'ping'],
    [20, 'subscribe'],
    [10, 'unsubscribe'],
    [4, 'auth'],
    [10, 'join'],
    [6, 'leave'],
    [12, 'broadcast'],
    [10, 'presence'],
  ]);
  const m: Record<string, unknown> = { type };
  switch (type) {
    case 'subscribe':
      m.id = rng.pick(IDS);
      m.table = rng.chance(0.8) ? rng.pick(['feed', 'public.feed']) : rng.pick(TABLES);
      if (rng.chance(0.4)) m.filter = rng.pick(FILTERS);
      if (rng.chance(0.3)) m.events = events(rng);
      if (rng.chance(0.35)) m.since = position(ctx);
      break;
    case 'unsubscribe':
      m.id = rng.pick(IDS);
      break;
    case 'auth':
      m.token = rng.pick(ctx.authTokens);
      break;
    case 'join':
    case 'leave':
      m.channel = rng.chance(0.7) ? rng.pick(['fz:1', 'fz:2']) : rng.pick(CHANNELS);
      break;
    case 'broadcast':
      m.channel = rng.chance(0.7) ? rng.pick(['fz:1', 'fz:2']) : rng.pick(CHANNELS);
      m.event = rng.pick(EVENT_NAMES);
      m.payload = payload(rng);
      if (rng.chance(0.3)) m.self = rng.chance(0.5);
      break;
    case 'presence':
      m.channel = rng.chance(0.8) ? rng.pick(['fz:1', 'fz:2']) : rng.pick(CHANNELS);
      m.state = presenceState(rng);
      break;
  }
  const r = ref(ctx);
  if (r !== undefined) m.ref = r;
  return m;
}

const FIELD_NAMES = ['type', 'ref', 'id', 'table', 'filter', 'events', 'since', 'token', 'channel', 'event', 'payload', 'self', 'state', '__proto__', 'constructor', 'toString', ''];

/** A message with one field dropped, added, retyped, or its type replaced. */
export function mutateObject(ctx: GenContext, msg: Record<string, unknown>): Record<string, unknown> {
  const rng = ctx.rng;
  const m: Record<string, unknown> = { ...msg };
  const keys = Object.keys(m);
  switch (rng.int(0, 5)) {
    case 0:
      delete m[rng.pick(keys)];
      break;
    case 1:
      Object.defineProperty(m, rng.pick(FIELD_NAMES), { value: oddValue(rng), enumerable: true, configurable: true, writable: true });
      break;
    case 2:
      m[rng.pick(keys)] = oddValue(rng);
      break;
    case 3:
      m.type = rng.pick<unknown>(['', 'PING', 'subscribe ', 'what', 'welcome', 'change', 'Subscribe', '\u0000', 'x'.repeat(5000), oddValue(rng)]);
      break;
    case 4:
      for (let i = rng.int(1, 4); i > 0; i--) m[rng.pick(keys)] = oddValue(rng);
      break;
    default:
      m[`extra${rng.int(0, 99)}`] = oddValue(rng);
  }
  return m;
}

/** Mutations of JSON text; the result may be invalid UTF-8. */
export function mutateText(rng: Rng, text: string): Buffer {
  const b = Buffer.from(text);
  switch (rng.int(0, 9)) {
    case 0: {
      // flip bits (may make the frame invalid UTF-8)
      const out = Buffer.from(b);
      for (let i = rng.int(1, 3); i > 0 && out.length > 0; i--) out[rng.int(0, out.length - 1)] ^= 1 << rng.int(0, 7);
      return out;
    }
    case 1:
      return b.subarray(0, rng.int(0, Math.max(0, b.length - 1)));
    case 2: {
      const at = rng.int(0, b.length);
      return Buffer.concat([b.subarray(0, at), Buffer.from(rng.ascii(rng.int(1, 8))), b.subarray(at)]);
    }
    case 3: {
      const at = rng.int(0, b.length);
      return Buffer.concat([b.subarray(0, at), rng.bytes(rng.int(1, 4)), b.subarray(at)]);
    }
    case 4:
      return Buffer.concat([b, b]); // two messages in one frame
    case 5:
      return Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), b]); // BOM: accepted
    case 6:
      return Buffer.from(`  \n\t${text}\r\n `);
    case 7: {
      const out = Buffer.from(b);
      if (out.length > 0) out[rng.int(0, out.length - 1)] = rng.pick([0x22, 0x7b, 0x7d, 0x3a, 0x2c, 0x5c, 0x00]);
      return out;
    }
    case 8:
      return Buffer.from(text.replace(/"/g, "'"));
    default: {
      const from = rng.int(0, b.length);
      const to = rng.int(from, b.length);
      return Buffer.concat([b.subarray(0, to), b.subarray(from, to), b.subarray(to)]);
    }
  }
}

/** Invalid UTF-8 inside an otherwise well-formed text frame. */
export function badUtf8(rng: Rng): Buffer {
  const bad = rng.pick([
    [0xff],
    [0xfe, 0xff],
    [0xc0, 0xaf], // overlong "/"
    [0xed, 0xa0, 0x80], // an encoded surrogate (CESU-8)
    [0xe2, 0x82], // truncated sequence
    [0xf4, 0x90, 0x80, 0x80], // beyond U+10FFFF
    [0x80],
  ]);
  return Buffer.concat([Buffer.from('{"type":"ping","ref":"'), Buffer.from(bad), Buffer.from('"}')]);
}

/** Deeply nested JSON: the whole frame, a field nobody walks, or a walked payload/state. */
export function deepFrame(ctx: GenContext): string {
  const rng = ctx.rng;
  const r = JSON.stringify(`${ctx.refPrefix}-${++ctx.n}`);
  switch (rng.int(0, 6)) {
    case 0: return nested(rng.pick([100, 1000, 30_000]), 'array').text;
    case 1: return nested(rng.pick([100, 5000, 12_000]), 'object').text;
    case 2: return `{"type":"ping","ref":${r},"x":${nested(rng.int(1000, 20_000), rng.chance(0.5) ? 'array' : 'object').text}}`;
    case 3: return `{"type":"broadcast","channel":"fz:1","event":"e","payload":${nested(rng.int(98, 103)).text},"ref":${r}}`;
    case 4: return `{"type":"presence","channel":"fz:1","state":{"s":${nested(rng.int(97, 102), 'object').text}},"ref":${r}}`;
    case 5: return '['.repeat(rng.int(1000, 30_000)); // never closed
    default: return `{"type":"subscribe","id":"d","table":"feed","filter":${nested(rng.int(10, 3000)).text},"ref":${r}}`;
  }
}

/** A ping frame of about `bytes` bytes (past 64 KiB: too_large; past 1 MiB: dropped). */
export function paddedPing(ctx: GenContext, bytes: number, multibyte = false): string {
  const head = `{"type":"ping","ref":${JSON.stringify(`${ctx.refPrefix}-${++ctx.n}`)},"pad":"`;
  const room = Math.max(0, bytes - head.length - 2);
  return head + (multibyte ? 'é'.repeat(Math.floor(room / 2)) : 'x'.repeat(room)) + '"}';
}

/** Oversize frame sizes: around the 64 KiB limit, between it and 1 MiB, and (rarely) beyond. */
export function oversizeBytes(rng: Rng): number {
  return rng.weighted<number>([
    [3, 65_535],
    [3, 65_536],
    [3, 65_537],
    [4, rng.int(70_000, 900_000)],
    [1, rng.int(1024 * 1024 + 1, 1300 * 1024)],
  ]);
}

/** What the server would read in a text payload (strict UTF-8, BOM dropped): its `ref` as a key, whether it is a `ping`. */
export function readSent(payload: Buffer | string): { ref: string | null; ping: boolean } {
  const none = { ref: null, ping: false };
  let text: string;
  if (typeof payload === 'string') text = payload.charCodeAt(0) === 0xfeff ? payload.slice(1) : payload;
  else {
    try {
      text = STRICT_UTF8.decode(payload); // drops one leading BOM, as the server's decoder does
    } catch {
      return none;
    }
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return none;
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return none;
  const ref = Object.hasOwn(v, 'ref') ? refKey((v as { ref: unknown }).ref) : null;
  return { ref, ping: Object.hasOwn(v, 'type') && (v as { type: unknown }).type === 'ping' };
}

/** The `ref` a text payload carries as the server would read it, as a key (see refKey). */
export function refKeyOf(payload: Buffer | string): string | null {
  return readSent(payload).ref;
}

/** A ref as a set key: strings and finite numbers (as the server accepts them). */
export function refKey(ref: unknown): string | null {
  if (typeof ref === 'string') return `s:${ref}`;
  if (typeof ref === 'number' && Number.isFinite(ref)) return `n:${String(ref)}`;
  return null;
}

export const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true });
