// The set-up bench/churn.ts and bench/soak.ts share, and its tear-down: a throwaway Postgres with
// walcast migrated, the room table (bench/lib/room-writer.ts) and, with auth, room membership
// and its policy; the client processes (bench/lib/churn-pool.ts), the probed daemon, the
// identities initialised, and a RoomWriter (not started). Whatever the run does, all of it is
// stopped afterwards, in order: writer, client processes, daemon and its slot, Postgres.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { startThrowawayPostgres, type ThrowawayPostgres } from '../../src/pg/throwaway.js';
import { migrate } from '../../src/sql/migrate.js';
import { ChurnPool } from './churn-pool.js';
import { dropSlot, log } from './common.js';
import { startProbedDaemon, type ProbedDaemon } from './daemon-probe.js';
import { machine, type Machine } from './report.js';
import { createRoomTable, RoomWriter } from './room-writer.js';

const RELATION = 'public.room_members {user_id} room:{room_id}';

export interface ChurnRigOptions {
  clients: number;
  rooms: number;
  /** Unqualified; the table is public.<table>. */
  table: string;
  slot: string;
  /** Writer connections. */
  writers: number;
  /** Writer rate, transactions/s. */
  rate: number;
  clientProcs: number;
  unfilteredPct: number;
  auth: boolean;
  historyAge: string;
  /** The daemon's SIGUSR2 full-GC hook (startProbedDaemon's gc). */
  gc: boolean;
  profileDir: string | null;
  daemonArgs: string[];
}

export interface ChurnRig {
  db: pg.Client;
  pool: ChurnPool;
  daemon: ProbedDaemon;
  writer: RoomWriter;
  serverVersion: string;
  /** machine() taken before the daemon started. */
  machine: Machine;
  /** Identities subscribed without a filter. */
  unfiltered: number;
}

/** Sets everything up, runs `body` on it, and stops it all whether `body` resolved or threw. */
export async function withChurnRig(o: ChurnRigOptions, body: (rig: ChurnRig) => Promise<void>): Promise<void> {
  const qtable = `public.${o.table}`;
  log('starting a throwaway Postgres');
  const pgServer: ThrowawayPostgres = await startThrowawayPostgres({});
  const url = pgServer.url;
  const db = new pg.Client({ connectionString: url });
  const writers = Array.from({ length: o.writers }, () => new pg.Client({ connectionString: url }));
  const pool = ChurnPool.start(o.clientProcs);
  let daemon: ProbedDaemon | null = null;
  let writer: RoomWriter | null = null;
  try {
    await migrate(url);
    await db.connect();
    for (const c of writers) await c.connect();
    await createRoomTable(db, o.table);
    const secret = o.auth ? randomBytes(48).toString('base64url') : null;
    if (o.auth) {
      // User u<n> is a member of room n % rooms: the room of its filter (bench/lib/churn-clients.ts).
      await db.query(`create table room_members (user_id text not null, room_id int not null, primary key (user_id, room_id))`);
      await db.query(`select walcast.enable('public.room_members')`);
      await db.query(`insert into room_members select 'u' || n, n % $2 from generate_series(0, $1 - 1) n`, [o.clients, o.rooms]);
      await db.query(`insert into walcast.casbin_rule (ptype, v0, v1, v2, v3, v4) values ('p', '*', 'table', $1, 'read', 'g2(r.sub.id, "room:" + r.obj.row.room)')`, [qtable]);
    }
    const { rows: ver } = await db.query<{ v: string }>(`select current_setting('server_version') as v`);
    const mach = machine(ver[0].v);

    log(`starting the daemon (${o.auth ? '--jwt-secret, --relation' : '--no-auth'}, --history-age ${o.historyAge})`);
    daemon = await startProbedDaemon({
      gc: o.gc,
      profileDir: o.profileDir,
      serveArgs: ['--db', url, '--port', '0', '--slot', o.slot, '--log-level', 'warn', '--history-age', o.historyAge, ...(o.auth ? ['--relation', RELATION] : ['--no-auth']), ...o.daemonArgs],
      env: secret ? { WALCAST_JWT_SECRET: secret } : {},
    });
    const init = await pool.init(o.clients, { host: '127.0.0.1', port: daemon.port, rooms: o.rooms, table: qtable, unfilteredPct: o.unfilteredPct, secret: secret ?? undefined });
    writer = new RoomWriter(writers, o.table, o.rooms, o.rate);
    await body({ db, pool, daemon, writer, serverVersion: ver[0].v, machine: mach, unfiltered: init.unfiltered });
  } finally {
    await writer?.stop().catch(() => {});
    await pool.stop().catch(() => {});
    if (daemon) {
      await daemon.stop().catch(() => {});
      await dropSlot(db, o.slot).catch(() => {});
    }
    for (const c of writers) await c.end().catch(() => {});
    await db.end().catch(() => {});
    await pgServer.destroy();
  }
}
