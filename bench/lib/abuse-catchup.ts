// Item 6, catch-up starves everyone: one user (mallory, a member of room 2) opens 60 connections
// × 100 subscriptions to public.messages room_id=eq.2, each resuming with `since` = the floor of
// a resume window of 50k single-row transactions of room 2 (written before the baseline, floor
// from GET /status). The flood lasts until every subscription was answered (subscribed, resync or
// error) or 20 s, whichever comes first; then every connection is dropped.
import { log, sleep } from './common.js';
import { addCounts, AttackConn, fmtCounts } from './abuse-ws.js';
import type { AbuseContext, AttackResult, Scenario } from './abuse-types.js';
import { nowMs } from './rpc.js';
import { fmtInt, round } from './stats.js';

const SUBS_PER_CONN = 100;
let floor = '';
let windowTx = 0;

export const catchup: Scenario = {
  name: 'catchup',
  item: 6,
  title: 'one user, many connections × 100 subscriptions resuming from the window floor',

  async prepare(ctx: AbuseContext): Promise<void> {
    const n = ctx.n(50_000, 100);
    const before = (await ctx.rig.window()).transactions;
    log(`catchup: writing a window of ${fmtInt(n)} single-row transactions (room 2)`);
    await ctx.rig.db.query(
      `do $$ begin for i in 1..${n} loop insert into public.messages (room_id, author, body) values (2, 'mallory', 'window ' || i); commit; end loop; end $$`,
    );
    const deadline = nowMs() + 120_000;
    let w = await ctx.rig.window();
    while (w.transactions < before + n && nowMs() < deadline) {
      await sleep(200);
      w = await ctx.rig.window();
    }
    floor = w.floor;
    windowTx = w.transactions;
    log(`catchup: window ${fmtInt(windowTx)} transactions, floor ${floor}`);
  },

  async run(ctx: AbuseContext): Promise<AttackResult> {
    const conns = ctx.n(60);
    const limitMs = ctx.floodMs(20);
    const t0 = nowMs();
    let answered = 0;
    const total = conns * SUBS_PER_CONN;
    let allAnswered: () => void = () => {};
    const done = new Promise<void>((r) => (allAnswered = r));
    const answer = (): void => {
      if (++answered >= total) allAnswered();
    };
    // All at once, and the time bound counts from here: a starved daemon may take longer than
    // the flood to welcome them (or close them with 4001 first).
    const all: AttackConn[] = [];
    let welcomed = 0;
    for (let i = 0; i < conns; i++) {
      const c: AttackConn = new AttackConn(
        ctx.rig.port,
        ctx.rig.tokens.mallory,
        {
          frame: (_c, type) => {
            if (type === 'subscribed' || type === 'resync') answer();
          },
          error: () => answer(),
        },
        i,
      );
      void c.welcome.then(
        () => {
          welcomed++;
          for (let k = 0; k < SUBS_PER_CONN; k++) c.send({ type: 'subscribe', id: k, table: 'public.messages', filter: 'room_id=eq.2', since: floor, ref: k });
        },
        () => {}, // refused: counted below
      );
      all.push(c);
    }
    await Promise.race([done, sleep(limitMs)]);
    const live = all;
    const ms = nowMs() - t0;
    const types: Record<string, number> = {};
    const errors: Record<string, number> = {};
    let bytes = 0;
    for (const c of live) {
      addCounts(types, c.types);
      addCounts(errors, c.errors);
      bytes += c.bytes;
    }
    const closes: Record<string, number> = {};
    for (const c of live) if (c.closed) closes[c.closed] = (closes[c.closed] ?? 0) + 1;
    for (const c of live) c.destroy();
    const changes = types.change ?? 0;
    return {
      params: { connections: conns, subscriptionsPerConnection: SUBS_PER_CONN, windowTransactions: windowTx, since: floor, limitSeconds: limitMs / 1000 },
      figures: {
        connected: welcomed,
        refusedConnections: all.filter((c) => c.closed !== null && c.frames === 0).length,
        answered,
        subscribed: types.subscribed ?? 0,
        resyncs: types.resync ?? 0,
        errors,
        changes,
        bytes,
        seconds: round(ms / 1000, 1),
        changesPerSec: round(changes / (ms / 1000)),
        closes,
      },
      summary:
        `${welcomed}/${conns} conns welcomed × ${SUBS_PER_CONN} subs since the floor of ${fmtInt(windowTx)} tx: ${fmtInt(answered)}/${fmtInt(total)} answered ` +
        `(${fmtInt(types.subscribed ?? 0)} subscribed, ${fmtInt(types.resync ?? 0)} resync, errors ${fmtCounts(errors)}) in ${round(ms / 1000, 1)} s, ` +
        `${fmtInt(changes)} catch-up changes (${fmtInt(bytes / 1048576)} MiB); closes ${fmtCounts(closes)}`,
    };
  },
};
