// Snapshot rows typed exactly like `change.new`: each column's text (the query returns text, as
// pgoutput sends it) goes through the same decoders capture uses (src/capture/values.ts), chosen
// by the same registry. Types the registry does not know yet (enums, domains, arrays of them)
// are read from pg_type once, as capture does when a relation names them.
import { TYPE_INFO_SQL, TypeRegistry, type Decoder, type PgTypeInfo } from '../capture/types-registry.js';
import type { ColumnInfo } from '../hub/filter.js';

export interface TypeReader {
  query<R>(text: string, values: unknown[]): Promise<{ rows: R[] }>;
}

export class SnapshotTypes {
  private readonly registry = new TypeRegistry();

  /** The decoders of these columns, reading unknown types first. */
  async decoders(columns: readonly ColumnInfo[], db: TypeReader): Promise<Decoder[]> {
    const unknown = [...new Set(columns.map((c) => c.typeOid).filter((oid) => !this.registry.has(oid)))];
    if (unknown.length > 0) {
      const { rows } = await db.query<PgTypeInfo>(TYPE_INFO_SQL, [unknown]);
      for (const r of rows) this.registry.add(r);
    }
    return columns.map((c) => this.registry.decoder(c.typeOid));
  }
}

/** One row of raw text values (null for SQL NULL) as the row object changes carry. */
export function decodeRow(columns: readonly ColumnInfo[], decoders: readonly Decoder[], values: readonly (string | null)[]): Record<string, unknown> {
  const row: Record<string, unknown> = {};
  for (let i = 0; i < columns.length; i++) {
    const v = values[i];
    const value = v === null ? null : decoders[i](v);
    const name = columns[i].name;
    // A column named __proto__ must become a property, not the prototype (as in capture).
    if (name === '__proto__') Object.defineProperty(row, name, { value, enumerable: true, writable: true, configurable: true });
    else row[name] = value;
  }
  return row;
}

/**
 * Renders rows of these columns as JSON text, exactly as JSON.stringify renders the row object
 * (what `change.new` is), without walking each object: the keys, in the order JavaScript keeps
 * them (integer-like names first), are written once. About a fifth less work per row.
 */
export function rowJsonWriter(columns: readonly ColumnInfo[]): (row: Record<string, unknown>) => string {
  const probe: Record<string, unknown> = {};
  for (const c of columns) {
    if (c.name === '__proto__') Object.defineProperty(probe, c.name, { value: 0, enumerable: true, writable: true, configurable: true });
    else probe[c.name] = 0;
  }
  const keys = Object.keys(probe);
  const heads = keys.map((k, i) => `${i === 0 ? '{' : ','}${JSON.stringify(k)}:`);
  if (keys.length === 0) return () => '{}';
  return (row) => {
    let s = '';
    for (let i = 0; i < keys.length; i++) s += heads[i] + JSON.stringify(row[keys[i]]);
    return s + '}';
  };
}
