// Server → client messages of wire protocol v1 (DESIGN §4, docs/PROTOCOL.md), as JSON text.
import { PROTOCOL_VERSION } from '../constants.js';
import type { Ref, ResyncReason, SubscriptionId, WireErrorCode } from './types.js';

// Builders return the JSON text. Ids and refs were validated on the way in (strings, safe
// integers, finite numbers), so a number is written with String(), which for finite numbers is
// exactly JSON.stringify().

function json(v: string | number): string {
  return typeof v === 'number' ? String(v) : JSON.stringify(v);
}

function refTail(ref: Ref | undefined): string {
  return ref === undefined ? '}' : `,"ref":${json(ref)}}`;
}

/**
 * `{type:"authenticated", expires_at?, ref?}`: the reply to a successful `auth` (an addition to
 * DESIGN §4; docs/PROTOCOL.md). `expires_at` is the token's `exp`, ISO 8601 UTC.
 */
export function authenticated(expiresAt: number | null, ref?: Ref): string {
  let s = '{"type":"authenticated"';
  if (expiresAt !== null) s += `,"expires_at":${JSON.stringify(new Date(expiresAt).toISOString())}`;
  if (ref !== undefined) s += `,"ref":${json(ref)}`;
  return s + '}';
}

export function welcome(session: string): string {
  return `{"type":"welcome","protocol":${PROTOCOL_VERSION},"session":${JSON.stringify(session)}}`;
}

/** `position`: a formatted position (formatWalPosition). */
export function subscribed(id: SubscriptionId, position: string, ref?: Ref): string {
  return `{"type":"subscribed","id":${json(id)},"position":${JSON.stringify(position)}${refTail(ref)}`;
}

export function unsubscribed(id: SubscriptionId, ref?: Ref): string {
  return `{"type":"unsubscribed","id":${json(id)}${refTail(ref)}`;
}

export function errorMsg(code: WireErrorCode, message: string, ref?: Ref, id?: SubscriptionId): string {
  let s = `{"type":"error","code":${JSON.stringify(code)},"message":${JSON.stringify(message)}`;
  if (ref !== undefined) s += `,"ref":${json(ref)}`;
  if (id !== undefined) s += `,"id":${json(id)}`;
  return s + '}';
}

export function pong(ref?: Ref): string {
  return ref === undefined ? '{"type":"pong"}' : `{"type":"pong","ref":${json(ref)}}`;
}

/** `pos`: a formatted position; may name an LSN where nothing committed (docs/PROTOCOL.md). */
export function progress(pos: string): string {
  return `{"type":"progress","pos":${JSON.stringify(pos)}}`;
}

export function resync(sub: SubscriptionId, reason: ResyncReason, ref?: Ref): string {
  return `{"type":"resync","sub":${json(sub)},"reason":${JSON.stringify(reason)}${refTail(ref)}`;
}

export function joined(channel: string, ref?: Ref): string {
  return `{"type":"joined","channel":${JSON.stringify(channel)}${refTail(ref)}`;
}

export function left(channel: string, ref?: Ref): string {
  return `{"type":"left","channel":${JSON.stringify(channel)}${refTail(ref)}`;
}

/**
 * `payloadJson`: the payload as JSON text, e.g. BroadcastClientMessage.payloadJson, or the jsonb
 * text of a `walcast.broadcast()` row. Inserted as is. `from`: the sending user
 * (the token's `sub`; the session under --no-auth), set by the server for client broadcasts so
 * that nobody can speak for someone else; absent for broadcasts from SQL.
 */
export function broadcastMsg(channel: string, event: string, payloadJson: string, from?: string): string {
  const sender = from === undefined ? '' : `,"from":${JSON.stringify(from)}`;
  return `{"type":"broadcast","channel":${JSON.stringify(channel)},"event":${JSON.stringify(event)},"payload":${payloadJson}${sender}}`;
}

export function presenceState(channel: string, state: Record<string, unknown>): string {
  return `{"type":"presence_state","channel":${JSON.stringify(channel)},"state":${JSON.stringify(state)}}`;
}

export function presenceDiff(channel: string, joins: Record<string, unknown>, leaves: Record<string, unknown>): string {
  return `{"type":"presence_diff","channel":${JSON.stringify(channel)},"joins":${JSON.stringify(joins)},"leaves":${JSON.stringify(leaves)}}`;
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
