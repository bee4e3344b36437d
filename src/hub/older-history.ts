// History older than the ring's floor, read from elsewhere for catch-ups: in a cluster, the
// stream (src/cluster/stream-history.ts) holds more than a node keeps in memory. A catch-up whose
// position is before the ring's floor reads a segment of it in position order, then moves to
// the ring where the ring covers the segment's position (the same seam rule as going live: the
// next entry is the first one after the last position delivered).
import type { RingEntry } from '../history/ring.js';
import type { Position } from '../protocol/position.js';
import type { ResyncReason } from '../protocol/types.js';

/**
 * Where a segment starts: `since` before the ring's floor (`strict`: the history must hold what
 * follows it), `since` in the ring but the table not followed from there (`uncovered`), or no
 * position at all (`now`: from the history's end, which the node's ring may lag for a table it
 * does not follow yet).
 */
export type SegmentStart = 'strict' | 'uncovered' | 'now';

/** One catch-up's read of older history, buffered ahead (bounded) and refilled asynchronously. */
export interface OlderSegment {
  /** The next entry; undefined while none is buffered (the segment calls its `wake` when some are). */
  peek(): RingEntry | undefined;
  /** Done with the entry peek() returned. */
  shift(): void;
  /** The last position of the entries shifted; the resume position at first. */
  readonly position: Position;
  /** Set when it cannot go on: the subscription gets `resync` with this reason. */
  readonly failure: ResyncReason | null;
  /** Stops reading; idempotent. */
  close(): void;
}

export interface OlderHistory {
  /** Whether `since` may be in it: a cheap check on cached figures (the segment finds out for sure). */
  mayCover(since: Position): boolean;
  /**
   * A segment from `since` on; null when as many are open as allowed (`wake` is then called when
   * one closes). `wake` is called whenever the segment has more to give.
   */
  open(since: Position, wake: () => void, start: SegmentStart): OlderSegment | null;
  /** The oldest position it serves (policy history older than it may go), null when unknown. */
  floor(): Position | null;
}

/**
 * What a node follows (a cluster with interest routing: docs/dev/cluster-plan.md §5): a
 * subscription makes the node follow its table, and until the node's feed carries the table (and
 * past the position from which it does), the subscription is caught up from older history.
 */
export interface Interests {
  /**
   * A subscription to `table` starts: the node follows it, the whole table or (`routes`) only
   * those route values. Returns the release (idempotent).
   */
  follow(table: string, routes: readonly string[] | null): () => void;
  /** From which position on the ring holds every change of `table` (of those `routes`); null: not (yet) followed. */
  coveredFrom(table: string, routes: readonly string[] | null): Position | null;
  /** Calls `listener` whenever a table becomes covered (catch-ups waiting for it go on). */
  onCovered(listener: () => void): void;
}
