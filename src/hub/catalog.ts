// Which tables walcast streams, with their columns: what `subscribe` validates table names and
// filters against. Read from the catalog at subscribe time (never per change), cached, and
// reread when a name is not found (a table enabled since). Domain columns are typed by their base
// type, as their values are decoded. walcast.broadcasts is in the publication but carries
// broadcasts, not rows for subscribers: it is left out (subscribing to it is `unknown_table`);
// so is walcast.routes (migration 005), the cluster's routing metadata, read for each table's
// route_by column (a cluster node follows only the route values its subscribers filter on), and
// walcast.snapshot_marks (migration 006), the marks snapshots wait for (src/snapshot/marks.ts).
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { BROADCASTS_TABLE, PUBLICATION, ROUTES_TABLE, SNAPSHOT_MARKS_TABLE } from '../constants.js';
import type { ColumnInfo } from './filter.js';

export interface TableInfo {
  qualified: string;
  /** The identifiers as Postgres stores them (`qualified` is ambiguous when one holds a dot). */
  schema: string;
  name: string;
  columns: ColumnInfo[];
  /** Columns changes carry, in order: all but generated ones (pgoutput leaves those out). */
  rowColumns: ColumnInfo[];
  /** Its route_by column (walcast.enable(..., route_by => ...)), null without one. */
  routeBy: string | null;
}

const TABLES_SQL = `
select n.nspname as schema, c.relname as name, a.attname as column,
       (case when t.typtype = 'd' then t.typbasetype else a.atttypid end)::int as type_oid,
       a.atttypid::int as att_type_oid,
       (case when t.typtype = 'd' then (select b.typname from pg_type b where b.oid = t.typbasetype) else t.typname end)::text as type_name,
       a.attgenerated <> '' as generated
  from pg_publication_tables pt
  join pg_namespace n on n.nspname = pt.schemaname
  join pg_class c on c.relnamespace = n.oid and c.relname = pt.tablename
  join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
  join pg_type t on t.oid = a.atttypid
 where pt.pubname = $1
 order by n.nspname, c.relname, a.attnum`;

// The route_by columns (migration 005); none before it is applied.
const ROUTES_SQL = `
select n.nspname as schema, c.relname as name, r.route_by::text as route_by
  from walcast.routes r
  join pg_class c on c.oid = r.rel
  join pg_namespace n on n.oid = c.relnamespace`;

const MIN_RELOAD_MS = 1_000;

export class Catalog {
  private tables = new Map<string, TableInfo>();
  private loadedAt = 0;
  private loading: Promise<void> | null = null;
  /** Whether walcast.broadcasts was in the publication at the last read (migration 004). */
  broadcastsPublished = false;
  /**
   * pg_type names of the published tables' column types, by the column's own type oid (a
   * domain's is its base type's name): what the Supabase endpoint reports as `columns[].type`.
   * Bounded by the publication, like `tables`.
   */
  private typeNames = new Map<number, string>();

  constructor(private readonly db: pg.Pool, private readonly publication = PUBLICATION) {}

  /**
   * Tables held: exactly those of the publication at the last read. A name asked for that is not
   * there is never stored (clients choose names), so this is bounded by the publication.
   */
  get size(): number {
    return this.tables.size;
  }

  async table(qualified: string): Promise<TableInfo | null> {
    const known = this.tables.get(qualified);
    if (known) return known;
    // Unknown: perhaps enabled since the last read. Reread, but not more than once a second:
    // a miss soon after a read waits for its turn, so a client asking for a missing table in a
    // loop is slowed down instead of turning into a query loop.
    const wait = this.loadedAt + MIN_RELOAD_MS - Date.now();
    if (wait > 0) await sleep(wait);
    await this.reload();
    return this.tables.get(qualified) ?? null;
  }

  /**
   * The tables of a schema (a Supabase binding without `table`): reread first unless read in the
   * last second, so a table enabled since is found without a query per join.
   */
  async tablesIn(schema: string): Promise<TableInfo[]> {
    if (Date.now() - this.loadedAt >= MIN_RELOAD_MS) await this.reload();
    return [...this.tables.values()].filter((t) => t.schema === schema);
  }

  /** The table as last read, without reading (null when unknown). */
  peek(qualified: string): TableInfo | null {
    return this.tables.get(qualified) ?? null;
  }

  /** The name of a column type seen at the last read (TypeNames); undefined when not seen. */
  typeName(oid: number): string | undefined {
    return this.typeNames.get(oid);
  }

  /** Something every table's entry may depend on changed (route_by columns): reread on next use. */
  invalidateAll(): void {
    this.tables = new Map();
    this.loadedAt = 0;
  }

  /** Columns changed (ALTER TABLE): forget the table so the next subscribe rereads it. */
  invalidate(qualified: string): void {
    this.tables.delete(qualified);
    this.loadedAt = 0;
  }

  async reload(): Promise<void> {
    this.loading ??= this.read().finally(() => (this.loading = null));
    return this.loading;
  }

  private async read(): Promise<void> {
    const { rows } = await this.db.query<{ schema: string; name: string; column: string; type_oid: number; att_type_oid: number; type_name: string; generated: boolean }>(TABLES_SQL, [this.publication]);
    const tables = new Map<string, TableInfo>();
    const typeNames = new Map<number, string>();
    this.broadcastsPublished = false;
    for (const r of rows) {
      const qualified = `${r.schema}.${r.name}`;
      if (qualified === BROADCASTS_TABLE) {
        this.broadcastsPublished = true;
        continue;
      }
      if (qualified === ROUTES_TABLE || qualified === SNAPSHOT_MARKS_TABLE) continue;
      typeNames.set(r.att_type_oid, r.type_name);
      let t = tables.get(qualified);
      if (!t) tables.set(qualified, (t = { qualified, schema: r.schema, name: r.name, columns: [], rowColumns: [], routeBy: null }));
      const column = { name: r.column, typeOid: r.type_oid };
      t.columns.push(column);
      if (!r.generated) t.rowColumns.push(column);
    }
    const hasRoutes = (await this.db.query<{ ok: boolean }>("select to_regclass('walcast.routes') is not null as ok")).rows[0]?.ok;
    if (hasRoutes) {
      for (const r of (await this.db.query<{ schema: string; name: string; route_by: string }>(ROUTES_SQL)).rows) {
        const t = tables.get(`${r.schema}.${r.name}`);
        if (t) t.routeBy = r.route_by;
      }
    }
    this.tables = tables;
    this.typeNames = typeNames;
    this.loadedAt = Date.now();
  }
}
