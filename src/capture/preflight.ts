// Checks run before streaming, each failing with an error that names the cause and the fix,
// and the creation of the permanent slot when it is missing.
import type pg from 'pg';
import { setTimeout as sleep } from 'node:timers/promises';
import { CAPTURE } from '../constants.js';
import {
  DbAuthError,
  DbUnreachableError,
  NotMigratedError,
  ReplicationLimitError,
  ReplicationLostError,
  ReplicationPrivilegeError,
  SlotInUseError,
  SlotInvalidError,
  WalLevelError,
} from '../errors.js';
import { pgCode, SQLSTATE, SQLSTATE_CLASS, sqlstateClass } from '../pg/sqlstate.js';
import { parseLsn } from './lsn.js';

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
      `run ALTER ROLE "${r.user}" WITH REPLICATION as a superuser, or connect as a role that has it`,
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

/** An error told in the words of the checks above: `code` and `hint` as src/errors.ts gives them. */
export type Explained = Error & { readonly code: string; readonly hint: string | undefined };

/** A way START_REPLICATION (or creating a slot) fails at the first start. */
export interface StartFailure {
  /**
   * At the very first start: true ends the program (the operator must act first; retrying would
   * hide the cause behind an endless backoff), false retries it like a lost stream. Once
   * streaming has begun every stream error is retried (a temporary slot aside: it cannot resume).
   */
  fatal: boolean;
  /** The failure in words that name the cause and the fix (for a retried one: what walcast does). */
  explain(err: Error, slot: string): Explained;
  /** Messages Postgres sends with it, as a record and for the test that keeps this table honest. */
  examples: readonly string[];
}

const SLOT_IN_USE_HINT = 'stop the other walcast reading it, or give this one its own slot with --slot NAME';
const WAL_LEVEL_HINT = "run ALTER SYSTEM SET wal_level = 'logical' as a superuser and restart Postgres";

/**
 * The one list of start failures walcast knows, keyed by SQLSTATE or, for a whole class, by the
 * class's two characters. isFatalAtStart and explainStreamError both read it: a code added here
 * is both decided and explained. A code not listed is retried and reported as Postgres said it.
 */
export const START_FAILURES: Readonly<Record<string, StartFailure>> = {
  [SQLSTATE.objectInUse]: {
    fatal: true,
    examples: ['replication slot "walcast" is active for PID 4242'],
    explain: (err, slot) => new SlotInUseError(`replication slot "${slot}" is in use by another process`, SLOT_IN_USE_HINT, { cause: err }),
  },
  [SQLSTATE.undefinedObject]: {
    // Both were there when checked a moment before: dropped from outside while walcast started.
    fatal: true,
    examples: ['publication "walcast" does not exist', 'replication slot "walcast" does not exist'],
    explain: (err, slot) =>
      /publication/.test(err.message)
        ? new NotMigratedError(err.message, 'run walcast migrate --db URL first', { cause: err })
        : new SlotInvalidError(`replication slot "${slot}" was dropped while walcast started`, 'start walcast again (it creates the slot), and drop no slot walcast reads', { cause: err }),
  },
  [SQLSTATE.insufficientPrivilege]: {
    fatal: true,
    examples: ['must be superuser or replication role to start walsender'],
    explain: (err) => new ReplicationPrivilegeError(err.message, 'grant the role REPLICATION: ALTER ROLE name WITH REPLICATION', { cause: err }),
  },
  [SQLSTATE.objectNotInPrerequisiteState]: {
    // wal_level, or a slot that cannot be read: of another database, invalidated meanwhile.
    fatal: true,
    examples: ['logical decoding requires wal_level >= logical', 'replication slot "walcast" was not created in this database'],
    explain: (err, slot) =>
      /wal_level/.test(err.message)
        ? new WalLevelError(err.message, WAL_LEVEL_HINT, { cause: err })
        : new SlotInvalidError(`replication slot "${slot}" cannot be read: ${err.message}`, 'give walcast its own slot with --slot NAME, or drop that slot', { cause: err }),
  },
  [SQLSTATE.tooManyConnections]: {
    // max_wal_senders, or a connection limit of the role, the database or the server.
    fatal: true,
    examples: ['number of requested standby connections exceeds max_wal_senders (currently 1)', 'too many connections for role "walcast"'],
    explain: (err) =>
      new ReplicationLimitError(
        err.message,
        /max_wal_senders/.test(err.message) ? 'raise max_wal_senders (restart needed) or stop another replication client' : "raise the role's or database's CONNECTION LIMIT, or max_connections",
        { cause: err },
      ),
  },
  [SQLSTATE.configurationLimitExceeded]: {
    // max_replication_slots: a permanent slot created at start, or a temporary one.
    fatal: true,
    examples: ['all replication slots are in use'],
    explain: (err, slot) =>
      new ReplicationLimitError(
        `cannot create replication slot "${slot}": ${err.message}`,
        'drop unused slots (select slot_name, active from pg_replication_slots) or raise max_replication_slots and restart Postgres',
        { cause: err },
      ),
  },
  [SQLSTATE_CLASS.invalidAuthorizationSpecification]: {
    // The replication connection logs in anew: a password or pg_hba.conf changed since the checks.
    fatal: true,
    examples: ['password authentication failed for user "walcast"', 'no pg_hba.conf entry for host "10.0.0.5", user "walcast", database "app", no encryption'],
    explain: (err) => new DbAuthError(`Postgres refused the replication login: ${err.message}`, 'check the user and password in the URL, and pg_hba.conf', { cause: err }),
  },
  [SQLSTATE.cannotConnectNow]: {
    // A restart that began right after the checks: it ends by itself.
    fatal: false,
    examples: ['the database system is shutting down', 'the database system is starting up'],
    explain: (err) => new DbUnreachableError(`Postgres is starting up or shutting down: ${err.message}`, 'nothing: walcast reconnects once it accepts connections', { cause: err }),
  },
  [SQLSTATE.adminShutdown]: {
    // The walsender terminated (pg_terminate_backend, a fast shutdown): the slot is still there.
    fatal: false,
    examples: ['terminating connection due to administrator command'],
    explain: (err) => new ReplicationLostError(`the replication connection was terminated: ${err.message}`, 'nothing for a permanent slot: walcast reconnects and resumes from it', { cause: err }),
  },
};

/** The entry for an error's code, by the code itself, then by its class. */
export function startFailure(err: unknown): StartFailure | undefined {
  const code = pgCode(err);
  if (code === undefined || code.length !== 5) return undefined;
  if (Object.hasOwn(START_FAILURES, code)) return START_FAILURES[code];
  const cls = sqlstateClass(code);
  return Object.hasOwn(START_FAILURES, cls) ? START_FAILURES[cls] : undefined;
}

/** Errors of START_REPLICATION itself (and of creating a slot), in the words of the checks above. */
export function explainStreamError(err: Error, slot: string): Error & { readonly hint?: string } {
  return startFailure(err)?.explain(err, slot) ?? err;
}

/** At the very first start, these end the program instead of being retried. */
export function isFatalAtStart(err: Error | null): boolean {
  return startFailure(err)?.fatal === true;
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
