// Positions of the stream's messages, read by sequence (direct get, answered by any replica):
// where the window starts, and where a resume position falls. Every message walcast writes
// carries its position in a header (`Walcast-Pos`, src/cluster/ctl.ts), and positions never go
// down along the stream, so a position is found by binary search in about log2(messages) reads.
import type { JetStreamClient, JetStreamManager, StoredMsg } from '@nats-io/jetstream';
import type { RelationCache } from './relations.js';
import { CLUSTER_FOLLOWER, CLUSTER_ROUTING } from '../constants.js';
import { compareWalPositions, floorAt, type Position } from '../protocol/position.js';
import { CLUSTER_HEADERS, decodeCtl, readPositionHeader } from './ctl.js';
import { parseSubject } from './subjects.js';

/** What floorBefore() needs of a message, stored or delivered. */
export interface PositionedMessage {
  subject: string;
  data: Uint8Array;
  /** The `Walcast-Pos` header's text. */
  header: string | undefined;
}

/** What reading the cluster's stream takes (a node's feed, its catch-ups). */
export interface StreamAccess {
  js: JetStreamClient;
  jsm: JetStreamManager;
  positions: StreamPositions;
  relations: RelationCache;
  ns: string;
  stream: string;
}

/** Waits before trying a failed read again (milliseconds). */
const READ_RETRIES = [50, 200, 500];

export class StreamPositions {
  constructor(
    private readonly jsm: JetStreamManager,
    private readonly stream: string,
    private readonly ns: string,
  ) {}

  /**
   * The message at `seq`, null when the stream no longer (or never) had it. A failed read (a
   * timeout while the stream elects a leader) is tried again a few times, then thrown: taking it
   * for "no message" would move a window's floor or a catch-up's start past messages still there.
   */
  async get(seq: number): Promise<StoredMsg | null> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.jsm.streams.getMessage(this.stream, { seq });
      } catch (err) {
        if (attempt >= READ_RETRIES.length) throw err;
        await new Promise((r) => setTimeout(r, READ_RETRIES[attempt]));
      }
    }
  }

  /**
   * The message at `seq` when it is due (a chain names it): null only when the stream no longer
   * has it (evicted) or it could not be read for CLUSTER_ROUTING.fetchGiveUpMs. Not stored yet (a
   * lagging replica answered) or no stream leader for a while (a NATS server killed): tried again,
   * waiting longer each time, until `stopped()`.
   */
  async whenStored(seq: number, stopped: () => boolean): Promise<StoredMsg | null> {
    const until = Date.now() + CLUSTER_ROUTING.fetchGiveUpMs;
    for (let wait: number = CLUSTER_ROUTING.fetchRetryMs; !stopped(); wait = Math.min(wait * 2, CLUSTER_ROUTING.fetchRetryCapMs)) {
      const m = await this.get(seq).catch(() => null);
      if (m) return m;
      const st = await this.jsm.streams.info(this.stream).catch(() => null);
      if (st && seq < st.state.first_seq) return null; // evicted
      if (Date.now() > until) break;
      await new Promise((r) => setTimeout(r, wait));
    }
    return null;
  }

  /** The message at `seq` or the nearest one towards `limit` that walcast wrote (it has a position); null within a few hundred none. */
  async positioned(seq: number, limit: number, step: 1 | -1): Promise<StoredMsg | null> {
    for (let n = 0; n < CLUSTER_FOLLOWER.scanForPosition && (step > 0 ? seq <= limit : seq >= limit); n++, seq += step) {
      const m = await this.get(seq);
      if (m && readPositionHeader(m.header?.get(CLUSTER_HEADERS.position))) return m;
    }
    return null;
  }

  /** The last position before a message: the window's floor when it is the first. */
  floorBefore(m: PositionedMessage): Position | null {
    const pos = readPositionHeader(m.header);
    if (!pos) return null;
    const parts = parseSubject(this.ns, m.subject);
    if (parts?.kind === 'change') return pos.index > 0 ? { lsn: pos.lsn, index: pos.index - 1 } : floorAt(pos.lsn);
    // Marks, epoch markers and resets stand for "everything up to pos"; an oversize marker is its
    // whole transaction, which is after the floor.
    try {
      if (decodeCtl(m.data).type === 'oversize') return floorAt(pos.lsn);
    } catch {
      return null;
    }
    return pos;
  }

  /** floorBefore() of a stored message. */
  floorOf(m: StoredMsg): Position | null {
    return this.floorBefore({ subject: m.subject, data: m.data, header: m.header?.get(CLUSTER_HEADERS.position) });
  }

  /**
   * The first sequence in [lo, hi] whose message is after `since` (lo's and hi's messages being
   * walcast's); hi + 1 when none is. A foreign message counts as the next positioned one.
   */
  async firstAfter(since: Position, lo: number, hi: number): Promise<number> {
    const after = async (seq: number): Promise<boolean> => {
      const m = await this.positioned(seq, hi, 1);
      const pos = readPositionHeader(m?.header?.get(CLUSTER_HEADERS.position));
      return !pos || compareWalPositions(pos, since) > 0;
    };
    if (await after(lo)) return lo;
    if (!(await after(hi))) return hi + 1;
    // after(lo) false, after(hi) true: the boundary is in (lo, hi].
    while (hi - lo > 1) {
      const mid = lo + Math.floor((hi - lo) / 2);
      if (await after(mid)) hi = mid;
      else lo = mid;
    }
    return hi;
  }
}
