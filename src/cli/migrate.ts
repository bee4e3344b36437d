import type { Command } from 'commander';
import { resolveDb } from '../config.js';
import { migrate } from '../sql/migrate.js';

export function registerMigrate(program: Command): void {
  program
    .command('migrate')
    .description('apply the walcast SQL migrations (idempotent)')
    .option('--db <url>', 'Postgres URL (env DATABASE_URL, WALCAST_DB)')
    .action(async (opts: { db?: string }) => {
      const result = await migrate(resolveDb(opts.db));
      for (const name of result.applied) process.stdout.write(`applied ${name}\n`);
      if (result.applied.length === 0) process.stdout.write(`up to date (${result.alreadyApplied.length} migrations)\n`);
    });
}
