// The Phoenix channels codec (src/supabase/phoenix.ts) against the client it serves: frames the
// real realtime-js serializer encodes (text under both vsn, binary user broadcast pushes) decode
// to the same message; frames this codec encodes decode in realtime-js to the same message; the
// head/tail splice is encodeFrame's frame; and no input makes decodeFrame throw anything but a
// PhoenixDecodeError (seeded fuzz).
import t from 'tap';
import SerializerModule from '@supabase/realtime-js/dist/main/lib/serializer.js';
import {
  PhoenixDecodeError,
  decodeFrame,
  encodeFrame,
  encodeFramePrefix,
  encodeUserBroadcast,
  parseVsn,
} from '../../src/supabase/phoenix.js';
import type { DecodedFrame, PhoenixMessage, Vsn } from '../../src/supabase/phoenix.types.js';
import { Rng, badUtf8, mutateText } from '../helpers/fuzz-gen.js';

// CJS with `exports.default`: under ESM the default import is module.exports.
const Serializer = SerializerModule.default;
const client = new Serializer();
const MAX = 1 << 20;

interface ClientMsg {
  join_ref: string | null;
  ref: string | null;
  topic: string;
  event: string;
  payload: unknown;
}

/** What realtime-js sends: a string (text frame) or an ArrayBuffer (binary frame). */
function clientEncode(msg: ClientMsg, serializer = client): string | ArrayBuffer {
  return serializer.encode(msg as never, (r: string | ArrayBuffer) => r) as string | ArrayBuffer;
}

function clientDecode(raw: string | ArrayBuffer): ClientMsg {
  return client.decode(raw, (m: unknown) => m) as ClientMsg;
}

/** Decodes a frame as the server receives it (uWebSockets.js hands over an ArrayBuffer). */
function serverDecode(vsn: Vsn, raw: string | ArrayBuffer | Uint8Array, maxBytes = MAX): DecodedFrame {
  if (typeof raw === 'string') return decodeFrame(vsn, toArrayBuffer(Buffer.from(raw, 'utf8')), false, maxBytes);
  return decodeFrame(vsn, raw, true, maxBytes);
}

function toArrayBuffer(b: Uint8Array): ArrayBuffer {
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
}

function decodeError(fn: () => unknown): PhoenixDecodeError {
  try {
    fn();
  } catch (err) {
    if (err instanceof PhoenixDecodeError) return err;
    throw err;
  }
  throw new Error('expected a PhoenixDecodeError');
}

// Topics and events: multi-byte UTF-8 (2, 3, 4 bytes), JSON-hostile characters.
const TOPICS = ['realtime:room1', 'phoenix', 'realtime:héllo', 'realtime:日本語', 'realtime:🙂🙃', 'realtime:q"\\\n\t', 'realtime:', ''];
const EVENTS = ['phx_join', 'heartbeat', 'presence', 'access_token', 'phx_leave', 'ünïcödé', '🎉', 'a'.repeat(200)];
const PAYLOADS: unknown[] = [
  {},
  { config: { broadcast: { self: true, ack: false }, presence: { key: '' }, postgres_changes: [], private: false }, access_token: 'eyJ.x.y' },
  { type: 'presence', event: 'track', payload: { user: 'ü', at: 1.5 } },
  { nested: [1, [2, [3, null]], { '': '', __proto__x: 1 }], big: 12345678901234567000, neg: -0.25, t: true, f: false, n: null },
  { s: '\u2028\u2029 \u0000 "quote" \\ 🙂 日本' },
];

t.test('parseVsn: absent is 1.0.0; 1.0.x and 2.0.x select their serializer; anything else is null', async (t) => {
  t.equal(parseVsn(undefined), '1.0.0');
  t.equal(parseVsn(null), '1.0.0');
  t.equal(parseVsn(''), '1.0.0');
  t.equal(parseVsn('1.0.0'), '1.0.0');
  t.equal(parseVsn('2.0.0'), '2.0.0');
  t.equal(parseVsn('2.0.7'), '2.0.0');
  t.equal(parseVsn('1.0.12'), '1.0.0');
  for (const bad of ['3.0.0', '2.1.0', '2.0', '2', 'v2.0.0', '2.0.0-rc.1', '2.0.0+x', ' 2.0.0', '2.0.01', '1.1.0', 'abc']) {
    t.equal(parseVsn(bad), null, bad);
  }
});

