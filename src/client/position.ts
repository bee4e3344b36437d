// Positions as the wire carries them (docs/PROTOCOL.md §4): "<commit LSN>:<index>", the LSN in
// Postgres text form (two hex words, "16/B374D848"), the index of the change within its
// transaction. They order by LSN as a 64-bit number, then by index. Pure functions, no BigInt
// needed: the two 32-bit words are compared in turn.

/** The largest index; with it a position means "everything up to this LSN". */
export const MAX_INDEX = 2_147_483_647;

/** A parsed position: the LSN's high and low 32-bit words and the index. */
export interface ParsedPosition {
  readonly hi: number;
  readonly lo: number;
  readonly index: number;
}

const POSITION_RE = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8}):(\d{1,10})$/;

/** Parses "16/B374D848:3"; null when `text` is not a position. */
export function tryParsePosition(text: unknown): ParsedPosition | null {
  if (typeof text !== 'string') return null;
  const m = POSITION_RE.exec(text);
  if (!m) return null;
  const index = Number(m[3]);
  if (index > MAX_INDEX) return null;
  return { hi: parseInt(m[1], 16), lo: parseInt(m[2], 16), index };
}

/** Parses "16/B374D848:3"; throws a TypeError when `text` is not a position. */
export function parsePosition(text: unknown): ParsedPosition {
  const p = tryParsePosition(text);
  if (!p) throw new TypeError(`not a position: ${JSON.stringify(text)} (a position looks like "16/B374D848:3")`);
  return p;
}

export function isPosition(text: unknown): text is string {
  return tryParsePosition(text) !== null;
}

/** The canonical text form (upper-case hex, as the server writes it). */
export function formatPosition(p: ParsedPosition): string {
  return `${p.hi.toString(16).toUpperCase()}/${p.lo.toString(16).toUpperCase()}:${p.index}`;
}

/** Negative when a is before b, 0 when they name the same change, positive when a is after b. */
export function comparePositions(a: string | ParsedPosition, b: string | ParsedPosition): number {
  const x = typeof a === 'string' ? parsePosition(a) : a;
  const y = typeof b === 'string' ? parsePosition(b) : b;
  if (x.hi !== y.hi) return x.hi < y.hi ? -1 : 1;
  if (x.lo !== y.lo) return x.lo < y.lo ? -1 : 1;
  return x.index < y.index ? -1 : x.index > y.index ? 1 : 0;
}

/** The later of two positions (`a` when equal); a null side loses. */
export function maxPosition(a: string | null, b: string | null): string | null {
  if (a === null) return b;
  if (b === null) return a;
  return comparePositions(b, a) > 0 ? b : a;
}
