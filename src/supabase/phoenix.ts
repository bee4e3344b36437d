// The Phoenix channels wire codec of the Supabase Realtime-compatible endpoint (server side),
// interoperating with @supabase/realtime-js 2.x and the @supabase/phoenix client under it:
//   vsn 1.0.0: text frames of JSON objects {topic, event, payload, ref, join_ref};
//   vsn 2.0.0: text frames of JSON arrays [join_ref, ref, topic, event, payload], plus binary
//     frames for client broadcasts: kind 3 "user broadcast push" in, kind 4 "user broadcast" out
//     (realtime-js dist/main/lib/serializer.js).
//
// Decoding reads the frame synchronously and keeps nothing of it (uWebSockets.js reuses the
// buffer after the handler returns): binary user payloads are copied. Nothing recurses over
// client data (V8's JSON.parse is iterative), and every failure is a PhoenixDecodeError.
import type { BroadcastPush, BroadcastPushMessage, DecodedFrame, PhoenixMessage, TextFrameMessage, Vsn } from './phoenix.types.js';

/** Binary frame kinds (realtime-js Serializer.KINDS). */
const KIND_USER_BROADCAST_PUSH = 3;
const KIND_USER_BROADCAST = 4;
/** User payload encodings of the binary frames. */
const ENCODING_BINARY = 0;
const ENCODING_JSON = 1;
/** kind, five uint8 lengths (join_ref, ref, topic, user event, metadata), payload encoding. */
const PUSH_HEADER = 7;
/** kind, three uint8 lengths (topic, user event, metadata), payload encoding. */
const BROADCAST_HEADER = 5;
const MAX_FIELD_BYTES = 255;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Where a reply to a bad frame would go, as far as the frame could be read. */
interface ErrorContext {
  joinRef: string | null;
  ref: string | null;
  topic: string | null;
}

/**
 * A frame that could not be decoded. `reason` is worded for the client (e.g. the `reason` of a
 * phx_reply error); joinRef/ref/topic are those of the frame when they could be read, so the
 * reply can be addressed to the push that caused it.
 */
export class PhoenixDecodeError extends Error {
  readonly reason: string;
  readonly joinRef: string | null;
  readonly ref: string | null;
  readonly topic: string | null;
  /** The frame exceeded maxBytes (nothing of it was read). */
  readonly tooLarge: boolean;

  constructor(reason: string, ctx: ErrorContext = NO_CONTEXT, tooLarge = false) {
    super(reason);
    this.name = 'PhoenixDecodeError';
    this.reason = reason;
    this.joinRef = ctx.joinRef;
    this.ref = ctx.ref;
    this.topic = ctx.topic;
    this.tooLarge = tooLarge;
  }
}

const NO_CONTEXT: ErrorContext = { joinRef: null, ref: null, topic: null };

/**
 * The serializer a `vsn` query parameter selects. Absent or empty is 1.0.0 (Phoenix's default
 * for sockets that name none). Like the `~> 1.0.0` / `~> 2.0.0` requirements Realtime registers
 * its serializers under, any 1.0.x / 2.0.x selects that serializer (pre-release and build
 * suffixes are not accepted). Anything else is null: the caller refuses the upgrade.
 */
export function parseVsn(v: string | null | undefined): Vsn | null {
  if (v === null || v === undefined || v === '') return '1.0.0';
  const m = /^([12])\.0\.(?:0|[1-9][0-9]{0,8})$/.exec(v);
  if (m === null) return null;
  return m[1] === '1' ? '1.0.0' : '2.0.0';
}

/**
 * One client frame. Text frames are UTF-8 JSON in the vsn's shape; binary frames are accepted
 * only under 2.0.0, and only user broadcast pushes (kind 3). Throws PhoenixDecodeError, and
 * nothing else, on any input; a frame over maxBytes is refused before it is read.
 */
export function decodeFrame(vsn: Vsn, data: ArrayBuffer | Uint8Array, isBinary: boolean, maxBytes: number): DecodedFrame {
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
  if (bytes.byteLength > maxBytes) {
    throw new PhoenixDecodeError(`the frame is ${bytes.byteLength} bytes; the limit is ${maxBytes}`, NO_CONTEXT, true);
  }
  if (isBinary) return decodeBinary(vsn, bytes);
  let text: string;
  try {
    text = utf8.decode(bytes); // drops one leading BOM
  } catch {
    throw new PhoenixDecodeError('the frame is not valid UTF-8');
  }
  const value = parseJson(text, 'the frame', NO_CONTEXT);
  return vsn === '1.0.0' ? fromObject(value) : fromArray(value);
}

