// Types of the Phoenix channels wire format spoken by Supabase Realtime clients
// (@supabase/realtime-js over @supabase/phoenix); the codec is src/supabase/phoenix.ts.

/**
 * The serializer a socket negotiated with its `vsn` query parameter: 1.0.0 sends JSON objects
 * `{topic, event, payload, ref, join_ref}`, 2.0.0 JSON arrays `[join_ref, ref, topic, event,
 * payload]` and, for client broadcasts, binary "user broadcast push" frames.
 */
export type Vsn = '1.0.0' | '2.0.0';

/** One Phoenix message, either direction. Refs are strings on the wire (the client's makeRef). */
export interface PhoenixMessage {
  joinRef: string | null;
  ref: string | null;
  topic: string;
  event: string;
  payload: unknown;
}

/** Fields every broadcast push carries, whichever encoding its user payload had. */
interface BroadcastPushBase {
  type: 'broadcast';
  /** The user's event name (the frame's own event is always `broadcast`). */
  event: string;
  /** The frame's metadata object (realtime-js sends only allow-listed keys, e.g. `persist`); absent when empty. */
  meta?: Record<string, unknown>;
}

/**
 * The payload of a binary (kind 3) broadcast push, shaped like the `{type, event, payload}` a
 * JSON broadcast carries, tagged with the user payload's encoding.
 */
export type BroadcastPush =
  | (BroadcastPushBase & { encoding: 'json'; payload: unknown })
  /** The raw bytes, copied out of the frame (the WebSocket layer may reuse its buffer). */
  | (BroadcastPushBase & { encoding: 'binary'; payload: Buffer });

/** A message decoded from a text frame: the payload is a JSON object. */
export interface TextFrameMessage extends PhoenixMessage {
  binary: false;
  payload: Record<string, unknown>;
}

/** A message decoded from a binary user broadcast push (vsn 2.0.0 only). */
export interface BroadcastPushMessage extends PhoenixMessage {
  binary: true;
  event: 'broadcast';
  payload: BroadcastPush;
}

/** What decodeFrame returns, discriminated by `binary`. */
export type DecodedFrame = TextFrameMessage | BroadcastPushMessage;
