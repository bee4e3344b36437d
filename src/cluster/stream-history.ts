// The cluster's stream as older history for catch-ups (hub/older-history.ts): a node keeps its
// --history-age in memory, the stream keeps --stream-max-age; a resume position between the two
// is read from the stream (stream-segment.ts), at most CLUSTER_CATCHUP.maxSegments at once.
import { CLUSTER_CATCHUP } from '../constants.js';
import type { OlderHistory, OlderSegment, SegmentStart } from '../hub/older-history.js';
import type { Logger } from '../log.js';
import { compareWalPositions, floorAt, parseWalPosition, type Position } from '../protocol/position.js';
import { StreamSegment } from './stream-segment.js';
import type { StreamAccess } from './stream-positions.js';
import type { StreamFigures } from './stream-watch.js';

export interface StreamHistoryOptions extends StreamAccess {
  /** The stream's figures as last read (null before the first read). */
  figures: () => StreamFigures | null;
  maxSegments?: number;
  log: Logger;
}

export interface StreamHistoryStats {
  /** Segments reading now. */
  open: number;
  /** Segments opened since start. */
  opened: number;
  /** Times a catch-up found every segment taken (it waits and tries again). */
  waited: number;
}

export class StreamHistory implements OlderHistory {
  private open_ = 0;
  private opened = 0;
  private waited = 0;
  private readonly waiting = new Set<() => void>();
  private readonly max: number;

  constructor(private readonly o: StreamHistoryOptions) {
    this.max = o.maxSegments ?? CLUSTER_CATCHUP.maxSegments;
  }

  get stats(): StreamHistoryStats {
    return { open: this.open_, opened: this.opened, waited: this.waited };
  }

  /** Before the stream's first message (as last read): no. Unknown: the segment finds out. */
  mayCover(since: Position): boolean {
    const f = this.floor();
    return f === null || compareWalPositions(since, f) >= 0;
  }

  floor(): Position | null {
    const first = this.o.figures()?.firstPosition;
    if (!first) return null;
    try {
      // The floor is just before the first message; that message's commit LSN less one is before it.
      return floorAt(parseWalPosition(first).lsn);
    } catch {
      return null;
    }
  }

  open(since: Position, wake: () => void, start: SegmentStart): OlderSegment | null {
    if (this.open_ >= this.max) {
      this.waited++;
      this.waiting.add(wake);
      return null;
    }
    this.open_++;
    this.opened++;
    const { js, jsm, positions, relations, ns, stream, log } = this.o;
    return new StreamSegment({
      js,
      positions,
      relationOf: (ref) => relations.get(ref),
      bounds: async () => {
        const s = (await jsm.streams.info(stream)).state;
        return { first: s.first_seq, last: s.last_seq, messages: s.messages };
      },
      ns,
      stream,
      since,
      start,
      wake,
      onClose: () => this.closed(),
      log,
    });
  }

  private closed(): void {
    this.open_--;
    // Every waiting catch-up may try again (one of them gets the slot; the others wait on).
    const waiting = [...this.waiting];
    this.waiting.clear();
    for (const w of waiting) w();
  }
}
