// What the protocol fuzz (test/integration/fuzz.test.ts) accepts from the server: the error codes,
// close codes and resync reasons the docs list, and the message types of docs/PROTOCOL.md.

import fs from 'node:fs';
import { CLOSE } from '../../src/constants.js';

export interface Documented {
  /** Wire error codes (docs/errors.md "Wire protocol"). */
  wireCodes: Set<string>;
  /** Close codes (docs/errors.md "Wire protocol"). */
  closeCodes: Set<number>;
  /** Resync reasons (docs/PROTOCOL.md §6). */
  resyncReasons: Set<string>;
  /** Close codes the server may close a fuzzed connection with: documented, walcast's own, and RFC 6455's for bad input. */
  allowedClose: Set<number>;
}

/** The first value of each row of the first Markdown table after `heading` in `text`. */
function tableAfter(text: string, heading: RegExp): string[] {
  const at = text.search(heading);
  if (at < 0) return [];
  const lines = text.slice(at).split('\n');
  const start = lines.findIndex((l) => l.startsWith('|'));
  const rows: string[] = [];
  for (let i = start + 2; start >= 0 && i < lines.length && lines[i].startsWith('|'); i++) rows.push(lines[i].split('|')[1].trim().replace(/`/g, ''));
  return rows;
}

/** Wire error codes and close codes (docs/errors.md "Wire protocol"), resync reasons (docs/PROTOCOL.md §6). */
export function documented(): Documented {
  const errors = fs.readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
  const wire = errors.slice(errors.indexOf('## Wire protocol'));
  const protocol = fs.readFileSync(new URL('../../docs/PROTOCOL.md', import.meta.url), 'utf8');
  const closeCodes = new Set(tableAfter(wire, /^Close codes:/m).map(Number));
  return {
    wireCodes: new Set(tableAfter(wire, /^\| code \| when/m)),
    closeCodes,
    resyncReasons: new Set(tableAfter(protocol.slice(protocol.indexOf('### `resync`')), /^\| reason \|/m)),
    allowedClose: new Set<number>([...closeCodes, ...Object.values(CLOSE), 1002, 1006, 1007, 1009]),
  };
}

export const SERVER_TYPES = new Set(['welcome', 'authenticated', 'subscribed', 'change', 'progress', 'resync', 'unsubscribed', 'joined', 'left', 'broadcast', 'presence_state', 'presence_diff', 'error', 'pong']);
/** Server messages that never carry a `ref` (docs/PROTOCOL.md §3). */
export const NEVER_REF = new Set(['welcome', 'change', 'progress', 'broadcast', 'presence_state', 'presence_diff']);
