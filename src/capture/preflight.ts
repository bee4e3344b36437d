// Checks run before streaming, each failing with an error that names the cause and the fix,
// and the creation of the permanent slot when it is missing.
import type pg from 'pg';
import { setTimeout as sleep } from 'node:timers/promises';
import { CAPTURE } from '../constants.js';
import { NotMigratedError, ReplicationPrivilegeError, SlotInUseError, SlotInvalidError, WalLevelError } from '../errors.js';
import { parseLsn } from '../protocol/lsn.js';
import { quoteIdent } from '../pg/ident.js';
import { explainStreamError } from './start-failures.js';

export interface SlotState {
  /** Where the slot will resume: nothing before it is sent again. */
  confirmedFlush: bigint;
  /** True when this call created the slot (a fresh start: nothing older can be replayed). */
  created: boolean;
  /** True when the slot existed but had been invalidated, and was recreated. */
  invalidated: boolean;
}

export async function checkServer(client: pg.Client, publication: string): Promise<void> {
  const { rows } = await client.query<{ wal_level: string; can_replicate: boolean; user: string; has_pub: boolean }>(
    `select current_setting('wal_level') as wal_level,
            (select rolsuper or rolreplication from pg_roles where rolname = current_user) as can_replicate,
            current_user as user,
            exists (select 1 from pg_publication where pubname = $1) as has_pub`,
    [publication],
  );
  const r = rows[0];
  if (r.wal_level !== 'logical') {
    throw new WalLevelError(
      `Postgres has wal_level = ${r.wal_level}; logical replication needs wal_level = logical`,
      "run ALTER SYSTEM SET wal_level = 'logical' as a superuser and restart Postgres",
    );
  }
  if (!r.can_replicate) {
    throw new ReplicationPrivilegeError(
      `role "${r.user}" has no REPLICATION privilege`,
      `run ALTER ROLE ${quoteIdent(r.user)} WITH REPLICATION as a superuser, or connect as a role that has it`,
    );
  }
  if (!r.has_pub) {
    throw new NotMigratedError(`publication "${publication}" does not exist`, 'run walcast migrate --db URL first');
  }
}

/** Finds or creates the permanent slot; refuses one that is busy, of another plugin or database. */
export async function ensureSlot(client: pg.Client, slot: string): Promise<SlotState> {
  const { rows } = await client.query<{
    plugin: string | null;
    same_db: boolean;
    physical: boolean;
    active_pid: number | null;
    wal_status: string | null;
    confirmed_flush_lsn: string | null;
  }>(
    `select plugin, coalesce(database = current_database(), false) as same_db, database is null as physical, active_pid, wal_status, confirmed_flush_lsn::text
       from pg_replication_slots where slot_name = $1`,
    [slot],
  );
  const s = rows[0];
  if (!s) return createSlot(client, slot);
  if (s.plugin !== 'pgoutput' || !s.same_db) {
    throw new SlotInvalidError(
      s.physical
        ? `replication slot "${slot}" exists but is a physical slot`
        : `replication slot "${slot}" exists but is ${s.plugin === 'pgoutput' ? 'a' : `a ${s.plugin}`} slot${s.same_db ? '' : ' of another database'}`,
      'give walcast its own slot with --slot NAME, or drop that slot',
    );
  }
  if (s.active_pid !== null) {
    throw new SlotInUseError(
      `replication slot "${slot}" is in use by another process (pid ${s.active_pid})`,
      'stop the other walcast reading it, or give this one its own slot with --slot NAME',
    );
  }
  if (s.wal_status === 'lost') {
    // The WAL it needed is gone (max_slot_wal_keep_size): no position before now can be honoured.
    // Start afresh; downstream learns of it through `created` and tells clients to resync.
    await client.query('select pg_drop_replication_slot($1)', [slot]);
    return { ...(await createSlot(client, slot)), invalidated: true };
  }
  return { confirmedFlush: s.confirmed_flush_lsn ? parseLsn(s.confirmed_flush_lsn) : 0n, created: false, invalidated: false };
}

async function createSlot(client: pg.Client, slot: string): Promise<SlotState> {
  let rows: { lsn: string }[];
  try {
    ({ rows } = await client.query<{ lsn: string }>(`select lsn::text from pg_create_logical_replication_slot($1, 'pgoutput')`, [slot]));
  } catch (err) {
    // It fails the ways a temporary slot's CREATE_REPLICATION_SLOT does ("all replication slots are in use").
    throw explainStreamError(err as Error, slot);
  }
  return { confirmedFlush: parseLsn(rows[0].lsn), created: true, invalidated: false };
}

/**
 * ensureSlot, waiting a little for a slot that is still held: after a crash or a lost network the
 * old walsender keeps the slot until it notices its peer is gone.
 */
export async function ensureSlotWhenFree(client: pg.Client, slot: string, waitMs: number = CAPTURE.slotFreeWaitMs): Promise<SlotState> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      return await ensureSlot(client, slot);
    } catch (err) {
      if (!(err instanceof SlotInUseError) || Date.now() >= deadline) throw err;
      await sleep(CAPTURE.slotFreePollMs);
    }
  }
}

/**
 * How long a silent stream is trusted. While it replays a large transaction it sends nothing
 * for us (rows past the bound are sent but messages are not requested, changes of other tables
 * are filtered out), and it sends a keepalive only once wal_sender_timeout / 2 passed without
 * hearing from us (ProcessPendingWrites in walsender.c): declaring it dead sooner would
 * reconnect, replay the same transaction, and never get past it.
 */
export function deadAfter(senderTimeoutMs: number | null): number {
  if (senderTimeoutMs === null) return CAPTURE.minDeadAfterMs;
  if (senderTimeoutMs <= 0) return CAPTURE.deadAfterNoKeepalivesMs;
  return Math.max(CAPTURE.minDeadAfterMs, CAPTURE.deadAfterSenderTimeouts * senderTimeoutMs);
}

export async function readSenderTimeout(client: pg.Client): Promise<number | null> {
  const { rows } = await client.query<{ ms: string }>("select setting as ms from pg_settings where name = 'wal_sender_timeout'");
  const ms = Number(rows[0]?.ms);
  return Number.isFinite(ms) ? ms : null;
}