t.test('vsn 2.0.0 text: what realtime-js encodes decodes to the same message', async (t) => {
  for (const topic of TOPICS) {
    for (const event of EVENTS) {
      const payload = PAYLOADS[(topic.length + event.length) % PAYLOADS.length];
      const msg: ClientMsg = { join_ref: '1', ref: '2', topic, event, payload };
      const raw = clientEncode(msg);
      t.type(raw, 'string');
      t.strictSame(serverDecode('2.0.0', raw), { binary: false, joinRef: '1', ref: '2', topic, event, payload }, `${topic} ${event}`);
    }
  }
  // A heartbeat has no join_ref (undefined: JSON.stringify writes null in an array).
  const hb = clientEncode({ topic: 'phoenix', event: 'heartbeat', payload: {}, ref: '7' } as ClientMsg);
  t.strictSame(serverDecode('2.0.0', hb), { binary: false, joinRef: null, ref: '7', topic: 'phoenix', event: 'heartbeat', payload: {} });
  // A broadcast whose payload has no string event goes as text too.
  const b = clientEncode({ join_ref: '3', ref: '4', topic: 'realtime:x', event: 'broadcast', payload: { type: 'broadcast', x: 1 } });
  t.type(b, 'string');
  t.strictSame(serverDecode('2.0.0', b).payload, { type: 'broadcast', x: 1 });
});

t.test('vsn 1.0.0 text: what realtime-js encodes (JSON objects) decodes to the same message', async (t) => {
  for (const topic of TOPICS) {
    for (const event of EVENTS) {
      const payload = PAYLOADS[(topic.length * 7 + event.length) % PAYLOADS.length];
      // RealtimeClient._initializeOptions, vsn 1.0.0: JSON.stringify of the message object.
      const raw = JSON.stringify({ topic, event, payload, ref: '12', join_ref: '11' });
      t.strictSame(serverDecode('1.0.0', raw), { binary: false, joinRef: '11', ref: '12', topic, event, payload }, `${topic} ${event}`);
    }
  }
  const hb = JSON.stringify({ topic: 'phoenix', event: 'heartbeat', payload: {}, ref: '5', join_ref: undefined });
  t.strictSame(serverDecode('1.0.0', hb), { binary: false, joinRef: null, ref: '5', topic: 'phoenix', event: 'heartbeat', payload: {} });
  // A broadcast under 1.0.0 is text: realtime-js never sends binary frames with this serializer.
  const b = JSON.stringify({ topic: 'realtime:x', event: 'broadcast', payload: { type: 'broadcast', event: 'e', payload: { a: 1 } }, ref: '1', join_ref: '1' });
  t.strictSame(serverDecode('1.0.0', b).payload, { type: 'broadcast', event: 'e', payload: { a: 1 } });
});

t.test('vsn 2.0.0 binary: broadcast pushes realtime-js encodes (JSON and ArrayBuffer payloads) decode', async (t) => {
  const userPayloads: unknown[] = [{ a: 1 }, [1, 'two', null], 'just a string', 42, null, true, { deep: { ü: ['🙂'] } }];
  for (const topic of TOPICS) {
    for (const userEvent of EVENTS) {
      const i = topic.length + userEvent.length;
      const jsonPayload = userPayloads[i % userPayloads.length];
      const raw = clientEncode({ join_ref: '1', ref: String(i), topic, event: 'broadcast', payload: { type: 'broadcast', event: userEvent, payload: jsonPayload } });
      t.ok(raw instanceof ArrayBuffer, 'sent binary');
      t.strictSame(
        serverDecode('2.0.0', raw),
        { binary: true, joinRef: '1', ref: String(i), topic, event: 'broadcast', payload: { type: 'broadcast', event: userEvent, encoding: 'json', payload: jsonPayload ?? {} } }, // the client sends a null user payload as {}
        `json ${topic} ${userEvent}`,
      );
      const bytes = Uint8Array.from({ length: i % 40 }, (_, k) => (k * 37 + i) & 0xff);
      const rawBin = clientEncode({ join_ref: '9', ref: 'r', topic, event: 'broadcast', payload: { type: 'broadcast', event: userEvent, payload: toArrayBuffer(bytes) } });
      const m = serverDecode('2.0.0', rawBin);
      t.ok(m.binary && m.payload.encoding === 'binary' && Buffer.isBuffer(m.payload.payload), 'a Buffer payload');
      t.strictSame(
        { ...m, payload: { ...m.payload, payload: [...(m.payload.payload as Buffer)] } },
        { binary: true, joinRef: '9', ref: 'r', topic, event: 'broadcast', payload: { type: 'broadcast', event: userEvent, encoding: 'binary', payload: [...bytes] } },
        `binary ${topic} ${userEvent}`,
      );
    }
  }
});

