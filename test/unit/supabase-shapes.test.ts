// The pure parts of the Supabase endpoint: postgres_changes `data` as realtime-js reads it
// (render.ts), presence in Phoenix's shape (presence.ts), and join bindings (bindings.ts).

import t from 'tap';
import { convertChangeData } from '@supabase/realtime-js/dist/main/lib/transformers.js';
import type { Relation } from '../../src/capture/pgoutput.types.js';
import type { CapturedChange, Transaction } from '../../src/capture/types.js';
import { BadFilterError, BadRequestError } from '../../src/errors.js';
import { bindingId, echo, readBindings } from '../../src/supabase/bindings.js';
import { diffToPhoenix, toPhoenix } from '../../src/supabase/presence.js';
import { SupabaseChanges } from '../../src/supabase/render.js';

const relation = (identity: Relation['replicaIdentity']): Relation => ({
  oid: 1,
  schema: 'public',
  name: 'items',
  qualified: 'public.items',
  replicaIdentity: identity,
  columns: [
    { name: 'id', key: true, typeOid: 20, typeMod: -1 },
    { name: 'doc', key: false, typeOid: 3802, typeMod: -1 },
    { name: 'tags', key: false, typeOid: 1009, typeMod: -1 },
    { name: 'mood', key: false, typeOid: 99999, typeMod: -1 },
  ],
  decoders: [],
});
const tx = { xid: 1, lsn: 10n, lsnText: '0/A', endLsn: 11n, commitTime: '2026-01-02T03:04:05.123456Z', changes: [] } as Transaction;
const names = (oid: number) => (oid === 99999 ? 'mood_enum' : undefined);

t.test('render: Supabase data per kind, typed by columns, converted by realtime-js', async (t) => {
  const s = new SupabaseChanges(names);
  const rel = relation('full');
  const insert = { tag: 'insert', relation: rel, index: 0, new: { id: 1, doc: { a: 1 }, tags: ['x'], mood: 'ok' } } as unknown as CapturedChange;
  const data = JSON.parse(s.render(tx, insert, 'change'));
  t.same(data, {
    schema: 'public',
    table: 'items',
    commit_timestamp: '2026-01-02T03:04:05.123456Z',
    type: 'INSERT',
    columns: [
      { name: 'id', type: 'int8' },
      { name: 'doc', type: 'jsonb' },
      { name: 'tags', type: '_text' },
      { name: 'mood', type: 'mood_enum' },
    ],
    record: { id: 1, doc: { a: 1 }, tags: ['x'], mood: 'ok' },
    errors: null,
  });
  t.same(convertChangeData(data.columns, data.record), { id: 1, doc: { a: 1 }, tags: ['x'], mood: 'ok' }, 'realtime-js keeps the values as they are');

  const update = { tag: 'update', relation: rel, index: 0, new: { id: 1, mood: 'b' }, old: { id: 1, mood: 'a' } } as unknown as CapturedChange;
  t.match(JSON.parse(s.render(tx, update, 'change')), { type: 'UPDATE', record: { mood: 'b' }, old_record: { mood: 'a' } });
  t.notOk('old_record' in JSON.parse(s.render(tx, update, 'enter')), 'entering the view: no old row (the subscriber may not read it)');
  const leave = JSON.parse(s.render(tx, update, 'leave'));
  t.match(leave, { type: 'DELETE', old_record: { mood: 'a' } }, 'leaving the view: a DELETE of the old row');
  t.notOk('record' in leave, 'never the new row');
  const keyOnly = { tag: 'update', relation: relation('default'), index: 0, new: { id: 2 }, old: { id: 1 } } as unknown as CapturedChange;
  t.notOk('old_record' in JSON.parse(s.render(tx, keyOnly, 'change')), 'no old row without replica identity full (as walcast)');
  const del = { tag: 'delete', relation: rel, index: 0, old: { id: 1 } } as unknown as CapturedChange;
  t.match(JSON.parse(s.render(tx, del, 'change')), { type: 'DELETE', old_record: { id: 1 } });
  const truncate = { tag: 'truncate', relation: rel, index: 0 } as unknown as CapturedChange;
  const head = s.acquire('2.0.0', 'realtime:a', 7);
  t.equal(s.frame(head, tx, truncate, 'change', true, 1), null, 'TRUNCATE is not sent');
});

