// `walcast policy add|remove|list`: the rows of walcast.casbin_rule.
import type { Command } from 'commander';
import { resolveDb, resolvePolicyOptions } from '../config.js';
import { NotMigratedError } from '../errors.js';
import { connect } from '../pg/connect.js';
import { pgCode, SQLSTATE } from '../pg/sqlstate.js';
import { checkRule, loadModel } from '../auth/model.js';
import { addRule, formatRule, listRules, removeRule, toRule } from '../sql/policy.js';

export function registerPolicy(program: Command): void {
  const policy = program.command('policy').description('manage the Casbin policies in walcast.casbin_rule');
  policy
    .command('add')
    .description('add a rule, e.g. `walcast policy add p member public.messages read`')
    .argument('<ptype>', 'p for a policy, g, g2, ... for role links')
    .argument('<values...>', 'up to six values (v0..v5)')
    .option('--db <url>', 'Postgres URL (env DATABASE_URL, WALCAST_DB)')
    .option('--model <file>', 'the Casbin model the rule is checked against (env WALCAST_MODEL; default: the shipped model)')
    .action(async (ptype: string, values: string[], o: { db?: string; model?: string }) => {
      const rule = toRule(ptype, values);
      checkRule(loadModel(resolvePolicyOptions(o).model), rule.ptype, rule.values);
      await withDb(o.db, async (db) => {
        const added = await addRule(db, rule);
        process.stdout.write(`${added ? 'added' : 'already present'}: ${formatRule(rule)}\n`);
      });
    });
  policy
    .command('remove')
    .description('remove a rule')
    .argument('<ptype>')
    .argument('<values...>')
    .option('--db <url>', 'Postgres URL (env DATABASE_URL, WALCAST_DB)')
    .action(async (ptype: string, values: string[], o: { db?: string }) => {
      const rule = toRule(ptype, values);
      await withDb(o.db, async (db) => {
        const removed = await removeRule(db, rule);
        process.stdout.write(`${removed ? 'removed' : 'not present'}: ${formatRule(rule)}\n`);
        if (!removed) process.exitCode = 1;
      });
    });
  policy
    .command('list')
    .description('print every rule, one per line, as in a Casbin policy CSV')
    .option('--db <url>', 'Postgres URL (env DATABASE_URL, WALCAST_DB)')
    .option('--json', 'one JSON object per line instead')
    .action(async (o: { db?: string; json?: boolean }) => {
      await withDb(o.db, async (db) => {
        for (const rule of await listRules(db)) process.stdout.write((o.json ? JSON.stringify(rule) : formatRule(rule)) + '\n');
      });
    });
}

async function withDb(flag: string | undefined, fn: (db: import('pg').Client) => Promise<void>): Promise<void> {
  const db = await connect(resolveDb(flag));
  try {
    await fn(db);
  } catch (err) {
    if (pgCode(err) === SQLSTATE.undefinedTable) {
      throw new NotMigratedError('walcast.casbin_rule does not exist', 'run walcast migrate --db URL first', { cause: err });
    }
    throw err;
  } finally {
    await db.end().catch(() => {});
  }
}
