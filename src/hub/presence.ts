// Who is in a channel: per key (the user id, so a user's tabs are one key) the metas of its
// sockets, each `{session, state}`. Tracking again replaces that socket's meta, which others see
// as a leave of the old meta and a join of the new one in one diff (as Phoenix Presence does).

export interface Meta {
  session: string;
  state: Record<string, unknown>;
}

export type PresenceMap = Record<string, Meta[]>;

export interface PresenceDiff {
  joins: PresenceMap;
  leaves: PresenceMap;
}

export class ChannelPresence {
  private readonly byKey = new Map<string, Map<string, Meta>>();

  get keys(): number {
    return this.byKey.size;
  }

  /** Tracks (or re-tracks) one socket's state under `key`. */
  track(key: string, session: string, state: Record<string, unknown>): PresenceDiff {
    let metas = this.byKey.get(key);
    if (!metas) this.byKey.set(key, (metas = new Map()));
    const old = metas.get(session);
    const meta = { session, state };
    metas.set(session, meta);
    return { joins: { [key]: [meta] }, leaves: old ? { [key]: [old] } : {} };
  }

  /** Drops one socket's meta; null when it had none. */
  untrack(key: string, session: string): PresenceDiff | null {
    const metas = this.byKey.get(key);
    const old = metas?.get(session);
    if (!metas || !old) return null;
    metas.delete(session);
    if (metas.size === 0) this.byKey.delete(key);
    return { joins: {}, leaves: { [key]: [old] } };
  }

  state(): PresenceMap {
    // Keys are user ids: a null prototype keeps "__proto__" an ordinary key (found by the fuzzer).
    const out: PresenceMap = Object.create(null) as PresenceMap;
    for (const [key, metas] of this.byKey) out[key] = [...metas.values()];
    return out;
  }
}
