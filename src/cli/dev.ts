// `walcast dev`: one command to see it work. A throwaway Postgres, migrated, with a demo table
// enabled, served without authorization on a local port, and its changes tailed to stdout.
import type { Command } from 'commander';
import { resolveServeConfig } from '../config.js';
import { startDaemon } from '../daemon.js';
import { createLogger } from '../log.js';
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
    .description('a throwaway Postgres with a demo table, served on a local port, changes tailed')
    .option('--port <port>', 'port to serve on (default 4000)')
    .action(async (flags: { port?: string }, cmd: Command) => {
      const verbose = !!cmd.optsWithGlobals<{ verbose?: boolean }>().verbose;
      const pg = await startThrowawayPostgres();
      const abort = new AbortController();
      try {
        await migrate(pg.url);
        const client = await connect(pg.url);
        await client.query(DEMO_SQL);
        await client.end();
        const cfg = resolveServeConfig({ db: pg.url, port: flags.port, auth: false, verbose }, {});
        const daemon = await startDaemon(cfg, createLogger(verbose ? 'debug' : 'warn'));
        const ws = `ws://${cfg.host}:${daemon.port}/ws`;
        process.stderr.write(
          `walcast dev: Postgres at ${pg.url}\n` +
            `  serving ${ws} (no authorization: development only)\n` +
            `  subscribe: {"type":"subscribe","id":1,"table":"public.messages","filter":"room=eq.lobby"}\n` +
            `  write:     psql ${pg.url} -c "insert into messages (room, author, body) values ('lobby', 'ada', 'hello')"\n` +
            '  changes print below as JSON lines; Ctrl-C stops and removes the database\n',
        );
        daemon.failed.then(() => abort.abort());
        await runTail({ url: pg.url, slot: `walcast_dev_${process.pid}`, temporary: true, since: null, logLevel: verbose ? 'debug' : 'warn', signal: abort.signal });
        await daemon.stop();
      } finally {
        await pg.destroy();
      }
    });
}
