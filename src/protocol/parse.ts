// Wire protocol v1 (docs/PROTOCOL.md): parsing and validation of client frames.
//
// Parsing throws WireError subclasses (answered with an `error` message; the connection stays
// open). Errors carry the `ref` of the frame and, for subscribe/unsubscribe, its valid `id`, as
// own properties (WireContext), so the reply can echo them: see errorMsgFrom().
//
// Nothing here recurses over client data: JSON.parse is iterative in V8, and the nesting check
// of broadcast payloads and presence states walks with an explicit stack.
import { BadRequestError, TooLargeError } from '../errors.js';
import { LIMITS, isId, isRef } from './limits.js';
import { parseWalPosition, type Position } from './position.js';
import { tableName } from './table-name.js';
import type { ChangeEvent, ClientMessage, ClientMessageType, Ref, SnapshotRequest, SubscribeMessage, SubscriptionId, WireContext } from './types.js';
import { badRequest as fail, clip, describe } from './wire-errors.js';

export const CLIENT_MESSAGE_TYPES: readonly ClientMessageType[] = [
  'auth',
  'subscribe',
  'unsubscribe',
  'join',
  'leave',
  'broadcast',
  'presence',
  'ping',
];

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

const CHANGE_EVENTS: readonly ChangeEvent[] = ['insert', 'update', 'delete'];
const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * One client frame, decoded and validated. `data` is what the WebSocket layer handed over (an
 * ArrayBuffer from uWebSockets.js is read here, synchronously, and not kept).
 * Throws BadRequestError / TooLargeError, with `ref`/`id` attached when they could be read.
 */
export function parseClientMessage(data: ArrayBuffer | Buffer | string, isBinary: boolean, maxBytes: number): ClientMessage {
  if (isBinary) throw new BadRequestError('binary frames are not accepted; send JSON text');
  let text: string;
  if (typeof data === 'string') {
    // UTF-8 needs at most 3 bytes per UTF-16 code unit: count bytes only when it matters.
    if (data.length > maxBytes) throw tooLarge(`more than ${maxBytes}`, maxBytes);
    if (data.length * 3 > maxBytes) {
      const bytes = Buffer.byteLength(data, 'utf8');
      if (bytes > maxBytes) throw tooLarge(String(bytes), maxBytes);
    }
    text = data.charCodeAt(0) === 0xfeff ? data.slice(1) : data; // as TextDecoder does for bytes
  } else {
    if (data.byteLength > maxBytes) throw tooLarge(String(data.byteLength), maxBytes);
    try {
      text = utf8.decode(data);
    } catch {
      throw new BadRequestError('the frame is not valid UTF-8');
    }
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    // SyntaxError, or RangeError should the parser ever run out of stack on deep nesting.
    const why = err instanceof RangeError ? 'nested too deeply' : err instanceof Error ? err.message : String(err);
    throw new BadRequestError(`malformed JSON: ${why}`);
  }
  return validateClientMessage(value);
}

function tooLarge(size: string, maxBytes: number): TooLargeError {
  return new TooLargeError(`the message is ${size} bytes; the limit is ${maxBytes}`);
}

/** The `ref` of a message if it has a usable one (a string or a finite number). */
export function peekRef(obj: unknown): Ref | undefined {
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) return undefined;
  const ref = own(obj, 'ref');
  return isRef(ref) ? ref : undefined;
}

