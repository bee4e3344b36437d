// Log sequence numbers: 64-bit WAL byte positions, written by Postgres as two hex words "16/B374D848"
// (https://www.postgresql.org/docs/current/datatype-pg-lsn.html). Kept as bigint internally.
import { PositionError } from '../errors.js';

const LSN_RE = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

export function parseLsn(text: string): bigint {
  const m = LSN_RE.exec(text);
  if (!m) throw new PositionError(`not an LSN: ${JSON.stringify(text)}`, 'an LSN looks like "16/B374D848"');
  return (BigInt('0x' + m[1]) << 32n) | BigInt('0x' + m[2]);
}

/** Postgres text form: upper-case hex, no zero padding. */
export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

export function isLsn(text: string): boolean {
  return LSN_RE.test(text);
}
