// The page of test/e2e/supabase-browser.test.ts, in headless Chromium: unmodified
// @supabase/realtime-js (served from node_modules as ES modules, with an import map) on the
// browser's own WebSocket, against walcast's /realtime/v1. Node drives it through `globalThis.sb`
// and reads what happened from `globalThis.results`, whose entries are plain JSON.
import { RealtimeClient } from '@supabase/realtime-js';

const results = { statuses: {}, changes: {}, broadcasts: {}, presence: {}, subscribedAt: {}, writes: {}, heartbeats: {} };
globalThis.results = results;
const clients = {};
const channels = {};

const add = (map, key, v) => (map[key] ??= []).push(v);

/** Presence metas without their `presence_ref` (which is the server's to choose). */
const metasOf = (metas) => metas.map(({ presence_ref: _ref, ...meta }) => meta);

/** A channel's presence state: its keys and their metas. */
function presenceOf(state) {
  const out = {};
  for (const [key, metas] of Object.entries(state)) out[key] = metasOf(metas);
  return out;
}

globalThis.sb = {
  /**
   * A client `name` (its own WebSocket) with the anon key as apikey and `token` as its access
   * token, sending heartbeats every `heartbeatMs`.
   */
  async connect(name, { vsn, apikey, token, heartbeatMs }) {
    const client = new RealtimeClient(`ws://${globalThis.location.host}/realtime/v1`, {
      params: { apikey },
      vsn,
      heartbeatIntervalMs: heartbeatMs,
      heartbeatCallback: (status) => add(results.heartbeats, name, status),
    });
    await client.setAuth(token);
    clients[name] = client;
    return client.vsn;
  },

  /**
   * Joins `room:1` as `name`: postgres_changes with `filter` (none when null), broadcast with self
   * and ack, presence under `key`. `writeUrl`, if given, is POSTed from the subscribe callback the
   * moment it reports SUBSCRIBED. Resolves with the first status reported.
   */
  join(name, { filter, key, writeUrl }) {
    return new Promise((resolve) => {
      const ch = clients[name].channel('room:1', { config: { broadcast: { self: true, ack: true }, presence: { key } } });
      channels[name] = ch;
      if (filter !== null) {
        ch.on('postgres_changes', { event: '*', schema: 'public', table: 'messages', filter }, (p) => add(results.changes, name, p));
      }
      ch.on('broadcast', { event: 'msg' }, (m) => add(results.broadcasts, name, m));
      ch.on('presence', { event: 'join' }, ({ key: k, newPresences }) => add(results.presence, name, { event: 'join', key: k, metas: metasOf(newPresences) }));
      ch.on('presence', { event: 'leave' }, ({ key: k, leftPresences }) => add(results.presence, name, { event: 'leave', key: k, metas: metasOf(leftPresences) }));
      let first = true;
      ch.subscribe((status, err) => {
        add(results.statuses, name, err ? `${status}: ${err.message}` : status);
        if (status === 'SUBSCRIBED' && writeUrl && !results.subscribedAt[name]) {
          results.subscribedAt[name] = Date.now();
          fetch(writeUrl, { method: 'POST' }).then(
            (r) => r.json().then((body) => (results.writes[name] = { status: r.status, body })),
            (e) => (results.writes[name] = { error: String(e) }),
          );
        }
        if (first) resolve(status);
        first = false;
      });
    });
  },

  /** send() of a broadcast `msg` with `payload`: resolves with what send resolved ('ok' with ack). */
  broadcast(name, payload) {
    return channels[name].send({ type: 'broadcast', event: 'msg', payload });
  },

  track(name, state) {
    return channels[name].track(state);
  },

  untrack(name) {
    return channels[name].untrack();
  },

  presenceState(name) {
    return presenceOf(channels[name].presenceState());
  },

  /** Leaves `name`'s channel (phx_leave): resolves with removeChannel's status. */
  leave(name) {
    return clients[name].removeChannel(channels[name]);
  },

  /** Closes `name`'s WebSocket (its channels with it), as closing a tab would. */
  async disconnect(name) {
    await clients[name].disconnect();
  },
};
globalThis.ready = true;
