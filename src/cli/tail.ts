// `walcast tail`: a realtime psql. One JSON line per committed change on stdout, from a
// temporary slot (never disturbing a daemon's slot), or with --slot from a permanent one that is
// acknowledged only as far as what was written, resumable with --since.
import type { Command } from 'commander';
import { PUBLICATION } from '../constants.js';
import { Capture } from '../capture/capture.js';
import { resolveConfig } from '../config.js';
import { createLogger } from '../log.js';
import { LineWriter } from './tail-out.js';

interface TailFlags {
  db?: string;
  slot?: string;
  since?: string;
  logLevel?: string;
}

export function registerTail(program: Command): void {
  program
    .command('tail')
    .description('print committed changes as JSON lines')
    .option('--db <url>', 'Postgres URL (env DATABASE_URL, WALCAST_DB)')
    .option('--slot <name>', 'read a permanent slot (created if missing) instead of a temporary one')
    .option('--since <position>', 'print only changes after this position')
    .option('--log-level <level>', 'log level on stderr', 'warn')
    .action(async (flags: TailFlags, cmd: Command) => {
      const verbose = !!cmd.optsWithGlobals<{ verbose?: boolean }>().verbose;
      const cfg = resolveConfig({ ...flags, slot: flags.slot ?? `walcast_tail_${process.pid}`, verbose });
      await runTail({ url: cfg.db, slot: cfg.slot, temporary: !flags.slot, since: cfg.since, logLevel: verbose ? 'debug' : (flags.logLevel ?? 'warn') });
    });
}

export async function runTail(o: {
  url: string;
  slot: string;
  temporary: boolean;
  since: import('../protocol/position.js').Position | null;
  logLevel: string;
  out?: NodeJS.WritableStream;
  signal?: AbortSignal;
}): Promise<void> {
  const out = o.out ?? process.stdout;
  const lines = new LineWriter(out, (held) => capture.holdInput(held));
  const capture = new Capture({
    url: o.url,
    slot: o.slot,
    publication: PUBLICATION,
    temporary: o.temporary,
    after: o.since,
    logger: createLogger(o.logLevel),
    // Changes are printed as they are decoded (Postgres sends a transaction only once it
    // committed), so a transaction of any size goes through in bounded memory; the lines of a
    // transaction are all out before its commit counts as processed. stdout to a pipe or file
    // is synchronous on Linux: once write returns the line is out of this process, so
    // acknowledging it cannot lose it. A full pipe blocks, which is backpressure.
    onChange: lines.change,
    onCommit: lines.flush,
  });
  await new Promise<void>((resolve, reject) => {
    const finish = (err?: Error) => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      capture.stop().then(() => (err ? reject(err) : resolve()), reject);
    };
    const onSignal = () => finish();
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    o.signal?.addEventListener('abort', () => finish());
    // A closed stdout (`walcast tail | head`) ends the tail quietly.
    out.on('error', (err: NodeJS.ErrnoException) => finish(err.code === 'EPIPE' ? undefined : err));
    capture.on('fatal', (err: Error) => finish(err));
    capture.start().catch(finish);
  });
}
