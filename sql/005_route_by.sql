-- walcast 005: route_by (README "SQL surface", docs/dev/cluster-plan.md §2, §5). A cluster node
-- follows only the route values its subscribers filter on (`room_id=eq.7`) of a table enabled
-- with `walcast.enable('messages', route_by => 'room_id')`; single-node walcast ignores it.
-- The routing column is a row of walcast.routes, a table of the publication: a change of routing
-- reaches the daemons through the slot, in commit order with the rows it concerns.

create table if not exists walcast.routes (
  rel regclass primary key,
  route_by name not null
);

-- Which column routes a table is no secret (the catalog shows every table's columns to anyone),
-- and every daemon's role needs to read it, however few other grants it has.
revoke all on table walcast.routes from public;
grant select on table walcast.routes to public;

-- The columns a route can be read from: integers, text, uuid and bool, compared the way
-- subscription filters compare them (src/cluster/route.ts, which lists the same type OIDs).
create or replace function walcast.routable_type(typ regtype) returns boolean
language sql immutable as $$
  select typ in ('int2'::regtype, 'int4'::regtype, 'int8'::regtype, 'text'::regtype,
                 'varchar'::regtype, 'bpchar'::regtype, 'uuid'::regtype, 'bool'::regtype)
$$;

-- Adds a table to the publication (as walcast.enable(rel) always did) and records its routing
-- column; route_by null means none. The last call says it: enabling again with another column
-- changes the route, without one removes it. A renamed route column needs walcast.enable again.
create or replace function walcast.enable(rel regclass, route_by name) returns void
language plpgsql as $$
declare
  part regclass;
  typ oid;
begin
  if (select relkind from pg_class where oid = rel) not in ('r', 'p') then
    raise exception 'walcast.enable: % is not a table', rel using errcode = 'wrong_object_type';
  end if;
  if route_by is not null then
    -- A domain routes as its base type, as its values are decoded.
    select case when t.typtype = 'd' then t.typbasetype else a.atttypid end into typ
      from pg_attribute a join pg_type t on t.oid = a.atttypid
     where a.attrelid = rel and a.attname = route_by and a.attnum > 0 and not a.attisdropped;
    if typ is null then
      raise exception 'walcast.enable: % has no column %', rel, quote_ident(route_by)
        using errcode = 'undefined_column', hint = 'route_by names a column of the table, e.g. route_by => ''room_id''';
    end if;
    if not walcast.routable_type(typ) then
      raise exception 'walcast.enable: column % of % is of type %, which cannot route', quote_ident(route_by), rel, format_type(typ, null)
        using errcode = 'datatype_mismatch', hint = 'route_by takes a column of type int2, int4, int8, text, varchar, char, uuid or bool';
    end if;
  end if;
  for part in select rel union select relid from pg_partition_tree(rel) loop
    execute format('alter table %s replica identity full', part);
  end loop;
  if not walcast.enabled(rel) then
    execute format('alter publication walcast add table %s', rel);
  end if;
  -- Rows of dropped tables (regclass makes no dependency) would name whatever reuses their oid.
  delete from walcast.routes r where not exists (select 1 from pg_class c where c.oid = r.rel);
  if route_by is null then
    delete from walcast.routes r where r.rel = enable.rel;
  else
    -- Written only when it changes: an unchanged call adds nothing to the stream.
    insert into walcast.routes as r (rel, route_by) values (enable.rel, enable.route_by)
      on conflict on constraint routes_pkey do update set route_by = excluded.route_by
      where r.route_by is distinct from excluded.route_by;
  end if;
end
$$;

-- The one-argument form stays (its grants and callers unchanged): a table without a route.
create or replace function walcast.enable(rel regclass) returns void
language plpgsql as $$
begin
  perform walcast.enable(rel, null);
end
$$;

-- walcast.routes stays in the publication, like walcast.broadcasts; removing a table removes its route.
create or replace function walcast.disable(rel regclass) returns void
language plpgsql as $$
begin
  if rel in (to_regclass('walcast.broadcasts'), to_regclass('walcast.routes')) then
    raise exception 'walcast.disable: % carries walcast''s own messages and stays in the publication', rel
      using errcode = 'wrong_object_type';
  end if;
  if walcast.enabled(rel) then
    execute format('alter publication walcast drop table %s', rel);
  end if;
  delete from walcast.routes r where r.rel = disable.rel;
end
$$;

select walcast.enable('walcast.routes');

comment on table walcast.routes is 'The route_by column of tables enabled with walcast.enable(rel, route_by => column): what cluster nodes route on.';
comment on function walcast.enable(regclass, name) is 'Stream this table''s changes through walcast (sets REPLICA IDENTITY FULL), routed in a cluster by column route_by (null: not routed).';
comment on function walcast.routable_type(regtype) is 'Whether a column of this type can be a route_by column.';
