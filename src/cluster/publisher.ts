// Capture's writer into the cluster's stream (docs/dev/cluster-plan.md §3.1, §3.2): one message
// per change of each committed transaction, message id = its position, each stamped with the
// stream sequence it must follow (`Nats-Expected-Last-Sequence` = predicted seq − 1). Capture is
// the only writer, so the predicted sequences are exactly the stored ones: gap-free, in position
// order. Publishes are pipelined (up to `window` awaiting their PubAck) and the expectation
// makes every one a fence: once anyone else appended, each queued publish of this one fails.
// Control messages (epoch markers, marks, resets, oversize markers: ctl.ts) take a sequence of
// the same chain. A table's metadata is put into KV (`rel.<ref>`) before the first message that
// refers to it is sent, so a follower can always look it up.
// With a `chain` (interest routing, capture-routing.ts), each message's `Walcast-Chain` and
// `Walcast-Ends` headers are computed once when it is queued (a retried publish carries the same
// headers), in seq order; PubAcks are reported back for the heartbeat's bookkeeping.
import { JetStreamApiError, type JetStreamClient, type PubAck } from '@nats-io/jetstream';
import { headers as natsHeaders, TimeoutError, type MsgHdrs } from '@nats-io/transport-node';
import type { MsgUpdate, Relation } from '../capture/pgoutput.types.js';
import type { CapturedChange, Transaction } from '../capture/types.js';
import { CLUSTER, CLUSTER_TOKENS } from '../constants.js';
import { ClusterFencedError, ClusterPublishError } from '../errors.js';
import type { Logger } from '../log.js';
import { MAX_POSITION_INDEX, type Position } from '../protocol/position.js';
import { setEnds, type ChangeRoute } from './capture-routing.js';
import { encodeChange, relationRef } from './codec.js';
import { CLUSTER_HEADERS, encodeCtl, positionHeader, type CtlMessage } from './ctl.js';
import { PublishLedger, type LedgerMessage } from './ledger.js';
import { canPublisherMove, type PublisherState } from './publisher-state.js';
import { changeSubject, ctlSubject, type ChangeArea } from './subjects.js';

/** JetStream API error: `Nats-Expected-Last-Sequence` did not match the stream's last sequence. */
export const WRONG_LAST_SEQUENCE = 10071;
/** JetStream API error: `Nats-Expected-Last-Msg-Id` did not match the stream's last message id. */
export const WRONG_LAST_MSG_ID = 10070;

export interface PublisherOptions {
  js: JetStreamClient;
  /** The cluster namespace (subjects). */
  ns: string;
  /** The stream every PubAck must name (`Nats-Expected-Stream` too). */
  stream: string;
  /** This leader's epoch (its election revision): in every message's `Walcast-Epoch`, logs and errors. */
  epoch: number;
  /** The stream sequence the first message gets: the stream's last sequence + 1. */
  nextSeq: number;
  log: Logger;
  /** Messages in flight at most (default CLUSTER.publishWindow). */
  window?: number;
  /** PubAck wait per attempt (default CLUSTER.publishTimeoutMs). */
  timeoutMs?: number;
  /** The route token of a row change (route.ts rowRouteToken on its table's route column); default `=n`. Truncates go to `=t`. */
  routeOf?: (change: CapturedChange) => string;
  /** The route token of an update's old row: when it differs from routeOf's, the row moved between routes. */
  oldRouteOf?: (change: MsgUpdate) => string;
  /** Interest routing: the chain headers (capture-routing.ts CaptureChain); none: no chain headers. */
  chain?: PublisherChain;
  /** `a` for the policy and relation tables; default `d`. */
  areaOf?: (change: CapturedChange) => ChangeArea;
  /** Clock for the ledger (ms). */
  now?: () => number;
  /** Stores a relation's metadata (KV `rel.<ref>`) before the first message referring to it is sent. */
  putRelation?: (ref: string, relation: Relation) => Promise<void>;
  /**
   * The largest message payload the servers take (their max_payload, less room for headers). A
   * transaction with a change larger than this is published as an `oversize` marker instead.
   */
  maxPayload?: number;
  /** Called once when the publisher leaves `open` (fenced, failed or closed). */
  onLeave?: (state: PublisherState, err: Error) => void;
}

