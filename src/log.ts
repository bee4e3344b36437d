// Structured logs (pino), always to stderr: stdout belongs to data (`walcast tail`).
import { pino, type Logger } from 'pino';

export type { Logger };

/** The levels pino knows, most verbose first, and `silent`; src/config.ts checks names against them. */
export const LOG_LEVELS: readonly string[] = [...Object.keys(pino.levels.values).sort((a, b) => pino.levels.values[a] - pino.levels.values[b]), 'silent'];

/** `level` comes resolved from src/config.ts (flag, WALCAST_LOG_LEVEL, default). */
export function createLogger(level: string): Logger {
  return pino({ name: 'walcast', level }, pino.destination({ fd: 2, sync: true }));
}

/** For library use and tests: logs nothing. */
export const silentLogger: Logger = pino({ level: 'silent' });
