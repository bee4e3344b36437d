// Type OID -> Decoder. A decoder is resolved once per type (cached) and then applied to every
// value of every column of that type. Builtin types work with no catalog rows; user types
// (domains, arrays of user types, enums, ...) need their pg_type rows added first, loaded with
// TYPE_INFO_SQL.

import { parseArray } from './pg-array.js';
import {
  decodeBool,
  decodeFloat,
  decodeInt,
  decodeInt8,
  decodeJson,
  decodeNumeric,
  decodeText,
  decodeTimestamp,
  decodeTimestamptz,
  type Decoder,
} from './values.js';

export type { Decoder } from './values.js';

/** One pg_type row, as selected by TYPE_INFO_SQL / ALL_TYPES_SQL. */
export interface PgTypeInfo {
  oid: number;
  name: string;
  /** typtype: b base, c composite, d domain, e enum, p pseudo, r range, m multirange */
  typtype: string;
  /** typcategory: 'A' array, 'N' numeric, 'S' string, ... */
  category: string;
  /** typelem: element type of an array, 0 if none */
  elem: number;
  /** typbasetype: base type of a domain, 0 if none */
  base: number;
  /** typdelim: array element delimiter (',' for all but box, which uses ';') */
  delim: string;
}

// oid, int2/int4 and "char" come back from node-postgres as number / string as they are.
const TYPE_COLUMNS = `t.oid, t.typname::text as name, t.typtype::text as typtype,
  t.typcategory::text as category, t.typelem as elem, t.typbasetype as base,
  t.typdelim::text as delim`;

/**
 * pg_type rows for the oids in $1 (an int/oid array) AND everything they depend on for
 * decoding: array element types and domain base types, transitively. So one round trip is
 * enough to decode e.g. an array of a domain over numeric.
 */
export const TYPE_INFO_SQL = `with recursive wanted(oid) as (
  select unnest($1::oid[])
  union
  select dep.oid
    from wanted w
    join pg_type t on t.oid = w.oid
    cross join lateral (values (t.typelem), (t.typbasetype)) as dep(oid)
   where dep.oid <> 0
)
select ${TYPE_COLUMNS}
  from pg_type t
  join wanted w on w.oid = t.oid`;

/** Every pg_type row. */
export const ALL_TYPES_SQL = `select ${TYPE_COLUMNS} from pg_type t`;

/** Builtin scalar decoders by OID. Every builtin not listed here decodes as its text. */
const SCALAR_DECODERS: ReadonlyMap<number, Decoder> = new Map<number, Decoder>([
  [16, decodeBool],
  [20, decodeInt8],
  [21, decodeInt],
  [23, decodeInt],
  [26, decodeInt],
  [114, decodeJson],
  [700, decodeFloat],
  [701, decodeFloat],
  [1114, decodeTimestamp],
  [1184, decodeTimestamptz],
  [1700, decodeNumeric],
  [3802, decodeJson],
]);

// [oid, name, typcategory, array oid, typdelim]; verified against pg_type of PostgreSQL 15.
const BUILTINS: ReadonlyArray<readonly [number, string, string, number, string?]> = [
  [16, 'bool', 'B', 1000],
  [17, 'bytea', 'U', 1001],
  [18, 'char', 'Z', 1002],
  [19, 'name', 'S', 1003],
  [20, 'int8', 'N', 1016],
  [21, 'int2', 'N', 1005],
  [23, 'int4', 'N', 1007],
  [25, 'text', 'S', 1009],
  [26, 'oid', 'N', 1028],
  [114, 'json', 'U', 199],
  [142, 'xml', 'U', 143],
  [600, 'point', 'G', 1017],
  [603, 'box', 'G', 1020, ';'],
  [650, 'cidr', 'I', 651],
  [700, 'float4', 'N', 1021],
  [701, 'float8', 'N', 1022],
  [790, 'money', 'N', 791],
  [829, 'macaddr', 'U', 1040],
  [869, 'inet', 'I', 1041],
  [1042, 'bpchar', 'S', 1014],
  [1043, 'varchar', 'S', 1015],
  [1082, 'date', 'D', 1182],
  [1083, 'time', 'D', 1183],
  [1114, 'timestamp', 'D', 1115],
  [1184, 'timestamptz', 'D', 1185],
  [1186, 'interval', 'T', 1187],
  [1266, 'timetz', 'D', 1270],
  [1560, 'bit', 'V', 1561],
  [1562, 'varbit', 'V', 1563],
  [1700, 'numeric', 'N', 1231],
  [2950, 'uuid', 'U', 2951],
  [3802, 'jsonb', 'U', 3807],
  [4072, 'jsonpath', 'U', 4073],
];

const BUILTIN_INFO: ReadonlyMap<number, PgTypeInfo> = (() => {
  const m = new Map<number, PgTypeInfo>();
  for (const [oid, name, category, arrayOid, delim = ','] of BUILTINS) {
    m.set(oid, { oid, name, typtype: 'b', category, elem: 0, base: 0, delim });
    m.set(arrayOid, { oid: arrayOid, name: '_' + name, typtype: 'b', category: 'A', elem: oid, base: 0, delim });
  }
  return m;
})();

/** A builtin type's pg_type name (arrays `_name`), undefined for other oids. */
export function builtinTypeName(oid: number): string | undefined {
  return BUILTIN_INFO.get(oid)?.name;
}

/** Domains over domains nest, but never this deep; guards against bad rows forming a cycle. */
const MAX_DEPTH = 32;

export class TypeRegistry {
  private readonly infos = new Map<number, PgTypeInfo>();
  private readonly cache = new Map<number, Decoder>();

  constructor(rows?: Iterable<PgTypeInfo>) {
    if (rows) for (const row of rows) this.infos.set(row.oid, row);
  }

  /** Adds (or replaces) a type; drops cached decoders since domains and arrays may depend on it. */
  add(info: PgTypeInfo): void {
    this.infos.set(info.oid, info);
    this.cache.clear();
  }

  /** Known as a builtin or added. */
  has(oid: number): boolean {
    return this.infos.has(oid) || BUILTIN_INFO.has(oid);
  }

  /** The decoder for a type OID, resolved once and cached. Unknown OIDs keep the text. */
  decoder(oid: number): Decoder {
    let d = this.cache.get(oid);
    if (d === undefined) {
      d = this.resolve(oid, 0);
      this.cache.set(oid, d);
    }
    return d;
  }

  private resolve(oid: number, depth: number): Decoder {
    const info = this.infos.get(oid) ?? BUILTIN_INFO.get(oid);
    if (info === undefined || depth > MAX_DEPTH) return SCALAR_DECODERS.get(oid) ?? decodeText;
    if (info.typtype === 'd' && info.base !== 0) return this.resolve(info.base, depth + 1);
    if (info.category === 'A' && info.elem !== 0) {
      const element = this.resolve(info.elem, depth + 1);
      // typdelim belongs to the element type (box: ';'); the array row carries the same value
      // for builtins, so prefer the element's row when we have it.
      const elemInfo = this.infos.get(info.elem) ?? BUILTIN_INFO.get(info.elem);
      const delim = elemInfo?.delim || info.delim || ',';
      return (text) => parseArray(text, element, delim);
    }
    return SCALAR_DECODERS.get(oid) ?? decodeText;
  }
}
