// `walcast <command>`: argument parsing and the one place errors become a line on stderr.
import { Command, CommanderError } from 'commander';
import { EXIT } from '../constants.js';
import { DaemonError } from '../errors.js';
import { registerDev } from './dev.js';
import { registerMigrate } from './migrate.js';
import { registerPolicy } from './policy.js';
import { registerServe } from './serve.js';
import { registerStatus } from './status.js';
import { registerTail } from './tail.js';

export function buildProgram(): Command {
  const program = new Command('walcast')
    .description('Postgres-native realtime: resumable, authorized row changes over WebSocket')
    .option('--verbose', 'debug logs and stack traces on errors')
    .exitOverride()
    .showHelpAfterError();
  registerMigrate(program);
  registerServe(program);
  registerTail(program);
  registerDev(program);
  registerPolicy(program);
  registerStatus(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
  } catch (err) {
    return report(err, argv.includes('--verbose'));
  }
}

/** One clear line (and a fix), never a stack trace unless --verbose. */
export function report(err: unknown, verbose: boolean): number {
  if (err instanceof CommanderError) {
    return err.exitCode === 0 ? EXIT.ok : EXIT.usage; // commander already printed the message
  }
  if (err instanceof DaemonError) {
    process.stderr.write(`walcast: ${err.message}${err.hint ? `\n  fix: ${err.hint}` : ''}\n  code: ${err.code} (docs/errors.md)\n`);
  } else {
    process.stderr.write(`walcast: unexpected error: ${(err as Error)?.message ?? String(err)}\n`);
  }
  if (verbose && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
  return EXIT.failure;
}
