// The Supabase endpoint's connection (src/supabase/connection.ts) on the real handlers, hub and
// channels, without sockets: a fake WebSocket records what is sent, tokens are verified when a
// test says so. Races a real socket makes rare (a frame arriving while a token is verified, an
// event during the verification) are made here at will.
import t from 'tap';
import type { Identity, TokenVerifier, VerifiedToken } from '../../src/auth/jwt.js';
import type { Authorizer } from '../../src/auth/types.js';
import { SERVER_DEFAULTS } from '../../src/constants.js';
import { AuthError } from '../../src/errors.js';
import { HistoryRing, LAST_INDEX } from '../../src/history/ring.js';
import type { Catalog, TableInfo } from '../../src/hub/catalog.js';
import { Channels, channelLimits, type ChannelBridge } from '../../src/hub/channels.js';
import { Hub } from '../../src/hub/hub.js';
import { silentLogger } from '../../src/log.js';
import { Handlers } from '../../src/server/handlers.js';
import { SupabaseConnection } from '../../src/supabase/connection.js';
import { SupabaseChanges } from '../../src/supabase/render.js';
import { PhoenixSession } from '../../src/supabase/session.js';

type Frame = [string | null, string | null, string, string, Record<string, unknown>];

const table = (name: string): TableInfo => {
  const columns = [{ name: 'id', typeOid: 23 }] as TableInfo['columns'];
  return { qualified: `public.${name}`, schema: 'public', name, columns, rowColumns: columns, routeBy: null };
};

/** Who may do what: `read[user]` tables, `join[user]` channels (absent: everything). */
interface Rules {
  read?: Record<string, string[]>;
  join?: Record<string, string[]>;
}

function authorizer(rules: Rules): Authorizer {
  return {
    ready: true,
    epoch: 0,
    whenReady: () => Promise.resolve(),
    mayEverRead: (identity, tbl) => !rules.read || (rules.read[identity.id] ?? []).includes(tbl),
    mayAct: (identity, _kind, name) => !rules.join || (rules.join[identity.id] ?? []).includes(name),
    mayRead: (identity, tbl) => !rules.read || (rules.read[identity.id] ?? []).includes(tbl),
    reach: () => null,
    apply: () => false,
    forget: () => {},
  };
}

