// `walcast status`: every logical slot of the database, not only walcast's. A slot that nothing
// reads keeps its WAL on disk, growing until it is read or dropped, whoever created it: the
// classic forgotten slot that fills the disk.
import type pg from 'pg';
import { PUBLICATION } from '../constants.js';

/**
 * How a slot is known to stream the walcast publication, or not. A pgoutput slot does not record
 * its publication: only its reader names it, at each START_REPLICATION.
 * - plugin: not pgoutput, so not walcast's;
 * - walsender: its reader's START_REPLICATION, read from pg_stat_activity (hidden from roles
 *   without pg_read_all_stats that are not the reader's);
 * - daemon: the running daemon's /status names it;
 * - config: named as the daemon's slot here (WALCAST_SLOT, default walcast).
 */
export type WalcastEvidence = 'plugin' | 'walsender' | 'daemon' | 'config';

export interface SlotInfo {
  name: string;
  /** Set only for a slot of another database (shown because --slot or WALCAST_SLOT named it). */
  database?: string;
  plugin: string;
  temporary: boolean;
  active: boolean;
  pid: number | null;
  restartLsn: string | null;
  confirmedFlush: string | null;
  /** Current WAL position minus restart_lsn: the WAL this slot keeps on disk (null once lost). */
  retainedBytes: number | null;
  /** Current WAL position minus confirmed_flush_lsn: what its reader has not confirmed yet. */
  lagBytes: number | null;
  walStatus: string | null;
  safeWalSize: number | null;
  /** Streams the walcast publication: true, false, or null when that cannot be known. */
  walcast: boolean | null;
  walcastFrom: WalcastEvidence | null;
  /** Inactive and retaining any WAL at all: nothing will free it until the slot is read or dropped. */
  inactiveHoldingWal: boolean;
}

/** Replication slots outside the current database's logical ones: they hold WAL on the same disk. */
export interface OtherSlots {
  /** Logical slots of other databases. */
  otherDatabases: number;
  physical: number;
  inactiveHoldingWal: number;
  /** The most WAL one of them retains (WAL is shared: the largest is what is kept). */
  maxRetainedBytes: number | null;
}

export interface SlotsRead {
  /** Every logical slot of this database (only the one of --slot when given), by name. */
  slots: SlotInfo[];
  /** The slot shown in detail, wherever it is; undefined: there is none of that name. */
  detail: SlotInfo | undefined;
  /** Null when --slot narrowed the view. */
  others: OtherSlots | null;
}

interface SlotRow {
  slot_name: string;
  database: string | null;
  in_current: boolean;
  plugin: string;
  temporary: boolean;
  active: boolean;
  active_pid: number | null;
  restart_lsn: string | null;
  confirmed_flush_lsn: string | null;
  retained_bytes: string | null;
  lag_bytes: string | null;
  wal_status: string | null;
  safe_wal_size: string | null;
  /** The walsender's last command (START_REPLICATION ...), or null. */
  command: string | null;
}

interface OthersRow {
  other_databases: string;
  physical: string;
  inactive_holding_wal: string;
  max_retained: string | null;
}

export async function readSlots(db: pg.Client, o: { detail: string; only: string | null; walcastSlot: string; daemonSlot: string | null }): Promise<SlotsRead> {
  const { rows } = await db.query<SlotRow>(
    `select s.slot_name, s.database, s.database = current_database() as in_current, s.plugin, s.temporary, s.active, s.active_pid,
            s.restart_lsn::text, s.confirmed_flush_lsn::text,
            pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::bigint::text as retained_bytes,
            pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::bigint::text as lag_bytes,
            s.wal_status, s.safe_wal_size::text,
            case when a.backend_type = 'walsender' then a.query end as command
       from pg_replication_slots s
       left join pg_stat_activity a on a.pid = s.active_pid
      where s.slot_type = 'logical' and (s.database = current_database() or s.slot_name = $1)
      order by s.slot_name`,
    [o.detail],
  );
  const infos = rows.map((r) => toInfo(r, o));
  const slots = infos.filter((s, i) => rows[i].in_current && (o.only === null || s.name === o.only));
  const detail = infos.find((s) => s.name === o.detail);
  if (o.only !== null) return { slots, detail, others: null };
  const {
    rows: [other],
  } = await db.query<OthersRow>(
    `select count(*) filter (where slot_type = 'logical')::text as other_databases,
            count(*) filter (where slot_type = 'physical')::text as physical,
            count(*) filter (where not active and pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) > 0)::text as inactive_holding_wal,
            max(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn))::bigint::text as max_retained
       from pg_replication_slots
      where database is distinct from current_database()`,
  );
  return {
    slots,
    detail,
    others: { otherDatabases: Number(other.other_databases), physical: Number(other.physical), inactiveHoldingWal: Number(other.inactive_holding_wal), maxRetainedBytes: num(other.max_retained) },
  };
}

function toInfo(r: SlotRow, o: { walcastSlot: string; daemonSlot: string | null }): SlotInfo {
  const retainedBytes = num(r.retained_bytes);
  const { walcast, from } = walcastEvidence({ name: r.slot_name, plugin: r.plugin, command: r.command }, o);
  return {
    name: r.slot_name,
    ...(r.in_current ? {} : { database: r.database ?? undefined }),
    plugin: r.plugin,
    temporary: r.temporary,
    active: r.active,
    pid: r.active_pid,
    restartLsn: r.restart_lsn,
    confirmedFlush: r.confirmed_flush_lsn,
    retainedBytes,
    lagBytes: num(r.lag_bytes),
    walStatus: r.wal_status,
    safeWalSize: num(r.safe_wal_size),
    walcast,
    walcastFrom: from,
    inactiveHoldingWal: !r.active && retainedBytes !== null && retainedBytes > 0,
  };
}

/** Whether a slot streams the walcast publication, from the surest evidence there is. */
export function walcastEvidence(
  slot: { name: string; plugin: string; command: string | null },
  known: { walcastSlot: string; daemonSlot: string | null },
): { walcast: boolean | null; from: WalcastEvidence | null } {
  if (slot.plugin !== 'pgoutput') return { walcast: false, from: 'plugin' };
  const pubs = publicationsOf(slot.command);
  if (pubs) return { walcast: pubs.includes(PUBLICATION), from: 'walsender' };
  if (slot.name === known.daemonSlot) return { walcast: true, from: 'daemon' };
  if (slot.name === known.walcastSlot) return { walcast: true, from: 'config' };
  return { walcast: null, from: null };
}

/**
 * The publications a START_REPLICATION command names (`publication_names '"a",b'`), or null when
 * there is no such command to read (inactive, not a walsender, or `<insufficient privilege>`).
 */
export function publicationsOf(command: string | null): string[] | null {
  if (!command) return null;
  const m = /^\s*START_REPLICATION\b[\s\S]*?\bpublication_names\s+'((?:[^']|'')*)'/i.exec(command);
  if (!m) return null;
  const list = m[1].replace(/''/g, "'");
  // Identifiers as Postgres splits them: "quoted" as written ("" for "), bare ones lower-cased.
  return [...list.matchAll(/"((?:[^"]|"")*)"|[^,\s"]+/g)].map((t) => (t[1] !== undefined ? t[1].replace(/""/g, '"') : t[0].toLowerCase()));
}

function num(v: string | null | undefined): number | null {
  return v === null || v === undefined ? null : Number(v);
}
