// The process's open-files soft limit: every WebSocket, HTTP request, Postgres connection and
// file takes one descriptor, so the connection cap is derived from it (config.ts).
import { readFileSync } from 'node:fs';

/**
 * The soft limit of "Max open files" from /proc/self/limits (Node.js raises it to the hard
 * limit at start, so this is what the process really has); null when unknown (not Linux) or
 * unlimited.
 */
export function openFilesSoftLimit(limitsFile = '/proc/self/limits'): number | null {
  let text: string;
  try {
    text = readFileSync(limitsFile, 'utf8');
  } catch {
    return null;
  }
  const m = /^Max open files\s+(\S+)/m.exec(text);
  const n = m ? Number(m[1]) : NaN;
  return Number.isInteger(n) && n > 0 ? n : null;
}
