// NATS subjects and KV keys of the cluster (docs/dev/cluster-plan.md §2). Names that come from
// the database or from clients (schemas, tables, route values, channels, node ids) become one
// subject token each: as they are when they match [A-Za-z0-9_-]{1,48}, else `=` + the first 22
// base64url characters of their SHA-256 (132 bits: a collision would only cost traffic, the
// receiving node still filters rows itself). `=` is legal in subjects and in KV keys; tokens of
// two characters starting with `=` are reserved (CLUSTER_TOKENS), which no encoded name can be.
import { createHash } from 'node:crypto';
import { CLUSTER_KV, CLUSTER_SUBJECTS as S, CLUSTER_TOKENS, NAMESPACE_PATTERN } from '../constants.js';
import { ConfigError } from '../errors.js';

const PLAIN = /^[A-Za-z0-9_-]{1,48}$/;
const HASHED = /^=[A-Za-z0-9_-]{22}$/;
const RESERVED: ReadonlySet<string> = new Set(Object.values(CLUSTER_TOKENS));
/** One subject token for a name: the name itself when plain, else its hash form. */
export function token(name: string): string {
  if (PLAIN.test(name)) return name;
  return '=' + createHash('sha256').update(name, 'utf8').digest('base64url').slice(0, 22);
}

/** Whether `tok` is something token() can return (a plain name or a hash form). */
export function isNameToken(tok: string): boolean {
  return PLAIN.test(tok) || HASHED.test(tok);
}

/** Whether `tok` is one of the reserved tokens. */
export function isReservedToken(tok: string): boolean {
  return RESERVED.has(tok);
}

/** A route token: a name token or a reserved one. */
function isRouteToken(tok: string): boolean {
  return isNameToken(tok) || RESERVED.has(tok);
}

/**
 * Checks a cluster namespace (`--cluster`, default the slot name): it is used as is in subjects,
 * stream and bucket names, so it must be one plain token.
 */
export function validateNamespace(ns: string): string {
  if (!NAMESPACE_PATTERN.test(ns)) {
    throw new ConfigError(
      `the cluster name ${JSON.stringify(ns)} is not 1 to 64 of the characters A-Z a-z 0-9 _ -`,
      'pass --cluster NAME (it defaults to the slot name)',
    );
  }
  return ns;
}

/** Changes of data tables (`d`) or of the policy and relation tables (`a`). */
export type ChangeArea = 'd' | 'a';

/** A subject, taken apart. Name fields hold tokens (token()), as they appear in the subject. */
export type SubjectParts =
  | { kind: 'change'; republished: boolean; area: ChangeArea; schema: string; table: string; route: string }
  | { kind: 'sqlBroadcast'; republished: boolean; channel: string }
  | { kind: 'ctl'; republished: boolean }
  | { kind: 'heartbeat' }
  | { kind: 'alive' }
  | { kind: 'broadcast'; channel: string }
  | { kind: 'presence'; channel: string }
  | { kind: 'presenceSync'; channel: string };

function prefix(ns: string): string {
  return `${S.root}.${ns}.`;
}

function storedPrefix(ns: string, republished: boolean): string {
  return prefix(ns) + (republished ? S.republished : S.stream) + '.';
}

/** `walcast.<ns>.s.<area>.<schema>.<table>.<route>` (`.r.` for the republished copy); names raw, route a token. */
export function changeSubject(ns: string, area: ChangeArea, schema: string, table: string, route: string, republished = false): string {
  return `${storedPrefix(ns, republished)}${area}.${token(schema)}.${token(table)}.${route}`;
}

/** Every route of one table: `walcast.<ns>.{s|r}.<area>.<schema>.<table>.*`. */
export function tableSubjects(ns: string, area: ChangeArea, schema: string, table: string, republished = false): string {
  return changeSubject(ns, area, schema, table, '*', republished);
}

