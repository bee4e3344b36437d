// Versioned SQL migrations from sql/NNN_name.sql: each file in its own transaction together with
// its row in walcast.migrations, so a failing file leaves nothing behind; a transaction-level
// advisory lock makes concurrent runs take turns. Running it again applies nothing.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type pg from 'pg';
import { MIGRATE_LOCK_KEY, MIGRATIONS_TABLE, SCHEMA } from '../constants.js';
import { MigrationError } from '../errors.js';
import { connect } from '../pg/connect.js';
import { pgCode, SQLSTATE } from '../pg/sqlstate.js';
import { packageRoot } from '../util/package-root.js';

export interface Migration {
  version: number;
  name: string;
  sql: string;
  checksum: string;
}

export interface MigrateResult {
  applied: string[];
  alreadyApplied: string[];
}

const FILE_RE = /^(\d{3,})_([a-z0-9_]+)\.sql$/;

export function loadMigrations(dir = join(packageRoot(), 'sql')): Migration[] {
  return readdirSync(dir)
    .map((file) => ({ file, m: FILE_RE.exec(file) }))
    .filter((x): x is { file: string; m: RegExpExecArray } => x.m !== null)
    .map(({ file, m }) => {
      const sql = readFileSync(join(dir, file), 'utf8');
      return { version: Number(m[1]), name: m[2], sql, checksum: createHash('sha256').update(sql).digest('hex') };
    })
    .sort((a, b) => a.version - b.version);
}

export async function migrate(url: string, migrations = loadMigrations()): Promise<MigrateResult> {
  const client = await connect(url);
  try {
    return await applyAll(client, migrations);
  } finally {
    await client.end().catch(() => {});
  }
}

async function applyAll(client: pg.Client, migrations: Migration[]): Promise<MigrateResult> {
  const result: MigrateResult = { applied: [], alreadyApplied: [] };
  for (const m of migrations) {
    const label = `${String(m.version).padStart(3, '0')}_${m.name}`;
    await client.query('begin');
    try {
      await client.query('select pg_advisory_xact_lock($1)', [MIGRATE_LOCK_KEY]);
      await client.query(`create schema if not exists ${SCHEMA}`);
      await client.query(
        `create table if not exists ${MIGRATIONS_TABLE} (
           version integer primary key, name text not null, checksum text not null,
           applied_at timestamptz not null default now())`,
      );
      const { rows } = await client.query<{ checksum: string }>(`select checksum from ${MIGRATIONS_TABLE} where version = $1`, [m.version]);
      if (rows[0]) {
        await client.query('commit');
        if (rows[0].checksum !== m.checksum) {
          throw new MigrationError(
            `migration ${label} was applied from a different file (checksum differs)`,
            'migrations are append-only: put the change in a new numbered file',
          );
        }
        result.alreadyApplied.push(label);
        continue;
      }
      await client.query(m.sql);
      await client.query(`insert into ${MIGRATIONS_TABLE} (version, name, checksum) values ($1, $2, $3)`, [m.version, m.name, m.checksum]);
      await client.query('commit');
      result.applied.push(label);
    } catch (err) {
      await client.query('rollback').catch(() => {});
      if (err instanceof MigrationError) throw err;
      const e = err as { message?: string };
      throw new MigrationError(`migration ${label} failed and was rolled back: ${e.message ?? String(err)}`,
        pgCode(err) === SQLSTATE.insufficientPrivilege ? 'run migrate as the owner of the tables (or a superuser)' : undefined, { cause: err });
    }
  }
  return result;
}
