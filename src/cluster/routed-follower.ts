// A node's input with interest routing (docs/dev/cluster-plan.md §5–§6): instead of the whole
// stream, the node receives over core NATS the republished copies of what concerns it — the
// tables its clients follow (edge-interests.ts), policy and relation tables, control messages —
// and capture's per-node chain (chain.ts) in each message's headers tells it what it missed: a
// missing message is fetched from the stream by sequence, so that it hands the hub exactly the
// messages concerning it, in stream order, each once. Core NATS is only the fast path.
//
//   booting ──heartbeat naming its presence key's revision (seq S)──► replaying
//   (presence key written;                                             (policy changes from the
//    core messages kept, bounded)                                       window's start up to S)
//                                                                           │
//   stopped ◄── stop() ── following (chain from S: offer/fetch/scan/reset) ◄┘
import { DeliverPolicy, type StoredMsg } from '@nats-io/jetstream';
import type { MsgHdrs, NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Relation } from '../capture/pgoutput.types.js';
import type { Transaction } from '../capture/types.js';
import type { ResyncReason } from '../protocol/types.js';
import { CLUSTER_ROUTING } from '../constants.js';
import { ClusterMessageError, ClusterMessageVersionError } from '../errors.js';
import type { Logger } from '../log.js';
import { formatWalPosition, type Position } from '../protocol/position.js';
import { CHAIN_HEADER, prevFor } from './chain-codec.js';
import { ChainFollower, type ChainMessage, type ChainOutcome } from './chain.js';
import { CLUSTER_HEADERS, decodeCtl, readPositionHeader, type CtlMessage } from './ctl.js';
import type { EdgeInterests } from './edge-interests.js';
import { parseHeartbeat, type CaptureHeartbeat } from './heartbeat.js';
import type { InterestRegistry } from './interest.js';
import { Regrouper } from './regroup.js';
import { readStartBounds, type StartBounds } from './stream-bounds.js';
import { readStreamMessage } from './stream-message.js';
import type { StreamAccess } from './stream-positions.js';
import { authSubjects, ctlSubject, heartbeatSubject, sqlBroadcastSubjects } from './subjects.js';

/** Where a follower's input goes: the hub, as capture's would on a single node. */
export interface FollowerSink {
  /** Positions before `floor` cannot be honoured (start: reason null). */
  reset(floor: Position, reason: ResyncReason | null): void;
  /** What committed before `pos` is history, not news (start). */
  liveFrom(pos: Position): void;
  transaction(tx: Transaction): void;
  /** An idle mark: everything before `walEnd` is done. */
  progress(walEnd: bigint): void;
  /** A table's shape (as capture's 'relation' event): first seen, or changed. */
  relation(rel: Relation): void;
  /** The slot was recreated: changes may have been missed by the policies. */
  reloadPolicies(): void;
}

/** A stream message as received: a republished copy, or one read from the stream. */
interface Raw {
  subject: string;
  data: Uint8Array;
  headers?: MsgHdrs;
}

export interface RoutedFollowerOptions extends StreamAccess {
  nc: NatsConnection;
  sink: FollowerSink;
  registry: InterestRegistry;
  interests: EdgeInterests;
  emptyFloor: () => Promise<Position>;
  historyAgeMs?: number;
  log: Logger;
}

export interface RoutedFollowerStats {
  state: 'booting' | 'replaying' | 'following' | 'stopped';
  inc: string;
  /** Every message concerning this node up to this stream seq is handed on. */
  head: number;
  position: string | null;
  epoch: number | null;
  /** Messages fetched from the stream (lost or late on core NATS), scans, resets. */
  fetched: number;
  scans: number;
  resets: number;
  /** Messages skipped: malformed, or at or before a position already handed on. */
  skipped: number;
  /** Messages concerning it that capture stored and it has not handed on yet (by the last heartbeat). */
  behind: number;
}

export class RoutedFollower {
  private state: RoutedFollowerStats['state'] = 'booting';
  private early: Raw[] = [];
  private chain: ChainFollower<Raw> | null = null;
  private readonly regroup: Regrouper;
  private presenceRev: number | null = null;
  private bounds: StartBounds | null = null;
  private readonly subs: Subscription[] = [];
  private work: Promise<void> = Promise.resolve();
  private tick: NodeJS.Timeout | null = null;
  private resetPending = false;
  private fetched = 0;
  private scans = 0;
  private resets = 0;
  private skipped = 0;
  private epoch: number | null = null;
  /** The last heartbeat's last seq concerning this node. */
  private lastNamed = 0;
  private fatal: ((err: Error) => void) | null = null;
  readonly failed: Promise<Error>;

