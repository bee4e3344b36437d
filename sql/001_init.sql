-- walcast 001: the publication and the functions that add tables to it.
-- Applied by `walcast migrate` in one transaction, recorded in walcast.migrations.

-- The publication walcast streams. Created empty: tables join it through walcast.enable().
-- Changes of partitions are published as changes of the partitioned table that was enabled,
-- the name clients subscribe to.
do $$
begin
  if not exists (select 1 from pg_publication where pubname = 'walcast') then
    create publication walcast with (publish_via_partition_root = true);
  end if;
end
$$;

-- Whether a table is in the publication.
create or replace function walcast.enabled(rel regclass) returns boolean
language sql stable as $$
  select exists (
    select 1 from pg_publication_rel pr join pg_publication p on p.oid = pr.prpubid
     where p.pubname = 'walcast' and pr.prrelid = rel)
$$;

-- Adds a table to the publication. REPLICA IDENTITY FULL puts whole old rows in the WAL for
-- updates and deletes: authorization and `leave` need them, and unchanged TOAST values are
-- filled in from them. WAL is written per partition, so a partitioned table's partitions get it
-- too (partitions attached later need walcast.enable again).
create or replace function walcast.enable(rel regclass) returns void
language plpgsql as $$
declare
  part regclass;
begin
  if (select relkind from pg_class where oid = rel) not in ('r', 'p') then
    raise exception 'walcast.enable: % is not a table', rel using errcode = 'wrong_object_type';
  end if;
  for part in select rel union select relid from pg_partition_tree(rel) loop
    execute format('alter table %s replica identity full', part);
  end loop;
  if not walcast.enabled(rel) then
    execute format('alter publication walcast add table %s', rel);
  end if;
end
$$;

-- Removes a table from the publication; its replica identity is left as it is.
create or replace function walcast.disable(rel regclass) returns void
language plpgsql as $$
begin
  if walcast.enabled(rel) then
    execute format('alter publication walcast drop table %s', rel);
  end if;
end
$$;

comment on function walcast.enable(regclass) is 'Stream this table''s changes through walcast (sets REPLICA IDENTITY FULL).';
comment on function walcast.enabled(regclass) is 'Whether walcast streams this table''s changes.';
comment on function walcast.disable(regclass) is 'Stop streaming this table''s changes.';
