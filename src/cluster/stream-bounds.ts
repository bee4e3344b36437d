// Where a node's window starts when it starts (docs/dev/cluster-plan.md §6): its floor is just
// before the first message young enough for the node's history window (`historyAgeMs`; older ones
// would be evicted as soon as read, so they are not read at all), and news starts at the
// stream's last message.
import type { JetStreamManager } from '@nats-io/jetstream';
import { ClusterMessageError } from '../errors.js';
import type { Position } from '../protocol/position.js';
import { CLUSTER_HEADERS, readPositionHeader } from './ctl.js';
import type { StreamPositions } from './stream-positions.js';

export interface StartBoundsOptions {
  jsm: JetStreamManager;
  stream: string;
  positions: StreamPositions;
  /** The window's floor when the stream holds nothing yet (the slot's position). */
  emptyFloor: () => Promise<Position>;
  historyAgeMs?: number;
}

export interface StartBounds {
  /** Nothing at or before it can be honoured. */
  floor: Position;
  /** What committed at or before it is history, not news. */
  news: Position;
  /** The first sequence to read. */
  from: number;
  /** The stream's last sequence when the bounds were read. */
  last: number;
}

export async function readStartBounds(o: StartBoundsOptions): Promise<StartBounds> {
  const { jsm, stream, positions } = o;
  for (let attempt = 0; ; attempt++) {
    const s = (await jsm.streams.info(stream)).state;
    const empty = async (floor?: Position): Promise<StartBounds> => {
      const f = floor ?? (await o.emptyFloor());
      return { floor: f, news: f, from: s.last_seq + 1, last: s.last_seq };
    };
    // Nothing in the stream: the window starts where the slot is.
    if (s.messages === 0) return empty();
    const start = await firstYoung(positions, s.first_seq, s.last_seq, o.historyAgeMs);
    const first = start === null ? null : await positions.positioned(start, s.last_seq, 1);
    const last = await positions.positioned(s.last_seq, s.first_seq, -1);
    // Nothing walcast wrote near the end (foreign messages only): read from the end.
    if (!last) return empty();
    const news = readPositionHeader(last.header?.get(CLUSTER_HEADERS.position)) as Position;
    // Every message is older than the history window: none is read, the window starts after the last.
    if (start === null || !first) return empty(news);
    const floor = positions.floorOf(first);
    // The first message aged out in between: read the bounds again.
    if (!floor) {
      if (attempt < 5) continue;
      throw new ClusterMessageError(`the stream ${stream} changed under this node at start too often (seq ${first.seq})`);
    }
    return { floor, news, from: first.seq, last: s.last_seq };
  }
}

/** The first sequence whose message is younger than the history window (binary search by store time); null when none. */
async function firstYoung(positions: StreamPositions, lo: number, hi: number, maxAge: number | undefined): Promise<number | null> {
  if (maxAge === undefined) return lo;
  const cutoff = Date.now() - maxAge;
  const young = async (seq: number) => {
    const m = await positions.get(seq);
    return m !== null && m.time.getTime() >= cutoff;
  };
  if (await young(lo)) return lo;
  if (!(await young(hi))) return null;
  // young(lo) false, young(hi) true: the boundary is in (lo, hi].
  while (hi - lo > 1) {
    const mid = lo + Math.floor((hi - lo) / 2);
    if (await young(mid)) hi = mid;
    else lo = mid;
  }
  return hi;
}
