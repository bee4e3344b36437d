// Capture's heartbeat on core NATS `walcast.<ns>.hb` (docs/dev/cluster-plan.md, "Next increments
// in detail", item 6): what an edge needs to notice a lost message without waiting for the next
// one, and to know from which seq its new interest is covered by its chain:
//   {"v":1,"node":<id>,"epoch":E,"markerSeq":M,"appliedRev":R,"appliedSeq":S,"acked":A,"last":{"<inc>":seq,…}}
//   A        every seq ≤ A is PubAck'ed in this epoch (≥ M)
//   last     per inc: the last seq ≤ A naming it; M when none since the marker; 0 when it joined
//            after the marker and nothing PubAck'ed names it yet
//   R, S     every message with seq > S is stamped with the interests of revision ≥ R
// AckTracker is the pure bookkeeping behind A and last: fed each message's incs in seq order when
// it is queued, and the PubAcks in any order; it holds only what is not yet PubAck'ed through.
// The message itself is heartbeat.ts's (encodeHeartbeat / parseHeartbeat).

interface Slot {
  /** The incs the message names; MARKER for the epoch marker (it concerns every inc known then). */
  incs: ReadonlySet<string> | typeof MARKER;
  acked: boolean;
}

interface IncTrack {
  /** The last seq ≤ acked naming it (0: none yet). */
  last: number;
  /** It joined when the last recorded seq was this: only messages past it name this joining of it. */
  from: number;
}

const MARKER = Symbol('marker');

export class AckTracker {
  private readonly slots: Slot[] = [];
  private head = 0;
  /** The seq of slots[head]: everything below it is PubAck'ed (or before the epoch). */
  private front = 0;
  private recorded = 0;
  private marker = 0;
  private readonly incs = new Map<string, IncTrack>();

  /** The epoch marker is queued at `markerSeq`: it starts the bookkeeping (nothing below it counts). */
  start(markerSeq: number): void {
    if (!Number.isSafeInteger(markerSeq) || markerSeq < 1 || this.marker !== 0) throw new RangeError(`ack tracker: bad or second marker ${markerSeq}`);
    this.marker = markerSeq;
    this.front = markerSeq;
    this.recorded = markerSeq;
    this.slots.push({ incs: MARKER, acked: false });
  }

  get markerSeq(): number {
    return this.marker;
  }

  /** Every seq ≤ acked is PubAck'ed (0 until the marker is). */
  get acked(): number {
    return this.marker === 0 ? 0 : this.front - 1 >= this.marker ? this.front - 1 : 0;
  }

  /** Messages recorded and not yet PubAck'ed through (the window this holds). */
  get held(): number {
    return this.slots.length - this.head;
  }

  /** `inc` is chained from now on (joined the stamper): messages recorded from here on may name it. */
  join(inc: string): void {
    if (!this.incs.has(inc)) this.incs.set(inc, { last: 0, from: this.recorded });
  }

  /** `inc` left: no longer reported. */
  leave(inc: string): void {
    this.incs.delete(inc);
  }

  /** The message queued at `seq` (the next one after the last recorded) names `incs` (a snapshot, never changed afterwards). */
  record(seq: number, incs: ReadonlySet<string>): void {
    if (this.marker === 0 || seq !== this.recorded + 1) throw new RangeError(`ack tracker: seq ${seq} does not follow ${this.recorded}`);
    this.recorded = seq;
    this.slots.push({ incs, acked: false });
  }

  /** A PubAck for seq; false when it is not recorded or already counted. */
  ack(seq: number): boolean {
    const i = this.head + (seq - this.front);
    if (seq < this.front || i >= this.slots.length) return false;
    const s = this.slots[i];
    if (s.acked) return false;
    s.acked = true;
    while (this.head < this.slots.length && this.slots[this.head].acked) {
      this.through(this.front, this.slots[this.head]);
      this.head++;
      this.front++;
    }
    if (this.head === this.slots.length) {
      this.slots.length = 0;
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.slots.length) {
      this.slots.splice(0, this.head);
      this.head = 0;
    }
    return true;
  }

  /** inc → the last seq ≤ acked naming it (see the file's comment). */
  last(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [inc, t] of this.incs) out[inc] = t.last;
    return out;
  }

  /** The acked prefix reached seq. */
  private through(seq: number, s: Slot): void {
    if (s.incs === MARKER) {
      for (const t of this.incs.values()) if (t.from < seq) t.last = seq;
      return;
    }
    for (const inc of s.incs) {
      const t = this.incs.get(inc);
      if (t && t.from < seq) t.last = seq;
    }
  }
}
