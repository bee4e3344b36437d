// The slot lag guard rail at run time (docs/OPERATIONS.md §4): once a second the window gives up the WAL
// older than `received - bound`, so that the slot can be acknowledged further; the bound follows
// max_slot_wal_keep_size (src/capture/lag-bound.ts), which a configuration reload can change.
import type pg from 'pg';
import { effectiveLagBound, readWalKeepSize, type LagBound } from '../capture/lag-bound.js';
import { formatWalPosition } from '../protocol/position.js';
import type { Logger } from '../log.js';
import type { HistoryRing } from './ring.js';

export interface LagGuardOptions {
  /** --max-slot-lag, before clamping. */
  configured: number;
  log: Logger;
  ring: HistoryRing;
  /** Furthest WAL position seen on the stream. */
  received: () => bigint;
  /** Bounds the window with entries before `minLsn` gone; true when that bound shrank it. */
  evict: (minLsn: bigint) => boolean;
}

export class LagGuard {
  private bound: LagBound;
  private lastShrinkLog = 0;

  constructor(
    private readonly o: LagGuardOptions,
    keepSizeMb: number | null,
  ) {
    this.bound = effectiveLagBound(o.configured, keepSizeMb);
    if (this.bound.clamped) o.log.warn({ configured: o.configured, bound: this.bound.bytes }, 'slot lag bound lowered to 3/4 of max_slot_wal_keep_size');
  }

  /** Reads max_slot_wal_keep_size and starts with the bound it allows. */
  static async start(o: LagGuardOptions, db: pg.Pool): Promise<LagGuard> {
    return new LagGuard(o, await readWalKeepSize(db));
  }

  /** The bound in force, in bytes of WAL. */
  get bytes(): number {
    return this.bound.bytes;
  }

  /** WAL bytes the window holds back on the slot: received minus the window's oldest entry. */
  get held(): number {
    const oldest = this.o.ring.oldestLsn();
    const received = this.o.received();
    return oldest === null || received <= oldest ? 0 : Number(received - oldest);
  }

  /** Bounds the window (every second); a shrink is logged at most once a minute. */
  evict(): void {
    const received = this.o.received();
    const bound = BigInt(this.bound.bytes);
    if (!this.o.evict(received > bound ? received - bound : 0n) || Date.now() - this.lastShrinkLog <= 60_000) return;
    this.lastShrinkLog = Date.now();
    const floor = this.o.ring.floor;
    this.o.log.warn({ bound: this.bound.bytes, floor: formatWalPosition(floor.lsn, floor.index) }, 'slot lag past its bound: history window shrunk');
  }

  /** Follows max_slot_wal_keep_size (every minute); while the database is away the bound stays. */
  reread(db: pg.Pool): void {
    readWalKeepSize(db).then(
      (mb) => {
        const next = effectiveLagBound(this.o.configured, mb);
        if (next.bytes !== this.bound.bytes) this.o.log.warn({ configured: this.o.configured, bound: next.bytes, was: this.bound.bytes }, 'slot lag bound changed with max_slot_wal_keep_size');
        this.bound = next;
      },
      () => {},
    );
  }
}
