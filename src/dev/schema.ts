// The demo chat of `walcast dev`: rooms, members, messages and friendships, seeded with four
// users, enabled for walcast, with the policies of docs/AUTHORIZATION.md (rows and channels of a
// room for its members; a user's online status for the user's friends). Applied to the fresh
// throwaway database that `walcast dev` creates, after the migrations.
import { connect } from '../pg/connect.js';

export const DEMO_USERS = ['alice', 'bob', 'carol', 'dave'] as const;

/** Mirrored as Casbin links: g2(user, "room:N") and g2(user, "friend:user:OTHER") both ways. */
export const DEMO_RELATIONS = [
  'public.room_members {user_id} room:{room_id}',
  'public.friendships {a} friend:user:{b}',
  'public.friendships {b} friend:user:{a}',
];

export const DEMO_SQL = `
create table public.rooms (
  id int primary key,
  name text not null
);
create table public.room_members (
  user_id text not null,
  room_id int not null references public.rooms (id),
  primary key (user_id, room_id)
);
create table public.messages (
  id bigserial primary key,
  room_id int not null references public.rooms (id),
  author text not null,
  body text not null,
  created_at timestamptz not null default now()
);
create index on public.messages (room_id, id);
create table public.friendships (
  a text not null,
  b text not null,
  primary key (a, b)
);

insert into public.rooms (id, name) values (1, 'general'), (2, 'random'), (3, 'design');
-- dave is not a member of room 1: his page for it shows nothing, and his join is refused.
insert into public.room_members (user_id, room_id) values
  ('alice', 1), ('bob', 1), ('carol', 1),
  ('alice', 2), ('bob', 2), ('dave', 2),
  ('carol', 3), ('dave', 3);
insert into public.friendships (a, b) values ('alice', 'bob'), ('alice', 'carol'), ('bob', 'dave');
insert into public.messages (room_id, author, body) values
  (1, 'alice', 'Welcome to #general!'),
  (1, 'bob', 'Hi all!'),
  (2, 'dave', 'Anyone up for lunch?'),
  (3, 'carol', 'New mockups are in.');

select walcast.enable('public.messages'), walcast.enable('public.room_members'), walcast.enable('public.friendships');

insert into walcast.casbin_rule (ptype, v0, v1, v2, v3, v4) values
  -- A message reaches the members of its room.
  ('p', '*', 'table', 'public.messages', 'read', 'g2(r.sub.id, "room:" + r.obj.row.room_id)'),
  -- Each user sees their own memberships change (the page reopens a room it was let into).
  ('p', '*', 'table', 'public.room_members', 'read', 'r.obj.row.user_id == r.sub.id'),
  -- Members of a room may join its channel, broadcast (typing) and show presence (online).
  ('p', '*', 'channel', 'room:*', 'join', 'g2(r.sub.id, r.obj.name)'),
  ('p', '*', 'channel', 'room:*', 'broadcast', 'g2(r.sub.id, r.obj.name)'),
  ('p', '*', 'channel', 'room:*', 'presence', 'g2(r.sub.id, r.obj.name)'),
  -- Online status only for friends: user:<id> is joined by its owner and the owner's friends;
  -- only the owner tracks presence there.
  ('p', '*', 'channel', 'user:*', 'join', 'r.obj.name == "user:" + r.sub.id || g2(r.sub.id, "friend:" + r.obj.name)'),
  ('p', '*', 'channel', 'user:*', 'presence', 'r.obj.name == "user:" + r.sub.id');
`;

/** Creates and seeds the demo schema (on a database migrated by `walcast migrate`). */
export async function setupDemo(url: string): Promise<void> {
  const client = await connect(url);
  try {
    await client.query('begin');
    await client.query(DEMO_SQL);
    await client.query('commit');
  } catch (err) {
    await client.query('rollback').catch(() => {});
    throw err;
  } finally {
    await client.end();
  }
}
