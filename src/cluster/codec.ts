// The payload of one change in the cluster's stream (docs/dev/cluster-plan.md §3.1), versioned
// JSON, and of the relation metadata it refers to. Rows travel exactly as src/capture/values.ts
// decoded them (JSON values only: numbers, strings, booleans, null, arrays, objects), so an edge
// renders the same bytes as the capture node would (src/hub/render.ts). `changed` is not sent:
// render.ts derives it from old and new. decode* validate and throw only ClusterMessageError /
// ClusterMessageVersionError.
import { createHash } from 'node:crypto';
import type { Relation, RelationColumn, Row } from '../capture/pgoutput.types.js';
import type { CapturedChange, TransactionHead } from '../capture/types.js';
import { TypeRegistry, type Decoder } from '../capture/types-registry.js';
import { ClusterMessageError, ClusterMessageVersionError } from '../errors.js';
import { formatLsn, isLsn, parseLsn } from '../protocol/lsn.js';
import { MAX_POSITION_INDEX } from '../protocol/position.js';

/** The format version written; decode accepts only it. */
export const CODEC_VERSION = 1;

type Op = CapturedChange['tag'];

/** A change message as decoded: validated, its relation still a reference (relationRef). */
export interface ChangeMessage {
  v: 1;
  /** "<commit LSN>:<index>". */
  pos: string;
  /** End LSN of the commit record (the slot is acknowledged up to it). */
  end: string;
  xid: number;
  /** Commit time, ISO 8601 as capture formats it. */
  t: string;
  op: Op;
  /** "<oid>.<hash>" (relationRef). */
  rel: string;
  new?: Row;
  old?: Row;
  unchanged_toast?: string[];
  cascade?: boolean;
  restart_identity?: boolean;
}

/** What a change message gives back: its transaction's head and the change, as capture made them. */
export interface DecodedChange {
  head: TransactionHead & { endLsn: bigint };
  change: CapturedChange;
}

/** The transaction fields a change message carries. */
export interface ChangeTx {
  xid: number;
  lsnText: string;
  endLsn: bigint;
  commitTime: string;
}

const OPS: ReadonlySet<string> = new Set(['insert', 'update', 'delete', 'truncate']);
const REF = /^(0|[1-9][0-9]{0,9})\.([A-Za-z0-9_-]{12})$/;
const IDENTITIES: ReadonlySet<string> = new Set(['default', 'nothing', 'full', 'index']);
const XID_MAX = 4_294_967_295;

/** The payload of one change (UTF-8 JSON). */
export function encodeChange(tx: ChangeTx, c: CapturedChange, ref: string): Buffer {
  const m: Record<string, unknown> = {
    v: CODEC_VERSION,
    pos: `${tx.lsnText}:${c.index}`,
    end: formatLsn(tx.endLsn),
    xid: tx.xid,
    t: tx.commitTime,
    op: c.tag,
    rel: ref,
  };
  switch (c.tag) {
    case 'insert':
      m.new = c.new;
      break;
    case 'update':
      m.new = c.new;
      if (c.old) m.old = c.old;
      if (c.unchangedToast) m.unchanged_toast = c.unchangedToast;
      break;
    case 'delete':
      m.old = c.old;
      break;
    case 'truncate':
      m.cascade = c.cascade;
      m.restart_identity = c.restartIdentity;
      break;
  }
  return Buffer.from(JSON.stringify(m), 'utf8');
}

function bad(what: string): never {
  throw new ClusterMessageError(`malformed cluster message: ${what}`);
}

