// Server → client messages of wire protocol v1 (docs/PROTOCOL.md), as JSON text.
import { PROTOCOL_VERSION } from '../constants.js';
import type { Ref, ResyncReason, ServerMessageType, SubscriptionId, WireErrorCode } from './types.js';

// Builders return the JSON text, written by hand (they are on the hot path). Ids and refs were
// validated on the way in (strings, safe integers, finite numbers), so a number is written with
// String(), which for finite numbers is exactly JSON.stringify().

declare const frameType: unique symbol;

/**
 * The JSON text of a server message of type T. Its fields are those of T's member of
 * ServerMessage (types.ts): test/unit/frames.test.ts parses each builder's output and checks it
 * against a table the compiler derives from that union, so neither can change alone.
 */
export type Frame<T extends ServerMessageType> = string & { readonly [frameType]: T };

function json(v: string | number): string {
  return typeof v === 'number' ? String(v) : JSON.stringify(v);
}

function refTail(ref: Ref | undefined): string {
  return ref === undefined ? '}' : `,"ref":${json(ref)}}`;
}

/**
 * `{type:"authenticated", expires_at?, ref?}`: the reply to a successful `auth` (an addition to
 * the design's base v1 messages; docs/PROTOCOL.md §6). `expires_at` is the token's `exp`, ISO 8601 UTC.
 */
export function authenticated(expiresAt: number | null, ref?: Ref): Frame<'authenticated'> {
  let s = '{"type":"authenticated"';
  if (expiresAt !== null) s += `,"expires_at":${JSON.stringify(new Date(expiresAt).toISOString())}`;
  if (ref !== undefined) s += `,"ref":${json(ref)}`;
  return (s + '}') as Frame<'authenticated'>;
}

export function welcome(session: string): Frame<'welcome'> {
  return `{"type":"welcome","protocol":${PROTOCOL_VERSION},"session":${JSON.stringify(session)}}` as Frame<'welcome'>;
}

/** `position`: a formatted position (formatWalPosition). */
export function subscribed(id: SubscriptionId, position: string, ref?: Ref): Frame<'subscribed'> {
  return `{"type":"subscribed","id":${json(id)},"position":${JSON.stringify(position)}${refTail(ref)}` as Frame<'subscribed'>;
}

/** `{type:"snapshot", sub, rows}` from rows already rendered as JSON objects (each as `change.new`). */
export function snapshotFrame(sub: SubscriptionId, rowsJson: readonly string[]): Frame<'snapshot'> {
  return `{"type":"snapshot","sub":${json(sub)},"rows":[${rowsJson.join(',')}]}` as Frame<'snapshot'>;
}

export function unsubscribed(id: SubscriptionId, ref?: Ref): Frame<'unsubscribed'> {
  return `{"type":"unsubscribed","id":${json(id)}${refTail(ref)}` as Frame<'unsubscribed'>;
}

export function errorMsg(code: WireErrorCode, message: string, ref?: Ref, id?: SubscriptionId): Frame<'error'> {
  let s = `{"type":"error","code":${JSON.stringify(code)},"message":${JSON.stringify(message)}`;
  if (ref !== undefined) s += `,"ref":${json(ref)}`;
  if (id !== undefined) s += `,"id":${json(id)}`;
  return (s + '}') as Frame<'error'>;
}

export function pong(ref?: Ref): Frame<'pong'> {
  return (ref === undefined ? '{"type":"pong"}' : `{"type":"pong","ref":${json(ref)}}`) as Frame<'pong'>;
}

/** `pos`: a formatted position; may name an LSN where nothing committed (docs/PROTOCOL.md). */
export function progress(pos: string): Frame<'progress'> {
  return `{"type":"progress","pos":${JSON.stringify(pos)}}` as Frame<'progress'>;
}

export function resync(sub: SubscriptionId, reason: ResyncReason, ref?: Ref): Frame<'resync'> {
  return `{"type":"resync","sub":${json(sub)},"reason":${JSON.stringify(reason)}${refTail(ref)}` as Frame<'resync'>;
}

export function joined(channel: string, ref?: Ref): Frame<'joined'> {
  return `{"type":"joined","channel":${JSON.stringify(channel)}${refTail(ref)}` as Frame<'joined'>;
}

export function left(channel: string, ref?: Ref): Frame<'left'> {
  return `{"type":"left","channel":${JSON.stringify(channel)}${refTail(ref)}` as Frame<'left'>;
}

/**
 * `payloadJson`: the payload as JSON text, e.g. BroadcastClientMessage.payloadJson, or the jsonb
 * text of a `walcast.broadcast()` row. Inserted as is. `from`: the sending user
 * (the token's `sub`; the session under --no-auth), set by the server for client broadcasts so
 * that nobody can speak for someone else; absent for broadcasts from SQL.
 */
export function broadcastMsg(channel: string, event: string, payloadJson: string, from?: string): Frame<'broadcast'> {
  const sender = from === undefined ? '' : `,"from":${JSON.stringify(from)}`;
  return `{"type":"broadcast","channel":${JSON.stringify(channel)},"event":${JSON.stringify(event)},"payload":${payloadJson}${sender}}` as Frame<'broadcast'>;
}

export function presenceState(channel: string, state: Record<string, unknown>): Frame<'presence_state'> {
  return `{"type":"presence_state","channel":${JSON.stringify(channel)},"state":${JSON.stringify(state)}}` as Frame<'presence_state'>;
}

export function presenceDiff(channel: string, joins: Record<string, unknown>, leaves: Record<string, unknown>): Frame<'presence_diff'> {
  return `{"type":"presence_diff","channel":${JSON.stringify(channel)},"joins":${JSON.stringify(joins)},"leaves":${JSON.stringify(leaves)}}` as Frame<'presence_diff'>;
}

/**
 * The start of a `change` message, up to and including `sub`: `{"type":"change","sub":<id>`.
 * The hot path appends the rest and the closing brace itself, in this order:
 * `,"pos":"<pos>","commit_time":"<ts>","op":"<op>","table":<json>[,"new":{…}][,"old":{…}][,"changed":[…]]}`.
 * Compute it once per subscription and keep it.
 */
export function changePrefix(subId: SubscriptionId): string {
  return `{"type":"change","sub":${json(subId)}`;
}
