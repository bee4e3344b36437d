// Capture's half of interest routing (docs/dev/cluster-plan.md §5 D, §6, "Next increments in
// detail", item 6): which incarnations each stored message concerns, the `Walcast-Chain` header
// that links it into each one's chain, and the bookkeeping of capture's heartbeat. One CaptureChain
// per fence attempt (a fresh ChainStamper: epochs only grow within one). Pure: the interest table
// is fed by a KV watch elsewhere; the publisher calls in seq order at enqueue, and with PubAcks.
//
// Who a message concerns (InterestTable answers, snapshots never changed afterwards):
//   a row change of a data table        incsFor('d', …, route), or incsForMove(…, old, new) for an
//                                       update that moved its row between routes
//   policy/relation tables (area `a`), walcast.broadcasts (SQL broadcasts), walcast.routes (a
//   change of routing), every ctl message but the epoch marker              everyInc()
//   the epoch marker                    everyone chained, without a header (ChainStamper.startEpoch)
import type { Relation } from '../capture/pgoutput.types.js';
import { BROADCASTS_TABLE, ROUTES_TABLE, SNAPSHOT_MARKS_TABLE } from '../constants.js';
import type { Logger } from '../log.js';
import { AckTracker } from './capture-heartbeat.js';
import type { CaptureHeartbeat } from './heartbeat.js';
import { ChainStamper } from './chain-stamper.js';
import type { InterestTable } from './interest-table.js';
import { token, type ChangeArea } from './subjects.js';

/** Tables whose every change concerns every incarnation (besides area `a`): a snapshot mark must reach whichever node waits for it. */
const TO_EVERYONE: ReadonlySet<string> = new Set([BROADCASTS_TABLE, ROUTES_TABLE, SNAPSHOT_MARKS_TABLE]);

const NOBODY: ReadonlySet<string> = new Set();

/** A change message as routing sees it: its area, table and route tokens (`from`: the old row's route of an update). */
export interface ChangeRoute {
  area: ChangeArea;
  relation: Relation;
  route: string;
  from: string | null;
}

export class CaptureChain {
  private readonly stamper = new ChainStamper();
  private readonly acks = new AckTracker();
  /** Incs joined to the stamper (and the tracker). */
  private readonly joined = new Set<string>();
  private everySeen: ReadonlySet<string> | null = null;
  private readonly tokens = new WeakMap<Relation, readonly [string, string]>();
  private lastStamped = 0;
  private revUsed = 0;
  private revSeq = 0;
  private refused = 0;

  constructor(
    private readonly table: InterestTable,
    readonly epoch: number,
    private readonly log: Logger,
  ) {}

  get markerSeq(): number {
    return this.stamper.markerSeq;
  }

  /** Joins the stamper refused (over CLUSTER_CHAIN.maxIncs; each retry counts): those incs get no chain. */
  get refusedIncs(): number {
    return this.refused;
  }

  /**
   * A safe point (between transactions): incs new in the table join, incs gone from it leave (a
   * later return starts their chain again at 0). Call before the epoch marker: the known incs'
   * chains then go on from it.
   */
  sync(): void {
    const every = this.table.everyInc();
    if (every === this.everySeen) return;
    this.everySeen = every;
    for (const inc of this.joined) {
      if (every.has(inc)) continue;
      this.joined.delete(inc);
      this.stamper.leave(inc);
      this.acks.leave(inc);
    }
    for (const inc of every) this.join(inc);
  }

  /** The epoch marker is queued at seq (no header: it starts every known chain). */
  marker(seq: number): void {
    this.sync();
    this.stamper.startEpoch(this.epoch, seq);
    this.acks.start(seq);
    this.lastStamped = seq;
    this.revUsed = this.table.appliedRevision;
    this.revSeq = seq - 1;
  }