t.test('binary broadcast push: absent refs, metadata, missing user payload, copies out of the frame', async (t) => {
  // realtime-js writes an absent ref / join_ref as zero bytes, and a missing JSON payload as {}.
  const raw = clientEncode({ join_ref: null, ref: null, topic: 'realtime:t', event: 'broadcast', payload: { type: 'broadcast', event: 'e' } }) as ArrayBuffer;
  t.strictSame(serverDecode('2.0.0', raw), { binary: true, joinRef: null, ref: null, topic: 'realtime:t', event: 'broadcast', payload: { type: 'broadcast', event: 'e', encoding: 'json', payload: {} } });

  // The allow-listed `persist` key travels as metadata; other keys of the payload are dropped.
  const persisted = clientEncode({ join_ref: '1', ref: '2', topic: 'realtime:t', event: 'broadcast', payload: { type: 'broadcast', event: 'e', payload: { v: 1 }, persist: true, other: 'x' } });
  t.strictSame(serverDecode('2.0.0', persisted).payload, { type: 'broadcast', event: 'e', encoding: 'json', payload: { v: 1 }, meta: { persist: true } });
  const custom = new Serializer(['persist', 'ü']);
  const rawMeta = clientEncode({ join_ref: '1', ref: '2', topic: 'realtime:t', event: 'broadcast', payload: { type: 'broadcast', event: 'e', payload: toArrayBuffer(Buffer.from([1, 2])), ü: { k: '🙂' } } }, custom);
  const m = serverDecode('2.0.0', rawMeta);
  t.strictSame(m.binary && m.payload.meta, { ü: { k: '🙂' } });

  // The payload is a copy: overwriting the frame afterwards (uWebSockets.js reuses it) changes nothing.
  const frame = new Uint8Array(clientEncode({ join_ref: '1', ref: '2', topic: 'a', event: 'broadcast', payload: { type: 'broadcast', event: 'e', payload: toArrayBuffer(Buffer.from('abc')) } }) as ArrayBuffer);
  const decoded = decodeFrame('2.0.0', frame.buffer as ArrayBuffer, true, MAX);
  frame.fill(0);
  t.equal(decoded.binary && (decoded.payload.payload as Buffer).toString(), 'abc');

  // A Uint8Array view at an offset into a larger buffer is read from its own bytes only.
  const inner = Buffer.from(clientEncode({ join_ref: '1', ref: '2', topic: 'off', event: 'broadcast', payload: { type: 'broadcast', event: 'e', payload: { z: 1 } } }) as ArrayBuffer);
  const outer = Buffer.concat([Buffer.from([9, 9, 9]), inner, Buffer.from([7, 7])]);
  t.strictSame(decodeFrame('2.0.0', outer.subarray(3, 3 + inner.length), true, MAX).payload, { type: 'broadcast', event: 'e', encoding: 'json', payload: { z: 1 } });
  const text = Buffer.from(`xx${JSON.stringify(['1', '2', 't', 'e', { a: 1 }])}yy`);
  t.strictSame(decodeFrame('2.0.0', text.subarray(2, text.length - 2), false, MAX).payload, { a: 1 });
});

t.test('encodeFrame: realtime-js decodes (2.0.0) / JSON.parse reads (1.0.0) the same message', async (t) => {
  const refs: Array<[string | null, string | null]> = [['1', '2'], [null, '3'], [null, null], ['🙂', 'ü'], ['', '']];
  for (const topic of [...TOPICS, 'lone \ud800 surrogate']) {
    for (const event of [...EVENTS, 'phx_reply', 'postgres_changes', 'broadcast']) {
      const i = topic.length + event.length;
      const payload = PAYLOADS[i % PAYLOADS.length];
      const [joinRef, ref] = refs[i % refs.length];
      const m: PhoenixMessage = { joinRef, ref, topic, event, payload };
      t.strictSame(clientDecode(encodeFrame('2.0.0', m)), { join_ref: joinRef, ref, topic, event, payload }, `v2 ${topic} ${event}`);
      t.strictSame(JSON.parse(encodeFrame('1.0.0', m)), { topic, event, ref, join_ref: joinRef, payload }, `v1 ${topic} ${event}`);
    }
  }
  // A phx_reply as Realtime sends it.
  const reply = encodeFrame('2.0.0', { joinRef: '1', ref: '1', topic: 'realtime:x', event: 'phx_reply', payload: { status: 'ok', response: { postgres_changes: [] } } });
  t.equal(reply, '["1","1","realtime:x","phx_reply",{"status":"ok","response":{"postgres_changes":[]}}]');
  // A payload JSON cannot write goes as {} (the client reads payload.status of every message).
  t.strictSame(clientDecode(encodeFrame('2.0.0', { joinRef: null, ref: null, topic: 'x', event: 'e', payload: undefined })).payload, {});
  // What this codec encodes, it decodes.
  const back = serverDecode('1.0.0', encodeFrame('1.0.0', { joinRef: 'j', ref: 'r', topic: 'x', event: 'e', payload: { a: [1] } }));
  t.strictSame(back, { binary: false, joinRef: 'j', ref: 'r', topic: 'x', event: 'e', payload: { a: [1] } });
});

