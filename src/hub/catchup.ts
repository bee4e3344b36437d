// Catching up resumed subscriptions from the history window. The scheduler (catchup-scheduler.ts)
// decides who works in a turn and how much; this walks the ring (after older history when the
// position is before the ring: older-history.ts) for one subscription within its share: change
// by change (a cursor inside a transaction, so a large one is spread over turns too), pausing
// while its socket has too much unsent, and turning it live in the same step that delivers the
// ring's last change, so the seam has no gap and no duplicate.
import type { CapturedChange, Transaction } from '../capture/types.js';
import type { HistoryRing, RingEntry } from '../history/ring.js';
import { CatchUpScheduler, type CatchUpLimits, type CatchUpStats } from './catchup-scheduler.js';
import { crossesOversized } from './oversize-crossing.js';
import type { HubSubscription } from './subscriptions.js';
import type { OlderHistory } from './older-history.js';
import { compareWalPositions, type Position } from '../protocol/position.js';
import type { ResyncReason } from '../protocol/types.js';

/** What catching up needs of the hub. */
export interface CatchUpHost {
  readonly ring: HistoryRing;
  /** History before the ring's floor (a cluster's stream), null when there is none. */
  readonly older: OlderHistory | null;
  /** Whether the ring holds every change the subscription could match after `pos` (what the node follows). */
  covered(sub: HubSubscription, pos: Position): boolean;
  /** Sends one change of the window to a catching-up subscription if it may and wants it: the frame's bytes, 0 if none. */
  deliverPast(entry: RingEntry, tx: Transaction, c: CapturedChange, sub: HubSubscription): number;
  /** The subscription has everything in the ring: `subscribed`, then live dispatch. */
  goLive(sub: HubSubscription): void;
  /** The position cannot be honoured (window moved past it, or a skipped transaction): `resync`. */
  resync(sub: HubSubscription, reason: ResyncReason): void;
}

export interface CatchUpOptions extends CatchUpLimits {
  /** A catching-up peer with more bytes than this unsent waits for its socket to drain. */
  highWater: number;
}

/**
 * Bytes queued for one socket between writes. Writing after every change costs a system call
 * each (most of a catch-up's time with small rows); writing everything at the end of a share
 * could queue megabytes of large rows at once.
 */
const WRITE_BYTES = 64 * 1024;

export class CatchUp {
  private readonly scheduler: CatchUpScheduler<HubSubscription>;
  private scheduled = false;
  private maxTurnMs = 0;
  private readonly highWater: number;

  constructor(
    private readonly host: CatchUpHost,
    opts: CatchUpOptions,
  ) {
    this.scheduler = new CatchUpScheduler<HubSubscription>(opts);
    this.highWater = opts.highWater;
  }

  /** Subscriptions catching up, running or waiting for a slot. */
  get size(): number {
    return this.scheduler.size;
  }

  /** The scheduler's counters, and the longest turn (milliseconds) catch-ups took. */
  get stats(): Readonly<CatchUpStats & { maxTurnMs: number }> {
    return { ...this.scheduler.stats, maxTurnMs: this.maxTurnMs };
  }

  /** Starts (or queues) a subscription whose cursor is set; the work happens in later turns. */
  add(sub: HubSubscription): void {
    this.scheduler.add(sub);
    this.schedule();
  }

  remove(sub: HubSubscription): void {
    this.closeSegment(sub);
    if (this.scheduler.size === 0) return;
    this.scheduler.remove(sub);
    // A waiting subscription may have taken the freed slot.
    this.schedule();
  }

  /** Something may let catch-ups go on (new entries, a socket drained): run a turn soon. */
  schedule(): void {
    if (this.scheduled || this.scheduler.size === 0) return;
    this.scheduled = true;
    setImmediate(this.turn);
  }

  private readonly turn = (): void => {
    this.scheduled = false;
    const t0 = performance.now();
    const spent = this.scheduler.runTurn(this.step);
    this.maxTurnMs = Math.max(this.maxTurnMs, performance.now() - t0);
    // Nothing spent: every running catch-up waits for its socket (drained() resumes it).
    if (spent > 0) this.schedule();
  };

  /**
   * Delivers up to `units` of history to one subscription (a change examined, or an entry
   * without changes, is one unit; each KiB sent one more, so the last change may go past
   * `units`); returns the units spent. History is the ring from the cursor on, or first an older
   * segment (older-history.ts) until the ring covers the segment's position.
   */
  private readonly step = (sub: HubSubscription, units: number): number => {
    const peer = sub.peer;
    if (sub.state !== 'catching_up' || peer.closed) return 0;
    const ring = this.host.ring;
    // Opened when the catch-up first runs: only running catch-ups hold a segment.
    if (sub.older !== null && !sub.segment) {
      sub.segment = this.host.older?.open(sub.after, this.wake, sub.older) ?? null;
      if (!sub.segment) return 0; // as many open as allowed: wake() comes when one closes
    }
    if (peer.backlog() > this.highWater) return 0;
    let spent = 0;
    let queued = 0;
    while (spent < units) {
      let entry: RingEntry | undefined;
      const seg = sub.segment;
      if (seg) {
        if (seg.failure) {
          this.host.resync(sub, seg.failure);
          return spent + 1;
        }
        // The ring has everything after the segment's position: on from its next entry.
        if (sub.within === 0 && ring.covers(seg.position) && this.host.covered(sub, seg.position)) {
          sub.cursor = ring.seqAfter(seg.position);
          this.closeSegment(sub);
          continue;
        }
        entry = seg.peek();
        if (!entry) break; // refilling: wake() comes
      } else {
        if (sub.cursor < ring.startSeq) {
          this.host.resync(sub, 'position_outside_window');
          return spent + 1;
        }
        if (sub.cursor >= ring.endSeq) break;
        entry = ring.get(sub.cursor) as RingEntry;
      }
      const tx = entry.tx;
      spent++;
      // A transaction skipped for its size (hub/oversize.ts) that changed this table: refetch.
      if (tx?.oversize && crossesOversized(tx, sub)) {
        this.host.resync(sub, 'transaction_too_large');
        return spent;
      }
      if (!tx || sub.within >= tx.changes.length) {
        this.advance(sub);
        continue;
      }
      const bytes = this.host.deliverPast(entry, tx, tx.changes[sub.within++], sub);
      // Large rows cost their copying too: a unit per KiB sent.
      spent += bytes >> 10;
      queued += bytes;
      if (sub.within >= tx.changes.length) this.advance(sub);
      if (queued >= WRITE_BYTES) {
        queued = 0;
        peer.flush();
        // Stop as soon as the socket has enough to chew on (drained() resumes).
        if (peer.closed || peer.backlog() > this.highWater) break;
      }
    }
    if (!peer.closed && !sub.segment && sub.cursor >= ring.endSeq) {
      this.host.goLive(sub);
      spent = Math.max(1, spent);
    }
    peer.flush();
    return spent;
  };

  /** Past the entry being read: the next one of the segment, or of the ring. */
  private advance(sub: HubSubscription): void {
    sub.within = 0;
    if (sub.segment) sub.segment.shift();
    else sub.cursor++;
  }

  private closeSegment(sub: HubSubscription): void {
    const seg = sub.segment;
    if (!seg) return;
    sub.segment = null;
    sub.older = null;
    // The ring may still be behind what the segment delivered (the node's feed lags the stream):
    // live dispatch skips what is at or before it.
    if (compareWalPositions(seg.position, sub.after) > 0) sub.after = seg.position;
    seg.close();
  }

  /** A segment has more, or one closed (room for another): run a turn. */
  private readonly wake = (): void => this.schedule();
}
