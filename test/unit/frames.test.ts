// The server messages as written (src/protocol/frames.ts, and the change bodies of
// src/hub/render.ts, both hand-written JSON) against ServerMessage (src/protocol/types.ts).
// SHAPES is derived from the union by the compiler: a field added to, removed from or retyped in
// the union does not compile until SHAPES says the same. The test then parses what every
// builder writes, with and without its optional fields, and checks it against SHAPES: a field
// the union lacks, a required one missing, a value of the wrong kind, or a field of the union
// that no builder writes fails here.
import t from 'tap';
import type { CapturedChange, Transaction } from '../../src/capture/types.js';
import type { Relation, Row } from '../../src/capture/pgoutput.types.js';
import { changeBody, enterBody, leaveBody } from '../../src/hub/render.js';
import {
  authenticated,
  broadcastMsg,
  changePrefix,
  errorMsg,
  joined,
  left,
  pong,
  presenceDiff,
  presenceState,
  progress,
  resync,
  subscribed,
  snapshotFrame,
  unsubscribed,
  welcome,
  type Frame,
} from '../../src/protocol/frames.js';
import type { ChangeOp, ServerMessage, ServerMessageType } from '../../src/protocol/types.js';

// ---- the table the compiler derives from the union ----

/** How a field's value is checked: the JSON kind its type allows. */
type KindOf<V> = [V] extends [string]
  ? 'string'
  : [V] extends [number]
    ? 'number'
    : [V] extends [string | number]
      ? 'string|number'
      : [V] extends [readonly unknown[]]
        ? 'array'
        : unknown extends V
          ? 'any'
          : [V] extends [object]
            ? 'object'
            : never;

/** `kind`, with `?` when the field is optional. */
type Rule<M, K extends keyof M> = `${KindOf<Exclude<M[K], undefined>>}${Partial<Pick<M, K>> extends Pick<M, K> ? '?' : ''}`;

/** Every field of M, each with its exact rule: a missing, extra or wrong entry does not compile. */
type Shape<M> = { readonly [K in keyof M]-?: Rule<M, K> };

type MessageOf<T extends ServerMessageType> = Extract<ServerMessage, { type: T }>;

const SHAPES: { readonly [T in ServerMessageType]: Shape<MessageOf<T>> } = {
  welcome: { type: 'string', protocol: 'number', session: 'string' },
  authenticated: { type: 'string', expires_at: 'string?', ref: 'string|number?' },
  subscribed: { type: 'string', id: 'string|number', position: 'string', ref: 'string|number?' },
  unsubscribed: { type: 'string', id: 'string|number', ref: 'string|number?' },
  snapshot: { type: 'string', sub: 'string|number', rows: 'array' },
  change: {
    type: 'string',
    sub: 'string|number',
    pos: 'string',
    commit_time: 'string',
    op: 'string',
    table: 'string',
    new: 'object?',
    old: 'object?',
    changed: 'array?',
  },
  progress: { type: 'string', pos: 'string' },
  resync: { type: 'string', sub: 'string|number', reason: 'string', ref: 'string|number?' },
  joined: { type: 'string', channel: 'string', ref: 'string|number?' },
  left: { type: 'string', channel: 'string', ref: 'string|number?' },
  broadcast: { type: 'string', channel: 'string', event: 'string', payload: 'any', from: 'string?' },
  presence_state: { type: 'string', channel: 'string', state: 'object' },
  presence_diff: { type: 'string', channel: 'string', joins: 'object', leaves: 'object' },
  error: { type: 'string', code: 'string', message: 'string', ref: 'string|number?', id: 'string|number?' },
  pong: { type: 'string', ref: 'string|number?' },
};

// ---- what the builders write, every optional field with and without ----

const rel: Relation = {
  oid: 1,
  schema: 'public',
  name: 'todos',
  qualified: 'public.todos',
  replicaIdentity: 'full',
  columns: [],
  decoders: [],
};
const tx: Transaction = { xid: 7, lsn: 0x16b374d848n, lsnText: '16/B374D848', endLsn: 0x16b374d850n, commitTime: '2024-05-01T12:00:00.123456Z', changes: [] };
const a: Row = { id: 1, title: 'a' };
const b: Row = { id: 1, title: 'b' };
const update = { index: 2, tag: 'update', relation: rel, old: a, new: b, unchangedToast: null } as const;
const changes: CapturedChange[] = [
  { index: 0, tag: 'insert', relation: rel, new: a },
  update,
  { ...update, relation: { ...rel, replicaIdentity: 'default' }, old: null },
  { index: 3, tag: 'delete', relation: rel, old: a },
  { index: 4, tag: 'truncate', relation: rel, cascade: false, restartIdentity: false },
];
const prefixes = [changePrefix('open-todos'), changePrefix(42)];
const changeFrames = prefixes.flatMap((p) => [
  ...changes.map((c) => p + changeBody(tx, c)),
  p + leaveBody(tx, update),
  p + enterBody(tx, update),
]);