t.test('encodeFramePrefix: head + payload JSON + tail is encodeFrame, for both vsn', async (t) => {
  const rng = new Rng(0x5eed);
  for (let i = 0; i < 400; i++) {
    const vsn: Vsn = rng.chance(0.5) ? '1.0.0' : '2.0.0';
    const m: PhoenixMessage = {
      joinRef: rng.chance(0.3) ? null : randomText(rng),
      ref: rng.chance(0.3) ? null : randomText(rng),
      topic: randomText(rng),
      event: randomText(rng),
      payload: randomJson(rng, 0),
    };
    const { head, tail } = encodeFramePrefix(vsn, m.joinRef, m.ref, m.topic, m.event);
    const spliced = head + JSON.stringify(m.payload) + tail;
    if (spliced !== encodeFrame(vsn, m)) {
      t.fail('splice differs', { vsn, m });
      return;
    }
  }
  t.pass('400 random messages');
});

t.test('encodeUserBroadcast: realtime-js decodes the kind 4 frame', async (t) => {
  for (const topic of TOPICS) {
    for (const userEvent of EVENTS) {
      const jsonPayload = PAYLOADS[(topic.length + userEvent.length) % PAYLOADS.length];
      const frame = encodeUserBroadcast(topic, userEvent, Buffer.from(JSON.stringify(jsonPayload)), 'json', '{"persist":true}');
      t.strictSame(
        clientDecode(toArrayBuffer(frame)),
        { join_ref: null, ref: null, topic, event: 'broadcast', payload: { type: 'broadcast', event: userEvent, payload: jsonPayload, meta: { persist: true } } },
        `${topic} ${userEvent}`,
      );
    }
  }
  const bin = clientDecode(toArrayBuffer(encodeUserBroadcast('realtime:🙂', 'e', Uint8Array.from([0, 255, 7]), 'binary')));
  const p = bin.payload as { type: string; event: string; payload: ArrayBuffer; meta?: unknown };
  t.ok(p.payload instanceof ArrayBuffer, 'an ArrayBuffer');
  t.strictSame([...new Uint8Array(p.payload)], [0, 255, 7]);
  t.equal(p.meta, undefined, 'no metadata');
  t.throws(() => encodeUserBroadcast('é'.repeat(128), 'e', new Uint8Array(0), 'binary'), RangeError);
  t.throws(() => encodeUserBroadcast('t', 'x'.repeat(256), new Uint8Array(0), 'binary'), RangeError);
  t.doesNotThrow(() => encodeUserBroadcast('x'.repeat(255), 'x'.repeat(255), new Uint8Array(0), 'binary'));
});

