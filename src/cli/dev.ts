// `walcast dev`: one command to see it work. A throwaway Postgres, migrated, with the demo chat
// (src/dev/schema.ts) enabled and its policies in place, served with authorization on (a random
// HS256 key per run, tokens minted for the demo users by a dev-only route), the demo page on the
// same port, and the changes tailed to stdout. Ctrl-C stops it and removes the database.
import type { Command } from 'commander';
import pg from 'pg';
import { resolveServeConfig } from '../config.js';
import { DEFAULTS } from '../constants.js';
import { checkPortFree } from '../server/listen.js';
import { startDaemon, type Daemon } from '../daemon.js';
import { devRoutes } from '../dev/routes.js';
import { DEMO_RELATIONS, DEMO_USERS, setupDemo } from '../dev/schema.js';
import { createDemoKeys } from '../dev/tokens.js';
import { createLogger } from '../log.js';
import { clientConfig } from '../pg/connect.js';
import { startThrowawayPostgres } from '../pg/throwaway.js';
import { migrate } from '../sql/migrate.js';
import { runTail } from './tail.js';

interface DevFlags {
  port?: string;
  /** commander's --no-tail: false when given. */
  tail?: boolean;
}

export function registerDev(program: Command): void {
  program
    .command('dev')
    .description('a throwaway Postgres with a demo chat, served with its demo page on a local port, changes tailed')
    .option('--port <port>', 'port to serve on (default 4000; 0 picks a free one)')
    .option('--no-tail', 'do not print the changes to stdout')
    .action(async (flags: DevFlags, cmd: Command) => {
      const verbose = !!cmd.optsWithGlobals<{ verbose?: boolean }>().verbose;
      const log = createLogger(verbose ? 'debug' : 'warn');
      // A taken port fails before the database is started (listening is exclusive: port_in_use).
      const port = Number(flags.port ?? DEFAULTS.port);
      if (Number.isInteger(port) && port > 0 && port <= 65535) await checkPortFree(DEFAULTS.host, port, '--port');
      const stop = new AbortController();
      const onSignal = () => stop.abort();
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      const db = await startThrowawayPostgres();
      let pool: pg.Pool | null = null;
      let daemon: Daemon | null = null;
      try {
        await migrate(db.url);
        await setupDemo(db.url);
        const keys = createDemoKeys();
        pool = new pg.Pool({ ...clientConfig(db.url), max: 4 });
        pool.on('error', () => {}); // an idle client losing the server: the next query reconnects
        // The environment is left out ({}): a WALCAST_* variable meant for `serve` must not
        // turn the demo's authorization off or swap its key.
        const cfg = resolveServeConfig({ db: db.url, port: flags.port, jwtSecret: keys.secret, relation: DEMO_RELATIONS, verbose }, {});
        daemon = await startDaemon(cfg, log, { routes: devRoutes({ db: pool, keys, log }) });
        const base = `http://${cfg.host}:${daemon.port}`;
        process.stderr.write(
          `walcast dev: demo chat at ${base}/\n` +
            `  open ${base}/?user=alice and ${base}/?user=bob side by side (users: ${DEMO_USERS.join(', ')}; dave is not in #general)\n` +
            `  WebSocket ws://${cfg.host}:${daemon.port}/ws with authorization on: tokens from ${base}/dev/token?user=alice, signed with a key made for this run\n` +
            `  Postgres ${db.url}\n` +
            `  write: psql ${db.url} -c "insert into messages (room_id, author, body) values (1, 'carol', 'hello from psql')"\n` +
            `  ${flags.tail === false ? '' : 'changes print below as JSON lines; '}Ctrl-C stops and removes the database\n`,
        );
        daemon.failed.then((err) => {
          process.stderr.write(`walcast dev: the daemon stopped: ${err.message}\n`);
          process.exitCode = 1;
          stop.abort();
        });
        if (flags.tail === false) {
          if (!stop.signal.aborted) await new Promise((resolve) => stop.signal.addEventListener('abort', resolve, { once: true }));
        } else if (!stop.signal.aborted) {
          await runTail({ url: db.url, slot: `walcast_dev_${process.pid}`, temporary: true, since: null, logLevel: verbose ? 'debug' : 'warn', signal: stop.signal });
        }
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        await daemon?.stop();
        await pool?.end().catch(() => {});
        await db.destroy();
      }
    });
}
