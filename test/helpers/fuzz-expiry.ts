// The protocol fuzz's expiring tokens (test/integration/fuzz.test.ts): connections whose token
// expires while they are subscribed, in a channel and tracked.

import { sleep } from './capture.js';
import { Conn, type FuzzContext } from './fuzz-conn.js';
import { toJson, validMessage, type GenContext, type Rng } from './fuzz-gen.js';
import { openWs } from './fuzz-ws.js';
import { hsToken, inSeconds } from './tokens.js';

/**
 * Connections whose token (for `sub`) expires while they are subscribed, in a channel and tracked:
 * each must be closed with 4001 `token expired` (within a few seconds of `exp`, or it is a hang).
 */
export async function expiryFuzzer(fuzz: FuzzContext, sub: string, rng: Rng, until: number): Promise<void> {
  for (let n = 1; Date.now() < until - 1_000 && !fuzz.daemonGone(); n++) {
    const conn = new Conn(fuzz, `exp.${n}`);
    fuzz.log.connections.add('ws expiring token');
    const exp = inSeconds(rng.int(1, 2));
    const c = await openWs(fuzz, conn, await hsToken({ sub }, { exp }));
    if (!c) continue;
    const ctx: GenContext = { rng, refPrefix: `e.${n}`, positions: fuzz.positions, authTokens: [], n: 0 };
    c.text('expiring', toJson({ type: 'subscribe', id: 'x', table: 'feed', ref: `${ctx.refPrefix}-s` }));
    c.text('expiring', toJson({ type: 'join', channel: 'fz:1', ref: `${ctx.refPrefix}-j` }));
    c.text('expiring', toJson({ type: 'presence', channel: 'fz:1', state: { status: 'expiring' }, ref: `${ctx.refPrefix}-p` }));
    while (c.isOpen() && Date.now() < exp * 1000 - 200) {
      c.text('expiring', toJson(rng.chance(0.5) ? { type: 'ping', ref: `${ctx.refPrefix}-${++ctx.n}` } : validMessage(ctx)));
      await sleep(rng.int(20, 200));
    }
    const inTime = await conn.until(() => false, Math.max(0, exp * 1000 - Date.now()) + 5_000);
    if (!inTime) {
      conn.problem('a connection outlived its token', `exp ${new Date(exp * 1000).toISOString()}, now ${new Date().toISOString()}`);
      c.clientClose(() => c.ws.terminate());
    }
    await c.closed;
    fuzz.log.expiries.add(conn.closeSeen ?? 'none');
  }
}