t.test('decode rules: refs, payload, shapes, binary kinds and lengths, size limit', async (t) => {
  // Numeric refs become their text; a missing v1 payload is {}.
  t.strictSame(serverDecode('1.0.0', '{"topic":"t","event":"e","ref":5,"join_ref":1.5}'), { binary: false, joinRef: '1.5', ref: '5', topic: 't', event: 'e', payload: {} });
  t.strictSame(serverDecode('2.0.0', '[3,4,"t","e",{}]'), { binary: false, joinRef: '3', ref: '4', topic: 't', event: 'e', payload: {} });
  // A BOM is dropped, as TextDecoder does; surrounding whitespace is JSON's.
  t.strictSame(serverDecode('2.0.0', '\ufeff [null,null,"t","e",{}] ').topic, 't');
  // `__proto__` in the JSON is an own key: it neither supplies the fields nor is the payload missing.
  const proto = decodeError(() => serverDecode('1.0.0', '{"__proto__":{"topic":"x","event":"e"},"ref":"9"}'));
  t.match(proto, { reason: 'topic must be a string', ref: '9', topic: null, joinRef: null });
  t.strictSame(serverDecode('1.0.0', '{"topic":"t","event":"e","payload":{"__proto__":1}}').payload, JSON.parse('{"__proto__":1}'));

  // Wrong types, with the context read so far.
  const cases: Array<[Vsn, string, Partial<PhoenixDecodeError>]> = [
    ['1.0.0', '[null,null,"t","e",{}]', { reason: /JSON object/ as never, ref: null }],
    ['1.0.0', '"text"', { reason: /JSON object/ as never }],
    ['1.0.0', '{"topic":"t","event":"e","payload":[1],"ref":"r","join_ref":"j"}', { reason: 'payload must be a JSON object', ref: 'r', joinRef: 'j', topic: 't' }],
    ['1.0.0', '{"topic":"t","event":"e","payload":null,"ref":"r"}', { reason: 'payload must be a JSON object', ref: 'r' }],
    ['1.0.0', '{"topic":1,"event":"e","ref":"r"}', { reason: 'topic must be a string', ref: 'r', topic: null }],
    ['1.0.0', '{"topic":"t","event":null,"ref":"r"}', { reason: 'event must be a string', ref: 'r', topic: 't' }],
    ['1.0.0', '{"topic":"t","event":"e","ref":true}', { reason: 'ref must be a string, a number or null', ref: null, topic: 't' }],
    ['1.0.0', '{"topic":"t","event":"e","ref":"r","join_ref":{}}', { reason: 'join_ref must be a string, a number or null', ref: 'r' }],
    ['1.0.0', '{"topic":"t","event":"e","ref":1e400}', { reason: 'ref must be a string, a number or null' }],
    ['2.0.0', '{"topic":"t","event":"e","payload":{}}', { reason: /JSON array/ as never }],
    ['2.0.0', '["j","r","t","e"]', { reason: /JSON array/ as never, joinRef: 'j', ref: 'r', topic: 't' }],
    ['2.0.0', '["j","r","t","e",{},6]', { reason: /JSON array/ as never, ref: 'r' }],
    ['2.0.0', '["j","r","t","e","payload"]', { reason: 'payload must be a JSON object', joinRef: 'j', ref: 'r', topic: 't' }],
    ['2.0.0', '["j","r",["t"],"e",{}]', { reason: 'topic must be a string', ref: 'r', topic: null }],
    ['2.0.0', '["j","r","t","e",{}', { reason: /^the frame is not valid JSON/ as never, ref: null }],
    ['2.0.0', '', { reason: /^the frame is not valid JSON/ as never }],
  ];
  for (const [vsn, raw, want] of cases) t.match(decodeError(() => serverDecode(vsn, raw)), want, `${vsn} ${raw}`);
  t.match(decodeError(() => decodeFrame('2.0.0', toArrayBuffer(badUtf8(new Rng(1))), false, MAX)), { reason: 'the frame is not valid UTF-8' });

  // Frames over the limit are refused unread; at the limit they are read.
  const frame = JSON.stringify(['1', '2', 't', 'e', { pad: 'x'.repeat(100) }]);
  const big = decodeError(() => serverDecode('2.0.0', frame, frame.length - 1));
  t.match(big, { tooLarge: true, ref: null, reason: `the frame is ${frame.length} bytes; the limit is ${frame.length - 1}` });
  t.equal(serverDecode('2.0.0', frame, frame.length).ref, '2');
  t.match(decodeError(() => serverDecode('2.0.0', 'x'.repeat(50), 10)), { tooLarge: true }, 'not parsed');
  t.equal(decodeError(() => serverDecode('2.0.0', '[]')).tooLarge, false);

  // Binary frames: only under 2.0.0, only kind 3, with consistent lengths and a known encoding.
  const push = new Uint8Array(clientEncode({ join_ref: 'j1', ref: 'r1', topic: 'realtime:t', event: 'broadcast', payload: { type: 'broadcast', event: 'e', payload: { a: 1 } } }) as ArrayBuffer);
  const ctx = { joinRef: 'j1', ref: 'r1', topic: 'realtime:t' };
  t.match(decodeError(() => decodeFrame('1.0.0', push, true, MAX)), { reason: /vsn 2.0.0/ });
  t.match(decodeError(() => decodeFrame('2.0.0', new Uint8Array(0), true, MAX)), { reason: 'the binary frame is empty' });
  for (const kind of [0, 1, 2, 4, 5, 255]) {
    const k = push.slice();
    k[0] = kind;
    t.match(decodeError(() => decodeFrame('2.0.0', k, true, MAX)), { reason: `binary frames of kind ${kind} are not accepted; only user broadcast pushes (kind 3)` });
  }
  t.match(decodeError(() => decodeFrame('2.0.0', push.subarray(0, 6), true, MAX)), { reason: 'the binary frame is shorter than its header' });
  for (const at of [1, 2, 3, 4, 5]) {
    const l = push.slice();
    l[at] = 255;
    t.match(decodeError(() => decodeFrame('2.0.0', l, true, MAX)), { reason: "the binary frame is shorter than its header's field lengths" }, `length byte ${at}`);
  }
  const enc = push.slice();
  enc[6] = 2;
  t.match(decodeError(() => decodeFrame('2.0.0', enc, true, MAX)), { reason: 'unknown payload encoding 2 (0 binary, 1 JSON)', ...ctx });
  const badJson = Buffer.concat([push.subarray(0, push.length - 1)]);
  t.match(decodeError(() => decodeFrame('2.0.0', badJson, true, MAX)), { reason: /^the payload is not valid JSON/, ...ctx });
  const badTopic = push.slice();
  badTopic[7 + 2 + 2] = 0xff; // first byte of the topic
  t.match(decodeError(() => decodeFrame('2.0.0', badTopic, true, MAX)), { reason: 'the topic is not valid UTF-8', joinRef: 'j1', ref: 'r1', topic: null });
  const withMeta = (meta: string): Uint8Array => {
    const m = Buffer.from(meta);
    const b = Buffer.from(push);
    b[5] = m.length;
    const end = 7 + b[1] + b[2] + b[3] + b[4];
    return Buffer.concat([b.subarray(0, end), m, b.subarray(end)]);
  };
  t.strictSame((decodeFrame('2.0.0', withMeta('{"persist":false}'), true, MAX).payload as { meta: unknown }).meta, { persist: false });
  t.match(decodeError(() => decodeFrame('2.0.0', withMeta('[1]'), true, MAX)), { reason: 'the metadata must be a JSON object', ...ctx });
  t.match(decodeError(() => decodeFrame('2.0.0', withMeta('{'), true, MAX)), { reason: /^the metadata is not valid JSON/, ...ctx });
  t.match(decodeError(() => decodeFrame('2.0.0', push, true, push.length - 1)), { tooLarge: true });
  // An empty JSON payload is not JSON; an empty binary payload is an empty Buffer.
  const fieldsEnd = 7 + 2 + 2 + 10 + 1;
  t.match(decodeError(() => decodeFrame('2.0.0', push.subarray(0, fieldsEnd), true, MAX)), { reason: /^the payload is not valid JSON/ });
  const emptyBin = Buffer.from(push.subarray(0, 7 + 2 + 2 + 10 + 1));
  emptyBin[6] = 0;
  const eb = decodeFrame('2.0.0', emptyBin, true, MAX);
  t.strictSame(eb.binary && eb.payload.encoding === 'binary' ? [...eb.payload.payload] : null, []);
});

