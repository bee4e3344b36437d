// Policy rows in walcast.casbin_rule, as `walcast policy add|remove|list` manages them. A rule is
// a ptype ("p", "g", "g2", ...) and up to six values, as in Casbin's CSV policy files.
import type pg from 'pg';
import { ConfigError } from '../errors.js';

export interface Rule {
  ptype: string;
  values: string[];
}

const PTYPE = /^[pg][0-9]*$/;
const V = ['v0', 'v1', 'v2', 'v3', 'v4', 'v5'] as const;

export function toRule(ptype: string, values: string[]): Rule {
  if (!PTYPE.test(ptype)) throw new ConfigError(`bad policy type ${JSON.stringify(ptype)}`, 'use p (policy) or g, g2, ... (role links)');
  if (values.length === 0 || values.length > V.length) {
    throw new ConfigError(`a rule has 1 to ${V.length} values, got ${values.length}`, 'e.g. walcast policy add p alice public.messages read');
  }
  return { ptype, values };
}

function padded(rule: Rule): string[] {
  return V.map((_, i) => rule.values[i] ?? '');
}

/** Adds a rule; false when it was already there. */
export async function addRule(db: pg.ClientBase, rule: Rule): Promise<boolean> {
  const r = await db.query(
    `insert into walcast.casbin_rule (ptype, v0, v1, v2, v3, v4, v5) values ($1, $2, $3, $4, $5, $6, $7)
     on conflict (ptype, v0, v1, v2, v3, v4, v5) do nothing`,
    [rule.ptype, ...padded(rule)],
  );
  return r.rowCount === 1;
}

/** Removes a rule; false when there was none. */
export async function removeRule(db: pg.ClientBase, rule: Rule): Promise<boolean> {
  const r = await db.query(
    'delete from walcast.casbin_rule where ptype = $1 and v0 = $2 and v1 = $3 and v2 = $4 and v3 = $5 and v4 = $6 and v5 = $7',
    [rule.ptype, ...padded(rule)],
  );
  return (r.rowCount ?? 0) > 0;
}

export async function listRules(db: pg.ClientBase): Promise<Rule[]> {
  const { rows } = await db.query<Record<string, string>>(
    'select ptype, v0, v1, v2, v3, v4, v5 from walcast.casbin_rule order by ptype, v0, v1, v2, v3, v4, v5',
  );
  return rows.map((r) => {
    const values = V.map((k) => r[k]);
    while (values.length > 0 && values[values.length - 1] === '') values.pop();
    return { ptype: r.ptype, values };
  });
}

/** Casbin's CSV line form: `p, alice, public.messages, read`. */
export function formatRule(rule: Rule): string {
  // CSV as Casbin's policy files: a value holding a comma or a quote is quoted, quotes doubled.
  const field = (v: string) => (/[",]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v);
  return [rule.ptype, ...rule.values].map(field).join(', ');
}