function parseJson(data: Uint8Array | string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(typeof data === 'string' ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8'));
  } catch {
    bad('not JSON');
  }
  if (!isPlainObject(value)) bad('not a JSON object');
  if (value.v !== CODEC_VERSION) {
    if (typeof value.v === 'number' && Number.isInteger(value.v) && value.v > CODEC_VERSION) {
      throw new ClusterMessageVersionError(`cluster message of format version ${value.v}; this walcast reads version ${CODEC_VERSION}`, 'upgrade this node to the capture node\'s version');
    }
    bad(`version ${JSON.stringify(value.v) ?? 'missing'}`);
  }
  return value;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isPosition(s: unknown): s is string {
  if (typeof s !== 'string') return false;
  const colon = s.lastIndexOf(':');
  if (colon < 0 || !isLsn(s.slice(0, colon))) return false;
  const index = s.slice(colon + 1);
  return /^(0|[1-9][0-9]{0,9})$/.test(index) && Number(index) <= MAX_POSITION_INDEX;
}

/** Decodes and validates a change payload. Throws only ClusterMessageError / ClusterMessageVersionError. */
export function decodeChange(data: Uint8Array | string): ChangeMessage {
  const m = parseJson(data);
  if (!isPosition(m.pos)) bad('pos');
  if (typeof m.end !== 'string' || !isLsn(m.end)) bad('end');
  if (typeof m.xid !== 'number' || !Number.isInteger(m.xid) || m.xid < 0 || m.xid > XID_MAX) bad('xid');
  if (typeof m.t !== 'string' || m.t === '') bad('t');
  if (typeof m.op !== 'string' || !OPS.has(m.op)) bad('op');
  if (typeof m.rel !== 'string' || !REF.test(m.rel)) bad('rel');
  const op = m.op as Op;
  const needNew = op === 'insert' || op === 'update';
  const needOld = op === 'delete';
  if (needNew ? !isPlainObject(m.new) : m.new !== undefined) bad('new');
  if (needOld ? !isPlainObject(m.old) : m.old !== undefined && (op !== 'update' || !isPlainObject(m.old))) bad('old');
  if (m.unchanged_toast !== undefined && (op !== 'update' || !Array.isArray(m.unchanged_toast) || !m.unchanged_toast.every((x) => typeof x === 'string'))) {
    bad('unchanged_toast');
  }
  if (op === 'truncate' ? typeof m.cascade !== 'boolean' || typeof m.restart_identity !== 'boolean' : m.cascade !== undefined || m.restart_identity !== undefined) {
    bad('cascade / restart_identity');
  }
  return m as unknown as ChangeMessage;
}

/**
 * The change and its transaction head, with the relation its `rel` names (looked up by the
 * caller: from its cache, or KV `rel.<ref>`). Throws ClusterMessageError when the relation is not
 * the one named.
 */
export function toCaptured(m: ChangeMessage, relation: Relation): DecodedChange {
  const dot = m.rel.indexOf('.');
  if (Number(m.rel.slice(0, dot)) !== relation.oid) bad(`relation ${m.rel} given as ${relation.oid}`);
  const colon = m.pos.lastIndexOf(':');
  const lsn = parseLsn(m.pos.slice(0, colon));
  const index = Number(m.pos.slice(colon + 1));
  const head = { xid: m.xid, lsn, lsnText: formatLsn(lsn), endLsn: parseLsn(m.end), commitTime: m.t };
  let change: CapturedChange;
  switch (m.op) {
    case 'insert':
      change = { index, tag: 'insert', relation, new: m.new as Row };
      break;
    case 'update':
      change = { index, tag: 'update', relation, old: m.old ?? null, new: m.new as Row, unchangedToast: m.unchanged_toast ?? null };
      break;
    case 'delete':
      change = { index, tag: 'delete', relation, old: m.old as Row };
      break;
    case 'truncate':
      change = { index, tag: 'truncate', relation, cascade: m.cascade === true, restartIdentity: m.restart_identity === true };
      break;
  }
  return { head, change };
}

// Relation metadata: sent once per version of a table's shape (KV `rel.<ref>` and a ctl message).

/** The metadata message of a relation. */
export interface RelationMessage {
  v: 1;
  type: 'relation';
  ref: string;
  oid: number;
  schema: string;
  name: string;
  replica_identity: Relation['replicaIdentity'];
  /** [name, key, type OID, type modifier] per column, in order. */
  columns: Array<[string, boolean, number, number]>;
}

function shape(r: Pick<Relation, 'oid' | 'schema' | 'name' | 'replicaIdentity' | 'columns'>): string {
  return JSON.stringify([r.oid, r.schema, r.name, r.replicaIdentity, r.columns.map((c) => [c.name, c.key, c.typeOid, c.typeMod])]);
}

/**
 * `<oid>.<hash>`: the relation and the version of its shape (names, replica identity, columns
 * and their types), 12 base64url characters of SHA-256 (72 bits): a changed table gets a new
 * reference, so metadata is never updated in place.
 */
export function relationRef(r: Pick<Relation, 'oid' | 'schema' | 'name' | 'replicaIdentity' | 'columns'>): string {
  return `${r.oid}.${createHash('sha256').update(shape(r), 'utf8').digest('base64url').slice(0, 12)}`;
}

export function encodeRelation(r: Relation): Buffer {
  const m: RelationMessage = {
    v: CODEC_VERSION,
    type: 'relation',
    ref: relationRef(r),
    oid: r.oid,
    schema: r.schema,
    name: r.name,
    replica_identity: r.replicaIdentity,
    columns: r.columns.map((c) => [c.name, c.key, c.typeOid, c.typeMod]),
  };
  return Buffer.from(JSON.stringify(m), 'utf8');
}

const builtinTypes = new TypeRegistry();

/**
 * The Relation of a metadata message. Its decoders (unused on edges: rows arrive decoded) come
 * from `decoderFor`, by default the builtin types'. Checks that `ref` is the hash of the content.
 */
export function decodeRelation(data: Uint8Array | string, decoderFor: (typeOid: number) => Decoder = (oid) => builtinTypes.decoder(oid)): Relation {
  const m = parseJson(data);
  if (m.type !== 'relation') bad('type');
  if (typeof m.oid !== 'number' || !Number.isInteger(m.oid) || m.oid < 0 || m.oid > XID_MAX) bad('oid');
  if (typeof m.schema !== 'string' || typeof m.name !== 'string') bad('schema / name');
  if (typeof m.replica_identity !== 'string' || !IDENTITIES.has(m.replica_identity)) bad('replica_identity');
  if (!Array.isArray(m.columns)) bad('columns');
  const columns: RelationColumn[] = [];
  for (const c of m.columns as unknown[]) {
    if (
      !Array.isArray(c) || c.length !== 4 || typeof c[0] !== 'string' || typeof c[1] !== 'boolean' ||
      !Number.isInteger(c[2]) || (c[2] as number) < 0 || (c[2] as number) > XID_MAX || !Number.isInteger(c[3])
    ) {
      bad('column');
    }
    columns.push({ name: c[0], key: c[1], typeOid: c[2] as number, typeMod: c[3] as number });
  }
  const base = { oid: m.oid, schema: m.schema, name: m.name, replicaIdentity: m.replica_identity as Relation['replicaIdentity'], columns };
  if (m.ref !== relationRef(base)) bad(`ref ${JSON.stringify(m.ref)} does not match the relation`);
  return { ...base, qualified: `${m.schema}.${m.name}`, decoders: columns.map((c) => decoderFor(c.typeOid)) };
}