/** The change frames are built on the hot path from a prefix and a body, not by one builder. */
const asChange = (frames: string[]) => frames as Frame<'change'>[];

const SAMPLES: { readonly [T in ServerMessageType]: readonly Frame<T>[] } = {
  welcome: [welcome('b3f1c0de9a')],
  authenticated: [authenticated(null), authenticated(Date.UTC(2026, 10, 28), 1), authenticated(0, 't')],
  subscribed: [subscribed('open-todos', '16/B374D848:7'), subscribed(1, '0/0:0', 'r')],
  unsubscribed: [unsubscribed('open-todos'), unsubscribed(3, 3)],
  snapshot: [snapshotFrame('open-todos', []), snapshotFrame(7, ['{"id":1,"title":"a"}', '{"id":2,"title":null}'])],
  change: asChange(changeFrames),
  progress: [progress('16/B3750000:2147483647')],
  resync: [resync('s', 'position_outside_window'), resync(5, 'transaction_too_large', 2)],
  joined: [joined('room:42'), joined('room:42', 4)],
  left: [left('room:42'), left('room:42', 'x')],
  broadcast: [broadcastMsg('room:42', 'typing', '{"user":"ann"}'), broadcastMsg('room:42', 'typing', 'null', 'ann')],
  presence_state: [presenceState('room:42', { ann: [{ session: 'b3f1c0de9a', state: { status: 'online' } }] })],
  presence_diff: [presenceDiff('room:42', { ben: [] }, {})],
  error: [errorMsg('bad_request', 'no'), errorMsg('bad_filter', 'unknown operator "like"', 2, 'open-todos'), errorMsg('forbidden', 'x', undefined, 9)],
  pong: [pong(), pong(6)],
};

function kindOk(kind: string, v: unknown): boolean {
  switch (kind) {
    case 'string':
      return typeof v === 'string';
    case 'number':
      return typeof v === 'number';
    case 'string|number':
      return typeof v === 'string' || typeof v === 'number';
    case 'array':
      return Array.isArray(v);
    case 'object':
      return typeof v === 'object' && v !== null && !Array.isArray(v);
    case 'any':
      return true;
    default:
      return false;
  }
}

for (const type of Object.keys(SHAPES) as ServerMessageType[]) {
  t.test(`${type}: what is written is ServerMessage's ${type}`, async (t) => {
    const shape = SHAPES[type] as Record<string, string>;
    const frames = SAMPLES[type] as readonly string[];
    t.ok(frames.length > 0, 'has samples');
    const written = new Set<string>();
    for (const frame of frames) {
      let msg: Record<string, unknown>;
      try {
        msg = JSON.parse(frame) as Record<string, unknown>;
      } catch (err) {
        t.fail(`not JSON: ${frame} (${(err as Error).message})`);
        continue;
      }
      t.equal(msg.type, type, `type of ${frame}`);
      for (const [key, value] of Object.entries(msg)) {
        written.add(key);
        const rule = shape[key];
        if (rule === undefined) {
          t.fail(`writes "${key}", which ServerMessage's ${type} does not have: ${frame}`);
          continue;
        }
        t.ok(kindOk(rule.replace('?', ''), value), `"${key}" is ${rule}: ${frame}`);
      }
      for (const [key, rule] of Object.entries(shape)) {
        if (!rule.endsWith('?')) t.ok(Object.hasOwn(msg, key), `required "${key}" is written: ${frame}`);
      }
    }
    const never = Object.keys(shape).filter((k) => !written.has(k));
    t.same(never, [], `every field of ServerMessage's ${type} is written by some sample`);
  });
}

/** Every ChangeOp (a missing or extra one does not compile). */
const OPS: Record<ChangeOp, true> = { insert: true, update: true, delete: true, leave: true, truncate: true };

t.test('the change samples cover every op, and only those', async (t) => {
  const ops = new Set(changeFrames.map((f) => (JSON.parse(f) as { op: string }).op));
  t.same([...ops].sort(), Object.keys(OPS).sort());
});
