// Bounds of the values clients send (docs/PROTOCOL.md), and what a valid `ref` and subscription
// id are: read by the parser, and by the error replies that echo them.
import type { Ref, SubscriptionId } from './types.js';

export const LIMITS = {
  /** Longest string subscription id, in UTF-16 code units. */
  idLength: 128,
  /** Longest `filter`, in UTF-16 code units. */
  filterLength: 2048,
  /** Longest `channel` and broadcast `event`, in UTF-16 code units. */
  channelLength: 255,
  eventLength: 255,
  /** Longest `table` text, and longest identifier once unquoted (Postgres NAMEDATALEN - 1, bytes). */
  tableLength: 512,
  identifierBytes: 63,
  /** Deepest nesting of arrays/objects in a broadcast payload or presence state. */
  jsonDepth: 100,
  /** Largest snapshot `limit` (rows). */
  snapshotLimit: 10_000,
  /** Longest snapshot `order` text, in UTF-16 code units. */
  orderLength: 200,
} as const;

/** A usable `ref`: a string or a finite number. */
export function isRef(v: unknown): v is Ref {
  return typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v));
}

/** A subscription id: a string of 1..LIMITS.idLength characters or a safe integer. */
export function isId(v: unknown): v is SubscriptionId {
  return typeof v === 'string' ? v.length > 0 && v.length <= LIMITS.idLength : Number.isSafeInteger(v);
}
