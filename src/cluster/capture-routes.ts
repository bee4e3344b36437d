// Which column routes each table (walcast.routes, sql/005_route_by.sql), as capture needs it to
// put a row change on its route's subject (`s.d.<schema>.<table>.<route>`, route.ts). Read from
// Postgres at takeover (by table oid), then kept up to date from the slot: walcast.routes is in
// the publication, so a change of routing arrives in commit order with the rows it concerns.
// Its `rel` column is a regclass, which the slot gives as text (the name, schema-qualified when
// the table is not on the walsender's search_path, each part quoted when needed): a relation is
// matched by its qualified forms first, then by its bare name.
// Known limit: the takeover's read is of now, while the slot replays from the stream's tail, so a
// routing change committed between the two routes the few replayed rows before it the new way.
import type { MsgUpdate, Relation, Row } from '../capture/pgoutput.types.js';
import type { CapturedChange } from '../capture/types.js';
import { CLUSTER_TOKENS, ROUTES_TABLE } from '../constants.js';
import { rowRouteToken } from './route.js';

const SIMPLE = /^[a-z_][a-z0-9_$]*$/;

/** The ways regclass text may write one identifier: plain when it can be, and quoted. */
function spellings(id: string): string[] {
  const quoted = `"${id.replaceAll('"', '""')}"`;
  return SIMPLE.test(id) ? [id, quoted] : [quoted];
}

export class RouteColumns {
  /** Read at takeover: table oid → route column. */
  private readonly byOid: Map<number, string>;
  /** From the slot since: regclass text → route column (null: routing removed). */
  private readonly byText = new Map<string, string | null>();
  private version = 0;
  private readonly cache = new WeakMap<Relation, { version: number; column: string | null }>();

  constructor(initial: Iterable<readonly [number, string]> = []) {
    this.byOid = new Map(initial);
  }

  /** The route column of a table; null when it has none. */
  columnOf(r: Relation): string | null {
    const hit = this.cache.get(r);
    if (hit && hit.version === this.version) return hit.column;
    const column = this.lookup(r);
    this.cache.set(r, { version: this.version, column });
    return column;
  }

  /** A change of walcast.routes from the slot (others are ignored); applied in commit order. */
  apply(c: CapturedChange): void {
    if (c.relation.qualified !== ROUTES_TABLE) return;
    if (c.tag === 'truncate') {
      this.byOid.clear();
      this.byText.clear();
      this.version++;
      return;
    }
    if (c.tag === 'delete' || c.tag === 'update') {
      const rel = textOf(c.old?.rel);
      if (rel !== null && (c.tag === 'delete' || textOf(c.new.rel) !== rel)) this.byText.set(rel, null);
    }
    if (c.tag === 'insert' || c.tag === 'update') {
      const rel = textOf(c.new.rel);
      const column = textOf(c.new.route_by);
      if (rel !== null) this.byText.set(rel, column);
    }
    this.version++;
  }

  /** The route token a row change is published under: the new row's (a delete: the old row's); `=t` for a truncate, `=n` without a route. */
  routeOf(c: CapturedChange): string {
    if (c.tag === 'truncate') return CLUSTER_TOKENS.truncate;
    return this.tokenOf(c.relation, c.tag === 'delete' ? c.old : c.new);
  }

  /** The route token of an update's old row; `=n` when it cannot be told (no old row, or it lacks the column). */
  oldRouteOf(c: MsgUpdate): string {
    return this.tokenOf(c.relation, c.old);
  }

  private tokenOf(r: Relation, row: Row | null): string {
    const column = this.columnOf(r);
    if (column === null || row === null || !(column in row)) return CLUSTER_TOKENS.noRoute;
    const col = r.columns.find((x) => x.name === column);
    if (!col) return CLUSTER_TOKENS.noRoute;
    return rowRouteToken(col.typeOid, row[column]);
  }

  private lookup(r: Relation): string | null {
    if (this.byText.size > 0) {
      for (const s of spellings(r.schema)) {
        for (const n of spellings(r.name)) {
          const v = this.byText.get(`${s}.${n}`);
          if (v !== undefined) return v;
        }
      }
      for (const n of spellings(r.name)) {
        const v = this.byText.get(n);
        if (v !== undefined) return v;
      }
    }
    return this.byOid.get(r.oid) ?? null;
  }
}

function textOf(v: unknown): string | null {
  return typeof v === 'string' ? v : null;
}

/** The query that reads walcast.routes at takeover (oid, column); a database without migration 005 has no routes. */
export const ROUTES_QUERY = `select rel::oid::int8::text as oid, route_by::text as column from ${ROUTES_TABLE}`;

/** Postgres' undefined_table: walcast.routes does not exist (migration 005 not applied). */
export const UNDEFINED_TABLE = '42P01';