/** `walcast.<ns>.s.x.<channel>`: SQL broadcasts. */
export function sqlBroadcastSubject(ns: string, channel: string, republished = false): string {
  return `${storedPrefix(ns, republished)}${S.sqlBroadcast}.${token(channel)}`;
}

/** `walcast.<ns>.s.x.>`: every SQL broadcast (or `.r.x.>`). */
export function sqlBroadcastSubjects(ns: string, republished = false): string {
  return `${storedPrefix(ns, republished)}${S.sqlBroadcast}.>`;
}

/** `walcast.<ns>.s.ctl`: epoch markers, marks, resets, relation metadata. */
export function ctlSubject(ns: string, republished = false): string {
  return storedPrefix(ns, republished) + S.ctl;
}

/** `walcast.<ns>.s.>`: the stream's subjects (or `.r.>`, the republished copies). */
export function streamSubjects(ns: string, republished = false): string {
  return storedPrefix(ns, republished) + '>';
}

/** `walcast.<ns>.s.a.>`: what every node follows whole (or `.r.a.>`). */
export function authSubjects(ns: string, republished = false): string {
  return `${storedPrefix(ns, republished)}${S.auth}.>`;
}

/** Core NATS: capture's heartbeat. */
export function heartbeatSubject(ns: string): string {
  return prefix(ns) + S.heartbeat;
}

/** Core NATS: node liveness. */
export function aliveSubject(ns: string): string {
  return prefix(ns) + S.alive;
}

/** Core NATS: client broadcasts to a channel. */
export function broadcastSubject(ns: string, channel: string): string {
  return `${prefix(ns)}${S.broadcast}.${token(channel)}`;
}

/** Core NATS: presence diffs of a channel. */
export function presenceSubject(ns: string, channel: string): string {
  return `${prefix(ns)}${S.presence}.${token(channel)}`;
}

/** Core NATS: presence sync requests of a channel. */
export function presenceSyncSubject(ns: string, channel: string): string {
  return `${prefix(ns)}${S.presenceSync}.${token(channel)}`;
}

/** Core NATS: a live node answers here for its --node-id (node_id_in_use at start). */
export function nodeIdSubject(ns: string, nodeId: string): string {
  return `${prefix(ns)}${S.nodeId}.${token(nodeId)}`;
}

/** The subject for parts (names as tokens): parseSubject's inverse. */
export function formatSubject(ns: string, p: SubjectParts): string {
  switch (p.kind) {
    case 'change':
      return `${storedPrefix(ns, p.republished)}${p.area}.${p.schema}.${p.table}.${p.route}`;
    case 'sqlBroadcast':
      return `${storedPrefix(ns, p.republished)}${S.sqlBroadcast}.${p.channel}`;
    case 'ctl':
      return storedPrefix(ns, p.republished) + S.ctl;
    case 'heartbeat':
      return prefix(ns) + S.heartbeat;
    case 'alive':
      return prefix(ns) + S.alive;
    case 'broadcast':
      return `${prefix(ns)}${S.broadcast}.${p.channel}`;
    case 'presence':
      return `${prefix(ns)}${S.presence}.${p.channel}`;
    case 'presenceSync':
      return `${prefix(ns)}${S.presenceSync}.${p.channel}`;
  }
}

/** A subject of namespace `ns` taken apart; null for anything else (another namespace, a malformed subject). */
export function parseSubject(ns: string, subject: string): SubjectParts | null {
  const head = prefix(ns);
  if (!subject.startsWith(head)) return null;
  const t = subject.slice(head.length).split('.');
  const [first, second] = t;
  if (first === S.stream || first === S.republished) {
    const republished = first === S.republished;
    if (second === S.ctl && t.length === 2) return { kind: 'ctl', republished };
    if (second === S.sqlBroadcast && t.length === 3 && isNameToken(t[2])) return { kind: 'sqlBroadcast', republished, channel: t[2] };
    if ((second === S.data || second === S.auth) && t.length === 5 && isNameToken(t[2]) && isNameToken(t[3]) && isRouteToken(t[4])) {
      return { kind: 'change', republished, area: second, schema: t[2], table: t[3], route: t[4] };
    }
    return null;
  }
  if (t.length === 1) {
    if (first === S.heartbeat) return { kind: 'heartbeat' };
    if (first === S.alive) return { kind: 'alive' };
    return null;
  }
  if (t.length !== 2 || !isNameToken(second)) return null;
  if (first === S.broadcast) return { kind: 'broadcast', channel: second };
  if (first === S.presence) return { kind: 'presence', channel: second };
  if (first === S.presenceSync) return { kind: 'presenceSync', channel: second };
  return null;
}