/** A daemon's parts, with tokens that are user ids, verified when `pass()` is called. */
function daemon(rules: Rules = {}, bridge?: ChannelBridge) {
  const auth = authorizer(rules);
  const channels = new Channels({
    auth, maxPerPeer: 100, maxPayloadBytes: 10_000, presenceBurst: 1000, presencePerSecond: 1000,
    ...channelLimits(SERVER_DEFAULTS, { maxBackpressure: 4e6, broadcastRate: SERVER_DEFAULTS.broadcastPerSecond, broadcastBytesRate: SERVER_DEFAULTS.broadcastBytesPerSecond }),
    now: () => 0, // budgets never refill: a test's bursts are what counts
  });
  if (bridge) channels.attach(bridge);
  const ring = new HistoryRing({ maxBytes: 1e9, maxAgeMs: 1e9 });
  const hub = new Hub({ ring, auth, channels });
  hub.reset({ lsn: 0xfffn, index: LAST_INDEX }, null);
  const tables = new Map(['notes', 'secrets', 'slow'].map((n) => [`public.${n}`, table(n)]));
  // public.slow is looked up once openSlow() is called (a database slow to answer).
  let openSlow = () => {};
  const slow = new Promise<void>((res) => (openSlow = res));
  const catalog = {
    table: async (q: string) => (q === 'public.slow' ? slow.then(() => tables.get(q)) : (tables.get(q) ?? null)),
    tablesIn: async (schema: string) => [...tables.values()].filter((x) => x.schema === schema),
    typeName: () => undefined,
  } as unknown as Catalog;
  const pending: (() => void)[] = [];
  // A token is the user id; `bad` is refused. Verified when pass() is called.
  const verify: TokenVerifier = (token) =>
    new Promise<VerifiedToken>((resolve, reject) =>
      pending.push(() => (token === 'bad' ? reject(new AuthError('bad token')) : resolve({ identity: { id: token } as Identity, expiresAt: null }))),
    );
  const handlers = new Handlers({ hub, catalog, log: silentLogger, maxMessageBytes: 65536, maxSubscriptions: 100, verify });
  const changes = new SupabaseChanges(() => undefined);
  /** Lets the verifications asked so far finish, and what they started run. */
  const pass = async () => {
    while (pending.length > 0) pending.shift()?.();
    for (let i = 0; i < 5; i++) await new Promise((res) => setImmediate(res));
  };
  /** A Supabase client connected with `apikey` (a user id). */
  const client = (apikey: string) => {
    const sent: Frame[] = [];
    let closed: number | null = null;
    const ws = {
      send: (f: string | Buffer) => (sent.push(JSON.parse(String(f)) as Frame), 1),
      cork: (fn: () => void) => fn(),
      getBufferedAmount: () => 0,
      end: (code: number) => {
        closed = code;
        session.dispose();
        conn.closed();
        handlers.closed(session);
        hub.removePeer(session);
      },
    };
    const session = new PhoenixSession(ws as never, 1e9, () => {});
    session.supabaseTokens = true;
    handlers.adopt(session);
    session.identity = { id: apikey } as Identity;
    const conn = new SupabaseConnection(session, '2.0.0', { handlers, catalog, changes, log: silentLogger, maxMessageBytes: 65536, maxSubscriptions: 100, maxHeldBytes: 4 * 1024 * 1024 });
    let ref = 0;
    const c = {
      session,
      conn,
      sent,
      get closed() {
        return closed;
      },
      /** Sends a push; its ref. */
      push(topic: string, event: string, payload: Record<string, unknown>, joinRef: string | null = null): string {
        const r = String(++ref);
        handlers.message(session, new TextEncoder().encode(JSON.stringify([joinRef, r, topic, event, payload])).buffer as ArrayBuffer, false);
        return r;
      },
      reply: (r: string) => sent.find((f) => f[3] === 'phx_reply' && f[1] === r)?.[4] as { status: string; response: Record<string, unknown> } | undefined,
      of: (topic: string, event: string) => sent.filter((f) => f[2] === topic && f[3] === event),
      /** Closes the socket, as the client going away does. */
      close: () => session.end(1000, 'bye'),
    };
    return c;
  };
  return { hub, channels, client, pass, openSlow: () => openSlow() };
}

const join = (config: Record<string, unknown> = {}, token?: string) => ({ config: { broadcast: { ack: true }, presence: { enabled: true }, postgres_changes: [], ...config }, ...(token ? { access_token: token } : {}) });
const track = (state: Record<string, unknown>) => ({ type: 'presence', event: 'track', payload: state });
const presenceKeys = (f: Frame | undefined) => Object.keys((f?.[4] ?? {}) as object);

t.test('presence tracked before the user switched goes when the connection leaves', async (t) => {
  const d = daemon();
  const a = d.client('anon:anon');
  const jr = a.push('realtime:lobby', 'phx_join', join());
  await d.pass();
  t.match(a.reply(jr), { status: 'ok' });
  const tr = a.push('realtime:lobby', 'presence', track({ online: 1 }), jr);
  await d.pass();
  t.match(a.reply(tr), { status: 'ok' }, 'tracked as anon:anon');
  a.push('realtime:lobby', 'access_token', { access_token: 'ann' }, jr); // an anonymous client signs in
  await d.pass();
  t.equal(a.session.identity?.id, 'ann');
  a.push('realtime:lobby', 'phx_leave', {}, jr);
  await d.pass();
  const b = d.client('bob');
  const jb = b.push('realtime:lobby', 'phx_join', join());
  await d.pass();
  t.match(b.reply(jb), { status: 'ok' });
  t.same(presenceKeys(b.of('realtime:lobby', 'presence_state').at(-1)), [], 'nobody is in the lobby: no ghost of the anonymous presence');
  b.push('realtime:lobby', 'phx_leave', {}, jb);
  await d.pass();
  t.equal(d.channels.count, 0, 'the channel is gone with its last member');
});

