// `walcast status`: the operator's view. From the database: the slot (active, confirmed
// position, lag, wal_status and safe_wal_size), the publication's tables and the settings that
// bound WAL retention. From a running daemon, when one answers (GET /status): its clients,
// subscriptions, channels and resume window. A table for people, --json for scripts.
import type { Command } from 'commander';
import { resolveDb } from '../config.js';
import { DEFAULTS, PUBLICATION } from '../constants.js';
import { connect } from '../pg/connect.js';

interface SlotRow {
  slot_name: string;
  active: boolean;
  active_pid: number | null;
  confirmed_flush_lsn: string | null;
  wal_status: string | null;
  safe_wal_size: string | null;
  lag_bytes: string | null;
}

export interface Status {
  slot: { name: string; exists: boolean; active?: boolean; pid?: number | null; confirmedFlush?: string | null; lagBytes?: number | null; walStatus?: string | null; safeWalSize?: number | null };
  settings: { walLevel: string; maxSlotWalKeepSize: string };
  publication: { name: string; tables: string[] };
  daemon: { url: string; reachable: boolean; error?: string; status?: Record<string, unknown> };
}

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description('the slot, its lag and WAL retention, the published tables, and a running daemon')
    .option('--db <url>', 'Postgres URL (env DATABASE_URL, WALCAST_DB)')
    .option('--slot <name>', 'replication slot (env WALCAST_SLOT; default walcast)')
    .option('--daemon <url>', `a daemon's HTTP address (default http://${DEFAULTS.host}:${DEFAULTS.port})`)
    .option('--json', 'one JSON object instead of a table')
    .action(async (o: { db?: string; slot?: string; daemon?: string; json?: boolean }) => {
      const status = await readStatus(resolveDb(o.db), o.slot ?? process.env.WALCAST_SLOT ?? DEFAULTS.slot, o.daemon ?? `http://${DEFAULTS.host}:${DEFAULTS.port}`);
      process.stdout.write(o.json ? JSON.stringify(status) + '\n' : formatStatus(status));
    });
}

export async function readStatus(url: string, slot: string, daemonUrl: string): Promise<Status> {
  const db = await connect(url);
  let slotRow: SlotRow | undefined;
  let settings: { wal_level: string; keep: string };
  let tables: string[];
  try {
    ({ rows: [slotRow] } = await db.query<SlotRow>(
      `select slot_name, active, active_pid, confirmed_flush_lsn::text, wal_status, safe_wal_size::text,
              pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint::text as lag_bytes
         from pg_replication_slots where slot_name = $1`,
      [slot],
    ));
    ({ rows: [settings] } = await db.query<{ wal_level: string; keep: string }>("select current_setting('wal_level') as wal_level, current_setting('max_slot_wal_keep_size') as keep"));
    const pub = await db.query<{ t: string }>('select schemaname || \'.\' || tablename as t from pg_publication_tables where pubname = $1 order by 1', [PUBLICATION]);
    tables = pub.rows.map((r) => r.t);
  } finally {
    await db.end().catch(() => {});
  }
  const num = (v: string | null | undefined) => (v === null || v === undefined ? null : Number(v));
  return {
    slot: slotRow
      ? { name: slot, exists: true, active: slotRow.active, pid: slotRow.active_pid, confirmedFlush: slotRow.confirmed_flush_lsn, lagBytes: num(slotRow.lag_bytes), walStatus: slotRow.wal_status, safeWalSize: num(slotRow.safe_wal_size) }
      : { name: slot, exists: false },
    settings: { walLevel: settings.wal_level, maxSlotWalKeepSize: settings.keep },
    publication: { name: PUBLICATION, tables },
    daemon: await readDaemon(daemonUrl),
  };
}

async function readDaemon(base: string): Promise<Status['daemon']> {
  const url = base.replace(/\/+$/, '');
  try {
    const res = await fetch(`${url}/status`, { signal: AbortSignal.timeout(2_000) });
    if (!res.ok) return { url, reachable: false, error: `HTTP ${res.status}` };
    return { url, reachable: true, status: (await res.json()) as Record<string, unknown> };
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code;
    return { url, reachable: false, error: cause ?? (err as Error).message };
  }
}

function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return 'unknown';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

export function formatStatus(s: Status): string {
  const rows: [string, string][] = [];
  const sl = s.slot;
  if (!sl.exists) rows.push(['slot', `${sl.name}: not created (walcast serve creates it)`]);
  else {
    rows.push(['slot', `${sl.name} (${sl.active ? `active, pid ${sl.pid}` : 'inactive: no daemon is reading it'})`]);
    rows.push(['confirmed', sl.confirmedFlush ?? 'none']);
    rows.push(['lag', bytes(sl.lagBytes)]);
    rows.push(['wal_status', `${sl.walStatus ?? 'unknown'} (safe_wal_size ${sl.safeWalSize === null ? 'unlimited' : bytes(sl.safeWalSize)}; max_slot_wal_keep_size ${s.settings.maxSlotWalKeepSize})`]);
  }
  rows.push(['wal_level', s.settings.walLevel]);
  rows.push(['publication', `${s.publication.name}: ${s.publication.tables.join(', ') || 'no tables (select walcast.enable(...))'}`]);
  const d = s.daemon;
  if (!d.reachable) rows.push(['daemon', `${d.url}: not reachable (${d.error})`]);
  else {
    const st = d.status as { replication?: string; clients?: number; subscriptions?: number; channels?: number; window?: { floor: string; head: string; transactions: number; bytes: number; ageSeconds: number; walHeld?: number; walBound?: number } };
    rows.push(['daemon', `${d.url}: ${st.replication ?? '?'}, ${st.clients ?? 0} clients, ${st.subscriptions ?? 0} subscriptions, ${st.channels ?? 0} channels`]);
    const w = st.window;
    if (w) rows.push(['window', `${w.floor} .. ${w.head}: ${w.transactions} transactions, ${bytes(w.bytes)}, ${Math.round(w.ageSeconds)} s`]);
    if (w?.walBound !== undefined) rows.push(['window WAL held', `${bytes(w.walHeld ?? 0)} of at most ${bytes(w.walBound)}`]);
  }
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n') + '\n';
}
