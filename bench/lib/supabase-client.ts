// The Supabase Realtime side of the load clients (bench/lib/clients.ts): the endpoint's path, the
// phx_join realtime-js sends for one postgres_changes binding, and the reply to it. vsn 2.0.0
// (JSON arrays: [join_ref, ref, topic, event, payload]), as realtime-js v2 speaks.

/** join_ref and ref of the join: each connection joins once. */
const JOIN_REF = '1';

/** `?apikey` is verified before the upgrade; under --no-auth anything will do. */
export function supabasePath(apikey: string): string {
  return `/realtime/v1/websocket?apikey=${encodeURIComponent(apikey)}&vsn=2.0.0`;
}

/** How every postgres_changes frame for `topic` starts: what the clients count as deliveries. */
export function supabaseChangePrefix(topic: string): string {
  return `[null,null,${JSON.stringify(topic)},"postgres_changes",`;
}

/** realtime-js's phx_join for a channel with one postgres_changes binding (all events of `table`). */
export function supabaseJoin(topic: string, table: string, filter?: string): string {
  const binding = { event: '*', schema: 'public', table, ...(filter ? { filter } : {}) };
  const config = { broadcast: { ack: false, self: false }, presence: { key: '', enabled: false }, postgres_changes: [binding], private: false };
  return JSON.stringify([JOIN_REF, JOIN_REF, topic, 'phx_join', { config }]);
}

/**
 * A frame received before the join was answered: 'ok' for the join's ok reply, the reason of an
 * error reply, null for anything else.
 */
export function supabaseJoinReply(msg: unknown): 'ok' | { error: string } | null {
  if (!Array.isArray(msg) || msg[1] !== JOIN_REF || msg[3] !== 'phx_reply') return null;
  const p = msg[4] as { status?: string; response?: { reason?: string } } | null;
  if (p?.status === 'ok') return 'ok';
  return { error: `join refused: ${JSON.stringify(p?.response?.reason ?? p)}` };
}