/** vsn 1.0.0: {topic, event, payload, ref, join_ref}; payload may be absent (then {}). */
function fromObject(v: unknown): TextFrameMessage {
  if (!isObject(v)) throw new PhoenixDecodeError('a message must be a JSON object {topic, event, payload, ref, join_ref}');
  return fromFields(own(v, 'join_ref'), own(v, 'ref'), own(v, 'topic'), own(v, 'event'), Object.hasOwn(v, 'payload') ? v.payload : {});
}

/** vsn 2.0.0: [join_ref, ref, topic, event, payload]. */
function fromArray(v: unknown): TextFrameMessage {
  if (!Array.isArray(v) || v.length !== 5) {
    throw new PhoenixDecodeError('a message must be a JSON array [join_ref, ref, topic, event, payload]', Array.isArray(v) ? contextOf(v[0], v[1], v[2]) : NO_CONTEXT);
  }
  return fromFields(v[0], v[1], v[2], v[3], v[4]);
}

function fromFields(joinRef: unknown, ref: unknown, topic: unknown, event: unknown, payload: unknown): TextFrameMessage {
  const ctx = contextOf(joinRef, ref, topic);
  const jr = readRef(joinRef);
  if (jr === undefined) throw new PhoenixDecodeError('join_ref must be a string, a number or null', ctx);
  const r = readRef(ref);
  if (r === undefined) throw new PhoenixDecodeError('ref must be a string, a number or null', ctx);
  if (typeof topic !== 'string') throw new PhoenixDecodeError('topic must be a string', ctx);
  if (typeof event !== 'string') throw new PhoenixDecodeError('event must be a string', ctx);
  if (!isObject(payload)) throw new PhoenixDecodeError('payload must be a JSON object', ctx);
  return { binary: false, joinRef: jr, ref: r, topic, event, payload };
}

/** A ref as the client sends it (makeRef: a string), numbers as their text; undefined if unusable. */
function readRef(v: unknown): string | null | undefined {
  if (v === null || v === undefined) return null;
  if (typeof v === 'string') return v;
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  return undefined;
}

function contextOf(joinRef: unknown, ref: unknown, topic: unknown): ErrorContext {
  return { joinRef: readRef(joinRef) ?? null, ref: readRef(ref) ?? null, topic: typeof topic === 'string' ? topic : null };
}

/** A kind 3 user broadcast push: header, join_ref, ref, topic, user event, metadata, payload. */
function decodeBinary(vsn: Vsn, b: Uint8Array): BroadcastPushMessage {
  if (vsn !== '2.0.0') throw new PhoenixDecodeError('binary frames need vsn 2.0.0; send JSON text');
  if (b.byteLength < 1) throw new PhoenixDecodeError('the binary frame is empty');
  if (b[0] !== KIND_USER_BROADCAST_PUSH) {
    throw new PhoenixDecodeError(`binary frames of kind ${b[0]} are not accepted; only user broadcast pushes (kind 3)`);
  }
  if (b.byteLength < PUSH_HEADER) throw new PhoenixDecodeError('the binary frame is shorter than its header');
  const [joinRefLen, refLen, topicLen, eventLen, metaLen, encoding] = [b[1], b[2], b[3], b[4], b[5], b[6]];
  const ctx: ErrorContext = { joinRef: null, ref: null, topic: null };
  const fieldsEnd = PUSH_HEADER + joinRefLen + refLen + topicLen + eventLen + metaLen;
  if (fieldsEnd > b.byteLength) throw new PhoenixDecodeError("the binary frame is shorter than its header's field lengths");
  let at = PUSH_HEADER;
  const field = (len: number, name: string): string => {
    const s = text(b.subarray(at, at + len), name, ctx);
    at += len;
    return s;
  };
  // The client writes an absent ref as zero bytes.
  const joinRef = (ctx.joinRef = field(joinRefLen, 'join_ref') || null);
  const ref = (ctx.ref = field(refLen, 'ref') || null);
  const topic = (ctx.topic = field(topicLen, 'topic'));
  const event = field(eventLen, 'event');
  const metaText = field(metaLen, 'metadata');
  if (encoding !== ENCODING_BINARY && encoding !== ENCODING_JSON) {
    throw new PhoenixDecodeError(`unknown payload encoding ${encoding} (0 binary, 1 JSON)`, ctx);
  }
  let meta: Record<string, unknown> | undefined;
  if (metaLen > 0) {
    const m = parseJson(metaText, 'the metadata', ctx);
    if (!isObject(m)) throw new PhoenixDecodeError('the metadata must be a JSON object', ctx);
    meta = m;
  }
  const rest = b.subarray(fieldsEnd);
  const base = { type: 'broadcast' as const, event };
  let payload: BroadcastPush;
  if (encoding === ENCODING_JSON) {
    payload = { ...base, encoding: 'json', payload: parseJson(text(rest, 'payload', ctx), 'the payload', ctx) };
  } else {
    payload = { ...base, encoding: 'binary', payload: Buffer.from(rest) }; // a copy
  }
  if (meta !== undefined) payload.meta = meta;
  return { binary: true, joinRef, ref, topic, event: 'broadcast', payload };
}

