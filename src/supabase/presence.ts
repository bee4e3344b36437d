// walcast presence in Phoenix Presence's shape, for Supabase clients:
//
//   walcast   {"<user id>": [{session, state, label?}, ...]}
//   Phoenix   {"<key>": {"metas": [{"phx_ref": "...", ...state}, ...]}}
//
// The key is the one the tracking client chose (`config.presence.key`, carried as `label`), or
// else walcast's (the user id). phx_ref must change whenever a meta does: Phoenix's client merges
// a diff's joins before its leaves by phx_ref, so a re-track under an unchanged ref would remove
// the new meta with the old. It is the socket's session and a digest of what it tracks; a diff
// that leaves and joins the same ref under one key changed nothing, and both sides are dropped.
import { createHash } from 'node:crypto';

export interface WalcastMeta {
  session: string;
  state: Record<string, unknown>;
  label?: string;
}

export type WalcastPresence = Record<string, WalcastMeta[]>;

interface PhoenixMeta {
  phx_ref: string;
  [field: string]: unknown;
}

export type PhoenixPresence = Record<string, { metas: PhoenixMeta[] }>;

/** The Phoenix shape of a presence state (or of a diff's joins or leaves). */
export function toPhoenix(state: WalcastPresence): PhoenixPresence {
  const out = Object.create(null) as PhoenixPresence;
  for (const userKey of Object.keys(state)) {
    const metas = state[userKey];
    if (!Array.isArray(metas)) continue;
    for (const m of metas) {
      const key = typeof m.label === 'string' && m.label !== '' ? m.label : userKey;
      (out[key] ??= { metas: [] }).metas.push(phoenixMeta(m));
    }
  }
  return out;
}

/** A diff's joins and leaves, a re-track that changed nothing taken out of both. */
export function diffToPhoenix(joins: WalcastPresence, leaves: WalcastPresence): { joins: PhoenixPresence; leaves: PhoenixPresence } {
  const j = toPhoenix(joins);
  const l = toPhoenix(leaves);
  for (const key of Object.keys(j)) {
    const left = l[key];
    if (!left) continue;
    const refs = new Set(left.metas.map((m) => m.phx_ref));
    const same = new Set(j[key].metas.filter((m) => refs.has(m.phx_ref)).map((m) => m.phx_ref));
    if (same.size === 0) continue;
    j[key].metas = j[key].metas.filter((m) => !same.has(m.phx_ref));
    left.metas = left.metas.filter((m) => !same.has(m.phx_ref));
    if (j[key].metas.length === 0) delete j[key];
    if (left.metas.length === 0) delete l[key];
  }
  return { joins: j, leaves: l };
}

function phoenixMeta(m: WalcastMeta): PhoenixMeta {
  const state = m.state !== null && typeof m.state === 'object' ? m.state : {};
  const digest = createHash('sha1').update(JSON.stringify(state)).update('\u0000').update(m.label ?? '').digest('base64url').slice(0, 12);
  // Defined, not assigned: a state may hold "__proto__" (a JSON key like any other).
  const out = Object.defineProperties({}, Object.getOwnPropertyDescriptors(state)) as PhoenixMeta;
  Object.defineProperty(out, 'phx_ref', { value: `${m.session}.${digest}`, enumerable: true, writable: true, configurable: true });
  return out;
}
