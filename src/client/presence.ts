// The merged presence view of one channel: key (the user id, JWT `sub`) → metas, one meta per
// connection that tracks a state in the channel (`{session, state}`). Pure functions: each takes
// the current view and returns a new one with what changed, at the level of metas and of keys.
// A key joins when its first meta arrives and leaves only when its last meta goes.
//
// Views are null-prototype objects, so that any user id ("__proto__" included) is a plain key.

/** One tracked state: the connection (`session`, as in `welcome`) and the state it tracks. */
export interface PresenceMeta {
  session?: string;
  state?: Record<string, unknown>;
  [field: string]: unknown;
}

/** key → metas. */
export type PresenceState = Record<string, PresenceMeta[]>;

export interface PresenceChange {
  /** The view after the change. */
  state: PresenceState;
  /** Metas that arrived, by key (an updated state is a leave of the old meta and a join of the new). */
  joins: PresenceState;
  /** Metas that went, by key. */
  leaves: PresenceState;
  /** Keys that were absent and are present now. */
  joinedKeys: string[];
  /** Keys that were present and have no meta left. */
  leftKeys: string[];
}

export function emptyPresence(): PresenceState {
  return Object.create(null) as PresenceState;
}

/** A copy of `state` (new arrays; metas shared). */
function copy(state: PresenceState): PresenceState {
  const out = emptyPresence();
  for (const k of Object.keys(state)) out[k] = state[k].slice();
  return out;
}

/** What the server sent, reduced to key → array of object metas (anything else ignored). */
export function normalizePresence(value: unknown): PresenceState {
  const out = emptyPresence();
  if (!value || typeof value !== 'object' || Array.isArray(value)) return out;
  for (const k of Object.keys(value)) {
    const metas = (value as Record<string, unknown>)[k];
    if (!Array.isArray(metas)) continue;
    const list = metas.filter((m): m is PresenceMeta => !!m && typeof m === 'object' && !Array.isArray(m));
    if (list.length > 0) out[k] = list;
  }
  return out;
}

/** Which connection a meta belongs to: its session when it has one, else its whole content. */
function identity(meta: PresenceMeta): string {
  return typeof meta.session === 'string' ? `s:${meta.session}` : `j:${JSON.stringify(meta)}`;
}

function has(state: PresenceState, key: string): boolean {
  return Object.prototype.hasOwnProperty.call(state, key);
}

function add(into: PresenceState, key: string, meta: PresenceMeta): void {
  if (has(into, key)) into[key].push(meta);
  else into[key] = [meta];
}

/**
 * Applies a `presence_diff`: leaves first (each removes the meta of the same connection), then
 * joins (each replaces a meta of the same connection, or is added).
 */
export function applyPresenceDiff(current: PresenceState, joinsIn: unknown, leavesIn: unknown): PresenceChange {
  const state = copy(current);
  const joins = emptyPresence();
  const leaves = emptyPresence();
  const diffLeaves = normalizePresence(leavesIn);
  const diffJoins = normalizePresence(joinsIn);
  for (const key of Object.keys(diffLeaves)) {
    if (!has(state, key)) continue;
    const list = state[key];
    for (const meta of diffLeaves[key]) {
      const i = list.findIndex((m) => identity(m) === identity(meta));
      if (i >= 0) add(leaves, key, list.splice(i, 1)[0]);
    }
    if (list.length === 0) delete state[key];
  }
  for (const key of Object.keys(diffJoins)) {
    const list = has(state, key) ? state[key] : (state[key] = []);
    for (const meta of diffJoins[key]) {
      const i = list.findIndex((m) => identity(m) === identity(meta));
      if (i >= 0) {
        if (JSON.stringify(list[i]) === JSON.stringify(meta)) continue; // already shown
        add(leaves, key, list.splice(i, 1, meta)[0]);
      } else list.push(meta);
      add(joins, key, meta);
    }
  }
  return finish(current, state, joins, leaves);
}

/**
 * Replaces the view with a `presence_state` (on joining, and again after every reconnect),
 * reporting the difference from what was shown before.
 */
export function replacePresenceState(current: PresenceState, next: unknown): PresenceChange {
  const state = normalizePresence(next);
  const joins = emptyPresence();
  const leaves = emptyPresence();
  const keys = new Set([...Object.keys(current), ...Object.keys(state)]);
  for (const key of keys) {
    const before = (has(current, key) ? current[key] : []).map((m) => JSON.stringify(m));
    const after = (has(state, key) ? state[key] : []).map((m) => JSON.stringify(m));
    const remaining = before.slice();
    for (let i = 0; i < after.length; i++) {
      const j = remaining.indexOf(after[i]);
      if (j >= 0) remaining[j] = '\u0000';
      else add(joins, key, state[key][i]);
    }
    for (let i = 0; i < before.length; i++) if (remaining[i] !== '\u0000') add(leaves, key, current[key][i]);
  }
  return finish(current, state, joins, leaves);
}

function finish(before: PresenceState, state: PresenceState, joins: PresenceState, leaves: PresenceState): PresenceChange {
  const joinedKeys = Object.keys(state).filter((k) => !has(before, k));
  const leftKeys = Object.keys(before).filter((k) => !has(state, k));
  return { state, joins, leaves, joinedKeys, leftKeys };
}

/** True when a change changed nothing. */
export function isEmptyChange(c: PresenceChange): boolean {
  return Object.keys(c.joins).length === 0 && Object.keys(c.leaves).length === 0;
}
