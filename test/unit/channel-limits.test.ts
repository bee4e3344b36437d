// The channel bounds of issue 11 on their own, with a fake clock: presence per key and per
// channel (presence.ts), broadcast budgets per connection and per user (rate.ts), and Channels
// dropping a channel nobody is in (test/integration/channel-abuse.test.ts has the sockets).
import t from 'tap';
import { resolveServeConfig } from '../../src/config.js';
import { SERVER_DEFAULTS } from '../../src/constants.js';
import { Channels, channelLimits, type ChannelOptions } from '../../src/hub/channels.js';
import { ChannelPresence } from '../../src/hub/presence.js';
import { BroadcastBudgets, TokenBucket } from '../../src/hub/rate.js';
import { FakePeer } from '../helpers/fake-peer.js';

const peer = (user: string | null) => new FakePeer(user === null ? null : { id: user });

t.test('presence: metas and bytes per key, metas and bytes per channel; a refused track changes nothing', async (t) => {
  const p = new ChannelPresence({ metasPerKey: 3, bytesPerKey: 1000, metasTotal: 5, bytesTotal: 1500 });
  const st = (n: number) => ({ s: 'x'.repeat(n) });
  const track = (key: string, session: string, n: number) => p.track(key, session, st(n), JSON.stringify(st(n)).length);
  for (const s of ['a', 'b', 'c']) track('ann', s, 100);
  t.throws(() => track('ann', 'd', 10), { code: 'limit_exceeded' }, 'a fourth meta of one key');
  t.doesNotThrow(() => track('ann', 'a', 200), 're-tracking replaces, it does not add a meta');
  t.throws(() => track('ann', 'b', 900), { code: 'limit_exceeded' }, "past the key's bytes");
  t.same(p.state().ann.map((m) => String(m.state.s).length), [200, 100, 100], 'what was tracked stays');
  track('ben', 'e', 400);
  t.throws(() => track('cat', 'f', 560), /full \(1500 bytes\)/, "past the channel's bytes");
  track('cat', 'f', 10);
  t.throws(() => track('dan', 'g', 1), /full \(5 entries\)/, "past the channel's entries");
  p.untrack('ben', 'e');
  t.doesNotThrow(() => track('dan', 'g', 500), 'untracking frees room');
  const { metas, bytes } = p.size;
  t.equal(metas, 5);
  t.ok(bytes >= JSON.stringify(p.state()).length, `the tally (${bytes}) bounds the state's JSON (${JSON.stringify(p.state()).length})`);
  for (const [k, s] of [['ann', 'a'], ['ann', 'b'], ['ann', 'c'], ['cat', 'f'], ['dan', 'g']]) p.untrack(k, s);
  t.same(p.size, { metas: 0, bytes: 0 }, 'all accounted back');
  t.equal(p.keys, 0);
});

t.test('token bucket: burst, then the rate; never more than the burst', async (t) => {
  const b = new TokenBucket({ burst: 3, perSecond: 2 }, 0);
  let n = 0;
  while (b.has(1, 0)) {
    b.take(1);
    n++;
  }
  t.equal(n, 3, 'the burst');
  t.notOk(b.has(1, 400), 'not yet a token after 0.4 s');
  t.ok(b.has(1, 500), 'one after 0.5 s');
  t.notOk(b.has(4, 60_000), 'never more than the burst');
});

t.test('broadcast budgets: all or nothing, shared by a user, per connection only without a user', async (t) => {
  let now = 0;
  const rate = (burst: number, bytes: number) => ({ messages: { burst, perSecond: 1 }, bytes: { burst: bytes, perSecond: 100 } });
  const b = new BroadcastBudgets({ perConnection: rate(4, 1000), perUser: rate(6, 1500), now: () => now });
  const a1 = peer('ann');
  const a2 = peer('ann');
  const allowed = (p: FakePeer, n: number, bytes = 1) => Array.from({ length: n }, () => b.take(p, bytes)).filter((r) => r === null).length;
  t.equal(allowed(a1, 10), 4, "the connection's burst");
  t.match(b.take(a1, 1), /per second per connection/);
  t.equal(allowed(a2, 10), 2, "the second connection: the rest of the user's burst");
  t.match(b.take(a2, 1), /per second per user/);
  now = 1000;
  t.equal(allowed(a2, 10), 1, 'then the rate');
  t.equal(allowed(peer('ben'), 1, 1001), 0, 'bytes: past the burst is refused');
  t.match(b.take(peer('cat'), 1001), /payload bytes per second per connection/);
  const anon = [peer(null), peer(null)];
  t.same(anon.map((p) => allowed(p, 10)), [4, 4], 'without a user, each connection has its own budget');
  t.equal(b.users, 3, 'ann, ben and cat hold a budget');
  b.forget(a1);
  t.equal(b.users, 3, "ann's budget stays while a2 is open");
  t.equal(allowed(a2, 1), 0, 'and is the same budget');
  b.forget(a2);
  b.forget(a2);
  t.equal(b.users, 2, "gone with ann's last connection (forgetting twice is harmless)");
});