/** Validates an already parsed JSON value as a client message (parseClientMessage's second half). */
export function validateClientMessage(value: unknown): ClientMessage {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    fail(`a message must be a JSON object with a "type", not ${describe(value)}`, {});
  }
  const obj = value as Record<string, unknown>;
  const rawRef = own(obj, 'ref');
  let ref: Ref | undefined;
  if (rawRef !== undefined && rawRef !== null) {
    if (!isRef(rawRef)) fail(`ref must be a string or a number, not ${describe(rawRef)}`, {});
    ref = rawRef;
  }
  const ctx: WireContext = ref === undefined ? {} : { ref };
  const type = own(obj, 'type');
  if (typeof type !== 'string') {
    fail(
      type === undefined
        ? `a message needs a "type" (one of ${CLIENT_MESSAGE_TYPES.join(', ')})`
        : `type must be a string, not ${describe(type)}`,
      ctx,
    );
  }
  switch (type) {
    case 'auth': {
      const token = own(obj, 'token');
      if (typeof token !== 'string' || token.length === 0) fail('auth.token must be a non-empty string', ctx);
      return withRef({ type, token }, ref);
    }
    case 'subscribe':
      return parseSubscribe(obj, ref, ctx);
    case 'unsubscribe': {
      const id = subscriptionId(obj, 'unsubscribe', ctx);
      return withRef({ type, id }, ref);
    }
    case 'join':
    case 'leave': {
      const channel = boundedString(obj, type, 'channel', LIMITS.channelLength, ctx);
      return withRef({ type, channel }, ref);
    }
    case 'broadcast': {
      const channel = boundedString(obj, type, 'channel', LIMITS.channelLength, ctx);
      const event = boundedString(obj, type, 'event', LIMITS.eventLength, ctx);
      const payload = own(obj, 'payload') ?? null;
      checkDepth(payload, 'broadcast.payload', ctx);
      const self = own(obj, 'self') ?? false;
      if (typeof self !== 'boolean') fail(`broadcast.self must be a boolean, not ${describe(self)}`, ctx);
      return withRef({ type, channel, event, payload, payloadJson: JSON.stringify(payload), self }, ref);
    }
    case 'presence': {
      const channel = boundedString(obj, type, 'channel', LIMITS.channelLength, ctx);
      const state = own(obj, 'state');
      if (state !== null && (typeof state !== 'object' || Array.isArray(state))) {
        fail(`presence.state must be an object, or null to untrack${state === undefined ? '' : `, not ${describe(state)}`}`, ctx);
      }
      checkDepth(state, 'presence.state', ctx);
      return withRef({ type, channel, state: state as Record<string, unknown> | null }, ref);
    }
    case 'ping':
      return withRef({ type }, ref);
    default:
      fail(`unknown message type ${JSON.stringify(clip(type))}`, ctx);
  }
}

function parseSubscribe(obj: Record<string, unknown>, ref: Ref | undefined, ctxIn: WireContext): ClientMessage {
  const id = subscriptionId(obj, 'subscribe', ctxIn);
  const ctx: WireContext = { ...ctxIn, id };

  const tableText = own(obj, 'table');
  if (typeof tableText !== 'string' || tableText.length === 0) {
    fail('subscribe.table must be a string "schema.table" or "table"', ctx);
  }
  const table = tableName(tableText, ctx);

  let events: ChangeEvent[] | undefined;
  const rawEvents = own(obj, 'events');
  if (rawEvents !== undefined && rawEvents !== null) {
    if (!Array.isArray(rawEvents) || rawEvents.length === 0) {
      fail('subscribe.events must be a non-empty array of "insert", "update", "delete"', ctx);
    }
    events = [];
    for (const e of rawEvents as unknown[]) {
      if (typeof e !== 'string' || !(CHANGE_EVENTS as readonly string[]).includes(e)) {
        fail(`subscribe.events may list only "insert", "update", "delete", not ${describe(e)}`, ctx);
      }
      if (events.includes(e as ChangeEvent)) fail(`subscribe.events lists "${e}" more than once`, ctx);
      events.push(e as ChangeEvent);
    }
  }

  let filter: string | undefined;
  const rawFilter = own(obj, 'filter');
  if (rawFilter !== undefined && rawFilter !== null) {
    if (typeof rawFilter !== 'string') fail(`subscribe.filter must be a string, not ${describe(rawFilter)}`, ctx);
    if (rawFilter.length > LIMITS.filterLength) {
      fail(`subscribe.filter is ${rawFilter.length} characters; the limit is ${LIMITS.filterLength}`, ctx);
    }
    if (rawFilter.length > 0) filter = rawFilter;
  }

  const rawSince = own(obj, 'since');
  let since: Position | undefined;
  if (rawSince !== undefined && rawSince !== null) {
    if (typeof rawSince !== 'string') {
      fail(`subscribe.since must be a position string like "16/B374D848:3", or null; not ${describe(rawSince)}`, ctx);
    }
    try {
      since = parseWalPosition(rawSince);
    } catch (err) {
      fail(
        `subscribe.since is not a position: ${JSON.stringify(clip(rawSince))}; ` +
          'a position is "<commit LSN>:<index>", like "16/B374D848:3" (the "pos" of a change or progress message)',
        ctx,
        err,
      );
    }
  }

  const snapshot = parseSnapshot(own(obj, 'snapshot'), ctx);
  if (snapshot && since) fail('subscribe.snapshot and subscribe.since cannot go together: a snapshot starts from now, since resumes', ctx);

  const msg: Mutable<SubscribeMessage> = { type: 'subscribe', id, table };
  if (events !== undefined) msg.events = events;
  if (filter !== undefined) msg.filter = filter;
  if (since !== undefined) msg.since = since;
  if (snapshot) msg.snapshot = snapshot;
  if (ref !== undefined) msg.ref = ref;
  return msg;
}