// KV keys. Bucket `walcast_<ns>_cluster`: `capture`, `node.<id>`, `short.<n>`, `rel.<oid>.<hash>`.
// Bucket `walcast_<ns>_interest`: `<short>-<inc>.d.<schema>.<table>.<route or =a>`, `<short>-<inc>.x.<channel>`.

/** `node.<id token>`: a node's registration (its value holds the id as given). */
export function nodeKey(nodeId: string): string {
  return `${CLUSTER_KV.node}.${token(nodeId)}`;
}

/** `short.<n>`: the create-only allocation of a node's short number. */
export function shortKey(short: number): string {
  if (!Number.isSafeInteger(short) || short < 0) throw new RangeError(`not a short node number: ${short}`);
  return `${CLUSTER_KV.short}.${short}`;
}

/** `rel.<oid>.<hash>`: relation metadata, keyed by its reference (codec.ts relationRef). */
export function relationKey(ref: string): string {
  return `${CLUSTER_KV.relation}.${ref}`;
}

/** What a node follows, as a key of the interest bucket. */
export type InterestParts =
  | { kind: 'table'; short: number; inc: number; schema: string; table: string; route: string }
  | { kind: 'channel'; short: number; inc: number; channel: string };

/** `<short>-<inc>`: one incarnation of a node in interest keys. */
function nodePart(short: number, inc: number): string {
  if (!Number.isSafeInteger(short) || short < 0 || !Number.isSafeInteger(inc) || inc < 0) {
    throw new RangeError(`not a node incarnation: ${short}-${inc}`);
  }
  return `${short}-${inc}`;
}

/** Interest in a table's route (a token) or, with CLUSTER_TOKENS.wholeTable, in all of it; names raw. */
export function tableInterestKey(short: number, inc: number, schema: string, table: string, route: string): string {
  return `${nodePart(short, inc)}.${S.data}.${token(schema)}.${token(table)}.${route}`;
}

/** Interest in a channel's SQL broadcasts. */
export function channelInterestKey(short: number, inc: number, channel: string): string {
  return `${nodePart(short, inc)}.${S.sqlBroadcast}.${token(channel)}`;
}

/** Every interest key of one node incarnation (a KV watch / purge filter). */
export function nodeInterestKeys(short: number, inc: number): string {
  return `${nodePart(short, inc)}.>`;
}

const NODE_PART = /^(0|[1-9][0-9]{0,15})-(0|[1-9][0-9]{0,15})$/;

/** An interest key taken apart (name fields as tokens); null when it is not one. */
export function parseInterestKey(key: string): InterestParts | null {
  const t = key.split('.');
  const m = NODE_PART.exec(t[0]);
  if (!m) return null;
  const short = Number(m[1]);
  const inc = Number(m[2]);
  if (!Number.isSafeInteger(short) || !Number.isSafeInteger(inc)) return null;
  if (t[1] === S.sqlBroadcast && t.length === 3 && isNameToken(t[2])) return { kind: 'channel', short, inc, channel: t[2] };
  if (t[1] === S.data && t.length === 5 && isNameToken(t[2]) && isNameToken(t[3]) && (isNameToken(t[4]) || t[4] === CLUSTER_TOKENS.wholeTable || t[4] === CLUSTER_TOKENS.nullRoute)) {
    return { kind: 'table', short, inc, schema: t[2], table: t[3], route: t[4] };
  }
  return null;
}
