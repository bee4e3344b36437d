// Item 5, crash loop from the slot (messages): the LOGIN-only role `intruder` (no grant on
// anything) commits one transaction of 15M empty transactional logical messages of another
// prefix than walcast's: `select count(pg_logical_emit_message(true, 'anything', ''))
// from generate_series(1, N)`. The daemon must drop them as they are decoded.
import type { AbuseContext, AttackResult, Scenario } from './abuse-types.js';
import { slotFlood } from './abuse-slot.js';
import { fmtInt } from './stats.js';

export const slotMessages: Scenario = {
  name: 'slot-messages',
  item: 5,
  title: 'a LOGIN-only role commits one transaction of millions of foreign logical messages',

  async run(ctx: AbuseContext): Promise<AttackResult> {
    const n = ctx.options.messages ?? ctx.n(15_000_000);
    const f = await slotFlood(ctx, ctx.rig.pgServer.urlFor({ user: 'intruder' }), `select count(pg_logical_emit_message(true, 'anything', ''::text)) from generate_series(1, $1::int)`, [n]);
    return {
      params: { messages: n, role: 'intruder (LOGIN only)', prefix: 'anything' },
      figures: { ...f },
      summary: `${fmtInt(n)} empty messages in one transaction (${f.commitSeconds} s for the role, ${f.walMiB} MiB WAL): ${f.outcome}`,
    };
  },
};