// Random values for the round-trip and fuzz tests.
const PIECES = ['a', 'Z', '0', ' ', ':', '"', '\\', '\n', 'é', 'ß', '日', '本', '🙂', '\u2028', '\u0000', '\u007f', 'realtime:', 'phx_'];

/** Text of 0..12 pieces (valid UTF-16: no lone surrogates, so UTF-8 encoding keeps it). */
function randomText(rng: Rng): string {
  let s = '';
  for (let n = rng.int(0, 12); n > 0; n--) s += rng.pick(PIECES);
  return s;
}

/** A JSON value JSON.stringify/JSON.parse keep as is (no -0, no undefined). */
function randomJson(rng: Rng, depth: number): unknown {
  switch (rng.int(0, depth > 3 ? 3 : 5)) {
    case 0:
      return rng.pick<unknown>([0, 1, -7, 3.25, 1e300, -2.5e-300, 9007199254740992, rng.next()]);
    case 1:
      return randomText(rng);
    case 2:
      return rng.pick<unknown>([true, false, null]);
    case 3:
      return rng.chance(0.5) ? {} : [];
    case 4:
      return Array.from({ length: rng.int(0, 4) }, () => randomJson(rng, depth + 1));
    default:
      return randomObject(rng, depth + 1);
  }
}

function randomObject(rng: Rng, depth: number): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (let n = rng.int(0, 4); n > 0; n--) {
    Object.defineProperty(o, rng.chance(0.1) ? '__proto__' : randomText(rng), { value: randomJson(rng, depth), enumerable: true, writable: true, configurable: true });
  }
  return o;
}

/** A short text: at most 255 UTF-8 bytes, as a binary frame's fields must be. */
function fieldText(rng: Rng): string {
  const s = randomText(rng);
  return Buffer.byteLength(s) <= 255 ? s : 'x';
}