t.test('presence tracked before the user switched goes when the socket closes', async (t) => {
  const d = daemon();
  for (let i = 0; i < 3; i++) {
    const a = d.client('anon:anon');
    const jr = a.push(`realtime:room${i}`, 'phx_join', join());
    await d.pass();
    a.push(`realtime:room${i}`, 'presence', track({ i }), jr);
    a.push(`realtime:room${i}`, 'access_token', { access_token: `user${i}` }, jr);
    await d.pass();
    a.close();
  }
  t.equal(d.channels.count, 0, 'no channel kept alive by the presence of a connection long gone');
});

t.test('presence moves to the new user: the old key leaves, the new one joins', async (t) => {
  const d = daemon();
  const w = d.client('walt');
  const jw = w.push('realtime:lobby', 'phx_join', join());
  const a = d.client('anon:anon');
  const jr = a.push('realtime:lobby', 'phx_join', join());
  await d.pass();
  a.push('realtime:lobby', 'presence', track({ online: 1 }), jr);
  await d.pass();
  a.push('realtime:lobby', 'access_token', { access_token: 'ann' }, jr);
  await d.pass();
  a.push('realtime:lobby', 'presence', track({ online: 2 }), jr);
  await d.pass();
  t.ok(w.reply(jw));
  const state = d.channels.localPresence('lobby') ?? {};
  t.same(Object.keys(state), ['ann'], 'only the user the connection is now');
  a.push('realtime:lobby', 'presence', { type: 'presence', event: 'untrack' }, jr);
  await d.pass();
  t.same(Object.keys(d.channels.localPresence('lobby') ?? {}), [], 'untrack takes it all away');
});

t.test('a rejoin read while a token is verified stays a member of its channel', async (t) => {
  // bob may not read notes: his token ends ann's binding (system error, phx_error), and the
  // rejoin the client sent meanwhile must not be undone by what the old join's end left behind.
  const d = daemon({ read: { ann: ['public.notes'], walt: [] } });
  const a = d.client('ann');
  const bindings = { postgres_changes: [{ event: '*', schema: 'public', table: 'notes' }] };
  const j1 = a.push('realtime:room', 'phx_join', join(bindings));
  await d.pass();
  t.match(a.reply(j1), { status: 'ok' });
  a.push('realtime:room', 'access_token', { access_token: 'bob' }, j1);
  const j2 = a.push('realtime:room', 'phx_join', join()); // read once bob's token is decided
  await d.pass();
  t.equal(a.of('realtime:room', 'phx_error').length, 1, 'the old join ended');
  t.match(a.reply(j2), { status: 'ok' }, 'rejoined');
  const w = d.client('walt');
  const jw = w.push('realtime:room', 'phx_join', join());
  await d.pass();
  w.push('realtime:room', 'broadcast', { type: 'broadcast', event: 'hi', payload: { n: 1 } }, jw);
  await d.pass();
  t.equal(a.of('realtime:room', 'broadcast').length, 1, "the rejoined channel gets walt's broadcast");
  const b = a.push('realtime:room', 'broadcast', { type: 'broadcast', event: 'yo', payload: {} }, j2);
  await d.pass();
  t.match(a.reply(b), { status: 'ok' }, 'and may broadcast on it');
});

t.test('a switch to a user who may read none of many joined channels ends them, not the connection', async (t) => {
  const d = daemon({ read: { ann: ['public.notes'] } });
  const a = d.client('ann');
  const bindings = { postgres_changes: [{ event: '*', schema: 'public', table: 'notes' }] };
  const refs: string[] = [];
  for (let i = 0; i < 50; i++) refs.push(a.push(`realtime:room${i}`, 'phx_join', join(bindings)));
  await d.pass();
  t.ok(refs.every((r) => a.reply(r)?.status === 'ok'), '50 channels joined');
  a.push('realtime:room0', 'access_token', { access_token: 'bob' }, refs[0]); // bob may read nothing
  await d.pass();
  t.equal(a.closed, null, 'the connection stays open');
  t.equal(a.sent.filter((f) => f[3] === 'phx_error').length, 50, 'every channel ended with phx_error');
  t.equal(d.hub.subscriptionCount, 0, 'no subscription left');
  t.equal(d.channels.count, 0, 'no channel membership left');
});

