// `walcast status`: the operator's view. From the database: every logical slot (active, WAL
// retained, lag, wal_status; inactive ones holding WAL flagged; which are walcast's, where that
// is known), walcast's slot in detail, the publication's tables and the settings that bound WAL
// retention. From a running daemon, when one answers (GET /status): its clients,
// subscriptions, channels and resume window. A table for people, --json for scripts.
import type { Command } from 'commander';
import { resolveStatusOptions, type StatusFlags, type StatusOptions } from '../config.js';
import { DEFAULTS, PUBLICATION } from '../constants.js';
import { connect } from '../pg/connect.js';
import { clusterRows, readClusterView, type ClusterView } from './status-cluster.js';
import { readSlots, type OtherSlots, type SlotInfo } from './status-slots.js';

export interface Status {
  /** The slot in detail: --slot's, else the daemon's as configured here (WALCAST_SLOT, default walcast). */
  slot: { name: string; exists: false } | ({ exists: true } & SlotInfo);
  /** Every logical slot of this database (only --slot's when given). */
  slots: SlotInfo[];
  /** Slots elsewhere in the cluster (null under --slot): their WAL is on the same disk. */
  otherSlots: OtherSlots | null;
  /** One line each: slots inactive and holding WAL. */
  warnings: string[];
  settings: { walLevel: string; maxSlotWalKeepSize: string };
  publication: { name: string; tables: string[] };
  daemon: { url: string; reachable: boolean; error?: string; status?: Record<string, unknown> };
  /** With --nats: the cluster as NATS holds it. */
  cluster?: ClusterView;
}

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description('every logical slot (lag, WAL retained, inactive ones holding WAL), the published tables, and a running daemon')
    .option('--db <url>', 'Postgres URL (env DATABASE_URL, WALCAST_DB)')
    .option('--slot <name>', 'only this slot, in detail (without it: every logical slot, the daemon\'s slot, env WALCAST_SLOT or walcast, in detail)')
    .option('--daemon <url>', `a daemon's HTTP address (default http://${DEFAULTS.host}:${DEFAULTS.port})`)
    .option('--nats <urls>', 'a cluster: read the capture lease, the nodes and the stream from these NATS servers (env WALCAST_NATS)')
    .option('--cluster <name>', 'with --nats: the cluster name (env WALCAST_CLUSTER; default the slot name)')
    .option('--json', 'one JSON object instead of a table')
    .action(async (o: StatusFlags & { json?: boolean }) => {
      const status = await readStatus(resolveStatusOptions(o));
      process.stdout.write(o.json ? JSON.stringify(status) + '\n' : formatStatus(status));
    });
}

export async function readStatus(o: StatusOptions): Promise<Status> {
  // Asked while connecting: the daemon's /status names its slot, one way to know which is walcast's.
  const asked = readDaemon(o.daemon);
  const cluster = o.cluster ? readClusterView(o.cluster) : null;
  const detailName = o.only ?? o.walcastSlot;
  const db = await connect(o.db);
  const daemon = await asked;
  const daemonSlot = typeof daemon.status?.slot === 'string' ? daemon.status.slot : null;
  let read: Awaited<ReturnType<typeof readSlots>>;
  let settings: { wal_level: string; keep: string };
  let tables: string[];
  try {
    read = await readSlots(db, { detail: detailName, only: o.only, walcastSlot: o.walcastSlot, daemonSlot });
    ({ rows: [settings] } = await db.query<{ wal_level: string; keep: string }>("select current_setting('wal_level') as wal_level, current_setting('max_slot_wal_keep_size') as keep"));
    const pub = await db.query<{ t: string }>('select schemaname || \'.\' || tablename as t from pg_publication_tables where pubname = $1 order by 1', [PUBLICATION]);
    tables = pub.rows.map((r) => r.t);
  } finally {
    await db.end().catch(() => {});
  }
  return {
    slot: read.detail ? { exists: true, ...read.detail } : { name: detailName, exists: false },
    slots: read.slots,
    otherSlots: read.others,
    warnings: warnings(read.slots, read.others),
    settings: { walLevel: settings.wal_level, maxSlotWalKeepSize: settings.keep },
    publication: { name: PUBLICATION, tables },
    daemon,
    ...(cluster ? { cluster: await cluster } : {}),
  };
}