/** `snapshot`: true, or {order?: "col.asc"|"col.desc", limit?: n}; false/null/absent: none. */
function parseSnapshot(raw: unknown, ctx: WireContext): SnapshotRequest | null {
  if (raw === undefined || raw === null || raw === false) return null;
  if (raw === true) return { order: null, limit: null };
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    fail(`subscribe.snapshot must be true or an object {order?, limit?}, not ${describe(raw)}`, ctx);
  }
  const o = raw as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (k !== 'order' && k !== 'limit') fail(`subscribe.snapshot has an unknown field ${JSON.stringify(clip(k))}; it takes order and limit`, ctx);
  }
  let order: SnapshotRequest['order'] = null;
  const rawOrder = own(o, 'order');
  if (rawOrder !== undefined && rawOrder !== null) {
    if (typeof rawOrder !== 'string' || rawOrder.length === 0 || rawOrder.length > LIMITS.orderLength) {
      fail(`subscribe.snapshot.order must be a string "column.asc" or "column.desc" of at most ${LIMITS.orderLength} characters, not ${describe(rawOrder)}`, ctx);
    }
    const m = /^(.+?)(?:\.(asc|desc))?$/.exec(rawOrder);
    order = { column: m![1], desc: m![2] === 'desc' };
  }
  let limit: number | null = null;
  const rawLimit = own(o, 'limit');
  if (rawLimit !== undefined && rawLimit !== null) {
    if (typeof rawLimit !== 'number' || !Number.isInteger(rawLimit) || rawLimit < 1 || rawLimit > LIMITS.snapshotLimit) {
      fail(`subscribe.snapshot.limit must be an integer from 1 to ${LIMITS.snapshotLimit}, not ${describe(rawLimit)}`, ctx);
    }
    limit = rawLimit;
  }
  return { order, limit };
}

function subscriptionId(obj: Record<string, unknown>, type: string, ctx: WireContext): SubscriptionId {
  const id = own(obj, 'id');
  if (isId(id)) return id;
  let detail = '';
  if (typeof id === 'string' && id.length > LIMITS.idLength) detail = ` (a string of at most ${LIMITS.idLength} characters)`;
  else if (typeof id === 'number' && Number.isInteger(id)) detail = ' (integers up to 2^53-1 in magnitude)';
  else if (id !== undefined && id !== '') detail = `, not ${describe(id)}`;
  fail(`${type}.id must be a non-empty string or an integer${detail}`, ctx);
}

function boundedString(obj: Record<string, unknown>, type: string, field: string, max: number, ctx: WireContext): string {
  const v = own(obj, field);
  if (typeof v !== 'string' || v.length === 0 || v.length > max) {
    fail(`${type}.${field} must be a string of 1 to ${max} characters${v === undefined || typeof v === 'string' ? '' : `, not ${describe(v)}`}`, ctx);
  }
  return v;
}

/** Rejects arrays/objects nested deeper than LIMITS.jsonDepth, without recursion. */
function checkDepth(value: unknown, what: string, ctx: WireContext): void {
  if (typeof value !== 'object' || value === null) return;
  const stack: object[] = [value];
  const depths: number[] = [1];
  while (stack.length > 0) {
    const v = stack.pop()!;
    const d = depths.pop()!;
    if (d > LIMITS.jsonDepth) fail(`${what} is nested more than ${LIMITS.jsonDepth} levels deep`, ctx);
    const children = Array.isArray(v) ? (v as unknown[]) : Object.values(v);
    for (const c of children) {
      if (typeof c === 'object' && c !== null) {
        stack.push(c);
        depths.push(d + 1);
      }
    }
  }
}

function own(obj: object, key: string): unknown {
  return Object.hasOwn(obj, key) ? (obj as Record<string, unknown>)[key] : undefined;
}

function withRef<T extends object>(msg: T, ref: Ref | undefined): T & { ref?: Ref } {
  if (ref !== undefined) (msg as T & { ref?: Ref }).ref = ref;
  return msg;
}
