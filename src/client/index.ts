// walcast/client: the browser and Node client of the walcast wire protocol (docs/CLIENT.md).
export { createClient, WalcastClient } from './client.js';
export type { ClientOptions, ClientEvents, ConnectionState, DisconnectInfo, ClosedInfo, TokenSource } from './client.js';
export { Subscription } from './subscription.js';
export type { SubscribeOptions, SubscribedInfo, SubscriptionHandlers, SubscriptionState, SubscriptionEvents } from './subscription.js';
export { Channel } from './channel.js';
export type { BroadcastMessage, ChannelEvents } from './channel.js';
export { applyPresenceDiff, replacePresenceState, emptyPresence } from './presence.js';
export type { PresenceMeta, PresenceState, PresenceChange } from './presence.js';
export { comparePositions, parsePosition, tryParsePosition, isPosition, formatPosition, maxPosition, MAX_INDEX } from './position.js';
export type { ParsedPosition } from './position.js';
export { tokenExpiry } from './jwt.js';
export { Backoff } from './backoff.js';
export type { BackoffOptions } from './backoff.js';
export { Emitter } from './emitter.js';
export type { Listener } from './emitter.js';
export { WalcastError } from './types.js';
export type { Change, ChangeEvent, ChangeOp, ErrorCode, Ref, ResyncReason, Row, ServerMessage, SubscriptionId, WebSocketConstructor, WebSocketLike } from './types.js';