  constructor(private readonly o: RoutedFollowerOptions) {
    this.failed = new Promise((resolve) => (this.fatal = resolve));
    this.regroup = new Regrouper((tx) => this.o.sink.transaction(tx));
  }

  get stats(): RoutedFollowerStats {
    const last = this.regroup.last;
    return {
      state: this.state,
      inc: this.o.registry.inc,
      head: this.chain?.head ?? 0,
      position: last ? formatWalPosition(last.lsn, last.index) : null,
      epoch: this.epoch,
      fetched: this.fetched,
      scans: this.scans,
      resets: this.resets,
      skipped: this.skipped + this.regroup.skipped,
      behind: this.chain ? Math.max(0, this.lastNamed - this.chain.head) : 0,
    };
  }

  /** Whether it follows (its /healthz): booted, and its connection is up. */
  get reading(): boolean {
    return this.state === 'following' && !this.o.nc.isClosed();
  }

  /** Sets the window, subscribes, and writes the presence key; following begins with capture's heartbeat. */
  async start(): Promise<void> {
    const b = await readStartBounds(this.o);
    this.bounds = b;
    this.o.sink.reset(b.floor, null);
    this.o.sink.liveFrom(b.news);
    const { nc, ns } = this.o;
    this.subs.push(nc.subscribe(heartbeatSubject(ns), { callback: (err, m) => void (err || this.onHeartbeat(m.data)) }));
    // What concerns every node: policy and relation tables, control messages, SQL broadcasts.
    for (const subject of [authSubjects(ns, true), ctlSubject(ns, true), sqlBroadcastSubjects(ns, true)]) this.subs.push(nc.subscribe(subject, { callback: (err, m) => void (err || this.onCore(m)) }));
    this.presenceRev = await this.o.registry.start();
    this.tick = setInterval(() => this.chain && this.run(this.chain.tick(Date.now())), CLUSTER_ROUTING.tickMs);
  }

  /** A core subscription for a table's republished subjects (edge-interests.ts). */
  subscribe(subject: string): () => void {
    const sub = this.o.nc.subscribe(subject, { callback: (err, m) => void (err || this.onCore(m)) });
    return () => sub.unsubscribe();
  }

  async stop(): Promise<void> {
    this.state = 'stopped';
    if (this.tick) clearInterval(this.tick);
    for (const s of this.subs) s.unsubscribe();
    await this.work.catch(() => {});
  }

  private onHeartbeat(data: Uint8Array): void {
    const hb = parseHeartbeat(data);
    if (!hb || this.state === 'stopped') return;
    this.o.interests.applied(hb.appliedRev, hb.appliedSeq);
    const last = hb.last[this.o.registry.inc];
    this.lastNamed = last ?? this.lastNamed;
    if (this.state === 'booting') {
      if (this.presenceRev !== null && hb.appliedRev >= this.presenceRev) this.boot(hb);
      return;
    }
    const chain = this.chain;
    if (!chain) return;
    this.run(chain.heartbeat({ epoch: hb.epoch, markerSeq: hb.markerSeq, last }, Date.now()));
    // Nothing concerning this node after its head up to `acked`: once what is queued is handed
    // on, it is caught up to there (tables applied since are covered without waiting for traffic).
    if (last !== undefined && last <= chain.head && hb.epoch === chain.epoch) {
      const upTo = Math.max(chain.head, hb.acked);
      this.work = this.work
        .then(() => this.o.interests.caughtUp(upTo, (seq) => this.positionAt(seq)))
        .catch((err: unknown) => this.fail(err));
    }
  }

  /** The position of the stored message at `seq` (null when it cannot be read). */
  private async positionAt(seq: number): Promise<Position | null> {
    const m = await this.o.positions.get(seq).catch(() => null);
    return readPositionHeader(m?.header?.get(CLUSTER_HEADERS.position));
  }

  private onCore(m: Raw): void {
    if (this.state === 'following') return this.offer(m);
    if (this.state === 'stopped') return;
    // Kept until following starts; past the bound, dropped: the chain fetches what it misses.
    if (this.early.length < CLUSTER_ROUTING.maxEarly) this.early.push(m);
  }

