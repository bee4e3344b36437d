-- walcast 002: the Casbin policy table (README "SQL surface", docs/AUTHORIZATION.md).
-- Policy changes travel two ways: in the change stream (the table is in the publication, so a
-- daemon applies them exactly between the transactions around them), and as a NOTIFY on the
-- channel walcast_policy, for tools that only need to know that something changed.

create table if not exists walcast.casbin_rule (
  id bigserial primary key,
  ptype text not null,
  v0 text not null default '',
  v1 text not null default '',
  v2 text not null default '',
  v3 text not null default '',
  v4 text not null default '',
  v5 text not null default ''
);

-- One row per rule: adding a rule twice is a no-op (walcast policy add uses on conflict).
create unique index if not exists casbin_rule_unique
  on walcast.casbin_rule (ptype, v0, v1, v2, v3, v4, v5);

select walcast.enable('walcast.casbin_rule');

create or replace function walcast.notify_policy() returns trigger
language plpgsql as $$
begin
  perform pg_notify('walcast_policy', tg_op);
  return null;
end
$$;

-- Per row, so a no-op (an add that was already there) announces nothing; truncate can only be
-- per statement. Postgres folds identical notifications within a transaction into one.
drop trigger if exists casbin_rule_notify on walcast.casbin_rule;
create trigger casbin_rule_notify
  after insert or update or delete on walcast.casbin_rule
  for each row execute function walcast.notify_policy();
drop trigger if exists casbin_rule_notify_truncate on walcast.casbin_rule;
create trigger casbin_rule_notify_truncate
  after truncate on walcast.casbin_rule
  for each statement execute function walcast.notify_policy();

comment on table walcast.casbin_rule is 'Casbin policies (ptype, v0..v5); manage with walcast policy add|remove|list.';
