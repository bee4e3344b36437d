-- walcast 003: broadcast from SQL (README "SQL surface"). `walcast.broadcast(channel, event, payload)` emits
-- a transactional logical decoding message with the prefix 'walcast': it reaches the daemon
-- through the slot in commit order with the rest of its transaction, and only if that
-- transaction commits. Members of the channel receive {type:"broadcast", channel, event, payload}.
-- Typical use: from a trigger, e.g. "typing" or "message_read" events next to a row change.

create or replace function walcast.broadcast(channel text, event text, payload jsonb default null)
returns void
language plpgsql
volatile
as $$
begin
  if channel is null or length(channel) not between 1 and 255 then
    raise exception 'walcast.broadcast: channel must be 1 to 255 characters' using errcode = '22023';
  end if;
  if event is null or length(event) not between 1 and 255 then
    raise exception 'walcast.broadcast: event must be 1 to 255 characters' using errcode = '22023';
  end if;
  perform pg_logical_emit_message(true, 'walcast', json_build_object('channel', channel, 'event', event, 'payload', payload)::text);
end;
$$;

comment on function walcast.broadcast(text, text, jsonb) is
  'Broadcast to the members of a walcast channel, in commit order, if the transaction commits';
