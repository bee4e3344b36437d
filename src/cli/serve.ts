// `walcast serve`: the daemon. SIGTERM/SIGINT: clients closed with 1001, final acknowledgement,
// exit 0.
import type { Command } from 'commander';
import { resolveServeConfig, type ServeFlags } from '../config.js';
import { startDaemon } from '../daemon.js';
import { createLogger } from '../log.js';

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('stream row changes to WebSocket clients')
    .option('--db <url>', 'Postgres URL (env DATABASE_URL, WALCAST_DB)')
    .option('--host <host>', 'address to listen on (env WALCAST_HOST)', undefined)
    .option('--port <port>', 'port to listen on, 0 for any free one (env WALCAST_PORT; default 4000)')
    .option('--slot <name>', 'replication slot (env WALCAST_SLOT; default walcast)')
    .option('--jwt-secret <secret>', 'HS256 secret (32+ bytes) that client tokens are signed with; prefer env WALCAST_JWT_SECRET (flags show in ps)')
    .option('--jwks <file-or-url>', 'JSON Web Key Set with the RS/ES/PS/EdDSA public keys of client tokens (env WALCAST_JWKS)')
    .option('--jwt-issuer <iss>', 'required "iss" of client tokens (env WALCAST_JWT_ISSUER)')
    .option('--jwt-audience <aud>', 'required "aud" of client tokens (env WALCAST_JWT_AUDIENCE)')
    .option('--model <file>', 'Casbin model file (env WALCAST_MODEL; default: the shipped model)')
    .option('--relation <spec>', "relation table to mirror for policies, repeatable (env WALCAST_RELATIONS, separated by ';')", (v: string, prev: string[] | undefined) => [...(prev ?? []), v])
    .option('--no-auth', 'allow every client everything: for development only (env WALCAST_NO_AUTH=1)')
    .option('--history-bytes <size>', 'resume window bound by size (env WALCAST_HISTORY_BYTES; default 256MiB)')
    .option('--history-age <duration>', 'resume window bound by age (env WALCAST_HISTORY_AGE; default 10m)')
    .option('--max-slot-lag <size>', 'WAL the resume window may hold on the slot; past it the window shrinks (env WALCAST_MAX_SLOT_LAG; default 1GiB, at most 3/4 of max_slot_wal_keep_size)')
    .option('--max-transaction-bytes <size>', 'changes one transaction may hold in memory; a larger one is skipped, its tables\' subscriptions get resync (env WALCAST_MAX_TRANSACTION_BYTES; default 32MiB)')
    .option('--max-backpressure <size>', 'bytes buffered per socket before it is closed with 4008 (default 4MiB)')
    .option('--max-message-bytes <size>', 'largest client message accepted (default 64KiB)')
    .option('--broadcast-rate <n>', 'client broadcasts per second per connection, twice that per user, bursts of 2.5 times (env WALCAST_BROADCAST_RATE; default 20)')
    .option('--broadcast-bytes-rate <size>', 'broadcast payload bytes per second per connection, twice that per user, bursts of 4 times (env WALCAST_BROADCAST_BYTES_RATE; default 64KiB)')
    .option('--progress-interval <duration>', 'how often idle clients get a progress position (default 3s)')
    .option('--idle-timeout <duration>', 'a socket silent this long (pings unanswered) is closed, its presence gone: 8s to 16m, or 0 for never (env WALCAST_IDLE_TIMEOUT; default 60s)')
    .option('--max-connections <n>', 'WebSocket connections at once; past it upgrades get 503 (env WALCAST_MAX_CONNECTIONS; default min(10000, open-files limit - 256))')
    .option('--max-pending-auth <n>', 'connections not yet authenticated at once; past it upgrades get 503 (env WALCAST_MAX_PENDING_AUTH; default 1000)')
    .option('--max-snapshots <n>', 'snapshots read at once, each on a database connection of their own, 1 to 64; 2 per client connection, the rest wait in order (env WALCAST_MAX_SNAPSHOTS; default 4)')
    .option('--snapshot-timeout <duration>', 'statement_timeout of each snapshot statement (env WALCAST_SNAPSHOT_TIMEOUT; default 30s)')
    .option('--metrics-port <port>', 'serve /metrics and /status on this port instead of --port, 0 for any free one (env WALCAST_METRICS_PORT)')
    .option('--metrics-host <host>', 'address of the --metrics-port listener (env WALCAST_METRICS_HOST; default --host)')
    .option('--reuse-port', 'share the port(s) with other processes that pass it too (SO_REUSEPORT); without it a taken port is an error (env WALCAST_REUSE_PORT=1)')
    .option('--nats <urls>', 'cluster mode (preview): NATS server URLs, nats:// or tls://, comma-separated (env WALCAST_NATS); without it walcast is a single node')
    .option('--node-id <id>', 'this node\'s name in the cluster and its NATS connection name "walcast <id>" (env WALCAST_NODE_ID; default <hostname>:<port>)')
    .option('--cluster <name>', 'the cluster\'s name: its NATS stream, subjects and buckets (env WALCAST_CLUSTER; default the slot name)')
    .option('--stream-max-age <duration>', 'cluster resume window: the stream keeps changes this long (env WALCAST_STREAM_MAX_AGE; default 1h)')
    .option('--stream-max-bytes <size>', 'cluster resume window: the stream\'s size bound (env WALCAST_STREAM_MAX_BYTES; default 1GiB)')
    .option('--stream-replicas <n>', 'copies of the stream and buckets on the NATS servers, 1 to 5 (env WALCAST_STREAM_REPLICAS; default 3)')
    .option('--nats-ack-delay <duration>', 'how long after JetStream stored a change the slot may move past it, 0 for at once (env WALCAST_NATS_ACK_DELAY; default 6m)')
    .option('--log-level <level>', 'log level (env WALCAST_LOG_LEVEL; default info)')
    .action(async (flags: ServeFlags, cmd: Command) => {
      const verbose = !!cmd.optsWithGlobals<{ verbose?: boolean }>().verbose;
      const cfg = resolveServeConfig({ ...flags, verbose });
      const log = createLogger(cfg.logLevel);
      if (cfg.noAuth) {
        log.warn('AUTHORIZATION IS OFF (--no-auth): every client may read every enabled table. Development only.');
        process.stderr.write('walcast: WARNING: --no-auth: every client may read every enabled table. Never use this in production.\n');
      }
      // Listening for signals before the serving line goes out: a supervisor (or a test) may
      // send SIGTERM as soon as it reads that line, and a signal with no handler yet installed
      // ends the process with the default action, skipping the graceful stop.
      let signalled: string | null = null;
      let onSignal = (signal: string) => void (signalled ??= signal);
      process.on('SIGTERM', () => onSignal('SIGTERM'));
      process.on('SIGINT', () => onSignal('SIGINT'));
      const daemon = await startDaemon(cfg, log);
      const ops = daemon.metricsPort === null ? 'healthz, metrics, status on the same port' : `healthz on the same port; metrics, status at http://${cfg.metricsHost}:${daemon.metricsPort}/metrics`;
      process.stderr.write(`walcast: serving ws://${cfg.host}:${daemon.port}/ws (${ops})\n`);
      await new Promise<void>((resolve, reject) => {
        onSignal = (signal: string) => {
          log.info({ signal }, 'shutting down');
          daemon.stop().then(resolve, reject);
        };
        if (signalled) onSignal(signalled);
        daemon.failed.then((err) => daemon.stop().then(() => reject(err), reject));
      });
    });
}
