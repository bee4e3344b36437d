// How well the history ring's byte estimate (what --history-bytes bounds) matches the memory the
// window really holds: transactions shaped like decoded ones are appended, their wire bodies
// encoded as the hub does on first delivery, and the heap (plus Buffer memory) measured after a
// full GC. Prints one JSON line and one readable line per row shape.
// Run: npm run build && node --expose-gc dist/bench/ring-memory.js [transactions]

import { randomBytes } from 'node:crypto';
import type { Relation, Row } from '../src/capture/pgoutput.types.js';
import type { Transaction } from '../src/capture/types.js';
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

/** Fresh strings, as decoding a replication message makes them (nothing shared between rows). */
const text = (n: number): string => randomBytes(Math.ceil(n / 2)).toString('hex').slice(0, n);

function row(i: number, bodyLen: number): Row {
  return { id: i, room_id: i % 1000, author: `user-${text(6)}`, body: text(bodyLen), created_at: new Date(1_700_000_000_000 + i).toISOString() };
}

function tx(i: number, rows: number, bodyLen: number): Transaction {
  const lsn = BigInt(0x1000000 + i * 256);
  return {
    xid: 1000 + i,
    lsn,
    lsnText: `0/${lsn.toString(16).toUpperCase()}`,
    endLsn: lsn + 64n,
    commitTime: new Date(1_700_000_000_000 + i).toISOString().replace('Z', '123+00:00'),
    changes: Array.from({ length: rows }, (_, index) => ({ tag: 'insert' as const, index, relation, new: row(i * rows + index, bodyLen) })),
  };
}

function heap(): number {
  gc!();
  gc!();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

const prefixes = ['a', 'room-feed', 'sub-3'].map((id) => Buffer.from(`{"type":"change","sub":${JSON.stringify(id)}`));
const results = [];
for (const [rows, bodyLen] of [
  [1, 40],
  [2, 200],
  [1, 2000],
] as const) {
  const ring = new HistoryRing({ maxBytes: Number.MAX_SAFE_INTEGER, maxAgeMs: Number.MAX_SAFE_INTEGER });
  const before = heap();
  let rowsOnly = 0; // the estimate without the wire bodies (before they were counted)
  for (let i = 0; i < N; i++) {
    const t = tx(i, rows, bodyLen);
    const bytes = estimateBytes(t);
    rowsOnly += bytes;
    const entry = ring.appendTransaction(t, bytes);
    // As the hub does on first delivery: each change's wire body, kept for catch-ups.
    for (const c of t.changes) {
      const body = ring.addBody(entry, c.index, encodeBody(changeBody(t, c)));
      // The frames of a live dispatch (one per distinct subscription id), dropped once written.
      for (const p of prefixes) Buffer.concat([p, body]);
    }
  }
  const real = heap() - before;
  const estimate = ring.stats().bytes;
  results.push({ rowsPerTx: rows, bodyChars: bodyLen, transactions: N, realBytesPerTx: Math.round(real / N), estimateBytesPerTx: Math.round(estimate / N), realOverEstimate: Number((real / estimate).toFixed(2)), realOverRowsOnly: Number((real / rowsOnly).toFixed(2)) });
  if (ring.stats().entries !== N) throw new Error('the ring evicted');
}
console.log(JSON.stringify({ bench: 'ring-memory', results }));
for (const r of results) {
  console.log(`${r.rowsPerTx} row(s)/tx, body ${r.bodyChars} chars: real ${r.realBytesPerTx} B/tx, estimated ${r.estimateBytesPerTx} B/tx, real/estimate ${r.realOverEstimate} (without the bodies counted: ${r.realOverRowsOnly})`);
}
