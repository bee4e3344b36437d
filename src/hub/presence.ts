// Who is in a channel: per key (the user id, so a user's tabs are one key) the metas of its
// sockets, each `{session, state}`. Tracking again replaces that socket's meta, which others see
// as a leave of the old meta and a join of the new one in one diff (as Phoenix Presence does).
//
// Bounded (issue 11): a key keeps at most `metasPerKey` metas of `bytesPerKey` bytes, and the
// channel `metasTotal` metas of `bytesTotal` bytes, so that one user's many sockets cannot fill
// memory, and the `presence_state` a joiner receives stays well under the backpressure limit.
// A track past a bound is refused; what is tracked stays.
import { LimitExceededError } from '../errors.js';

export interface Meta {
  session: string;
  state: Record<string, unknown>;
  /**
   * The key a Supabase client chose (`config.presence.key`), shown to Supabase clients in place
   * of the user key; absent for walcast clients. A label only: the key stays the user's.
   */
  label?: string;
}

export type PresenceMap = Record<string, Meta[]>;

export interface PresenceDiff {
  joins: PresenceMap;
  leaves: PresenceMap;
}

export interface PresenceLimits {
  metasPerKey: number;
  bytesPerKey: number;
  metasTotal: number;
  bytesTotal: number;
}

interface Entry {
  meta: Meta;
  /** What this meta adds to a presence_state frame, at most (see metaBytes). */
  bytes: number;
}

interface KeyMetas {
  entries: Map<string, Entry>;
  bytes: number;
}

/** Upper bound of a meta's share of a presence_state: key and session quoted, the braces. */
function metaBytes(key: string, session: string, stateBytes: number): number {
  return Buffer.byteLength(JSON.stringify(key)) + Buffer.byteLength(JSON.stringify(session)) + stateBytes + 24;
}

export class ChannelPresence {
  private readonly byKey = new Map<string, KeyMetas>();
  private metas = 0;
  private bytes = 0;

  constructor(private readonly limits: PresenceLimits) {}

  get keys(): number {
    return this.byKey.size;
  }

  /** Metas and bytes tracked (bytes bound the presence_state frame, less its header). */
  get size(): { metas: number; bytes: number } {
    return { metas: this.metas, bytes: this.bytes };
  }

  /**
   * Tracks (or re-tracks) one socket's state under `key`; `stateBytes` is its JSON length.
   * Throws LimitExceededError past a bound, leaving what was tracked as it was.
   */
  track(key: string, session: string, state: Record<string, unknown>, stateBytes: number, label?: string): PresenceDiff {
    const l = this.limits;
    const km = this.byKey.get(key);
    const old = km?.entries.get(session);
    // A label adds `,"label":` (9 bytes) and its quoted text to the meta.
    const bytes = metaBytes(key, session, stateBytes) + (label === undefined ? 0 : Buffer.byteLength(JSON.stringify(label)) + 9);
    const keyMetas = (km?.entries.size ?? 0) + (old ? 0 : 1);
    const keyBytes = (km?.bytes ?? 0) - (old?.bytes ?? 0) + bytes;
    if (keyMetas > l.metasPerKey) throw new LimitExceededError(`at most ${l.metasPerKey} presences per user in a channel`);
    if (keyBytes > l.bytesPerKey) throw new LimitExceededError(`a user's presence in a channel is at most ${l.bytesPerKey} bytes`);
    if (!old && this.metas + 1 > l.metasTotal) throw new LimitExceededError(`the channel's presence is full (${l.metasTotal} entries)`);
    if (this.bytes - (old?.bytes ?? 0) + bytes > l.bytesTotal) throw new LimitExceededError(`the channel's presence is full (${l.bytesTotal} bytes)`);
    let metas = km;
    if (!metas) this.byKey.set(key, (metas = { entries: new Map(), bytes: 0 }));
    const meta: Meta = label === undefined ? { session, state } : { session, state, label };
    metas.entries.set(session, { meta, bytes });
    metas.bytes = keyBytes;
    this.bytes += bytes - (old?.bytes ?? 0);
    if (!old) this.metas++;
    return { joins: { [key]: [meta] }, leaves: old ? { [key]: [old.meta] } : {} };
  }

  /** Drops one socket's meta; null when it had none. */
  untrack(key: string, session: string): PresenceDiff | null {
    const metas = this.byKey.get(key);
    const old = metas?.entries.get(session);
    if (!metas || !old) return null;
    metas.entries.delete(session);
    metas.bytes -= old.bytes;
    this.bytes -= old.bytes;
    this.metas--;
    if (metas.entries.size === 0) this.byKey.delete(key);
    return { joins: {}, leaves: { [key]: [old.meta] } };
  }

  state(): PresenceMap {
    // Keys are user ids: a null prototype keeps "__proto__" an ordinary key (found by the fuzzer).
    const out: PresenceMap = Object.create(null) as PresenceMap;
    for (const [key, metas] of this.byKey) out[key] = [...metas.entries.values()].map((e) => e.meta);
    return out;
  }
}
