-- walcast 004: SQL broadcasts through a table that Postgres privileges guard (issue #11).
-- 003's walcast.broadcast() emitted a logical decoding message, which any role that can log in
-- may emit too (pg_logical_emit_message needs no privilege), so anyone could forge one. Now a
-- broadcast is a row inserted into walcast.broadcasts, a table of the publication that only its
-- owner may write; walcast.broadcast() inserts it (and deletes it again in the same transaction:
-- nothing stays but a dead tuple) as that owner, and only roles granted EXECUTE may call it:
--
--   grant execute on function walcast.broadcast(text, text, jsonb) to app_role;
--
-- The daemon turns each committed insert into a broadcast to the channel's members, in commit
-- order with the rest of its transaction, and never delivers this table as row changes.

create table if not exists walcast.broadcasts (
  id bigserial primary key,
  channel text not null constraint broadcasts_channel_length check (length(channel) between 1 and 255),
  event text not null constraint broadcasts_event_length check (length(event) between 1 and 255),
  -- The daemon's limit for a broadcast payload (SERVER_DEFAULTS.maxPayloadBytes, 32 KiB of JSON);
  -- it drops a bigger one that got in some other way (a superuser dropping the check).
  payload jsonb constraint broadcasts_payload_size check (payload is null or octet_length(payload::text) <= 32768)
);

-- Tables and sequences give PUBLIC nothing by default; said here so that nobody wonders.
revoke all on table walcast.broadcasts from public;
revoke all on sequence walcast.broadcasts_id_seq from public;

-- In the publication without walcast.enable: the default replica identity (the key) is all a
-- delete needs to carry, and the daemon ignores deletes here anyway.
do $$
begin
  if not walcast.enabled('walcast.broadcasts') then
    alter publication walcast add table walcast.broadcasts;
  end if;
end
$$;

-- Runs as its owner (who may insert into walcast.broadcasts), with a search_path that no caller
-- can put objects in.
create or replace function walcast.broadcast(channel text, event text, payload jsonb default null)
returns void
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  row_id bigint;
begin
  if broadcast.channel is null or length(broadcast.channel) not between 1 and 255 then
    raise exception 'walcast.broadcast: channel must be 1 to 255 characters' using errcode = '22023';
  end if;
  if broadcast.event is null or length(broadcast.event) not between 1 and 255 then
    raise exception 'walcast.broadcast: event must be 1 to 255 characters' using errcode = '22023';
  end if;
  if broadcast.payload is not null and octet_length(broadcast.payload::text) > 32768 then
    raise exception 'walcast.broadcast: payload must be at most 32768 bytes of JSON (it has %)', octet_length(broadcast.payload::text)
      using errcode = '54000';
  end if;
  insert into walcast.broadcasts (channel, event, payload)
    values (broadcast.channel, broadcast.event, broadcast.payload)
    returning id into row_id;
  delete from walcast.broadcasts where id = row_id;
end;
$$;

-- Functions are executable by PUBLIC when created: 003's was, and create or replace keeps that.
revoke execute on function walcast.broadcast(text, text, jsonb) from public;

-- Taking the table out of the publication would silently end SQL broadcasts.
create or replace function walcast.disable(rel regclass) returns void
language plpgsql as $$
begin
  if rel = to_regclass('walcast.broadcasts') then
    raise exception 'walcast.disable: walcast.broadcasts carries the broadcasts of walcast.broadcast() and stays in the publication'
      using errcode = 'wrong_object_type';
  end if;
  if walcast.enabled(rel) then
    execute format('alter publication walcast drop table %s', rel);
  end if;
end
$$;

comment on table walcast.broadcasts is
  'Broadcasts from SQL: each committed insert reaches the channel''s members (use walcast.broadcast(), which needs EXECUTE)';
comment on function walcast.broadcast(text, text, jsonb) is
  'Broadcast to the members of a walcast channel, in commit order, if the transaction commits (needs EXECUTE, granted per role)';