function text(b: Uint8Array, name: string, ctx: ErrorContext): string {
  try {
    return utf8.decode(b);
  } catch {
    throw new PhoenixDecodeError(`the ${name} is not valid UTF-8`, ctx);
  }
}

function parseJson(s: string, what: string, ctx: ErrorContext): unknown {
  try {
    return JSON.parse(s);
  } catch (err) {
    // SyntaxError; RangeError should the parser ever run out of stack on deep nesting.
    const why = err instanceof RangeError ? 'nested too deeply' : err instanceof Error ? clip(err.message) : 'unparsable';
    throw new PhoenixDecodeError(`${what} is not valid JSON: ${why}`, ctx);
  }
}

function clip(s: string): string {
  return s.length > 120 ? `${s.slice(0, 117)}...` : s;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function own(o: Record<string, unknown>, key: string): unknown {
  return Object.hasOwn(o, key) ? o[key] : undefined;
}

/**
 * The text frame of a message in the vsn's shape. The payload is written by JSON.stringify (and
 * throws what it throws); one it cannot write (undefined) is sent as {}, since the client reads
 * `payload.status` of every message it receives.
 */
export function encodeFrame(vsn: Vsn, m: PhoenixMessage): string {
  const { head, tail } = encodeFramePrefix(vsn, m.joinRef, m.ref, m.topic, m.event);
  return head + (JSON.stringify(m.payload) ?? '{}') + tail;
}

/**
 * The text around a message's payload: head + payloadJson + tail is encodeFrame's frame for that
 * payload, so a payload serialized once can be sent to many sockets of either vsn.
 */
export function encodeFramePrefix(vsn: Vsn, joinRef: string | null, ref: string | null, topic: string, event: string): { head: string; tail: string } {
  const jr = JSON.stringify(joinRef);
  const r = JSON.stringify(ref);
  const t = JSON.stringify(topic);
  const e = JSON.stringify(event);
  if (vsn === '1.0.0') return { head: `{"topic":${t},"event":${e},"ref":${r},"join_ref":${jr},"payload":`, tail: '}' };
  return { head: `[${jr},${r},${t},${e},`, tail: ']' };
}

/**
 * A kind 4 user broadcast frame (vsn 2.0.0 only; the client decodes it to a `broadcast` message
 * whose payload is {type: 'broadcast', event, payload, meta?}). `payload` is the user payload's
 * bytes: UTF-8 JSON text for 'json', anything for 'binary' (the client hands it over as an
 * ArrayBuffer). `metaJson` is a JSON object's text or '' for none. Throws RangeError when the
 * topic, event or metadata exceeds 255 UTF-8 bytes (the header's uint8 lengths).
 * The result may be a view into a shared pool: send the Buffer itself, not its .buffer.
 */
export function encodeUserBroadcast(topic: string, userEvent: string, payload: Uint8Array, encoding: 'json' | 'binary', metaJson = ''): Buffer {
  const t = Buffer.from(topic, 'utf8');
  const e = Buffer.from(userEvent, 'utf8');
  const m = Buffer.from(metaJson, 'utf8');
  for (const [name, f] of [['topic', t], ['event', e], ['metadata', m]] as const) {
    if (f.length > MAX_FIELD_BYTES) throw new RangeError(`the ${name} is ${f.length} bytes; a binary frame allows ${MAX_FIELD_BYTES}`);
  }
  const header = Buffer.from([KIND_USER_BROADCAST, t.length, e.length, m.length, encoding === 'json' ? ENCODING_JSON : ENCODING_BINARY]);
  return Buffer.concat([header, t, e, m, payload], BROADCAST_HEADER + t.length + e.length + m.length + payload.byteLength);
}
