// What the two slot floods of item 5 share (bench/lib/abuse-slot-messages.ts, abuse-slot-bigtx.ts):
// one transaction committed by `role`, then a wait until the daemon is past it (the good client
// receives a row written after the commit: it has decoded everything before), dies, or the
// wait (--slot-wait, 600 s) runs out. Whether it comes back after dying (or loops) is
// bench/abuse.ts's recovery, reported with the scenario.
import pg from 'pg';
import type { AbuseContext } from './abuse-types.js';
import { log } from './common.js';
import { nowMs } from './rpc.js';
import { round } from './stats.js';

export interface SlotFlood {
  /** How long the transaction took its role (statement + commit), s. */
  commitSeconds: number;
  /** WAL written by it, MiB. */
  walMiB: number;
  /** "passed after 12.3 s", "died (SIGABRT) after 40.1 s", "stuck (600 s)". */
  outcome: string;
  passed: boolean;
  /** From the commit until the outcome, s. */
  seconds: number;
}

export async function slotFlood(ctx: AbuseContext, url: string, sql: string, values: unknown[]): Promise<SlotFlood> {
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => {}); // the query's own rejection tells
  await c.connect();
  const lsn0 = (await ctx.rig.db.query<{ l: string }>('select pg_current_wal_lsn()::text as l')).rows[0].l;
  const t0 = nowMs();
  try {
    await c.query(sql, values);
  } finally {
    await c.end().catch(() => {});
  }
  const committed = nowMs();
  const wal = await ctx.rig.db.query<{ b: string }>('select pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::text as b', [lsn0]);
  const commitSeconds = round((committed - t0) / 1000, 1);
  const walMiB = round(Number(wal.rows[0].b) / 1048576, 1);
  log(`  committed in ${commitSeconds} s (${walMiB} MiB of WAL); waiting for the daemon to get past it`);
  const waitMs = (ctx.options.slotWait ?? 600) * 1000;
  const died = ctx.rig.exited.then(() => `died (${ctx.rig.death?.exit})`);
  const passed = ctx.monitor.call<boolean>('live', { after: committed, timeoutMs: waitMs }, waitMs + 10_000).then(
    (ok) => (ok ? 'passed' : `stuck (${waitMs / 1000} s)`),
    (err: Error) => `unknown (${err.message})`,
  );
  const what = ctx.dead() ? `died (${ctx.rig.death?.exit})` : await Promise.race([died, passed]);
  const seconds = round((nowMs() - committed) / 1000, 1);
  return { commitSeconds, walMiB, outcome: `${what} after ${seconds} s`, passed: what === 'passed', seconds };
}