  /** Capture routes to this node from seq S on: policy changes up to S from the stream, then the chain. */
  private boot(hb: CaptureHeartbeat): void {
    this.state = 'replaying';
    this.epoch = hb.epoch;
    this.work = this.work
      .then(() => this.replay(hb.appliedSeq))
      .then(() => {
        if (this.state !== 'replaying') return;
        this.regroup.flush();
        const chain = new ChainFollower<Raw>({ inc: this.o.registry.inc, head: hb.appliedSeq, epoch: hb.epoch, sizeOf: (r) => r.data.length });
        chain.expectStart();
        this.chain = chain;
        this.state = 'following';
        this.o.log.info({ inc: chain.inc, head: hb.appliedSeq, epoch: hb.epoch }, 'following the cluster stream (interest routing)');
        const early = this.early;
        this.early = [];
        for (const m of early) this.offer(m);
      })
      .catch((err: unknown) => this.fail(err));
  }

  /**
   * Changes of the policy and relation tables from the window's start up to `to`: before capture
   * routed to this node, it still needs them (the policies loaded at start may predate some).
   */
  private async replay(to: number): Promise<void> {
    const from = this.bounds?.from ?? to + 1;
    if (from > to) return;
    const consumer = await this.o.js.consumers.get(this.o.stream, {
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: from,
      filter_subjects: authSubjects(this.o.ns), // one subject: nats-server 2.9 takes no more
    });
    for (;;) {
      const batch = await consumer.fetch({ max_messages: CLUSTER_ROUTING.replayBatch, expires: CLUSTER_ROUTING.replayExpiresMs });
      let n = 0;
      let done = false;
      for await (const m of batch) {
        n++;
        if (m.seq > to) {
          done = true;
          break;
        }
        await this.handle(m.seq, { subject: m.subject, data: m.data, headers: m.headers });
        if (m.info.pending === 0 || m.seq === to) done = true;
      }
      if (done || n === 0 || this.state !== 'replaying') return;
    }
  }

  /** A republished copy from core NATS (its seq in the header RePublish adds). */
  private offer(m: Raw): void {
    const msg = this.chainMessage(Number(m.headers?.get('Nats-Sequence')), m);
    if (!msg) return void this.skipped++;
    this.run((this.chain as ChainFollower<Raw>).offer(msg));
  }

  /** What the chain needs of a message: its link for this node, epoch, whether it is a marker; null when malformed. */
  private chainMessage(seq: number, m: Raw): ChainMessage<Raw> | null {
    if (!Number.isSafeInteger(seq) || seq <= 0) return null;
    const link = m.headers?.get(CHAIN_HEADER);
    let prev: number | undefined;
    try {
      prev = link ? prevFor(link, this.o.registry.inc) : undefined;
    } catch {
      return null;
    }
    const epoch = Number(m.headers?.get(CLUSTER_HEADERS.epoch)) || (this.chain?.epoch ?? 0);
    return { seq, epoch, prev, marker: !link && isMarker(this.o.ns, m), payload: m };
  }

  private run(outcomes: ChainOutcome<Raw>[]): void {
    for (const out of outcomes) {
      switch (out.tag) {
        case 'process':
          this.work = this.work.then(() => this.handle(out.seq, out.payload)).catch((err: unknown) => this.fail(err));
          break;
        case 'fetch':
          this.fetched++;
          void this.fetch(out.seq);
          break;
        case 'scan':
          this.scans++;
          void this.scan(out.from, out.to);
          break;
        case 'reset':
          this.resets++;
          this.o.log.warn({ reason: out.reason, from: out.from, to: out.to }, 'messages concerning this node may be lost: its subscriptions resync');
          // The window restarts after the next message handed on; what the node follows is
          // covered again once capture's heartbeats say so.
          this.resetPending = true;
          this.o.interests.uncover();
          break;
      }
    }
  }

  private async fetch(seq: number): Promise<void> {
    const m = await this.o.positions.whenStored(seq, () => this.state === 'stopped');
    if (!this.chain || this.state !== 'following') return;
    // Gone, or unreadable: either way it does not name this node as the chain said.
    const msg = m && this.chainMessage(m.seq, stored(m));
    this.run(msg ? this.chain.offer(msg) : this.chain.missing(seq));
  }

