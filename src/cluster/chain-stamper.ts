// Capture's side of the per-node chains (docs/dev/cluster-plan.md §6; the edge's side is
// chain.ts): for every incarnation a stream message concerns, the seq of the previous message
// concerning it in this epoch, written into the message's `Walcast-Chain` header. Pure.
import { CLUSTER_CHAIN } from '../constants.js';
import { safeUint } from './chain-codec.js';

/**
 * Capture's side: the last seq concerning each inc in the current epoch. An epoch marker concerns
 * every inc: its seq starts every known chain. An inc joined since starts at 0 ("your chain starts
 * here"), which an edge takes as a break unless it expects a start (ChainFollower.expectStart):
 * a takeover joins the registry's incs before startEpoch, so that their chains go on from the
 * marker. RangeError = the caller's mistake; nothing has changed then.
 */
export class ChainStamper {
  private readonly last = new Map<string, number>();
  private epochNo = 0;
  private marker = 0;
  private lastSeq = 0;
  private started = false;
  private readonly scratch: string[] = [];

  get epoch(): number {
    return this.epochNo;
  }

  /** The current epoch's marker seq (0 before startEpoch). */
  get markerSeq(): number {
    return this.marker;
  }

  get size(): number {
    return this.last.size;
  }

  has(inc: string): boolean {
    return this.last.has(inc);
  }

  /** A new epoch whose marker is stored at markerSeq (after every seq stamped so far). */
  startEpoch(epoch: number, markerSeq: number): void {
    if (!safeUint(epoch) || (this.started && epoch <= this.epochNo)) throw new RangeError(`chain: epoch ${epoch} does not follow ${this.epochNo}`);
    if (!Number.isSafeInteger(markerSeq) || markerSeq <= this.lastSeq) throw new RangeError(`chain: marker seq ${markerSeq} is not past ${this.lastSeq}`);
    this.epochNo = epoch;
    this.marker = markerSeq;
    this.lastSeq = markerSeq;
    this.started = true;
    for (const inc of this.last.keys()) this.last.set(inc, markerSeq);
  }

  /** Capture routes to `inc` from now on (its interest applied). False: already known, its chain goes on. */
  join(inc: string): boolean {
    if (this.last.has(inc)) return false;
    if (!CLUSTER_CHAIN.incPattern.test(inc)) throw new RangeError(`chain: bad inc ${JSON.stringify(inc)}`);
    if (this.last.size >= CLUSTER_CHAIN.maxIncs) throw new RangeError(`chain: over ${CLUSTER_CHAIN.maxIncs} incarnations`);
    this.last.set(inc, 0);
    return true;
  }

  /** `inc` is gone: forgotten (joined again, it starts at 0). */
  leave(inc: string): boolean {
    return this.last.delete(inc);
  }

  /**
   * The `Walcast-Chain` header of the message stored at `seq`, concerning `incs` (each joined; one
   * named twice counts once), or null when it concerns nobody: such a message has no header. Every
   * message capture stores goes through here (or is a marker), so that seqs are checked to increase.
   */
  stamp(seq: number, incs: Iterable<string>): string | null {
    if (!this.started) throw new RangeError('chain: stamp before startEpoch');
    if (!Number.isSafeInteger(seq) || seq <= this.lastSeq) throw new RangeError(`chain: seq ${seq} is not past ${this.lastSeq}`);
    const named = this.scratch;
    named.length = 0;
    for (const inc of incs) {
      if (!this.last.has(inc)) throw new RangeError(`chain: ${JSON.stringify(inc)} has not joined`);
      named.push(inc);
    }
    this.lastSeq = seq;
    let header: string | null = null;
    for (const inc of named) {
      const prev = this.last.get(inc) as number;
      if (prev === seq) continue; // named twice
      this.last.set(inc, seq);
      header = header === null ? `${this.epochNo};${inc}=${prev}` : `${header},${inc}=${prev}`;
    }
    named.length = 0;
    return header;
  }

  /** inc → the last seq concerning it in this epoch (0: none yet), for capture's heartbeat. */
  lastSeqs(): Record<string, number> {
    return Object.fromEntries(this.last);
  }
}
