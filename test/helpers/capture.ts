// An in-process Capture on a given slot that collects committed transactions into an array,
// plus small SQL helpers for the capture and migration integration tests.

import pg from 'pg';
import type { Test } from 'tap';
import { Capture, type CaptureOptions } from '../../src/capture/capture.js';
import { parseLsn } from '../../src/protocol/lsn.js';
import type { CapturedChange as Change, Transaction } from '../../src/capture/types.js';

export type CollectOptions = Omit<CaptureOptions, 'onTransaction' | 'publication'> & {
  publication?: string;
  /** Called for each transaction after it was recorded (e.g. to remember the first one). */
  /** A returned promise holds the next transaction until it settles (as Capture does). */
  onTransaction?: (tx: Transaction) => void | Promise<void>;
};

export interface Collector {
  readonly capture: Capture;
  /** Every transaction handed on, in the order it was handed on. */
  readonly txs: Transaction[];
  /** Errors emitted as 'fatal' by the capture (a healthy run has none). */
  readonly fatal: Error[];
  /** Resolves once `pred(txs)` holds; rejects after timeoutMs with a summary of what arrived. */
  waitFor(pred: (txs: Transaction[]) => boolean, timeoutMs?: number, what?: string): Promise<void>;
  /** All changes so far, optionally only those of one table ("schema.table"). */
  changes(table?: string): Change[];
  /** Number of row changes (insert/update/delete) so far, optionally of one table. */
  rows(table?: string): number;
  stop(): Promise<void>;
}

/** Starts a Capture (publication `walcast`) and stops it at the test's teardown at the latest. */
export async function startCollector(t: Test, opts: CollectOptions): Promise<Collector> {
  const txs: Transaction[] = [];
  const fatal: Error[] = [];
  const { onTransaction, ...rest } = opts;
  const capture = new Capture({
    publication: 'walcast',
    ...rest,
    onTransaction: (tx) => {
      txs.push(tx);
      return onTransaction?.(tx);
    },
  });
  capture.on('fatal', (err: Error) => fatal.push(err));
  t.teardown(() => capture.stop());
  await capture.start();

  const changes = (table?: string): Change[] =>
    txs.flatMap((tx) => tx.changes).filter((c) => table === undefined || ('relation' in c && c.relation.qualified === table));

  return {
    capture,
    txs,
    fatal,
    changes,
    rows: (table) => rowCount(changes(table)),
    waitFor: (pred, timeoutMs = 10_000, what = 'condition') => waitUntil(() => pred(txs), timeoutMs, () => {
      const summary = txs.map((tx) => `${tx.lsnText}[${tx.changes.map((c) => c.tag).join(',')}]`).join(' ');
      return `timed out after ${timeoutMs} ms waiting for ${what}; got ${txs.length} transactions: ${summary.slice(0, 2000)}`;
    }),
    stop: () => capture.stop(),
  };
}

/** Number of insert/update/delete changes among `changes`. */
export function rowCount(changes: readonly Change[]): number {
  let n = 0;
  for (const c of changes) if (c.tag === 'insert' || c.tag === 'update' || c.tag === 'delete') n++;
  return n;
}

/** Polls `cond` (sync or async) every 20 ms until it is true. */
export async function waitUntil(cond: () => boolean | Promise<boolean>, timeoutMs: number, message: () => string = () => 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline) throw new Error(message());
    await sleep(20);
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `get` every 5 ms until it returns something (not undefined or false), and returns that; fails after timeoutMs. */
export async function until<T>(get: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs: number, what: string): Promise<T> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    const v = await get();
    if (v !== undefined && v !== false) return v;
    if (performance.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(5);
  }
}

/** A connected client, ended at the test's teardown. */
export async function sqlClient(t: Test, url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => {});
  await client.connect();
  t.teardown(() => client.end().catch(() => {}));
  return client;
}

/** One query on its own short-lived connection. */
export async function query<R extends pg.QueryResultRow = pg.QueryResultRow>(url: string, text: string, params: unknown[] = []): Promise<R[]> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => {});
  await client.connect();
  try {
    return (await client.query<R>(text, params)).rows;
  } finally {
    await client.end().catch(() => {});
  }
}

export interface SlotInfo {
  confirmedFlush: bigint;
  active: boolean;
}

/** The slot's confirmed_flush_lsn and whether a walsender holds it. */
export async function slotInfo(url: string, slot: string): Promise<SlotInfo> {
  const rows = await query<{ lsn: string | null; active: boolean }>(
    url,
    'select confirmed_flush_lsn::text as lsn, active from pg_replication_slots where slot_name = $1',
    [slot],
  );
  if (!rows[0]) throw new Error(`no slot ${slot}`);
  return { confirmedFlush: rows[0].lsn ? parseLsn(rows[0].lsn) : 0n, active: rows[0].active };
}

/** Waits until no walsender holds the slot any more (after a stop), then returns its state. */
export async function releasedSlot(url: string, slot: string, timeoutMs = 10_000): Promise<SlotInfo> {
  let info = await slotInfo(url, slot);
  await waitUntil(async () => !(info = await slotInfo(url, slot)).active, timeoutMs, () => `slot ${slot} still active`);
  return info;
}

/** Creates the slot the way the daemon does (start, then stop a Capture) and waits until it is free. */
export async function createSlot(t: Test, url: string, slot: string): Promise<void> {
  const c = await startCollector(t, { url, slot });
  await c.stop();
  await releasedSlot(url, slot);
}
