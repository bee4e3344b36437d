// How well the history ring's byte estimate (what --history-bytes bounds) matches the memory the
// window really holds: transactions shaped like decoded ones are appended, their wire bodies
// encoded as the hub does on first delivery, and the heap (plus memory outside it: Buffers,
// external strings) measured after a full GC. Prints one JSON line and one readable line per
// shape: short and long text, one huge text, non-ASCII text, jsonb documents (many small
// objects; one object of many distinct keys). Logical messages no longer reach the window.
// Run: npm run build && node --expose-gc dist/bench/ring-memory.js [transactions]

import { randomBytes } from 'node:crypto';
import type { Relation, Row } from '../src/capture/pgoutput.types.js';
import type { CapturedChange as Change, Transaction } from '../src/capture/types.js';
import { HistoryRing } from '../src/history/ring.js';
import { changeBody, encodeBody, estimateBytes } from '../src/hub/render.js';

const N = Number(process.argv[2] ?? 100_000);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');

const relation: Relation = {
  oid: 16384,
  schema: 'public',
  name: 'messages',
  qualified: 'public.messages',
  replicaIdentity: 'default',
  columns: [],
  decoders: [],
};

/** A fresh flat string, as decoding a replication message makes it (nothing shared between rows). */
const decoded = (s: string): string => Buffer.from(s).toString('utf8');
const text = (n: number): string => decoded(randomBytes(Math.ceil(n / 2)).toString('hex').slice(0, n));
/** Text with a non-Latin-1 character every 8: V8 keeps it at two bytes per character. */
const wide = (n: number): string => decoded(Array.from({ length: n }, (_, i) => (i % 8 === 0 ? '€' : String.fromCharCode(97 + (i % 26)))).join(''));
/** A jsonb value as decodeJson makes it: parsed from fresh text. */
const jsonb = (v: unknown): unknown => JSON.parse(decoded(JSON.stringify(v)));

function row(i: number, body: unknown): Row {
  return { id: i, room_id: i % 1000, author: `user-${text(6)}`, body: body as Row[string], created_at: new Date(1_700_000_000_000 + i).toISOString() };
}

type Unindexed = Change extends infer C ? (C extends Change ? Omit<C, 'index'> : never) : never;

function tx(i: number, changes: Unindexed[]): Transaction {
  const lsn = BigInt(0x1000000 + i * 256);
  return {
    xid: 1000 + i,
    lsn,
    lsnText: `0/${lsn.toString(16).toUpperCase()}`,
    endLsn: lsn + 64n,
    commitTime: new Date(1_700_000_000_000 + i).toISOString().replace('Z', '123+00:00'),
    changes: changes.map((c, index) => ({ ...c, index }) as Change),
  };
}

const inserts = (i: number, rows: number, body: () => unknown) =>
  tx(i, Array.from({ length: rows }, (_, k) => ({ tag: 'insert' as const, relation, new: row(i * rows + k, body()) })));

interface Shape {
  name: string;
  transactions: number;
  make: (i: number) => Transaction;
}

const shapes: Shape[] = [
  { name: '1 row, text 40', transactions: N, make: (i) => inserts(i, 1, () => text(40)) },
  { name: '2 rows, text 200', transactions: N, make: (i) => inserts(i, 2, () => text(200)) },
  { name: '1 row, text 2,000', transactions: N, make: (i) => inserts(i, 1, () => text(2000)) },
  { name: '1 row, text 2,000 non-ASCII', transactions: Math.ceil(N / 5), make: (i) => inserts(i, 1, () => wide(2000)) },
  { name: '1 row, text 4 MiB', transactions: 24, make: (i) => inserts(i, 1, () => text(4 << 20)) },
  {
    name: '1 row, jsonb 20 objects',
    transactions: Math.ceil(N / 5),
    make: (i) => inserts(i, 1, () => jsonb({ items: Array.from({ length: 20 }, (_, k) => ({ id: k, name: text(8), tags: ['a', 'b'], score: k + 0.5 })) })),
  },
  {
    name: '1 row, jsonb 1,000 keys',
    transactions: Math.ceil(N / 50),
    make: (i) => inserts(i, 1, () => jsonb(Object.fromEntries(Array.from({ length: 1000 }, (_, k) => [`key-${i}-${k}`, k % 2 ? text(12) : k])))),
  },
];

function heap(): number {
  gc!();
  gc!();
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
}

const prefixes = ['a', 'room-feed', 'sub-3'].map((id) => Buffer.from(`{"type":"change","sub":${JSON.stringify(id)}`));
const results = [];
for (const shape of shapes) {
  const ring = new HistoryRing({ maxBytes: Number.MAX_SAFE_INTEGER, maxAgeMs: Number.MAX_SAFE_INTEGER });
  const before = heap();
  for (let i = 0; i < shape.transactions; i++) {
    const t = shape.make(i);
    const entry = ring.appendTransaction(t, estimateBytes(t));
    // As the hub does on first delivery: each row change's wire body, kept for catch-ups
    for (const c of t.changes) {
      const body = ring.addBody(entry, c.index, encodeBody(changeBody(t, c)));
      // The frames of a live dispatch (one per distinct subscription id), dropped once written.
      for (const p of prefixes) Buffer.concat([p, body]);
    }
  }
  const real = heap() - before;
  const estimate = ring.stats().bytes;
  const n = shape.transactions;
  results.push({ shape: shape.name, transactions: n, realBytesPerTx: Math.round(real / n), estimateBytesPerTx: Math.round(estimate / n), realOverEstimate: Number((real / estimate).toFixed(2)) });
  if (ring.stats().entries !== n) throw new Error('the ring evicted');
}
console.log(JSON.stringify({ bench: 'ring-memory', results }));
for (const r of results) {
  console.log(`${r.shape} (${r.transactions} tx): real ${r.realBytesPerTx} B/tx, estimated ${r.estimateBytesPerTx} B/tx, real/estimate ${r.realOverEstimate}`);
}
