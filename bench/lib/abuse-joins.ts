// Item 7, unbounded caches: 200k joins of distinct 255-character channel names, all refused
// ("room:" + a counter + filler: the room:* rules match, and mallory is a member of none of
// them), over 4 connections of mallory, each keeping at most 64 joins unanswered (so nothing
// piles up in socket buffers). A connection the daemon closes is replaced. Bounded by the count
// and by 180 s.
import { randomBytes } from 'node:crypto';
import { sleep } from './common.js';
import { addCounts, AttackConn, fmtCounts } from './abuse-ws.js';
import type { AbuseContext, AttackResult, Scenario } from './abuse-types.js';
import { nowMs } from './rpc.js';
import { fmtInt, round } from './stats.js';

const LANES = 4;
const WINDOW = 64;
const NAME_LENGTH = 255;

export const joins: Scenario = {
  name: 'joins',
  item: 7,
  title: 'refused joins of distinct 255-character channel names',

  async run(ctx: AbuseContext): Promise<AttackResult> {
    const total = ctx.n(200_000);
    const deadline = nowMs() + ctx.floodMs(180);
    const filler = randomBytes(NAME_LENGTH).toString('hex');
    const name = (i: number): string => {
      const head = `room:${i.toString(36)}-`;
      return head + filler.slice(0, NAME_LENGTH - head.length);
    };
    let sent = 0;
    let answered = 0;
    const replies: Record<string, number> = {};
    const errors: Record<string, number> = {};
    const closes: Record<string, number> = {};
    let reconnects = 0;
    let connectFailures = 0;
    const t0 = nowMs();

    const lane = async (k: number): Promise<void> => {
      let failures = 0;
      while (sent < total && nowMs() < deadline && !ctx.dead()) {
        let outstanding = 0;
        let wake: () => void = () => {};
        const pump = (c: AttackConn): void => {
          while (outstanding < WINDOW && sent < total && nowMs() < deadline && !c.closed) {
            const i = sent++;
            outstanding++;
            c.send(`{"type":"join","channel":"${name(i)}","ref":${i}}`);
          }
          if (outstanding === 0) wake();
        };
        const c = new AttackConn(
          ctx.rig.port,
          ctx.rig.tokens.mallory,
          {
            frame: (conn, type) => {
              if (type === 'presence_state') return; // follows a `joined`
              replies[type] = (replies[type] ?? 0) + 1;
              if (type === 'error' || type === 'joined') {
                outstanding--;
                answered++;
                pump(conn);
              }
            },
            close: () => wake(),
          },
          k,
        );
        try {
          await c.welcome;
        } catch (err) {
          connectFailures++;
          if (++failures > 20) return;
          closes[(err as Error).message] = (closes[(err as Error).message] ?? 0) + 1;
          await sleep(200);
          continue;
        }
        await new Promise<void>((resolve) => {
          // The time bound holds also when answers stop coming.
          const t = setInterval(() => {
            if (nowMs() >= deadline || ctx.dead()) finish();
          }, 200);
          const finish = (): void => {
            clearInterval(t);
            resolve();
          };
          wake = finish;
          pump(c);
        });
        addCounts(errors, c.errors);
        if (c.closed) {
          closes[c.closed] = (closes[c.closed] ?? 0) + 1;
          reconnects++;
        }
        c.destroy();
      }
    };
    await Promise.all(Array.from({ length: LANES }, (_, k) => lane(k)));
    const ms = nowMs() - t0;
    return {
      params: { joins: total, connections: LANES, window: WINDOW, nameLength: NAME_LENGTH, limitSeconds: round((deadline - t0) / 1000) },
      figures: { sent, answered, replies, errors, reconnects, connectFailures, closes, seconds: round(ms / 1000, 1), joinsPerSec: round(answered / (ms / 1000)) },
      summary:
        `${fmtInt(sent)}/${fmtInt(total)} joins sent, ${fmtInt(answered)} answered in ${round(ms / 1000, 1)} s (${fmtInt(answered / (ms / 1000))}/s): ` +
        `errors ${fmtCounts(errors)}, joined ${fmtInt(replies.joined ?? 0)}; closes ${fmtCounts(closes)}`,
    };
  },
};
