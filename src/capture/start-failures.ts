// How START_REPLICATION (or creating a slot) fails at the first start: one table that says, per
// SQLSTATE, whether the failure ends the program and how it is told to the operator.
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

/** An error told in the words of the start-up checks (preflight.ts): `code` and `hint` as src/errors.ts gives them. */
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

/** Errors of START_REPLICATION itself (and of creating a slot), in the words of the start-up checks (preflight.ts). */
export function explainStreamError(err: Error, slot: string): Error & { readonly hint?: string } {
  return startFailure(err)?.explain(err, slot) ?? err;
}

/** At the very first start, these end the program instead of being retried. */
export function isFatalAtStart(err: Error | null): boolean {
  return startFailure(err)?.fatal === true;
}
