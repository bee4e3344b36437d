// Policies of walcast.casbin_rule in a Casbin enforcer: loaded once at start, then kept in step
// with the change stream, so that a policy change applies exactly between the transactions
// around it (DESIGN §3), with no query per change.
import { newEnforcer, newModelFromString, type Enforcer } from 'casbin';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type pg from 'pg';
import type { Row } from '../capture/pgoutput.types.js';
import type { Change } from '../capture/types.js';
import { packageRoot } from '../util/package-root.js';

export const POLICY_TABLE = 'walcast.casbin_rule';
const V = ['v0', 'v1', 'v2', 'v3', 'v4', 'v5'] as const;

export function defaultModelPath(): string {
  return join(packageRoot(), 'models', 'default.conf');
}

export async function createEnforcer(modelPath = defaultModelPath()): Promise<Enforcer> {
  return newEnforcer(newModelFromString(readFileSync(modelPath, 'utf8')));
}

/** The rule of a casbin_rule row: ptype and its values, trailing empty ones dropped. */
export function ruleOf(row: Row): { ptype: string; values: string[] } | null {
  const ptype = row.ptype;
  if (typeof ptype !== 'string') return null;
  const values = V.map((k) => (typeof row[k] === 'string' ? (row[k] as string) : ''));
  while (values.length > 0 && values[values.length - 1] === '') values.pop();
  return { ptype, values };
}

async function apply(e: Enforcer, row: Row, add: boolean): Promise<void> {
  const rule = ruleOf(row);
  if (!rule) return;
  const { ptype, values } = rule;
  if (ptype.startsWith('p')) {
    if (add) await e.addNamedPolicy(ptype, ...values);
    else await e.removeNamedPolicy(ptype, ...values);
  } else if (ptype.startsWith('g')) {
    if (add) await e.addNamedGroupingPolicy(ptype, ...values);
    else await e.removeNamedGroupingPolicy(ptype, ...values);
  }
}

/** Everything in walcast.casbin_rule, read in one query at start. */
export async function loadPolicies(db: pg.ClientBase | pg.Pool, e: Enforcer): Promise<number> {
  const { rows } = await db.query<Row>('select ptype, v0, v1, v2, v3, v4, v5 from walcast.casbin_rule order by id');
  for (const row of rows) await apply(e, row, true);
  return rows.length;
}

/** Applies one change of walcast.casbin_rule; false for changes of other tables. */
export async function applyPolicyChange(e: Enforcer, c: Change): Promise<boolean> {
  if (c.tag === 'message' || c.relation.qualified !== POLICY_TABLE) return false;
  switch (c.tag) {
    case 'insert':
      await apply(e, c.new, true);
      break;
    case 'update':
      if (c.old) await apply(e, c.old, false);
      await apply(e, c.new, true);
      break;
    case 'delete':
      await apply(e, c.old, false);
      break;
    case 'truncate':
      e.clearPolicy();
      break;
  }
  return true;
}
