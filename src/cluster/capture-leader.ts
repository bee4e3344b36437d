// Capture on the elected node (docs/dev/cluster-plan.md §3): the slot read as a single node
// reads it, every committed transaction published into the cluster's stream, the slot
// acknowledged only for what the stream acknowledged (and --nats-ack-delay ago).
//
// start(): takeover, in order
//   1. end the walsender still serving the slot (a deposed leader may be paused, not dead);
//   2. read the stream's tail: last sequence L, the position P its message covers;
//   3. append the epoch marker expecting L last (the fence); 10071 = the old leader appended
//      meanwhile: back to 2;
//   4. stream the slot from P on (Postgres skips the commits before P.lsn, the assembler the
//      changes at or before P): what the stream holds is not published twice.
// Any publish failure or capture failure afterwards ends this leadership (onFailed): the node
// resigns and the election, possibly this node again, starts over with a new epoch.
//
// Interest routing (docs/dev/cluster-plan.md, "Next increments in detail", item 6): before the
// marker, the interest bucket is watched into an InterestTable (its first contents awaited, at
// most CLUSTER_CAPTURE_CHAIN.interestReadyMs, else the leadership fails: capture never runs on
// interests it has not read); every incarnation known then is chained from the
// marker on, and every other message carries `Walcast-Chain` (capture-routing.ts). Once the
// marker is PubAck'ed, a heartbeat goes to core NATS `walcast.<ns>.hb` every 0.5 s
// (capture-heartbeat.ts). Rows of tables enabled with route_by go to their route's subject
// (capture-routes.ts).
import type { JetStreamClient, JetStreamManager } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { Capture } from '../capture/capture.js';
import type { CapturedChange, Transaction } from '../capture/types.js';
import { CLUSTER, CLUSTER_CAPTURE_CHAIN, CLUSTER_LEADER, ROUTES_TABLE } from '../constants.js';
import { ClusterFencedError, JetStreamError } from '../errors.js';
import type { Logger } from '../log.js';
import { connect } from '../pg/connect.js';
import { formatLsn } from '../protocol/lsn.js';
import { floorAt, type Position } from '../protocol/position.js';
import { encodeHeartbeat } from './heartbeat.js';
import { RouteColumns, ROUTES_QUERY, UNDEFINED_TABLE } from './capture-routes.js';
import { CaptureChain } from './capture-routing.js';
import { encodeRelation } from './codec.js';
import { InterestTable } from './interest-table.js';
import { watchInterest, type InterestWatch } from './interest-watch.js';
import { Publisher } from './publisher.js';
import { clusterNames } from './stream.js';
import { heartbeatSubject, relationKey, type ChangeArea } from './subjects.js';
import { breakSlotHolder, readTail, type StreamTail } from './takeover.js';

export interface CaptureLeaderOptions {
  db: string;
  slot: string;
  publication: string;
  js: JetStreamClient;
  jsm: JetStreamManager;
  /** The cluster bucket: relation metadata goes there. */
  kv: KV;
  /** Core NATS for the heartbeat; default: the connection `js` was made on. */
  nc?: NatsConnection;
  /** The interest bucket; default: `walcast_<ns>_interest` opened through `js`. */
  interestKv?: Pick<KV, 'watch' | 'status' | 'delete'>;
  ns: string;
  stream: string;
  /** The election revision that made this node leader. */
  epoch: number;
  nodeId: string;
  /** Tables of the policies and relations: published under `s.a.`. */
  authTables: ReadonlySet<string>;
  maxTransactionBytes: number;
  ackDelayMs: number;
  /** Message payloads above this are not sent (the servers' max_payload less room for headers). */
  maxPayload: number;
  log: Logger;
  /** This leadership cannot go on (publisher fenced or failed, capture failed). Called once. */
  onFailed: (err: Error) => void;
}