function channels(over: Partial<ChannelOptions> = {}): Channels {
  const r = { messages: { burst: 100, perSecond: 1 }, bytes: { burst: 1e6, perSecond: 1 } };
  return new Channels({
    auth: null, maxPerPeer: 1000, maxPayloadBytes: 1000, presenceBurst: 1000, presencePerSecond: 1,
    presence: { metasPerKey: 10, bytesPerKey: 10_000, metasTotal: 100, bytesTotal: 100_000 },
    broadcastPerConnection: r, broadcastPerUser: r, now: () => 0, ...over,
  });
}

t.test('a channel with neither members nor presence is dropped, whichever way its members go', async (t) => {
  const c = channels();
  const a = peer(null);
  const b = peer(null);
  for (let i = 0; i < 500; i++) {
    c.join(a, `n${i}`);
    c.join(b, `n${i}`);
    c.presence(a, `n${i}`, { i });
    c.leave(a, `n${i}`);
  }
  t.equal(c.count, 500, 'b is still in all of them');
  for (let i = 0; i < 250; i++) c.leave(b, `n${i}`);
  t.equal(c.count, 250);
  c.removePeer(b);
  t.equal(c.count, 0, 'none left once b closed');
  c.join(a, 'x');
  t.throws(() => c.presence(a, 'y', { i: 1 }), { code: 'bad_request' }, 'presence without joining');
  t.throws(() => c.broadcast(a, 'y', 'e', '1', false), { code: 'bad_request' });
  t.equal(c.count, 1, 'refused messages create nothing');
  c.removePeer(a);
  t.equal(c.count, 0);
});

t.test('broadcasts past the budget are refused with limit_exceeded and reach nobody', async (t) => {
  const r = { messages: { burst: 3, perSecond: 1 }, bytes: { burst: 1e6, perSecond: 1 } };
  const c = channels({ broadcastPerConnection: r });
  const from = peer('ann');
  const to = peer('ben');
  c.join(from, 'r');
  c.join(to, 'r');
  let refused = 0;
  for (let i = 0; i < 10; i++) {
    try {
      c.broadcast(from, 'r', 'e', String(i), false);
    } catch (err) {
      t.equal((err as { code: string }).code, 'limit_exceeded');
      refused++;
    }
  }
  await new Promise((r) => setImmediate(r));
  t.equal(refused, 7);
  t.same(to.frames.filter((f) => f.type === 'broadcast').map((f) => f.payload), [0, 1, 2], 'the allowed ones, in order');
  c.removePeer(from);
  t.equal(c.budgetUsers, 0, "the user's budget went with its only connection");
});

t.test('--broadcast-rate and --broadcast-bytes-rate scale the budgets; presence stays under the backpressure limit', async (t) => {
  const cfg = (flags: Record<string, string>) => resolveServeConfig({ db: 'postgres://u@h/d', auth: false, ...flags }, {});
  const d = channelLimits(SERVER_DEFAULTS, cfg({}));
  t.same(d.broadcastPerConnection, { messages: { burst: 50, perSecond: 20 }, bytes: { burst: 256 * 1024, perSecond: 64 * 1024 } }, 'the defaults');
  t.same(d.broadcastPerUser, { messages: { burst: 100, perSecond: 40 }, bytes: { burst: 512 * 1024, perSecond: 128 * 1024 } });
  t.equal(d.presence.bytesTotal, 1024 * 1024);
  const x = channelLimits(SERVER_DEFAULTS, cfg({ broadcastRate: '200', broadcastBytesRate: '1KiB', maxBackpressure: '1MiB' }));
  t.same(x.broadcastPerConnection.messages, { burst: 500, perSecond: 200 }, 'ten times the rate, ten times the burst');
  t.same(x.broadcastPerUser.messages, { burst: 1000, perSecond: 400 });
  t.same(x.broadcastPerConnection.bytes, { burst: SERVER_DEFAULTS.maxPayloadBytes, perSecond: 1024 }, 'a byte burst holds one largest payload');
  t.equal(x.presence.bytesTotal, 256 * 1024, 'a quarter of --max-backpressure');
  t.throws(() => cfg({ broadcastRate: '0' }), { code: 'bad_config' });
  t.throws(() => cfg({ broadcastRate: 'fast' }), { code: 'bad_config' });
  t.equal(resolveServeConfig({ db: 'postgres://u@h/d', auth: false }, { WALCAST_BROADCAST_RATE: '5' }).broadcastRate, 5, 'from the environment');
});