/** What the publisher asks of interest routing, in seq order (CaptureChain implements it). */
export interface PublisherChain {
  /** A safe point between transactions (incs join and leave). */
  sync(): void;
  /** The epoch marker is queued at seq. */
  marker(seq: number): void;
  incsOfChange(c: ChangeRoute): ReadonlySet<string>;
  incsOfCtl(): ReadonlySet<string>;
  /** The `Walcast-Chain` header of the message queued at seq, or null. */
  stamp(seq: number, incs: ReadonlySet<string>): string | null;
  /** A PubAck for seq. */
  acked(seq: number): void;
}

interface TxWaiter {
  pending: number;
  done: boolean;
  resolve: () => void;
  reject: (err: Error) => void;
}

/** A pending KV put of relation metadata: messages behind it wait. */
interface Gate {
  open: boolean;
}

interface Outgoing {
  seq: number;
  subject: string;
  data: Uint8Array;
  msgID: string;
  pos: Position;
  last: boolean;
  /** `Walcast-Chain`, `Walcast-Ends` (null: none), fixed when queued. */
  chain: string | null;
  ends: string | null;
  waiter: TxWaiter;
  gate: Gate | null;
  /** The message id of the one before it in this publisher's chain; null for its first (the epoch marker). */
  prevMsgID: string | null;
}

const WRONG_LAST = /wrong last sequence: (\d+)/i;

export class Publisher {
  private state: PublisherState = 'open';
  private error: Error | null = null;
  private seq: number;
  /**
   * The id of the last message queued. Each message but the first also expects the one before it
   * by id, not only by sequence: a deposed leader's pipelined publishes expect consecutive
   * sequences, and the one after the slot a new leader's epoch marker took would match by
   * sequence alone (that lost a change at a takeover: test/integration/cluster-chaos.test.ts).
   */
  private lastMsgID: string | null = null;
  private readonly queue: Outgoing[] = [];
  private head = 0;
  private inFlight = 0;
  private readonly waiters = new Set<TxWaiter>();
  private idle: Array<() => void> = [];
  private readonly ledger = new PublishLedger();
  private readonly refs = new WeakMap<Relation, string>();
  /** Relation references whose metadata is stored (or being stored, then with the gate). */
  private readonly stored = new Map<string, Gate>();
  private readonly window: number;
  private readonly timeoutMs: number;
  private readonly routeOf: (change: CapturedChange) => string;
  private readonly areaOf: (change: CapturedChange) => ChangeArea;
  private readonly now: () => number;

  constructor(private readonly opts: PublisherOptions) {
    if (!Number.isSafeInteger(opts.nextSeq) || opts.nextSeq < 1) throw new RangeError(`not a stream sequence: ${opts.nextSeq}`);
    this.seq = opts.nextSeq;
    this.window = opts.window ?? CLUSTER.publishWindow;
    this.timeoutMs = opts.timeoutMs ?? CLUSTER.publishTimeoutMs;
    this.routeOf = opts.routeOf ?? (() => CLUSTER_TOKENS.noRoute);
    this.areaOf = opts.areaOf ?? (() => 'd');
    this.now = opts.now ?? Date.now;
  }

  get currentState(): PublisherState {
    return this.state;
  }

  /** What made it leave `open` (null while open). */
  get failure(): Error | null {
    return this.error;
  }

  /** The sequence the next message will be published to get. */
  get nextSeq(): number {
    return this.seq;
  }

  /** The last position such that it and everything before it are PubAck'ed. */
  acked(): Position | null {
    return this.ledger.acked();
  }

  /** The WAL position before which everything is PubAck'ed (PublishLedger.covered). */
  covered(): bigint | null {
    return this.ledger.covered();
  }

  /** The commit LSN the slot may be acknowledged up to (plan §3.4); null: nothing held. */
  hold(nowMs: number, ackDelayMs: number): bigint | null {
    return this.ledger.hold(nowMs, ackDelayMs);
  }