export class CaptureLeader {
  private capture: Capture | null = null;
  private publisher: Publisher | null = null;
  private stopped = false;
  private failed = false;
  private lastMarkAt = 0;
  private lastMarkWal = 0n;
  private marks = 0;
  /** The interest bucket, once opened (watchInterest). */
  private interestBucket: Pick<KV, 'delete'> | null = null;
  // A dropped incarnation's keys are deleted here: its process is gone, and only capture knows.
  private readonly interest = new InterestTable(undefined, (inc, keys) => {
    const kv = this.interestBucket;
    this.o.log.info({ inc, keys: keys.length }, 'an earlier incarnation of a node is gone: its interests are dropped');
    for (const key of keys) void kv?.delete(key).catch(() => {});
  });
  private watch: InterestWatch | null = null;
  private chain: CaptureChain | null = null;
  private routes = new RouteColumns();
  private beat: NodeJS.Timeout | null = null;
  private beats = 0;

  constructor(private readonly o: CaptureLeaderOptions) {}

  /** Interest routing as capture sees it (status, tests). */
  get routing(): { incs: number; appliedRevision: number; markerSeq: number; heartbeats: number } {
    return { incs: this.interest.everyInc().size, appliedRevision: this.interest.appliedRevision, markerSeq: this.chain?.markerSeq ?? 0, heartbeats: this.beats };
  }

  /** Messages queued or awaiting their PubAck. */
  get backlog(): number {
    return this.publisher?.backlog ?? 0;
  }

  get epoch(): number {
    return this.o.epoch;
  }

  /** The capture, once started (status, metrics). */
  get current(): Capture | null {
    return this.capture;
  }

  /** Takeover, then streaming. Rejects when a step fails (the caller resigns). */
  async start(): Promise<void> {
    const o = this.o;
    const client = await connect(o.db);
    const slot = await (async () => {
      const s = await breakSlotHolder(client, o.slot);
      this.routes = new RouteColumns(await readRoutes(client));
      return s;
    })().finally(() => client.end().catch(() => {}));
    if (slot.terminated) o.log.warn({ slot: o.slot, epoch: o.epoch }, 'ended the walsender of the previous capture node');
    const slotConfirmed = slot.confirmed;
    const slotFloor = floorAt(slotConfirmed);
    await this.watchInterest();
    const { publisher, tail } = await this.fence(slotFloor);
    // Deposed while taking over: stop() found no capture to stop, so none may start now.
    if (this.stopped) {
      publisher.close();
      throw new Error('capture leadership ended during takeover');
    }
    const after = tail.position;
    const tailEndLsn = tail.end;
    const wroteBefore = tail.lastSeq > 0;
    // The stream lost messages the slot no longer has (a stream recreated, or a tail lost with a
    // quorum of its servers): positions before the slot's cannot be honoured any more.
    if (tailEndLsn !== null && slotConfirmed > tailEndLsn) {
      o.log.error({ streamEnd: formatLsn(tailEndLsn), slot: formatLsn(slotConfirmed) }, 'the stream ends before the slot: changes between them are lost; subscriptions resync');
      void publisher.publishCtl({ type: 'reset', floor: slotFloor, reason: 'position_outside_window' }, slotFloor, null, `reset-${o.epoch}-0`).catch(() => {});
    }
    const startEnd = tailEndLsn ?? slotConfirmed;
    const tookOverAt = Date.now();
    const capture = new Capture({
      url: o.db,
      slot: o.slot,
      publication: o.publication,
      after,
      startLsn: after?.lsn,
      maxTransactionBytes: o.maxTransactionBytes,
      onTransaction: (tx) => this.onTransaction(tx),
      // Never past what the stream holds: a transaction PubAck'ed less than the ack delay ago is
      // kept, and an idle slot moves only as far as the last mark the stream has. What earlier
      // leaders published is not in this ledger: it counts as PubAck'ed at the takeover, so the
      // slot stays where it was found for one ack delay.
      hold: () => (Date.now() - tookOverAt < o.ackDelayMs ? slotConfirmed : (publisher.hold(Date.now(), o.ackDelayMs) ?? publisher.covered() ?? startEnd)),
      logger: o.log,
    });
    this.capture = capture;
    capture.on('progress', (walEnd: bigint) => this.mark(walEnd));
    capture.on('slotCreated', ({ confirmedFlush, invalidated, atStart }: { confirmedFlush: bigint; invalidated: boolean; atStart?: boolean }) => {
      // A slot created with the stream empty replaces nothing; otherwise what the stream holds
      // came from another slot, and positions before this one's start cannot be honoured.
      if (atStart && !invalidated && !wroteBefore) return;
      const floor = floorAt(confirmedFlush);
      void publisher.publishCtl({ type: 'reset', floor, reason: 'slot_recreated' }, floor, null, `reset-${o.epoch}-${++this.marks}`).catch(() => {});
    });
    capture.on('fatal', (err: Error) => this.fail(err));
    await capture.start();
    o.log.info({ epoch: o.epoch, from: after ? `${formatLsn(after.lsn)}:${after.index}` : null }, 'capture leader streaming into the cluster');
  }