  /** Reads [from, to] for what names this node (and epoch markers): a new epoch's scan of the old one's tail. */
  private async scan(from: number, to: number): Promise<void> {
    for (let seq = from; seq <= to && this.state === 'following'; seq++) {
      const m = await this.o.positions.whenStored(seq, () => this.state === 'stopped');
      const msg = m && this.chainMessage(m.seq, stored(m));
      if (msg && (msg.prev !== undefined || msg.marker)) this.run((this.chain as ChainFollower<Raw>).offer(msg));
    }
    if (this.chain && this.state === 'following') this.run(this.chain.scanned(to));
  }

  /** One message, in chain order: like the whole-stream follower's, with its part of a transaction ending where capture said. */
  private async handle(seq: number, m: Raw): Promise<void> {
    if (this.state === 'stopped') return;
    try {
      if (this.resetPending) {
        this.resetPending = false;
        this.regroup.drop();
        const floor = this.o.positions.floorBefore({ subject: m.subject, data: m.data, header: m.headers?.get(CLUSTER_HEADERS.position) }) ?? this.regroup.last;
        if (floor) {
          this.o.sink.reset(floor, 'position_outside_window');
          this.regroup.resetTo(floor);
        }
      }
      const item = await this.read(seq, m);
      if (item.tag === 'ctl') {
        this.regroup.flush();
        this.control(item.ctl);
      } else {
        const ends = m.headers?.get(CLUSTER_HEADERS.ends);
        const last = item.last || (ends !== undefined && ends.split(',').includes(this.o.registry.inc));
        this.regroup.change(item.head, item.change, last);
      }
    } catch (err) {
      if (!(err instanceof ClusterMessageError)) throw err;
      this.skipped++;
      this.o.log.error({ err: err.message, seq }, 'malformed message in the cluster stream skipped');
    }
    // Only while an interest waits for its coverage (rarely): not a header parse per message.
    if (this.state === 'following' && this.o.interests.awaiting) {
      const pos = readPositionHeader(m.headers?.get(CLUSTER_HEADERS.position));
      if (pos) this.o.interests.advanced(seq, pos);
    }
  }

  /**
   * Decodes a message. A failure that is not the message's fault (its table's shape not readable
   * from the bucket while NATS is unsettled) is tried again, in place: later messages wait.
   */
  private async read(seq: number, m: Raw) {
    for (let wait: number = CLUSTER_ROUTING.fetchRetryMs; ; wait = Math.min(wait * 2, CLUSTER_ROUTING.fetchRetryCapMs)) {
      try {
        return await readStreamMessage(this.o.ns, m, (ref) => this.relationOf(ref));
      } catch (err) {
        if (err instanceof ClusterMessageError || err instanceof ClusterMessageVersionError || this.state === 'stopped') throw err;
        this.o.log.warn({ err: (err as Error).message, seq }, 'reading a cluster message failed; trying again');
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  }

  private control(c: CtlMessage): void {
    const sink = this.o.sink;
    switch (c.type) {
      case 'epoch':
        this.epoch = c.epoch;
        return;
      case 'mark':
        sink.progress(c.wal);
        return;
      case 'reset':
        sink.reset(c.floor, c.reason);
        if (c.reason === 'slot_recreated') sink.reloadPolicies();
        this.regroup.resetTo(c.floor);
        return;
      case 'oversize':
        this.regroup.oversize(c);
        return;
    }
  }

  private readonly shapes = new Map<number, string>();

  private async relationOf(ref: string) {
    const rel = await this.o.relations.get(ref);
    if (this.shapes.get(rel.oid) !== ref) {
      this.shapes.set(rel.oid, ref);
      this.o.sink.relation(rel);
    }
    return rel;
  }

  private fail(err: unknown): void {
    if (this.state === 'stopped') return;
    if (err instanceof ClusterMessageVersionError) {
      this.o.log.error({ err: err.message }, 'cluster stream written by a newer walcast: this node stops following');
      this.fatal?.(err);
      return;
    }
    this.o.log.error({ err: (err as Error).message }, 'following the cluster stream failed');
    this.fatal?.(err as Error);
  }
}

/** A message read from the stream, as one received. */
function stored(m: StoredMsg): Raw {
  return { subject: m.subject, data: m.data, headers: m.header };
}

/** An epoch marker: a control message of type `epoch` (it names nobody: every chain of its epoch starts at it). */
function isMarker(ns: string, m: Raw): boolean {
  if (m.subject !== ctlSubject(ns) && m.subject !== ctlSubject(ns, true)) return false;
  try {
    return decodeCtl(m.data).type === 'epoch';
  } catch {
    return false;
  }
}

