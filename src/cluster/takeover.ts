// The steps of a capture takeover that read or break what the previous leader left
// (docs/dev/cluster-plan.md §3.3): its walsender, and the tail of the stream it wrote.
import type { JetStreamManager } from '@nats-io/jetstream';
import type pg from 'pg';
import { parseLsn } from '../protocol/lsn.js';
import type { Position } from '../protocol/position.js';
import { decodeChange } from './codec.js';
import { CLUSTER_HEADERS, decodeCtl, readPositionHeader } from './ctl.js';

/** What the stream holds at its end. */
export interface StreamTail {
  /** The stream's last sequence (0: never written). */
  lastSeq: number;
  /** The position its last message covers; null when the stream holds no message. */
  position: Position | null;
  /**
   * The WAL position before which every commit is in the stream: a whole transaction's end, a
   * mark's WAL end; a transaction cut short by a failover only counts up to its commit LSN.
   * Null when unknown (no message). A slot confirmed past it lost changes the stream lacks.
   */
  end: bigint | null;
}

/** The `end` of a stream's last message (see StreamTail). */
export function tailEnd(subject: string, data: Uint8Array, position: Position, last: boolean): bigint {
  if (!subject.endsWith('.ctl')) return last ? parseLsn(decodeChange(data).end) : position.lsn;
  const c = decodeCtl(data);
  switch (c.type) {
    case 'mark':
      return c.wal;
    case 'oversize':
      return c.end;
    case 'epoch':
      return c.end ?? position.lsn;
    case 'reset':
      return c.floor.lsn + 1n;
  }
}

/**
 * The stream's last sequence and the position of the message there. Read from the stream's
 * leader (`STREAM.MSG.GET`, not a direct get, which any replica answers, maybe behind).
 */
export async function readTail(jsm: JetStreamManager, stream: string): Promise<StreamTail> {
  const info = await jsm.streams.info(stream);
  const lastSeq = info.state.last_seq;
  if (info.state.messages === 0 || lastSeq === 0) return { lastSeq, position: null, end: null };
  const msg = await jsm.streams.getMessage(stream, { seq: lastSeq });
  const position = readPositionHeader(msg?.header?.get(CLUSTER_HEADERS.position));
  if (!msg || !position) return { lastSeq, position, end: null };
  return { lastSeq, position, end: tailEnd(msg.subject, msg.data, position, msg.header?.get(CLUSTER_HEADERS.last) === '1') };
}

/** The slot as a takeover finds it. */
export interface SlotAtTakeover {
  /** The slot's confirmed_flush_lsn (the WAL position when there is no slot yet). */
  confirmed: bigint;
  /** Whether a walsender was serving it (and was told to end). */
  terminated: boolean;
}

/**
 * Ends the walsender holding the slot, if any: the previous leader may be alive but deposed
 * (paused, cut off from NATS), and its replication connection would keep the slot until
 * wal_sender_timeout. Our role may end its own backends (or needs pg_signal_backend).
 */
export async function breakSlotHolder(client: pg.Client, slot: string): Promise<SlotAtTakeover> {
  const r = await readSlot(client, slot);
  let terminated = false;
  if (r.pid !== null) {
    const t = await client.query<{ ok: boolean }>('select pg_terminate_backend($1) as ok', [r.pid]);
    terminated = t.rows[0]?.ok === true;
  }
  return { confirmed: r.confirmed, terminated };
}

/**
 * The slot's confirmed position (the current WAL position while there is no slot yet: nothing
 * before it will ever be read) and the pid of the walsender serving it.
 */
export async function readSlot(db: Pick<pg.ClientBase, 'query'>, slot: string): Promise<{ confirmed: bigint; pid: number | null }> {
  const { rows } = await db.query<{ confirmed: string; pid: number | null }>(
    `select coalesce(s.confirmed_flush_lsn, pg_current_wal_lsn())::text as confirmed, s.active_pid as pid
       from (select 1) one left join pg_replication_slots s on s.slot_name = $1`,
    [slot],
  );
  return { confirmed: parseLsn(rows[0].confirmed), pid: rows[0].pid };
}
