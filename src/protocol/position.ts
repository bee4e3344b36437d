// Positions (docs/PROTOCOL.md §4, fixed): "<commit LSN>:<index>", the index of the change within its
// transaction from 0. They order all changes: by commit LSN, then by index.
import { PositionError } from '../errors.js';
import { formatLsn, isLsn, parseLsn } from './lsn.js';

/** Indexes are int32 in Postgres terms; the largest one also marks "everything at this LSN". */
export const MAX_POSITION_INDEX = 2_147_483_647;

export interface Position {
  readonly lsn: bigint;
  readonly index: number;
}

export function parseWalPosition(text: unknown): Position {
  if (typeof text !== 'string') throw new PositionError('a position must be a string like "16/B374D848:3"');
  const colon = text.lastIndexOf(':');
  const lsnText = colon < 0 ? '' : text.slice(0, colon);
  const indexText = colon < 0 ? '' : text.slice(colon + 1);
  if (!isLsn(lsnText) || !/^\d{1,10}$/.test(indexText) || Number(indexText) > MAX_POSITION_INDEX) {
    throw new PositionError(`not a position: ${JSON.stringify(text)}`, 'a position looks like "16/B374D848:3"');
  }
  return { lsn: parseLsn(lsnText), index: Number(indexText) };
}

export function formatWalPosition(lsn: bigint, index: number): string {
  return `${formatLsn(lsn)}:${index}`;
}

/** Negative when a is before b, 0 when equal, positive when after. */
export function compareWalPositions(a: Position, b: Position): number {
  if (a.lsn !== b.lsn) return a.lsn < b.lsn ? -1 : 1;
  return a.index - b.index;
}

/**
 * The last position before WAL position `lsn`: everything committed before it. The floor of a
 * window whose slot is confirmed at `lsn`, and what an idle mark at WAL end `lsn` stands for.
 */
export function floorAt(lsn: bigint): Position {
  return { lsn: lsn > 0n ? lsn - 1n : 0n, index: MAX_POSITION_INDEX };
}
