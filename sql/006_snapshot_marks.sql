-- walcast 006: snapshot marks (issue #14, docs/PROTOCOL.md §7, src/snapshot/marks.ts). A snapshot is read
-- in a REPEATABLE READ transaction; its rows are sent once the daemon has received, through the
-- slot, every transaction that snapshot can see. It knows it has when a mark written after the
-- snapshot was taken comes back through the replication stream: a committed row of this table
-- carrying a random token (inserted and deleted again in one transaction, so nothing stays but
-- a dead tuple). The daemon never delivers this table as row changes, nor keeps it in its window.

create table if not exists walcast.snapshot_marks (
  id bigserial primary key,
  token text not null constraint snapshot_marks_token_length check (length(token) between 1 and 64)
);

revoke all on table walcast.snapshot_marks from public;
revoke all on sequence walcast.snapshot_marks_id_seq from public;

do $$
begin
  if not walcast.enabled('walcast.snapshot_marks') then
    alter publication walcast add table walcast.snapshot_marks;
  end if;
end
$$;

-- Runs as its owner, with a search_path no caller can put objects in. Executable by every role:
-- the daemon's role may be any, and a mark only wakes the snapshot that waits for its exact
-- 128-bit random token, which travels nowhere but in the WAL; forging one needs it. (Any role
-- can write as much WAL with pg_logical_emit_message.)
create or replace function walcast.snapshot_mark(token text)
returns void
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  row_id bigint;
begin
  insert into walcast.snapshot_marks (token) values (snapshot_mark.token) returning id into row_id;
  delete from walcast.snapshot_marks where id = row_id;
end;
$$;

grant execute on function walcast.snapshot_mark(text) to public;

-- Stays in the publication, like walcast.broadcasts and walcast.routes.
create or replace function walcast.disable(rel regclass) returns void
language plpgsql as $$
begin
  if rel in (to_regclass('walcast.broadcasts'), to_regclass('walcast.routes'), to_regclass('walcast.snapshot_marks')) then
    raise exception 'walcast.disable: % carries walcast''s own messages and stays in the publication', rel
      using errcode = 'wrong_object_type';
  end if;
  if walcast.enabled(rel) then
    execute format('alter publication walcast drop table %s', rel);
  end if;
  delete from walcast.routes r where r.rel = disable.rel;
end
$$;

comment on table walcast.snapshot_marks is 'Marks that snapshots wait for through the replication stream (always empty but for dead tuples).';
comment on function walcast.snapshot_mark(text) is 'Writes a snapshot mark (used by the walcast daemon).';