t.test('render: frames shared per head during a live dispatch, heads interned and released', async (t) => {
  const s = new SupabaseChanges(names);
  const insert = { tag: 'insert', relation: relation('full'), index: 0, new: { id: 1 } } as unknown as CapturedChange;
  const a = s.acquire('2.0.0', 'realtime:room', 5);
  const b = s.acquire('2.0.0', 'realtime:room', 5);
  t.equal(a, b, 'same serializer, topic and id: one head');
  const v1 = s.acquire('1.0.0', 'realtime:room', 5);
  t.not(a, v1);
  const f1 = s.frame(a, tx, insert, 'change', true, 1);
  t.equal(s.frame(b, tx, insert, 'change', true, 1), f1, 'the same Buffer for both subscribers');
  t.not(s.frame(a, tx, insert, 'change', true, 2), f1, 'a new change: a new frame');
  t.same(JSON.parse(String(f1)).slice(0, 4), [null, null, 'realtime:room', 'postgres_changes']);
  t.match(JSON.parse(String(s.frame(v1, tx, insert, 'change', false, 3))), { topic: 'realtime:room', event: 'postgres_changes', payload: { ids: [5], data: { type: 'INSERT' } } });
  t.equal(s.size, 2);
  s.release('2.0.0', 'realtime:room', 5);
  t.equal(s.size, 2, 'still held once');
  s.release('2.0.0', 'realtime:room', 5);
  s.release('1.0.0', 'realtime:room', 5);
  t.equal(s.size, 0, 'released: nothing kept per topic a client chose');
});

t.test('presence: Phoenix shape, chosen keys, refs that change with the state', async (t) => {
  const state = { ann: [{ session: 's1', state: { mood: 'x' } }, { session: 's2', state: { mood: 'y' }, label: 'tab' }] };
  const p = toPhoenix(state);
  t.same(Object.keys(p).sort(), ['ann', 'tab']);
  t.match(p.ann.metas, [{ mood: 'x', phx_ref: /^s1\./ }]);
  t.match(p.tab.metas, [{ mood: 'y', phx_ref: /^s2\./ }]);
  const again = toPhoenix({ ann: [{ session: 's1', state: { mood: 'z' } }] });
  t.not(again.ann.metas[0].phx_ref, p.ann.metas[0].phx_ref, 'another state: another ref (Phoenix merges joins before leaves by ref)');
  const same = diffToPhoenix({ ann: [{ session: 's1', state: { mood: 'x' } }] }, { ann: [{ session: 's1', state: { mood: 'x' } }] });
  t.same(same, { joins: {}, leaves: {} }, 'a re-track that changed nothing: an empty diff');
  const changed = diffToPhoenix({ ann: [{ session: 's1', state: { mood: 'z' } }] }, { ann: [{ session: 's1', state: { mood: 'x' } }] });
  t.match(changed, { joins: { ann: { metas: [{ mood: 'z' }] } }, leaves: { ann: { metas: [{ mood: 'x' }] } } });
  const proto = toPhoenix(JSON.parse('{"__proto__":[{"session":"s","state":{"__proto__":{"polluted":1}}}]}'));
  t.ok(Object.prototype.hasOwnProperty.call(proto, '__proto__'), '"__proto__" is a key like any other');
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'no prototype polluted');
});

t.test('bindings: read, refused, ids stable and distinct, echoed as sent', async (t) => {
  const [b] = readBindings([{ event: 'update', schema: 'public', table: 'items', filter: 'id=in.(1,2),mood=eq.ok' }], 10);
  t.match(b, { event: 'update', schema: 'public', table: 'items', events: ['update'], walcastFilter: 'id=in.(1,2)&mood=eq.ok' });
  t.same(readBindings(undefined, 10), []);
  t.same(readBindings([{ event: '*' }], 10)[0].schema, 'public', 'schema defaults to public');
  t.equal(readBindings([{ event: '*', schema: 'public', table: '*' }], 10)[0].table, null, 'table "*": the whole schema');
  t.throws(() => readBindings([{ event: 'TRUNCATE', schema: 'public' }], 10), BadRequestError);
  t.throws(() => readBindings([{ event: '*', schema: 'public', table: 'x', filter: 'a=like.b' }], 10), BadFilterError);
  t.throws(() => readBindings(new Array(11).fill({ event: '*' }), 10), /at most 10/);
  t.throws(() => readBindings([{ event: '*', schema: 'x'.repeat(64) }], 10), BadRequestError, 'over 63 bytes: no identifier');
  const again = readBindings([{ event: 'update', schema: 'public', table: 'items', filter: 'id=in.(1,2),mood=eq.ok' }], 10)[0];
  const id = bindingId(b, new Set());
  t.equal(bindingId(again, new Set()), id, 'the same binding: the same id, on any connection');
  t.ok(id > 0, 'never 0 (realtime-js tests ids for truth)');
  t.not(bindingId(b, new Set([id])), id, 'distinct within a join');
  const raw = readBindings([{ event: '*', schema: 'public', table: '*' }], 10)[0];
  t.same(echo(raw, 3), { event: '*', schema: 'public', table: '*', filter: undefined, id: 3 }, 'echoed exactly as sent (realtime-js compares)');
});
