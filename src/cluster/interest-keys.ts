// Keys of the interest bucket `walcast_<ns>_interest` (docs/dev/cluster-plan.md, "Next increments
// in detail", item 6), written by each edge process (src/cluster/interest.ts) and read by capture
// (src/cluster/interest-table.ts):
//   `<inc>.node`                                  the incarnation exists (value {node, started})
//   `<inc>.d.<schema>.<table>.<route>`            it follows one route of a data table
//   `<inc>.d.<schema>.<table>.=a`                 it follows the whole table
// `inc` is random per process ([a-z0-9]{8}): a restarted node is a new incarnation, so keys a dead
// one left behind can never be mistaken for the new one's. Names are subject tokens (token());
// route tokens as src/cluster/route.ts computes them (`=0` for NULL). This replaces the
// `<short>-<inc>` prefix that subjects.ts's tableInterestKey sketched: no short-number allocation
// is needed when the incarnation id is random.
import { randomBytes } from 'node:crypto';
import { CLUSTER_INTEREST, CLUSTER_SUBJECTS as S, CLUSTER_TOKENS } from '../constants.js';
import { isNameToken } from './subjects.js';

const INC = new RegExp(`^[a-z0-9]{${CLUSTER_INTEREST.incLength}}$`);
const ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';

/** A fresh incarnation id: CLUSTER_INTEREST.incLength characters of [a-z0-9] (41 bits). */
export function newIncarnation(): string {
  // 256 % 36 = 4: bytes ≥ 252 are redrawn so every character is equally likely.
  let out = '';
  while (out.length < CLUSTER_INTEREST.incLength) {
    for (const b of randomBytes(CLUSTER_INTEREST.incLength * 2)) {
      if (b < 252 && out.length < CLUSTER_INTEREST.incLength) out += ALPHABET[b % 36];
    }
  }
  return out;
}

export function isIncarnation(inc: string): boolean {
  return INC.test(inc);
}

/** Whether a route token may be followed on its own: a name token or `=0` (NULL). */
export function isFollowableRoute(routeTok: string): boolean {
  return isNameToken(routeTok) || routeTok === CLUSTER_TOKENS.nullRoute;
}

/** `<inc>.node`. */
export function presenceKey(inc: string): string {
  return `${inc}.${CLUSTER_INTEREST.presenceToken}`;
}

/** `<inc>.d.<schemaTok>.<tableTok>.<routeTok or =a>` (tokens, not raw names). */
export function dataInterestKey(inc: string, schemaTok: string, tableTok: string, routeTok: string | null): string {
  return `${inc}.${S.data}.${schemaTok}.${tableTok}.${routeTok ?? CLUSTER_TOKENS.wholeTable}`;
}

/** Every key of one incarnation (a watch or listing filter). */
export function incarnationKeys(inc: string): string {
  return `${inc}.>`;
}

/** The value of a presence key. */
export interface PresenceValue {
  node: string;
  /** When the process started (ISO). */
  started: string;
}

export type InterestKey =
  | { kind: 'node'; inc: string }
  /** route null: the whole table (`=a`). */
  | { kind: 'data'; inc: string; schema: string; table: string; route: string | null };

/** A key of the interest bucket taken apart; null when it is none walcast writes. */
export function parseInterestKey(key: string): InterestKey | null {
  const t = key.split('.');
  if (!INC.test(t[0])) return null;
  if (t.length === 2 && t[1] === CLUSTER_INTEREST.presenceToken) return { kind: 'node', inc: t[0] };
  if (t.length !== 5 || t[1] !== S.data || !isNameToken(t[2]) || !isNameToken(t[3])) return null;
  if (t[4] === CLUSTER_TOKENS.wholeTable) return { kind: 'data', inc: t[0], schema: t[2], table: t[3], route: null };
  if (!isFollowableRoute(t[4])) return null;
  return { kind: 'data', inc: t[0], schema: t[2], table: t[3], route: t[4] };
}