t.test('anonymous clients do not share one presence key and one broadcast budget', async (t) => {
  const d = daemon();
  const refused: string[] = [];
  for (let i = 0; i < 11; i++) {
    const a = d.client('anon:anon');
    const jr = a.push('realtime:lobby', 'phx_join', join({ broadcast: { ack: true } }));
    await d.pass();
    const tr = a.push('realtime:lobby', 'presence', track({ i }), jr);
    await d.pass();
    if (a.reply(tr)?.status !== 'ok') refused.push(`presence ${i}`);
  }
  t.same(refused, [], 'an eleventh visitor may be present too');
  for (let f = 0; f < 2; f++) {
    const flooder = d.client('anon:anon');
    const jf = flooder.push('realtime:hall', 'phx_join', join());
    for (let i = 0; i < SERVER_DEFAULTS.broadcastBurst; i++) flooder.push('realtime:hall', 'broadcast', { type: 'broadcast', event: 'x', payload: {} }, jf);
  }
  const other = d.client('anon:anon');
  const jo = other.push('realtime:hall', 'phx_join', join());
  await d.pass();
  const b = other.push('realtime:hall', 'broadcast', { type: 'broadcast', event: 'hi', payload: {} }, jo);
  await d.pass();
  t.match(other.reply(b), { status: 'ok' }, "two visitors' floods do not silence the others");
});

t.test('frames held while joins are answered are bounded in bytes per connection, as a socket is', async (t) => {
  const d = daemon();
  const a = d.client('ann');
  // Each join waits for public.slow; meanwhile notes' changes are held, one copy per topic.
  const bindings = { postgres_changes: [{ event: '*', schema: 'public', table: 'notes' }, { event: '*', schema: 'public', table: 'slow' }] };
  const refs: string[] = [];
  for (let i = 0; i < 20; i++) refs.push(a.push(`realtime:room${i}`, 'phx_join', join(bindings)));
  await d.pass();
  const rel = { oid: 1, schema: 'public', name: 'notes', qualified: 'public.notes', replicaIdentity: 'full', columns: [{ name: 'id', key: true, typeOid: 23, typeMod: -1 }, { name: 'body', key: false, typeOid: 25, typeMod: -1 }], decoders: [] };
  const body = 'x'.repeat(64 * 1024);
  for (let i = 0; i < 40; i++) {
    const lsn = 0x2000n + BigInt(i) * 0x100n;
    d.hub.onTransaction({ xid: i + 1, lsn, lsnText: `0/${lsn.toString(16)}`, endLsn: lsn + 8n, commitTime: new Date().toISOString(), changes: [{ index: 0, tag: 'insert', relation: rel, new: { id: i, body } }] } as never);
  }
  const topics = (a.conn as unknown as { topics: Map<string, { held: (string | Buffer)[] | null }> }).topics;
  let held = 0;
  for (const topic of topics.values()) for (const f of topic.held ?? []) held += f.length;
  t.ok(held <= 4 * 1024 * 1024, `at most maxBackpressure held (${(held / 1048576).toFixed(1)} MiB)`);
  d.openSlow();
  await d.pass();
  t.ok(refs.every((r) => a.reply(r) !== undefined), 'every join answered');
  t.ok(refs.some((r) => /retry/.test(String(a.reply(r)?.response.reason))), 'those past the bound fail, to be retried');
});

t.test('a join waiting for the cluster to open its channel is answered when the user may no longer join', async (t) => {
  let open = () => {};
  const bridge: ChannelBridge = {
    opened: () => new Promise<void>((res) => (open = res)), // the other nodes' presence, gathered later
    closed: () => {},
    broadcast: () => {},
    presence: () => {},
    remoteState: () => [],
  };
  const d = daemon({ join: { ann: ['room'] } }, bridge);
  const a = d.client('ann');
  const jr = a.push('realtime:room', 'phx_join', join());
  await d.pass();
  t.equal(a.reply(jr), undefined, 'waiting for the other nodes');
  a.push('realtime:room', 'access_token', { access_token: 'bob' }, jr); // bob may not join
  await d.pass();
  open();
  await d.pass();
  t.match(a.reply(jr), { status: 'error' }, 'the join is refused now, not at its timeout');
  t.equal((a.conn as unknown as { requests: { waiting: Map<string, unknown> } }).requests.waiting.size, 0, 'no reply left awaited');
});
