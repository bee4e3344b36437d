// Catching up resumed subscriptions from the history window. The scheduler (catchup-scheduler.ts)
// decides who works in a turn and how much; this walks the ring for one subscription within its
// share: change by change (a cursor inside a transaction, so a large one is spread over turns
// too), pausing while its socket has too much unsent, and turning it live in the same step that
// delivers the ring's last change, so the seam has no gap and no duplicate.
import type { CapturedChange, Transaction } from '../capture/types.js';
import type { HistoryRing, RingEntry } from '../history/ring.js';
import { CatchUpScheduler, type CatchUpLimits, type CatchUpStats } from './catchup-scheduler.js';
import { crossesOversized } from './oversize-crossing.js';
import type { HubSubscription } from './subscriptions.js';
import type { ResyncReason } from '../protocol/types.js';

/** What catching up needs of the hub. */
export interface CatchUpHost {
  readonly ring: HistoryRing;
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
   * Delivers up to `units` of the ring to one subscription (a change examined, or an entry
   * without changes, is one unit; each KiB sent one more, so the last change may go past
   * `units`); returns the units spent.
   */
  private readonly step = (sub: HubSubscription, units: number): number => {
    const peer = sub.peer;
    if (sub.state !== 'catching_up' || peer.closed) return 0;
    const ring = this.host.ring;
    if (sub.cursor < ring.startSeq) {
      this.host.resync(sub, 'position_outside_window');
      return 1;
    }
    if (peer.backlog() > this.highWater) return 0;
    let spent = 0;
    let queued = 0;
    while (spent < units && sub.cursor < ring.endSeq) {
      const entry = ring.get(sub.cursor) as RingEntry;
      const tx = entry.tx;
      spent++;
      // A transaction skipped for its size (hub/oversize.ts) that changed this table: refetch.
      if (tx?.oversize && crossesOversized(tx, sub)) {
        this.host.resync(sub, 'transaction_too_large');
        return spent;
      }
      if (!tx || sub.within >= tx.changes.length) {
        sub.cursor++;
        sub.within = 0;
        continue;
      }
      const bytes = this.host.deliverPast(entry, tx, tx.changes[sub.within++], sub);
      // Large rows cost their copying too: a unit per KiB sent.
      spent += bytes >> 10;
      queued += bytes;
      if (sub.within >= tx.changes.length) {
        sub.cursor++;
        sub.within = 0;
      }
      if (queued >= WRITE_BYTES) {
        queued = 0;
        peer.flush();
        // Stop as soon as the socket has enough to chew on (drained() resumes).
        if (peer.closed || peer.backlog() > this.highWater) break;
      }
    }
    if (!peer.closed && sub.cursor >= ring.endSeq) {
      this.host.goLive(sub);
      spent = Math.max(1, spent);
    }
    peer.flush();
    return spent;
  };
}
