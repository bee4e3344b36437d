// The authorizer a daemon runs with: the model file, the declared relation tables (which must be
// in the publication, or their changes would never arrive), and the first load.
import type pg from 'pg';
import { DEFAULTS, PUBLICATION } from '../constants.js';
import { ConfigError, InsufficientPrivilegeError, NotMigratedError, DaemonError } from '../errors.js';
import { explainConnectError } from '../pg/connect.js';
import { pgCode, SQLSTATE } from '../pg/sqlstate.js';
import { RetryBackoff } from '../util/backoff.js';
import type { Logger } from '../log.js';
import { PolicyAuthorizer } from './authorizer.js';
import { loadModel } from './model.js';
import { parseRelation } from './relations.js';

export interface AuthorizerOptions {
  /** A Casbin model file; the shipped default model when absent. */
  model?: string;
  /** Relation declarations ("public.room_members {user_id} room:{room_id}"). */
  relations: string[];
}

export async function startAuthorizer(o: AuthorizerOptions, db: pg.Pool, url: string, log: Logger): Promise<PolicyAuthorizer> {
  try {
    return await start(o, db, log);
  } catch (err) {
    if (err instanceof DaemonError) throw err;
    if (pgCode(err) === SQLSTATE.undefinedTable && /casbin_rule/.test((err as Error).message)) {
      throw new NotMigratedError('walcast.casbin_rule does not exist', 'run walcast migrate --db URL first', { cause: err });
    }
    if (pgCode(err) === SQLSTATE.insufficientPrivilege) {
      throw new InsufficientPrivilegeError(
        `reading the policies: ${(err as Error).message}`,
        'grant the daemon role USAGE on schema walcast and SELECT on walcast.casbin_rule and on each --relation table (docs/OPERATIONS.md, "Privileges")',
        { cause: err },
      );
    }
    throw explainConnectError(err, url);
  }
}

/**
 * Reads the policies anew (the slot was recreated, so changes may have been missed); until it
 * succeeds every decision is "deny", retried with backoff while the database is away.
 */
export function reloadPolicies(auth: PolicyAuthorizer, db: pg.Pool, log: Logger): void {
  auth.unload();
  const backoff = new RetryBackoff(DEFAULTS.backoffBaseMs, DEFAULTS.backoffCapMs);
  const attempt = (): void => {
    auth.load(db).then(
      () => log.info('policies reloaded'),
      (err: Error) => {
        log.warn({ err: err.message }, 'cannot reload the policies yet; denying until they are read');
        setTimeout(attempt, backoff.next()).unref();
      },
    );
  };
  attempt();
}

async function start(o: AuthorizerOptions, db: pg.Pool, log: Logger): Promise<PolicyAuthorizer> {
  const model = loadModel(o.model);
  const decls = o.relations.map(parseRelation);
  if (decls.length > 0) {
    const { rows } = await db.query<{ t: string }>(`select schemaname || '.' || tablename as t from pg_publication_tables where pubname = $1`, [PUBLICATION]);
    const published = new Set(rows.map((r) => r.t));
    for (const d of decls) {
      if (!published.has(d.table)) {
        throw new ConfigError(`the relation table ${d.table} is not enabled, so its changes would never reach walcast`, `select walcast.enable('${d.table}');`);
      }
    }
  }
  const auth = new PolicyAuthorizer(model, decls, log);
  try {
    await auth.load(db);
  } catch (err) {
    const code = pgCode(err);
    // undefined_column, undefined_table: a declaration naming what is not there.
    if (code === SQLSTATE.undefinedColumn || code === SQLSTATE.undefinedTable) throw new ConfigError(`a relation declaration does not match the database: ${(err as Error).message}`, 'check the --relation tables and columns', { cause: err });
    throw err;
  }
  return auth;
}