  /** Messages queued or in flight. */
  get backlog(): number {
    return this.queue.length - this.head + this.inFlight;
  }

  /**
   * Queues the transaction's changes and resolves once every one is PubAck'ed (the caller's
   * back-pressure); rejects with ClusterFencedError / ClusterPublishError when the publisher
   * leaves `open` first. Sends happen in call order. An oversized transaction is one `oversize`
   * control message: its changes were not kept.
   */
  publish(tx: Transaction): Promise<void> {
    if (tx.oversize) return this.publishOversize(tx, tx.oversize);
    if (this.state !== 'open') return Promise.reject(this.error ?? new ClusterPublishError('the cluster publisher is closed'));
    const head = { xid: tx.xid, lsnText: tx.lsnText, endLsn: tx.endLsn, commitTime: tx.commitTime };
    // Encode everything first: a throw, or a change too large for a message, leaves no sequence taken.
    const encoded = tx.changes.map((c) => {
      const ref = this.refOf(c.relation);
      return { c, ref, data: encodeChange(head, c, ref) };
    });
    const max = this.opts.maxPayload;
    if (max !== undefined && encoded.some((e) => e.data.length > max)) {
      this.opts.log.warn({ lsn: tx.lsnText, changes: tx.changes.length, maxPayload: max }, 'a change is larger than NATS max_payload: published as an oversize marker (subscribers of its tables get resync)');
      const bytes = encoded.reduce((n, e) => n + e.data.length, 0);
      return this.publishOversize(tx, { tables: [...new Set(tx.changes.map((c) => c.relation.qualified))], changes: tx.changes.length, bytes });
    }
    const out: Array<Omit<Outgoing, 'waiter'>> = [];
    const entries: LedgerMessage[] = [];
    const chain = this.opts.chain;
    chain?.sync();
    const named: Array<ReadonlySet<string>> = [];
    let seq = this.seq;
    let gate: Gate | null = null;
    for (let i = 0; i < encoded.length; i++) {
      const { c, ref, data } = encoded[i];
      const route = c.tag === 'truncate' ? CLUSTER_TOKENS.truncate : this.routeOf(c);
      const area = this.areaOf(c);
      const subject = changeSubject(this.opts.ns, area, c.relation.schema, c.relation.name, route);
      gate = this.gateFor(ref, c.relation) ?? gate;
      const pos = { lsn: tx.lsn, index: c.index };
      let header: string | null = null;
      if (chain) {
        const from = c.tag === 'update' && this.opts.oldRouteOf ? this.opts.oldRouteOf(c) : null;
        const incs = chain.incsOfChange({ area, relation: c.relation, route, from });
        named.push(incs);
        header = chain.stamp(seq, incs);
      }
      const msgID = `${tx.lsnText}:${c.index}`;
      out.push({ seq, subject, data, msgID, pos, last: i === encoded.length - 1, chain: header, ends: null, gate: null, prevMsgID: this.lastMsgID });
      this.lastMsgID = msgID;
      entries.push({ seq, pos });
      seq++;
    }
    if (chain) setEnds(out, named);
    // Every message of the transaction waits for the last metadata put it needs (puts run in parallel, gates open in order).
    if (gate) for (const m of out) m.gate = gate;
    this.seq = seq;
    this.ledger.append(tx.lsn, entries, this.now(), tx.endLsn);
    if (out.length === 0) return Promise.resolve();
    return this.enqueue(out);
  }

  /** One `oversize` control message in place of the transaction's changes. */
  private publishOversize(tx: Transaction, o: NonNullable<Transaction['oversize']>): Promise<void> {
    return this.publishCtl(
      { type: 'oversize', xid: tx.xid, lsn: tx.lsn, end: tx.endLsn, t: tx.commitTime, tables: o.tables, changes: o.changes, bytes: o.bytes },
      { lsn: tx.lsn, index: MAX_POSITION_INDEX },
      tx.lsn,
      `${tx.lsnText}:x`,
      tx.endLsn,
    );
  }

