// `walcast dev`: a throwaway Postgres, migrated, with a demo table enabled, tailed. One command
// to see changes flow; serving and the demo page come with the server.
import type { Command } from 'commander';
import { connect } from '../pg/connect.js';
import { startThrowawayPostgres } from '../pg/throwaway.js';
import { migrate } from '../sql/migrate.js';
import { runTail } from './tail.js';

const DEMO_SQL = `
create table if not exists public.messages (
  id bigserial primary key,
  room text not null,
  author text not null,
  body text not null,
  created_at timestamptz not null default now()
);
select walcast.enable('public.messages');
`;

export function registerDev(program: Command): void {
  program
    .command('dev')
    .description('start a throwaway Postgres with a demo table and tail its changes')
    .action(async (_flags: unknown, cmd: Command) => {
      const verbose = !!cmd.optsWithGlobals<{ verbose?: boolean }>().verbose;
      const pg = await startThrowawayPostgres();
      try {
        await migrate(pg.url);
        const client = await connect(pg.url);
        await client.query(DEMO_SQL);
        await client.end();
        process.stderr.write(
          `walcast dev: Postgres is at ${pg.url}\n` +
            `  try: psql ${pg.url} -c "insert into messages (room, author, body) values ('lobby', 'ada', 'hello')"\n` +
            '  changes print below as JSON lines; Ctrl-C stops and removes the database\n',
        );
        await runTail({ url: pg.url, slot: `walcast_dev_${process.pid}`, temporary: true, since: null, logLevel: verbose ? 'debug' : 'warn' });
      } finally {
        await pg.destroy();
      }
    });
}
