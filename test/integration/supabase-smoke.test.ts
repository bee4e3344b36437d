import t from 'tap';
import WebSocket from 'ws';
import { RealtimeClient } from '@supabase/realtime-js';
import { query } from '../helpers/capture.js';
import { startTestDaemon } from '../helpers/daemon.js';
import { hsToken } from '../helpers/tokens.js';

const { url, daemon } = await startTestDaemon(
  t,
  `create table messages (id bigserial primary key, room_id int not null, body text, meta jsonb, at timestamptz default now());
   alter table messages replica identity full;
   select walcast.enable('messages');
   insert into walcast.casbin_rule (ptype, v0, v1, v2, v3, v4) values
     ('p', '*', 'table', 'public.messages', 'read', 'r.obj.row.room_id == 1'),
     ('p', '*', 'channel', 'room:*', 'join', 'true'),
     ('p', '*', 'channel', 'room:*', 'broadcast', 'true'),
     ('p', '*', 'channel', 'room:*', 'presence', 'true');`,
);

t.test('smoke', async (t) => {
  const anon = await hsToken({ role: 'anon' });
  const client = new RealtimeClient(`ws://127.0.0.1:${daemon.port}/realtime/v1`, { params: { apikey: anon }, transport: WebSocket as never, logger: (k: string, m: string, d: unknown) => console.error(k, m, JSON.stringify(d)) });
  await client.setAuth(await hsToken({ sub: 'ann' }));
  const got: unknown[] = [];
  const ch = client.channel('room:1');
  const status = await new Promise<string>((resolve) => {
    ch.on('postgres_changes', { event: '*', schema: 'public', table: 'messages', filter: 'room_id=eq.1' }, (p) => got.push(p)).subscribe((s, err) => { console.error('status', s, err); if (s !== 'CLOSED') resolve(s); });
  });
  t.equal(status, 'SUBSCRIBED');
  await query(url, `insert into messages (room_id, body, meta) values (1, 'hi', '{"a":1}'), (2, 'no', null)`);
  await query(url, `update messages set body = 'yo' where room_id = 1`);
  await query(url, `delete from messages where room_id = 1`);
  await new Promise((r) => setTimeout(r, 500));
  console.error(JSON.stringify(got, null, 1));
  t.equal(got.length, 3);
  await client.disconnect();
});