  /**
   * Queues one control message taking the next sequence: `pos` goes into `Walcast-Pos`, `holdLsn`
   * is the commit LSN the slot keeps until it is PubAck'ed (and the ack delay passed), null for
   * a message that carries no change. `msgID` must be unique to this epoch. `end`: the WAL
   * position it completes (a mark's WAL end), as PublishLedger.append.
   */
  publishCtl(m: CtlMessage, pos: Position, holdLsn: bigint | null, msgID: string, end: bigint | null = null): Promise<void> {
    if (this.state !== 'open') return Promise.reject(this.error ?? new ClusterPublishError('the cluster publisher is closed'));
    const data = encodeCtl(m);
    const seq = this.seq++;
    let header: string | null = null;
    const chain = this.opts.chain;
    if (chain) {
      chain.sync();
      // The epoch marker concerns everyone without naming anyone: it starts every chain.
      if (m.type === 'epoch') chain.marker(seq);
      else header = chain.stamp(seq, chain.incsOfCtl());
    }
    this.ledger.append(holdLsn, [{ seq, pos }], this.now(), end);
    const prevMsgID = this.lastMsgID;
    this.lastMsgID = msgID;
    return this.enqueue([{ seq, subject: ctlSubject(this.opts.ns), data, msgID, pos, last: false, chain: header, ends: null, gate: null, prevMsgID }]);
  }

