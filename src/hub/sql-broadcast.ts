// Broadcasts from SQL (sql/004_broadcast_table.sql): a committed insert into walcast.broadcasts,
// which only its owner may write and walcast.broadcast() writes for the roles granted EXECUTE,
// goes to the channel's members in its place in commit order. The table is not subscribable
// and its rows never reach the history window: broadcasts are ephemeral, catch-ups do not replay
// them. Logical decoding messages carry nothing for clients: any role may emit one, so they can
// never be trusted as broadcasts.
import { compareWalPositions, type Position } from '../protocol/position.js';
import type { CapturedChange, Transaction } from '../capture/types.js';
import { BROADCASTS_TABLE, SNAPSHOT_MARKS_TABLE } from '../constants.js';
import type { Logger } from '../log.js';
import type { Channels } from './channels.js';

export interface SqlBroadcastOptions {
  channels: Channels | null;
  /** Largest payload (JSON bytes) sent on; bigger rows are dropped. */
  maxPayloadBytes: number;
  log?: Pick<Logger, 'warn'> | null;
}

/** A change the window does not keep and subscribers never get: a row of walcast.broadcasts or walcast.snapshot_marks. */
export function notForWindow(c: CapturedChange): boolean {
  const t = c.relation.qualified;
  return t === BROADCASTS_TABLE || t === SNAPSHOT_MARKS_TABLE;
}

/** The transaction as the history window keeps it; itself when it has nothing to leave out. */
export function forWindow(tx: Transaction): Transaction {
  for (const c of tx.changes) {
    if (notForWindow(c)) return { ...tx, changes: tx.changes.filter((x) => !notForWindow(x)) };
  }
  return tx;
}

export class SqlBroadcasts {
  /** Broadcasts sent on to their channel. */
  sent = 0;
  /** Rows dropped: payload over the limit, or not the table's shape. */
  dropped = 0;
  private warned = false;

  constructor(private readonly o: SqlBroadcastOptions) {}

  /**
   * A change of walcast.broadcasts committed. Only inserts after `nowFloor` are news: what the
   * slot replays after a restart was broadcast before this daemon started.
   */
  onChange(tx: Transaction, c: CapturedChange, nowFloor: Position): void {
    const channels = this.o.channels;
    if (c.tag !== 'insert' || !channels) return; // the delete that follows every insert, or no channels
    if (compareWalPositions({ lsn: tx.lsn, index: c.index }, nowFloor) <= 0) return;
    const { channel, event, payload } = c.new;
    if (typeof channel !== 'string' || typeof event !== 'string' || channel === '' || event === '') {
      this.drop(tx, c, 'a row without channel or event');
      return;
    }
    const json = JSON.stringify(payload ?? null);
    const bytes = Buffer.byteLength(json);
    if (bytes > this.o.maxPayloadBytes) {
      this.drop(tx, c, `a payload of ${bytes} bytes, over the limit of ${this.o.maxPayloadBytes}`, channel);
      return;
    }
    this.sent++;
    channels.fromSql(channel, event, json);
  }

  /** Counted every time (walcast_sql_broadcasts_dropped_total), logged the first time only. */
  private drop(tx: Transaction, c: CapturedChange, why: string, channel?: string): void {
    this.dropped++;
    if (this.warned) return;
    this.warned = true;
    this.o.log?.warn(
      { table: BROADCASTS_TABLE, pos: `${tx.lsnText}:${c.index}`, channel },
      `SQL broadcast dropped: ${why} (logged once; counted in walcast_sql_broadcasts_dropped_total)`,
    );
  }
}
