// Structured logs (pino), always to stderr: stdout belongs to data (`walcast tail`).
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string = process.env.WALCAST_LOG_LEVEL ?? 'info'): Logger {
  return pino({ name: 'walcast', level }, pino.destination({ fd: 2, sync: true }));
}

/** For library use and tests: logs nothing. */
export const silentLogger: Logger = pino({ level: 'silent' });