  private enqueue(out: Array<Omit<Outgoing, 'waiter'>>): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const waiter: TxWaiter = { pending: out.length, done: false, resolve, reject };
      this.waiters.add(waiter);
      for (const m of out) this.queue.push({ ...m, waiter });
      this.pump();
    });
  }

  /** The gate of a relation's metadata put, started now if it was never stored; null when stored. */
  private gateFor(ref: string, relation: Relation): Gate | null {
    const put = this.opts.putRelation;
    if (!put) return null;
    const known = this.stored.get(ref);
    if (known) return known.open ? null : known;
    const gate: Gate = { open: false };
    this.stored.set(ref, gate);
    put(ref, relation).then(
      () => {
        gate.open = true;
        this.pump();
      },
      (err: unknown) => {
        this.stored.delete(ref);
        const why = err instanceof Error ? err.message : String(err);
        this.leave('failed', new ClusterPublishError(`storing the metadata of ${relation.qualified} (${ref}) in KV: ${why}`, 'check the NATS servers', { cause: err }));
      },
    );
    return gate;
  }

  /** Resolves when nothing is in flight (after a failure: every sent publish has settled). */
  settled(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  /** Stops publishing: queued transactions reject; what is in flight still settles. */
  close(): void {
    this.leave('closed', new ClusterPublishError('the cluster publisher is closed'));
  }

  private refOf(r: Relation): string {
    let ref = this.refs.get(r);
    if (ref === undefined) {
      ref = relationRef(r);
      this.refs.set(r, ref);
    }
    return ref;
  }

  private pump(): void {
    while (this.state === 'open' && this.inFlight < this.window && this.head < this.queue.length) {
      const gate = this.queue[this.head].gate;
      if (gate && !gate.open) break; // pump() runs again when the put is done
      const m = this.queue[this.head++];
      this.inFlight++;
      this.send(m, false);
    }
    if (this.head === this.queue.length) {
      this.queue.length = 0;
      this.head = 0;
    }
  }

  private send(m: Outgoing, retry: boolean): void {
    // js.publish puts the message on the wire before its first await: sends keep call order.
    this.opts.js
      .publish(m.subject, m.data, { msgID: m.msgID, headers: this.headersOf(m), expect: { lastSequence: m.seq - 1, streamName: this.opts.stream, ...(m.prevMsgID !== null ? { lastMsgID: m.prevMsgID } : {}) }, timeout: this.timeoutMs })
      .then(
        (pa) => this.onAck(m, pa),
        (err: unknown) => this.onError(m, err, retry),
      );
  }

  private onAck(m: Outgoing, pa: PubAck): void {
    if (pa.stream !== this.opts.stream || pa.seq !== m.seq) {
      this.settle();
      this.leave('failed', new ClusterPublishError(
        `PubAck for ${m.msgID} names ${pa.stream} seq ${pa.seq}${pa.duplicate ? ' (duplicate)' : ''}, expected ${this.opts.stream} seq ${m.seq} (epoch ${this.opts.epoch})`,
        'something else publishes into the cluster\'s stream, or it was recreated: the capture node must take over again',
      ));
      return;
    }
    this.ledger.ack(m.seq, this.now());
    this.opts.chain?.acked(m.seq);
    const w = m.waiter;
    if (--w.pending === 0 && !w.done) {
      w.done = true;
      this.waiters.delete(w);
      w.resolve();
    }
    this.settle();
    this.pump();
  }

  private onError(m: Outgoing, err: unknown, retried: boolean): void {
    if (!retried && this.state === 'open' && isTimeout(err)) {
      // Same message id and expectation: if the first attempt was stored, dedupe answers `duplicate`.
      this.opts.log.warn({ msgID: m.msgID, seq: m.seq, epoch: this.opts.epoch }, 'no PubAck in time: publishing once more');
      this.send(m, true);
      return;
    }
    this.settle();
    if (err instanceof JetStreamApiError && err.code === WRONG_LAST_MSG_ID) {
      // The message before this one in the stream is not ours: someone else appended (or the
      // stream lost its last id in a restart of its servers; a new leadership starts by sequence).
      this.leave('fenced', new ClusterFencedError(`${m.msgID}: the cluster's stream ${this.opts.stream} does not end with this publisher's ${m.prevMsgID}: another capture appended (epoch ${this.opts.epoch} is stale)`, undefined, { cause: err }));
      return;
    }
    if (err instanceof JetStreamApiError && err.code === WRONG_LAST_SEQUENCE) {
      const last = WRONG_LAST.exec(err.message);
      const stored = last ? Number(last[1]) : null;
      if (stored === null || stored >= m.seq) {
        this.leave('fenced', new ClusterFencedError(
          `the cluster's stream ${this.opts.stream} holds sequence ${stored ?? '?'} beyond this publisher's ${m.seq - 1}: another capture appended (epoch ${this.opts.epoch} is stale)`,
          undefined,
          { cause: err },
        ));
        return;
      }
      // The stream is behind: one of our own earlier messages was not stored.
      this.leave('failed', new ClusterPublishError(`${m.msgID} expected sequence ${m.seq - 1} last, the stream is at ${stored}: an earlier publish was lost (epoch ${this.opts.epoch})`, undefined, { cause: err }));
      return;
    }
    const why = err instanceof Error ? err.message : String(err);
    this.leave('failed', new ClusterPublishError(`publishing ${m.msgID} (seq ${m.seq}) into ${this.opts.stream}: ${why}`, 'check the NATS servers and the stream\'s leader', { cause: err }));
  }

  private headersOf(m: Outgoing): MsgHdrs {
    const h = natsHeaders();
    h.set(CLUSTER_HEADERS.position, positionHeader(m.pos));
    h.set(CLUSTER_HEADERS.epoch, String(this.opts.epoch));
    if (m.last) h.set(CLUSTER_HEADERS.last, '1');
    if (m.chain !== null) h.set(CLUSTER_HEADERS.chain, m.chain);
    if (m.ends !== null) h.set(CLUSTER_HEADERS.ends, m.ends);
    return h;
  }

  /** One in-flight publish is over. */
  private settle(): void {
    this.inFlight--;
    if (this.inFlight === 0 && this.idle.length > 0) {
      const idle = this.idle;
      this.idle = [];
      for (const r of idle) r();
    }
  }

  private leave(to: PublisherState, err: Error): void {
    if (!canPublisherMove(this.state, to)) return;
    this.state = to;
    this.error = err;
    if (to !== 'closed') this.opts.log.error({ err, epoch: this.opts.epoch, state: to }, 'cluster publisher stopped');
    this.queue.length = 0;
    this.head = 0;
    for (const w of this.waiters) {
      w.done = true;
      w.reject(err);
    }
    this.waiters.clear();
    this.opts.onLeave?.(to, err);
  }
}

function isTimeout(err: unknown): boolean {
  return err instanceof TimeoutError || (err instanceof Error && err.cause instanceof TimeoutError);
}

