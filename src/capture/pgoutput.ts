// Decoder of pgoutput protocol version 1 messages (the payload of XLogData).
// Byte layouts: https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html
// We decode ourselves rather than through pg-logical-replication's parser because that one
// runs values through pg's global type parsers (int8 as strings, timestamps as Date losing
// microseconds, no array element types) and renders LSNs zero-padded.
import { PG_EPOCH_MS } from '../constants.js';
import { ProtocolDecodeError } from '../errors.js';
import type { MsgIgnored, PgoutputMessage, Relation, RelationColumn, Row } from './pgoutput.types.js';
import type { Decoder, TypeRegistry } from './types-registry.js';

/** Microseconds between 1970-01-01 and 2000-01-01, the epoch of Postgres timestamps. */
const PG_EPOCH_US = BigInt(PG_EPOCH_MS) * 1000n;
const IDENTITY: Record<number, Relation['replicaIdentity']> = { 0x64: 'default', 0x6e: 'nothing', 0x66: 'full', 0x69: 'index' };
/** Marks a column whose value is an unchanged TOAST datum not present in the message. */
const UNCHANGED = Symbol('unchanged-toast');
const IGNORED_MESSAGE: MsgIgnored = Object.freeze({ tag: 'ignored', kind: 'message' });

export class PgoutputDecoder {
  private readonly relations = new Map<number, Relation>();
  private buf: Buffer = Buffer.alloc(0);
  private pos = 0;

  constructor(private readonly types: TypeRegistry) {}

  relation(oid: number): Relation | undefined {
    return this.relations.get(oid);
  }

  /** Type OIDs of a relation the registry cannot decode yet (custom types created after start). */
  unknownTypes(rel: Relation): number[] {
    return rel.columns.map((c) => c.typeOid).filter((oid) => !this.types.has(oid));
  }

  /** Re-choose a relation's decoders after the registry learned new types. */
  refreshDecoders(oid: number): void {
    const rel = this.relations.get(oid);
    if (rel) this.relations.set(oid, this.makeRelation(rel.oid, rel.schema, rel.name, rel.replicaIdentity, rel.columns));
  }

  decode(buf: Buffer): PgoutputMessage {
    this.buf = buf;
    this.pos = 1;
    switch (buf[0]) {
      case 0x42 /* B */:
        return { tag: 'begin', finalLsn: this.u64(), commitTimeUs: this.time(), xid: this.u32() };
      case 0x43 /* C */: {
        this.pos += 1; // flags, unused
        return { tag: 'commit', commitLsn: this.u64(), endLsn: this.u64(), commitTimeUs: this.time() };
      }
      case 0x4f /* O */:
        return { tag: 'origin', originLsn: this.u64(), name: this.cstring() };
      case 0x52 /* R */:
        return { tag: 'relation', relation: this.readRelation() };
      case 0x59 /* Y */:
        return { tag: 'type', typeOid: this.u32(), schema: this.cstring(), name: this.cstring() };
      case 0x49 /* I */: {
        const relation = this.relationFor(this.u32());
        this.pos += 1; // 'N'
        return { index: -1, tag: 'insert', relation, new: this.tuple(relation) };
      }
      case 0x55 /* U */:
        return this.readUpdate();
      case 0x44 /* D */: {
        const relation = this.relationFor(this.u32());
        const keyOnly = this.buf[this.pos++] === 0x4b; /* 'K' (identity key) or 'O' (whole row) */
        return { index: -1, tag: 'delete', relation, old: this.tuple(relation, keyOnly) };
      }
      case 0x54 /* T */: {
        const n = this.u32();
        const flags = this.buf[this.pos++];
        const relations: Relation[] = [];
        for (let i = 0; i < n; i++) relations.push(this.relationFor(this.u32()));
        return { tag: 'truncate', relations, cascade: (flags & 1) !== 0, restartIdentity: (flags & 2) !== 0 };
      }
      case 0x4d /* M */:
        // Not requested (messages 'false'); should one come anyway, its content is not copied.
        return IGNORED_MESSAGE;
      default:
        throw new ProtocolDecodeError(`unknown pgoutput message type 0x${(buf[0] ?? 0).toString(16)}`);
    }
  }

  /**
   * The relations a row change (insert, update, delete, truncate) touches, read without decoding
   * its rows; null for any other message. For transactions past the memory bound.
   */
  relationsOf(buf: Buffer): Relation[] | null {
    switch (buf[0]) {
      case 0x49 /* I */:
      case 0x55 /* U */:
      case 0x44 /* D */:
        return [this.relationFor(buf.readUInt32BE(1))];
      case 0x54 /* T */: {
        const n = buf.readUInt32BE(1);
        const relations: Relation[] = [];
        for (let i = 0; i < n; i++) relations.push(this.relationFor(buf.readUInt32BE(6 + 4 * i)));
        return relations;
      }
      default:
        return null;
    }
  }