  /**
   * Steps 2–3: the epoch marker appended right after the stream's last message, read again
   * when another writer got in between. Resolves with the adopted publisher and the tail it follows.
   */
  private async fence(slotFloor: Position): Promise<{ publisher: Publisher; tail: StreamTail }> {
    const o = this.o;
    for (let attempt = 1; ; attempt++) {
      if (this.stopped) throw new Error('capture leadership ended during takeover');
      const tail = await readTail(o.jsm, o.stream);
      // A fresh chain per attempt: the known incarnations join it before the marker (publishCtl).
      const chain = new CaptureChain(this.interest, o.epoch, o.log);
      const publisher = this.newPublisher(tail.lastSeq + 1, chain);
      // An empty stream starts where the slot is: nothing before it will be read again.
      const marker = tail.position ?? slotFloor;
      try {
        await publisher.publishCtl({ type: 'epoch', epoch: o.epoch, node: o.nodeId, after: marker, end: tail.end }, marker, null, `epoch-${o.epoch}`);
        this.publisher = publisher;
        this.chain = chain;
        this.startHeartbeat();
        return { publisher, tail };
      } catch (err) {
        publisher.close();
        if (!(err instanceof ClusterFencedError) || attempt >= CLUSTER_LEADER.fenceAttempts) throw err;
        o.log.warn({ epoch: o.epoch, attempt }, 'the stream moved while taking over: reading its tail again');
      }
    }
  }