function warnings(slots: SlotInfo[], others: OtherSlots | null): string[] {
  const out = slots
    .filter((s) => s.inactiveHoldingWal)
    .map((s) =>
      `slot ${s.name} is inactive and holds ${bytes(s.retainedBytes)} of WAL, more with every write: ` +
      (s.walcast ? 'start walcast serve, or drop the slot if walcast is gone for good' : `drop it if nothing will read it again (select pg_drop_replication_slot('${s.name}'))`),
    );
  if (others && others.inactiveHoldingWal > 0) {
    out.push(`${others.inactiveHoldingWal} slot(s) outside this database are inactive and hold WAL (up to ${bytes(others.maxRetainedBytes)}): see pg_replication_slots`);
  }
  return out;
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

function slotLine(x: SlotInfo): string {
  const state = x.active ? `active, pid ${x.pid}` : 'inactive';
  const parts = [x.plugin, x.temporary ? `${state}, temporary` : state, `holds ${bytes(x.retainedBytes)} of WAL`, `lag ${bytes(x.lagBytes)}`, x.walStatus ?? 'wal_status unknown'];
  return `${parts.join(', ')}; ${walcastText(x)}`;
}

function walcastText(x: SlotInfo): string {
  switch (x.walcast === null ? null : x.walcastFrom) {
    case null:
      return 'publication unknown';
    case 'plugin':
      return 'not walcast (not pgoutput)';
    case 'walsender':
      return x.walcast ? `walcast (its reader streams publication ${PUBLICATION})` : 'not walcast (its reader streams other publications)';
    case 'daemon':
      return "walcast (the daemon's slot)";
    case 'config':
      return "walcast (the daemon's slot name here)";
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
    const where = sl.database === undefined ? '' : `, in database ${sl.database}`;
    rows.push(['slot', `${sl.name} (${sl.active ? `active, pid ${sl.pid}` : `inactive: ${sl.walcast ? 'no daemon is' : 'nothing is'} reading it`}${where})`]);
    rows.push(['confirmed', sl.confirmedFlush ?? 'none']);
    rows.push(['lag', bytes(sl.lagBytes)]);
    rows.push(['wal_status', `${sl.walStatus ?? 'unknown'} (safe_wal_size ${sl.safeWalSize === null ? 'unlimited' : bytes(sl.safeWalSize)}; max_slot_wal_keep_size ${s.settings.maxSlotWalKeepSize})`]);
  }
  const o = s.otherSlots;
  if (o) rows.push(['slots', `${s.slots.length} logical in this database; elsewhere: ${o.otherDatabases} logical in other databases, ${o.physical} physical`]);
  else rows.push(['slots', `--slot ${sl.name} only${s.slots.length === 0 ? ': not a logical slot of this database' : ''}`]);
  for (const x of s.slots) rows.push([`  ${x.name}`, slotLine(x)]);
  for (const w of s.warnings) rows.push(['WARNING', w]);
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
    const c = (d.status as { cluster?: { node: string; role: string; lag?: { followerMessages: number; publishBacklog: number } } & Parameters<typeof clusterRows>[0] }).cluster;
    if (c && !s.cluster) {
      rows.push(['cluster node', `${c.node}: ${c.role}${c.lag ? `, ${c.lag.followerMessages} stream messages behind${c.role === 'capture' ? `, ${c.lag.publishBacklog} awaiting JetStream` : ''}` : ''}`]);
      rows.push(...clusterRows(c, bytes));
    }
  }
  const cv = s.cluster;
  if (cv) {
    if (!cv.reachable) rows.push(['cluster', `${cv.namespace}: NATS not reachable (${cv.error})`]);
    else rows.push(['cluster', cv.namespace], ...clusterRows(cv, bytes));
  }
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n') + '\n';
}