t.test('random round trips with realtime-js, both directions', async (t) => {
  const rng = new Rng(0xc0dec);
  const bad: unknown[] = [];
  for (let i = 0; i < 1500 && bad.length === 0; i++) {
    const joinRef = rng.chance(0.2) ? null : String(rng.int(0, 1e6));
    const ref = rng.chance(0.2) ? null : String(rng.int(0, 1e6));
    const topic = fieldText(rng);
    const payload = randomObject(rng, 0);
    const event = rng.chance(0.2) ? 'broadcast' : fieldText(rng);
    const vsn: Vsn = rng.chance(0.5) ? '1.0.0' : '2.0.0';
    // Client to server.
    if (vsn === '2.0.0' && event === 'broadcast') {
      const userEvent = fieldText(rng);
      const binary = rng.chance(0.5);
      const user = binary ? rng.bytes(rng.int(0, 64)) : randomJson(rng, 0);
      const persist = rng.chance(0.3) ? { persist: rng.chance(0.5) } : {};
      const raw = clientEncode({ join_ref: joinRef, ref, topic, event, payload: { type: 'broadcast', event: userEvent, payload: binary ? toArrayBuffer(user as Buffer) : user, ...persist } });
      const got = serverDecode(vsn, raw);
      const want = { binary: true, joinRef, ref, topic, event, payload: { type: 'broadcast', event: userEvent, encoding: binary ? 'binary' : 'json', payload: user ?? {}, ...(persist.persist === undefined ? {} : { meta: persist }) } };
      if (!sameJson(got, want)) bad.push({ i, got, want });
    } else {
      const raw = vsn === '2.0.0' ? clientEncode({ join_ref: joinRef, ref, topic, event, payload }) : JSON.stringify({ topic, event, payload, ref, join_ref: joinRef });
      const got = serverDecode(vsn, raw);
      if (!sameJson(got, { binary: false, joinRef, ref, topic, event, payload })) bad.push({ i, got, raw });
    }
    // Server to client.
    const out = encodeFrame(vsn, { joinRef, ref, topic, event, payload });
    const read = vsn === '2.0.0' ? clientDecode(out) : JSON.parse(out);
    if (!sameJson(read, { join_ref: joinRef, ref, topic, event, payload })) bad.push({ i, out, read });
  }
  t.strictSame(bad, [], '1500 random messages');
});

/** Deep equality by canonical JSON (Buffers compare by their bytes; key order ignored). */
function sameJson(a: unknown, b: unknown): boolean {
  return canonical(a) === canonical(b);
}

function canonical(v: unknown): string {
  if (Buffer.isBuffer(v)) return `buffer:${v.toString('hex')}`;
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (typeof v === 'object' && v !== null) {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v) ?? 'undefined';
}

t.test('fuzz: decodeFrame throws only PhoenixDecodeError, and what it returns is well-formed', async (t) => {
  const rng = new Rng(0xf022);
  const failures: unknown[] = [];
  const counts: Record<string, number> = {};
  const CASES = 8000;
  for (let i = 0; i < CASES && failures.length < 5; i++) {
    const vsn: Vsn = rng.chance(0.5) ? '1.0.0' : '2.0.0';
    const [kind, bytes, isBinary] = fuzzFrame(rng);
    const maxBytes = rng.chance(0.1) ? rng.int(0, 64) : MAX;
    const data: ArrayBuffer | Uint8Array = rng.chance(0.5) ? toArrayBuffer(bytes) : bytes;
    try {
      const m = decodeFrame(vsn, data, isBinary, maxBytes);
      counts[`${kind} ok`] = (counts[`${kind} ok`] ?? 0) + 1;
      const why = malformed(m);
      if (why !== null) failures.push({ i, kind, why, hex: Buffer.from(bytes).toString('hex').slice(0, 400) });
    } catch (err) {
      counts[`${kind} error`] = (counts[`${kind} error`] ?? 0) + 1;
      const ok = err instanceof PhoenixDecodeError && typeof err.reason === 'string' && err.reason.length > 0 && [err.ref, err.joinRef, err.topic].every((x) => x === null || typeof x === 'string');
      if (!ok) failures.push({ i, kind, err: String(err), hex: Buffer.from(bytes).toString('hex').slice(0, 400) });
    }
  }
  t.strictSame(failures, [], `${CASES} frames`);
  t.comment(JSON.stringify(counts));
});

/** Why a decoded message breaks its type, or null. */
function malformed(m: DecodedFrame): string | null {
  const refOk = (x: unknown): boolean => x === null || typeof x === 'string';
  if (!refOk(m.joinRef) || !refOk(m.ref) || typeof m.topic !== 'string' || typeof m.event !== 'string') return 'fields';
  if (!m.binary) return typeof m.payload === 'object' && m.payload !== null && !Array.isArray(m.payload) ? null : 'payload';
  const p = m.payload;
  if (m.event !== 'broadcast' || p.type !== 'broadcast' || typeof p.event !== 'string') return 'broadcast fields';
  if (p.encoding === 'binary' ? !Buffer.isBuffer(p.payload) : p.encoding !== 'json') return 'encoding';
  if (p.meta !== undefined && (typeof p.meta !== 'object' || p.meta === null || Array.isArray(p.meta))) return 'meta';
  return null;
}