  private readUpdate(): PgoutputMessage {
    const relation = this.relationFor(this.u32());
    let kind = this.buf[this.pos++];
    let old: Row | null = null;
    if (kind === 0x4b /* K */ || kind === 0x4f /* O */) {
      old = this.tuple(relation, kind === 0x4b);
      kind = this.buf[this.pos++];
    }
    if (kind !== 0x4e /* N */) throw new ProtocolDecodeError(`unexpected update tuple kind 0x${kind.toString(16)}`);
    const row = this.tuple(relation);
    // Unchanged TOAST values are not in the message: take them from the full old row.
    let unchangedToast: string[] | null = null;
    for (const col of relation.columns) {
      if (row[col.name] !== UNCHANGED) continue;
      if (old && old[col.name] !== UNCHANGED && col.name in old && relation.replicaIdentity === 'full') {
        row[col.name] = old[col.name];
      } else {
        delete row[col.name];
        (unchangedToast ??= []).push(col.name);
      }
    }
    return { index: -1, tag: 'update', relation, old, new: row, unchangedToast };
  }

  private readRelation(): Relation {
    const oid = this.u32();
    const schema = this.cstring();
    const name = this.cstring();
    const replicaIdentity = IDENTITY[this.buf[this.pos++]] ?? 'default';
    const n = this.u16();
    const columns: RelationColumn[] = [];
    for (let i = 0; i < n; i++) {
      const key = (this.buf[this.pos++] & 1) !== 0;
      columns.push({ key, name: this.cstring(), typeOid: this.u32(), typeMod: this.i32() });
    }
    const rel = this.makeRelation(oid, schema, name, replicaIdentity, columns);
    this.relations.set(oid, rel);
    return rel;
  }

  private makeRelation(
    oid: number,
    schema: string,
    name: string,
    replicaIdentity: Relation['replicaIdentity'],
    columns: readonly RelationColumn[],
  ): Relation {
    const decoders: Decoder[] = columns.map((c) => this.types.decoder(c.typeOid));
    return { oid, schema, name, qualified: `${schema}.${name}`, replicaIdentity, columns, decoders };
  }

  private relationFor(oid: number): Relation {
    const rel = this.relations.get(oid);
    if (!rel) throw new ProtocolDecodeError(`change for relation ${oid} before its relation message`);
    return rel;
  }

  /**
   * TupleData: Int16 count, then per column 'n' | 'u' | 't' Int32 len bytes | 'b' Int32 len bytes.
   * A key-only tuple ('K') sends non-key columns as 'n': they are left out, not reported as null.
   */
  private tuple(rel: Relation, keyOnly = false): Row {
    const n = this.u16();
    const { columns, decoders } = rel;
    const row: Row = {};
    for (let i = 0; i < n; i++) {
      const kind = this.buf[this.pos++];
      const name = columns[i]?.name ?? `column_${i}`;
      let value: unknown;
      if (kind === 0x74 /* t */) {
        const len = this.u32();
        const text = this.buf.toString('utf8', this.pos, this.pos + len);
        this.pos += len;
        value = decoders[i] ? decoders[i](text) : text;
      } else if (kind === 0x6e /* n */) {
        value = null;
      } else if (kind === 0x75 /* u */) {
        value = UNCHANGED;
      } else if (kind === 0x62 /* b */) {
        value = '\\x' + this.bytes(this.u32()).toString('hex');
      } else {
        throw new ProtocolDecodeError(`unknown tuple value kind 0x${(kind ?? 0).toString(16)}`);
      }
      if (keyOnly && !columns[i]?.key) continue;
      // A column named __proto__ must become a property, not the prototype.
      if (name === '__proto__') Object.defineProperty(row, name, { value, enumerable: true, writable: true, configurable: true });
      else row[name] = value;
    }
    return row;
  }

  private u16(): number {
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }

  private u32(): number {
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  private i32(): number {
    const v = this.buf.readInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  private u64(): bigint {
    const v = this.buf.readBigUInt64BE(this.pos);
    this.pos += 8;
    return v;
  }

  private time(): bigint {
    return this.buf.readBigInt64BE((this.pos += 8) - 8) + PG_EPOCH_US;
  }

  private cstring(): string {
    const end = this.buf.indexOf(0, this.pos);
    if (end < 0) throw new ProtocolDecodeError('unterminated string in pgoutput message');
    const s = this.buf.toString('utf8', this.pos, end);
    this.pos = end + 1;
    return s;
  }

  private bytes(len: number): Buffer {
    if (this.pos + len > this.buf.length) throw new ProtocolDecodeError('pgoutput message shorter than its lengths');
    const b = this.buf.subarray(this.pos, this.pos + len);
    this.pos += len;
    return b;
  }
}

/** ISO 8601 with microseconds, from microseconds since the Unix epoch. */
export function isoFromMicros(us: bigint): string {
  const ms = us / 1000n;
  const iso = new Date(Number(ms)).toISOString(); // 2024-01-02T03:04:05.678Z
  const micros = Number(us - ms * 1000n);
  return `${iso.slice(0, 23)}${String(micros).padStart(3, '0')}Z`;
}

/** Out-of-range reads of a truncated message surface as RangeError: same failure, same code. */
export function asDecodeError(err: unknown): Error {
  if (err instanceof ProtocolDecodeError) return err;
  return new ProtocolDecodeError(`cannot decode a replication message: ${(err as Error)?.message ?? String(err)}`, undefined, { cause: err });
}

/** An Insert, Update, Delete or Truncate message (by its first byte): what the bound counts. */
export function isRowChange(payload: Buffer): boolean {
  const tag = payload[0];
  return tag === 0x49 || tag === 0x55 || tag === 0x44 || tag === 0x54;
}
