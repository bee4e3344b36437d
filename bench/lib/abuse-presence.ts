// Item 8, presence amplification: 200 connections of one user (mallory) join room:2 and each
// tracks a 32 KiB state (just under the per-message cap), opened 20 at a time. Once what they
// receive has been quiet for a second (or 60 s passed), a later joiner (bob, another member of
// room 2) joins: the size of the presence_state it receives, how many metas it lists, and
// whether it is closed within 5 s. Then every connection is dropped.
import { sleep } from './common.js';
import { addCounts, AttackConn, fmtCounts, tally } from './abuse-ws.js';
import type { AbuseContext, AttackResult, Scenario } from './abuse-types.js';
import { nowMs } from './rpc.js';
import { fmtInt, round } from './stats.js';

const CHANNEL = 'room:2';
const STATE_BYTES = 32 * 1024;

export const presence: Scenario = {
  name: 'presence',
  item: 8,
  title: 'one user, many connections with 32 KiB presence states, then a later joiner',

  async run(ctx: AbuseContext): Promise<AttackResult> {
    const count = ctx.n(200, 2);
    const deadline = nowMs() + ctx.floodMs(60);
    const t0 = nowMs();
    let tracked = 0;
    const pad = 'x'.repeat(STATE_BYTES - 40);
    // 20 handshakes at a time; the time bound counts the opening too (a starved daemon welcomes
    // slowly), and no connection is started after it.
    const made: AttackConn[] = [];
    let next = 0;
    const lane = async (): Promise<void> => {
      while (next < count && nowMs() < deadline && !ctx.dead()) {
        const i = next++;
        const c = new AttackConn(
          ctx.rig.port,
          ctx.rig.tokens.mallory,
          {
            frame: (conn, type) => {
              if (type === 'joined') {
                conn.send({ type: 'presence', channel: CHANNEL, state: { i, pad } });
                tracked++;
              }
            },
          },
          i,
        );
        made.push(c);
        try {
          await Promise.race([c.welcome.then(() => c.send({ type: 'join', channel: CHANNEL, ref: i })), sleep(Math.max(0, deadline - nowMs()))]);
        } catch {
          // refused: counted by its close
        }
      }
    };
    await Promise.all(Array.from({ length: 20 }, lane));
    const live = made;
    const received = (): number => live.reduce((a, c) => a + c.bytes, 0);
    // Quiet: nothing more arrived at the attackers for a second.
    let last = -1;
    while (nowMs() < deadline && !ctx.dead()) {
      const b = received();
      if (b === last) break;
      last = b;
      await sleep(1_000);
    }
    const attackSeconds = round((nowMs() - t0) / 1000, 1);

    // The later joiner.
    const j = { stateBytes: 0, metas: 0, users: 0, ms: Number.NaN, closed: null as string | null, error: '' };
    if (!ctx.dead()) {
      let got: () => void = () => {};
      const gotState = new Promise<void>((r) => (got = r));
      let sentAt = 0;
      const joiner = new AttackConn(ctx.rig.port, ctx.rig.tokens.bob, {
        frame: (_c, type, buf, start, end) => {
          if (type !== 'presence_state') return;
          j.ms = round(nowMs() - sentAt, 1);
          j.stateBytes = end - start;
          try {
            const m = JSON.parse(buf.toString('utf8', start, end)) as { state: Record<string, unknown[]> };
            j.users = Object.keys(m.state).length;
            for (const metas of Object.values(m.state)) j.metas += metas.length;
          } catch (err) {
            j.error = (err as Error).message;
          }
          got();
        },
        close: () => got(),
      });
      try {
        await joiner.welcome;
        sentAt = nowMs();
        joiner.send({ type: 'join', channel: CHANNEL, ref: 'late' });
        await Promise.race([gotState, sleep(15_000)]);
        // Closed for it (4008 over the backpressure limit)? Give the close a few seconds to come.
        for (let k = 0; k < 50 && !joiner.closed; k++) await sleep(100);
        j.closed = joiner.closed;
        if (Object.keys(joiner.errors).length) j.error = fmtCounts(joiner.errors);
      } catch (err) {
        j.closed = (err as Error).message;
      }
      joiner.destroy();
    }

    const errors: Record<string, number> = {};
    for (const c of live) addCounts(errors, c.errors);
    const closes = tally(live.map((c) => c.closed));
    const bytes = received();
    for (const c of live) c.destroy();
    return {
      params: { connections: count, user: 'mallory', channel: CHANNEL, stateBytes: STATE_BYTES },
      figures: { connected: live.filter((c) => c.closed === null || c.frames > 0).length, tracked, errors, attackerBytesReceived: bytes, closes, attackSeconds, joiner: j },
      summary:
        `${live.filter((c) => c.closed === null || c.frames > 0).length}/${count} conns tracked ${fmtInt(tracked)} × 32 KiB (errors ${fmtCounts(errors)}; ${fmtInt(bytes / 1048576)} MiB of presence pushed to them, closes ${fmtCounts(closes)}); ` +
        `later joiner: presence_state ${round(j.stateBytes / 1048576, 2)} MiB, ${fmtInt(j.metas)} metas of ${j.users} users in ${j.ms} ms, ${j.closed ? `CLOSED (${j.closed})` : 'not closed'}`,
    };
  },
};