  /** The incarnations a change message concerns. */
  incsOfChange(c: ChangeRoute): ReadonlySet<string> {
    if (c.area !== 'd' || TO_EVERYONE.has(c.relation.qualified)) return this.table.everyInc();
    const [schemaTok, tableTok] = this.tokensOf(c.relation);
    if (c.from !== null && c.from !== c.route) return this.table.incsForMove('d', schemaTok, tableTok, c.from, c.route);
    return this.table.incsFor('d', schemaTok, tableTok, c.route);
  }

  /** What a control message (not the marker) concerns: everyone. */
  incsOfCtl(): ReadonlySet<string> {
    return this.table.everyInc();
  }

  /**
   * The `Walcast-Chain` header of the message queued at seq naming incs (null: nobody), once per
   * seq, in seq order. Incs not joined yet join first (their chain starts here, prev 0).
   */
  stamp(seq: number, incs: ReadonlySet<string>): string | null {
    this.noteRevision();
    let named = incs;
    for (const inc of incs) {
      if (this.joined.has(inc) || this.join(inc)) continue;
      // Refused (too many incs): named without it.
      if (named === incs) named = new Set(incs);
      (named as Set<string>).delete(inc);
    }
    const header = this.stamper.stamp(seq, named);
    this.acks.record(seq, named.size === 0 ? NOBODY : named);
    this.lastStamped = seq;
    return header;
  }

  /** A PubAck for seq. */
  acked(seq: number): void {
    this.acks.ack(seq);
  }

  /** The heartbeat's body; null until the marker is PubAck'ed. */
  heartbeat(node: string): Omit<CaptureHeartbeat, 'v'> | null {
    const acked = this.acks.acked;
    if (acked === 0) return null;
    // Between transactions (publish() queues a whole one synchronously): a safe point.
    this.sync();
    this.noteRevision();
    return { node, epoch: this.epoch, markerSeq: this.stamper.markerSeq, appliedRev: this.revUsed, appliedSeq: this.revSeq, acked, last: this.acks.last() };
  }

  /** Messages queued and not PubAck'ed through (bookkeeping held). */
  get held(): number {
    return this.acks.held;
  }

  /**
   * The table's revision from here on: every seq after the last stamped one is stamped with it or
   * a later one. Called at each stamp and each heartbeat, so that an idle capture still reports
   * the revision an edge waits for.
   */
  private noteRevision(): void {
    const rev = this.table.appliedRevision;
    if (rev === this.revUsed) return;
    this.revUsed = rev;
    this.revSeq = this.lastStamped;
  }

  private join(inc: string): boolean {
    if (this.joined.has(inc)) return true;
    try {
      this.stamper.join(inc);
    } catch (err) {
      if (this.refused++ === 0) this.log.warn({ inc, err: (err as Error).message }, 'an incarnation cannot be chained (too many): it gets no chain');
      return false;
    }
    this.joined.add(inc);
    this.acks.join(inc);
    return true;
  }

  private tokensOf(r: Relation): readonly [string, string] {
    let t = this.tokens.get(r);
    if (!t) this.tokens.set(r, (t = [token(r.schema), token(r.name)]));
    return t;
  }
}

/**
 * `Walcast-Ends` on each message of a transaction that is the last naming some incs, but not the
 * transaction's last (its `Walcast-Last` ends it for everyone): `<inc>,<inc>`, so that an edge
 * knows its part of the transaction is complete without waiting for the next one.
 */
export function setEnds(out: ReadonlyArray<{ ends: string | null }>, named: ReadonlyArray<ReadonlySet<string>>): void {
  const seen = new Set<string>();
  for (let i = named.length - 1; i >= 0; i--) {
    let ends: string | null = null;
    for (const inc of named[i]) {
      if (seen.has(inc)) continue;
      seen.add(inc);
      if (i < named.length - 1) ends = ends === null ? inc : `${ends},${inc}`;
    }
    (out[i] as { ends: string | null }).ends = ends;
  }
}
