// Item 5, crash loop from the slot (a legitimate big transaction): one `insert … select` of
// 11M rows into public.messages (room 3) by the owner. A subscriber of that table (carol, a
// member of room 3, filter room_id=eq.3, reading everything) shows what reached the table's
// subscribers: changes, resync (and its reason), errors, a close. The good client (room 1)
// shows how long everyone else waited. 11M rows take minutes on 2 cores (the insert, then
// decoding and spilling by the walsender): the default is 2M × --scale, --bigtx-rows sets it.
import type { AbuseContext, AttackResult, Scenario } from './abuse-types.js';
import { AttackConn, fmtCounts } from './abuse-ws.js';
import { sleep } from './common.js';
import { slotFlood } from './abuse-slot.js';
import { fmtInt } from './stats.js';

export const slotBigtx: Scenario = {
  name: 'slot-bigtx',
  item: 5,
  title: 'one insert … select of millions of rows into an enabled table',

  async run(ctx: AbuseContext): Promise<AttackResult> {
    const rows = ctx.options.bigtxRows ?? ctx.n(2_000_000);
    const resyncs: string[] = [];
    let subscribed = false;
    const sub = new AttackConn(ctx.rig.port, ctx.rig.tokens.carol, {
      frame: (_c, type, buf, start, end) => {
        if (type === 'subscribed') subscribed = true;
        else if (type === 'resync') resyncs.push(buf.toString('utf8', start, end));
      },
    });
    await sub.welcome.catch(() => {});
    sub.send({ type: 'subscribe', id: 'bulk', table: 'public.messages', filter: 'room_id=eq.3', ref: 's' });
    for (let k = 0; k < 100 && !subscribed && !sub.closed; k++) await sleep(50);
    const f = await slotFlood(ctx, ctx.rig.url, `insert into public.messages (room_id, author, body) select 3, 'bulk', 'bulk row ' || g from generate_series(1, $1::int) g`, [rows]);
    // The subscriber's last frames (or its close) before counting.
    let last = -1;
    while (f.passed && sub.frames !== last && !sub.closed) {
      last = sub.frames;
      await sleep(1_000);
    }
    const received = { subscribed, changes: sub.types.change ?? 0, bytes: sub.bytes, resyncs, errors: sub.errors, closed: sub.closed };
    sub.destroy();
    return {
      params: { rows, table: 'public.messages', subscriber: 'carol, room_id=eq.3' },
      figures: { ...f, subscriber: received },
      summary:
        `${fmtInt(rows)} rows in one insert … select (${f.commitSeconds} s, ${f.walMiB} MiB WAL): ${f.outcome}; ` +
        `its subscriber got ${fmtInt(received.changes)} changes, ${resyncs.length} resync${resyncs.length ? ` (${resyncs[0]})` : ''}, errors ${fmtCounts(sub.errors)}${sub.closed ? `, closed ${sub.closed}` : ''}`,
    };
  },
};
