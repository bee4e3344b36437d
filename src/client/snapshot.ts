// The `snapshot` option of a subscription (docs/PROTOCOL.md, subscribe with a snapshot): checked
// when the application passes it, so that a typo throws at the call rather than coming back as
// a `bad_request` after a round trip, and turned into what the subscribe message carries.

/** Which rows a snapshot holds: all of them (`{}`), or the first `limit` in `order`. */
export interface SnapshotOptions {
  /** `"col"` or `"col.asc"`, `"col.desc"`: a column of the table (the server checks it). */
  order?: string;
  /** At most this many rows, 1..SNAPSHOT_MAX_LIMIT. */
  limit?: number;
}

/** `true` (all rows), options, or no snapshot (`false`, `null`, absent). */
export type SnapshotOption = true | SnapshotOptions;

/** The protocol's largest `limit` (the server's LIMITS.snapshotLimit; test/unit/protocol-snapshot.test.ts ties them). */
export const SNAPSHOT_MAX_LIMIT = 10_000;

/**
 * The snapshot option checked and copied (frozen), or null for none. `where` names the call in
 * the TypeError ("subscribe", "resubscribe", "collection").
 */
export function normalizeSnapshot(value: unknown, where: string): Readonly<SnapshotOptions> | null {
  if (value === undefined || value === null || value === false) return null;
  if (value === true) return Object.freeze({});
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new TypeError(`${where}: snapshot must be true or {order?, limit?}, not ${JSON.stringify(value)}`);
  }
  const out: SnapshotOptions = {};
  for (const [k, v] of Object.entries(value)) {
    if (v === undefined) continue;
    if (k === 'order') {
      if (typeof v !== 'string' || v.trim() === '') throw new TypeError(`${where}: snapshot.order must be "column", "column.asc" or "column.desc", not ${JSON.stringify(v)}`);
      out.order = v;
    } else if (k === 'limit') {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > SNAPSHOT_MAX_LIMIT) {
        throw new TypeError(`${where}: snapshot.limit must be an integer from 1 to ${SNAPSHOT_MAX_LIMIT}, not ${JSON.stringify(v)}`);
      }
      out.limit = v;
    } else throw new TypeError(`${where}: snapshot has no option ${JSON.stringify(k)} (only order and limit)`);
  }
  return Object.freeze(out);
}

/** What `subscribe.snapshot` carries on the wire: `true` for all rows, else the options. */
export function snapshotWire(s: Readonly<SnapshotOptions>): true | SnapshotOptions {
  return s.order === undefined && s.limit === undefined ? true : { ...s };
}