  /** Ends this leadership: capture stops (its last acknowledgement bounded by the stream's), publishing stops. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.beat) clearInterval(this.beat);
    this.beat = null;
    const watch = this.watch;
    this.watch = null;
    await this.capture?.stop().catch(() => {});
    await watch?.stop().catch(() => {});
    const p = this.publisher;
    if (p) {
      p.close();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([p.settled(), new Promise((r) => (timer = setTimeout(r, CLUSTER.drainTimeoutMs / 2)))]);
      clearTimeout(timer);
    }
  }

  /** Step 5 of the plan's takeover, before the marker: the interest table filled from the bucket (bounded wait). */
  private async watchInterest(): Promise<void> {
    const o = this.o;
    const kv = o.interestKv ?? (await new Kvm(o.js).open(clusterNames(o.ns).interestBucket));
    this.interestBucket = kv;
    if (this.stopped) throw new Error('capture leadership ended during takeover');
    const watch = watchInterest(kv, this.interest, o.log);
    this.watch = watch;
    let timer: NodeJS.Timeout | undefined;
    const ready = await Promise.race([
      watch.ready.then(() => true),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(false), CLUSTER_CAPTURE_CHAIN.interestReadyMs))),
    ]).finally(() => clearTimeout(timer));
    if (this.stopped || !ready) {
      this.watch = null;
      await watch.stop();
      // Capturing without every node's interests would route nothing to the nodes missing:
      // the leadership fails instead, and the election starts over.
      if (!ready) throw new JetStreamError(`the interest bucket was not read within ${CLUSTER_CAPTURE_CHAIN.interestReadyMs} ms`, 'check the NATS servers');
      throw new Error('capture leadership ended during takeover');
    }
  }

  /** The heartbeat on core NATS, once now (the marker is PubAck'ed) and every CLUSTER_CAPTURE_CHAIN.heartbeatMs. */
  private startHeartbeat(): void {
    const o = this.o;
    if (this.stopped) return;
    const nc = o.nc ?? (o.js as unknown as { nc?: NatsConnection }).nc;
    if (!nc) {
      o.log.warn('no NATS connection for the capture heartbeat');
      return;
    }
    const subject = heartbeatSubject(o.ns);
    const send = (): void => {
      const body = this.chain?.heartbeat(o.nodeId);
      if (!body || this.stopped) return;
      try {
        nc.publish(subject, encodeHeartbeat(body));
        this.beats++;
      } catch (err) {
        o.log.warn({ err: (err as Error).message }, 'publishing the capture heartbeat');
      }
    };
    send();
    this.beat = setInterval(send, CLUSTER_CAPTURE_CHAIN.heartbeatMs);
    this.beat.unref();
  }

  private newPublisher(nextSeq: number, chain: CaptureChain): Publisher {
    const o = this.o;
    const publisher: Publisher = new Publisher({
      js: o.js,
      ns: o.ns,
      stream: o.stream,
      epoch: o.epoch,
      nextSeq,
      log: o.log,
      maxPayload: o.maxPayload,
      areaOf: (c: CapturedChange): ChangeArea => (o.authTables.has(c.relation.qualified) ? 'a' : 'd'),
      routeOf: (c) => this.routes.routeOf(c),
      oldRouteOf: (c) => this.routes.oldRouteOf(c),
      chain,
      putRelation: async (ref, relation) => {
        await o.kv.put(relationKey(ref), encodeRelation(relation));
      },
      // Only the adopted publisher's end ends the leadership: a fenced epoch marker is retried.
      onLeave: (state, err) => {
        if (state !== 'closed' && this.publisher === publisher) this.fail(err);
      },
    });
    return publisher;
  }

  /** Capture's downstream: queued for publishing; held (with the socket) only past the backlog bound. */
  private onTransaction(tx: Transaction): Promise<void> | undefined {
    const p = this.publisher;
    if (!p) return Promise.reject(new Error('no publisher'));
    // A change of routing applies from its transaction on (rows of that transaction included).
    for (const c of tx.changes) if (c.relation.qualified === ROUTES_TABLE) this.routes.apply(c);
    if (tx.oversize?.tables.includes(ROUTES_TABLE)) this.reloadRoutes();
    const done = p.publish(tx);
    if (p.backlog > CLUSTER_LEADER.maxBacklog) return done;
    // Not awaited: the ledger holds the slot until PubAck; a failure ends the leadership through onLeave.
    done.catch(() => {});
    return undefined;
  }

  /** An idle slot moved on: a mark in the stream (progress positions on every node), at most one a second. */
  private mark(walEnd: bigint): void {
    const p = this.publisher;
    const now = Date.now();
    if (!p || walEnd <= this.lastMarkWal || now - this.lastMarkAt < CLUSTER_LEADER.markIntervalMs) return;
    this.lastMarkAt = now;
    this.lastMarkWal = walEnd;
    void p.publishCtl({ type: 'mark', wal: walEnd }, floorAt(walEnd), null, `mark-${this.o.epoch}-${++this.marks}`, walEnd).catch(() => {});
  }

  /** The routing changes of an oversized transaction were not kept: read the table again (now's state). */
  private reloadRoutes(): void {
    const o = this.o;
    o.log.warn('an oversized transaction changed walcast.routes: reading it again');
    void (async () => {
      const client = await connect(o.db);
      try {
        this.routes = new RouteColumns(await readRoutes(client));
      } finally {
        await client.end().catch(() => {});
      }
    })().catch((err: unknown) => o.log.error({ err: (err as Error).message }, 'reading walcast.routes'));
  }

  private fail(err: Error): void {
    if (this.failed || this.stopped) return;
    this.failed = true;
    // What this leadership acknowledged is final: no more heartbeats from it.
    if (this.beat) clearInterval(this.beat);
    this.beat = null;
    this.o.onFailed(err);
  }
}

/** walcast.routes as (table oid, route column) pairs; none without migration 005. */
async function readRoutes(client: { query: (q: string) => Promise<{ rows: Array<{ oid: string; column: string }> }> }): Promise<Array<[number, string]>> {
  try {
    const { rows } = await client.query(ROUTES_QUERY);
    return rows.map((r) => [Number(r.oid), r.column]);
  } catch (err) {
    if ((err as { code?: string }).code === UNDEFINED_TABLE) return [];
    throw err;
  }
}