/** One fuzz frame: a label, its bytes, whether it is sent as a binary frame. */
function fuzzFrame(rng: Rng): [string, Uint8Array, boolean] {
  switch (rng.int(0, 9)) {
    case 0:
      return ['random bytes', rng.bytes(rng.int(0, 80)), rng.chance(0.5)];
    case 1: {
      // Random bytes behind a kind 3 header byte, or a header with random (often huge) lengths.
      const b = rng.bytes(rng.int(0, 300));
      if (b.length > 0) b[0] = 3;
      if (b.length > 6 && rng.chance(0.5)) b[6] = rng.int(0, 2);
      return ['kind 3 junk', b, true];
    }
    case 2: {
      const b = Buffer.from(validPush(rng));
      return ['truncated push', b.subarray(0, rng.int(0, b.length)), true];
    }
    case 3: {
      // A valid push with its length bytes changed (by a little, or to 0/255).
      const b = Buffer.from(validPush(rng));
      for (let n = rng.int(1, 3); n > 0; n--) {
        const at = rng.int(1, 6);
        b[at] = rng.pick([0, 255, (b[at] + rng.int(-3, 3)) & 0xff]);
      }
      return ['wrong lengths', b, true];
    }
    case 4: {
      // Invalid UTF-8 somewhere in a push's fields or JSON payload, or a bit flip anywhere.
      const b = Buffer.from(validPush(rng));
      const at = rng.int(7, Math.max(7, b.length - 1));
      if (at < b.length) b[at] = rng.pick([0xff, 0xc0, 0x80, 0xed, b[at] ^ (1 << rng.int(0, 7))]);
      return ['mutated push', b, true];
    }
    case 5: {
      const text = validText(rng);
      return ['mutated text', mutateText(rng, text), rng.chance(0.1)];
    }
    case 6: {
      const text = Buffer.from(validText(rng));
      return ['truncated text', text.subarray(0, rng.int(0, text.length)), false];
    }
    case 7:
      return ['bad utf-8 text', Buffer.concat([Buffer.from('["1","2","t","e",{"x":"'), badUtf8(rng), Buffer.from('"}]')]), false];
    case 8:
      return ['junk json', Buffer.from(junkJson(rng)), false];
    default:
      return rng.chance(0.5) ? ['valid push', validPush(rng), true] : ['valid text', Buffer.from(validText(rng)), false];
  }
}

function validPush(rng: Rng): Uint8Array {
  const binary = rng.chance(0.5);
  const raw = clientEncode({
    join_ref: rng.chance(0.2) ? null : String(rng.int(0, 99)),
    ref: rng.chance(0.2) ? null : String(rng.int(0, 99)),
    topic: fieldText(rng),
    event: 'broadcast',
    payload: { type: 'broadcast', event: fieldText(rng), payload: binary ? toArrayBuffer(rng.bytes(rng.int(0, 30))) : randomJson(rng, 0), ...(rng.chance(0.3) ? { persist: true } : {}) },
  });
  return new Uint8Array(raw as ArrayBuffer);
}

function validText(rng: Rng): string {
  const fields = { topic: randomText(rng), event: randomText(rng), payload: randomObject(rng, 0), ref: String(rng.int(0, 99)), join_ref: null };
  return rng.chance(0.5) ? JSON.stringify(fields) : JSON.stringify([fields.join_ref, fields.ref, fields.topic, fields.event, fields.payload]);
}

/** Right-looking shapes with wrong values: odd types in each slot, deep nesting, unclosed arrays. */
function junkJson(rng: Rng): string {
  const odd = (): string => rng.pick(['null', 'true', '1e400', '-0', '[]', '{}', '"s"', '12345678901234567890', '{"__proto__":null}', nested(rng.int(1, 3000))]);
  switch (rng.int(0, 4)) {
    case 0:
      return `[${Array.from({ length: rng.int(0, 7) }, odd).join(',')}]`;
    case 1:
      return `{${['topic', 'event', 'payload', 'ref', 'join_ref'].filter(() => rng.chance(0.7)).map((k) => `"${k}":${odd()}`).join(',')}}`;
    case 2:
      return nested(rng.pick([10, 1000, 50_000]));
    case 3:
      return '['.repeat(rng.int(1, 20_000));
    default:
      return odd();
  }
}

function nested(depth: number): string {
  return '['.repeat(depth) + ']'.repeat(depth);
}
