// The hub: committed transactions in, deliveries out. Every transaction is appended to the
// history ring, then dispatched to the live subscriptions its changes can reach (found through
// the index, filtered on candidates only). A subscription resuming from a position first
// catches up from the ring (catchup.ts: a bounded share of each turn, a few at a time per
// connection and per user), then turns live in the same step that delivers the ring's last
// entry, so the seam has no gap and no duplicate.
//
//   subscribe ─► (since outside window) ─► resync
//       │
//       ▼
//   catching_up ──(cursor reached the ring's end)──► live ──► unsubscribed | resync | closed
import { compareWalPositions, formatWalPosition, type Position } from '../protocol/position.js';
import type { CapturedChange, Transaction } from '../capture/types.js';
import type { Row } from '../capture/pgoutput.types.js';
import type { Channels } from './channels.js';
import { SERVER_DEFAULTS, SNAPSHOT_MARKS_TABLE } from '../constants.js';
import { HistoryRing, LAST_INDEX, type RingEntry } from '../history/ring.js';
import { estimateBytes } from './render.js';
import { Delivery } from './delivery.js';
import { ProgressSweep } from './progress.js';
import { CatchUp } from './catchup.js';
import type { CatchUpStats } from './catchup-scheduler.js';
import type { Interests, OlderHistory, SegmentStart } from './older-history.js';
import { PrefixTable } from './prefixes.js';
import { forWindow, notForWindow, type SqlBroadcasts } from './sql-broadcast.js';
import { HubSubscription, SubscriptionIndex, type SubscriptionInit } from './subscriptions.js';
import { resync, subscribed } from '../protocol/frames.js';
import type { ResyncReason } from '../protocol/types.js';
import type { Peer } from './types.js';
import type { Authorizer } from '../auth/types.js';
import type { Identity } from '../auth/jwt.js';
import { ForbiddenError } from '../errors.js';
import { errorMsgFrom } from '../protocol/wire-errors.js';

export interface HubOptions {
  ring: HistoryRing;
  /**
   * Work all catch-ups together may do in one turn of the event loop before yielding to live
   * dispatch and socket I/O: changes of the window examined for one subscription, plus KiB sent.
   */
  catchUpBudgetPerTurn?: number;
  /** Catch-ups running at once per connection and per user (identity id); the rest wait in order. */
  maxCatchUpsPerConnection?: number;
  maxCatchUpsPerUser?: number;
  /** A catching-up peer with more bytes than this unsent waits for its socket to drain. */
  catchUpHighWater?: number;
  /** Minimum spacing of idle marks in the ring. */
  markIntervalMs?: number;
  /** Row-level authorization; null or absent under --no-auth (everyone reads everything). */
  auth?: Authorizer | null;
  /** Broadcast and presence; SQL broadcasts arrive through the hub in commit order. */
  channels?: Channels | null;
  /** Inserts into walcast.broadcasts, sent on to channels; without it they are ignored. */
  sqlBroadcasts?: SqlBroadcasts | null;
  /** History before the ring's floor (a cluster's stream): positions in it are caught up from there. */
  older?: OlderHistory | null;
  /** What the node follows (a cluster with interest routing); absent: everything, always. */
  interests?: Interests | null;
  /** Told of every committed snapshot mark (src/snapshot/marks.ts), with its token. */
  marks?: { seen(token: unknown): void } | null;
}

export interface HubCounters {
  changesIn: number;
  transactionsIn: number;
  deliveries: number;
  resyncs: number;
  /** Times the slot lag bound made the history window drop entries its byte and age bounds kept. */
  windowShrinks: number;
  /** Transactions past --max-transaction-bytes, skipped with resync (src/hub/oversize.ts). */
  oversized: number;
}

export class Hub {
  readonly ring: HistoryRing;
  readonly index = new SubscriptionIndex();
  readonly counters: HubCounters = { changesIn: 0, transactionsIn: 0, deliveries: 0, resyncs: 0, windowShrinks: 0, oversized: 0 };
  private readonly peers = new Map<Peer, Map<string, HubSubscription>>();
  private readonly catchingUp: CatchUp;
  private readonly touched = new Set<Peer>();
  private stampSeq = 0;
  private lastMarkAt = 0;
  private nowFloor: Position = { lsn: 0n, index: 0 };
  /** Where the slot was last created anew by this daemon (nothing before it can be replayed). */
  private recreatedAt: Position | null = null;
  private flushScheduled = false;
  private readonly progress: ProgressSweep;
  private readonly delivery: Delivery;
  /** Frames of the change being dispatched, by interned prefix (delivery.ts's, cleared per change). */
  private readonly frames: Map<Buffer, Buffer>;
  readonly prefixes = new PrefixTable();
  private flushedUpTo: Position = { lsn: 0n, index: 0 };
  /** Decisions of the change being dispatched, per identity: [new row, old row] (likewise). */
  private readonly decisions: Delivery['decisions'];
  private readonly markIntervalMs: number;
  readonly auth: Authorizer | null;
  readonly channels: Channels | null;
  readonly sqlBroadcasts: SqlBroadcasts | null;
  private readonly older: OlderHistory | null;
  private readonly interests: Interests | null;
  private readonly marks: { seen(token: unknown): void } | null;

  constructor(opts: HubOptions) {
    this.auth = opts.auth ?? null;
    this.channels = opts.channels ?? null;
    this.sqlBroadcasts = opts.sqlBroadcasts ?? null;
    this.ring = opts.ring;
    this.older = opts.older ?? null;
    this.interests = opts.interests ?? null;
    this.marks = opts.marks ?? null;
    this.progress = new ProgressSweep(this.ring, this.peers, this.touched);
    this.delivery = new Delivery(this.ring, this.auth, this.touched, this.counters);
    this.frames = this.delivery.frames;
    this.decisions = this.delivery.decisions;
    const host = {
      ring: this.ring,
      older: this.older,
      covered: (sub: HubSubscription, pos: Position) => this.covered(sub.table, sub.routes, pos),
      deliverPast: (entry: RingEntry, tx: Transaction, c: CapturedChange, sub: HubSubscription) => this.deliver(entry, tx, c, sub, false),
      goLive: (sub: HubSubscription) => this.goLive(sub),
      resync: (sub: HubSubscription, reason: ResyncReason) => this.resyncOne(sub, reason),
    };
    this.catchingUp = new CatchUp(host, {
      budgetPerTurn: opts.catchUpBudgetPerTurn ?? SERVER_DEFAULTS.catchUpBudgetPerTurn,
      perConnection: opts.maxCatchUpsPerConnection ?? SERVER_DEFAULTS.maxCatchUpsPerConnection,
      perUser: opts.maxCatchUpsPerUser ?? SERVER_DEFAULTS.maxCatchUpsPerUser,
      highWater: opts.catchUpHighWater ?? 1024 * 1024,
    });
    this.markIntervalMs = opts.markIntervalMs ?? 1_000;
    this.interests?.onCovered(() => this.scheduleCatchUp());
  }

  get subscriptionCount(): number {
    return this.index.size + this.catchingUp.size;
  }

  /** Catch-ups running and waiting, and the most that ran at once (per connection, per user). */
  get catchUpStats(): Readonly<CatchUpStats & { maxTurnMs: number }> {
    return this.catchingUp.stats;
  }

  /** The slot's commit LSN that must stay: the start of the window. */
  hold = (): bigint | null => this.ring.oldestLsn();

  // ── input from capture ──────────────────────────────────────────────────────────────────

  onTransaction = (tx: Transaction): void => {
    this.counters.transactionsIn++;
    this.counters.changesIn += tx.changes.length;
    // Without broadcast rows and messages: never replayed, so never held.
    const kept = forWindow(tx);
    const entry = this.ring.appendTransaction(kept, estimateBytes(kept));
    const auth = this.auth;
    for (const c of tx.changes) {
      // A policy or relation change applies before the changes after it (commit order).
      auth?.apply(c, tx.lsn, tx.xid);
      this.dispatch(entry, tx, c);
    }
    this.flushedUpTo = entry.last;
    // Send once per turn of the event loop, after every replication read of that turn has been
    // dispatched: one corked write per socket rather than one per transaction (the write
    // syscalls, not the JavaScript, are what fan-out costs).
    if (!this.flushScheduled && this.touched.size > 0) {
      this.flushScheduled = true;
      setImmediate(this.flushTouched);
    }
    if (this.catchingUp.size > 0) this.scheduleCatchUp();
  };

  /**
   * Bounds the window (bytes, age, and WAL held: entries before `minLsn` go, so that the slot
   * can be acknowledged further). History of policies older than the window is dropped too.
   * Returns whether the WAL bound shrank the window; subscriptions whose catch-up cursor fell
   * out of it get `resync` at their next catch-up step.
   */
  evict(minLsn = 0n): boolean {
    this.ring.evict();
    const oldest = this.ring.oldestLsn();
    const shrink = oldest !== null && oldest < minLsn && this.ring.evict(minLsn) > 0;
    if (shrink) this.counters.windowShrinks++;
    this.auth?.forget(this.historyFloor());
    return shrink;
  }

  /** The oldest position catch-ups may start from: the ring's floor, or older history's. */
  private historyFloor(): Position {
    if (!this.older) return this.ring.floor;
    const f = this.older.floor();
    if (!f) return { lsn: 0n, index: 0 }; // not known yet: forget nothing
    return compareWalPositions(f, this.ring.floor) < 0 ? f : this.ring.floor;
  }

  /** The stream moved on with nothing for us (idle keepalive). */
  onProgress = (walEnd: bigint): void => {
    const now = Date.now();
    if (now - this.lastMarkAt < this.markIntervalMs) return;
    if (this.ring.appendMark(walEnd)) this.lastMarkAt = now;
  };

  /**
   * A subscription "from now" starts no earlier than this: after a restart the window is
   * replayed from WAL, and what committed before the daemon started is history, not news.
   */
  liveFrom(pos: Position): void {
    this.nowFloor = pos;
  }

  /** Positions before `floor` can no longer be honoured (start, or slot recreated). */
  reset(floor: Position, reason: ResyncReason | null): void {
    this.ring.reset(floor);
    // Positions before a recreation are answered with that reason, not "outside the window".
    if (reason === 'slot_recreated') this.recreatedAt = floor;
    if (reason) this.resyncAll(reason);
  }

  /**
   * While the policies are being read anew (the slot was recreated), resolves when they are:
   * decisions taken before would all be deny. Null when they are known (or under --no-auth).
   */
  policiesLoading(): Promise<void> | null {
    return this.auth && !this.auth.ready ? this.auth.whenReady() : null;
  }

  /** Whether a subscribe to `table` could ever deliver anything to this identity. */
  mayEverRead(identity: Identity | null, table: string, since: Position | null = null): boolean {
    if (!this.auth) return true;
    return identity !== null && this.auth.mayEverRead(identity, table, since);
  }

  /**
   * The peer's identity changed (an in-band `auth` refresh): subscriptions it may no longer
   * read at all are ended with `forbidden`; the others go on, authorized row by row as before.
   */
  reauthorize(peer: Peer): void {
    const loading = this.policiesLoading();
    if (loading) {
      // Every decision would be deny until the policies are read: judge the new token then.
      void loading.then(() => !peer.closed && this.reauthorize(peer));
      return;
    }
    this.channels?.reauthorize(peer);
    const subs = this.peers.get(peer);
    if (!subs || !this.auth) return;
    const user = peer.identity?.id ?? null;
    for (const sub of subs.values()) {
      // Another user (the Supabase endpoint lets a connection switch, as Supabase does): the
      // index finds a row's reach by user, so the subscription is filed under the new one.
      if (sub.state !== 'live' || sub.user === user) continue;
      this.index.remove(sub);
      sub.user = null;
      this.index.add(sub);
    }
    for (const [k, sub] of subs) {
      if (this.mayEverRead(peer.identity, sub.table)) continue;
      subs.delete(k);
      this.end(sub);
      peer.push(errorMsgFrom(new ForbiddenError(`the refreshed token may not read ${sub.table}: subscription ended`), { id: sub.id }));
    }
    peer.flush();
  }

  // ── subscriptions ───────────────────────────────────────────────────────────────────────

  subscriptionsOf(peer: Peer): Map<string, HubSubscription> {
    let subs = this.peers.get(peer);
    if (!subs) this.peers.set(peer, (subs = new Map()));
    return subs;
  }

  /**
   * Adds a subscription whose request was validated. Returns null (and sends resync) when its
   * position is outside the window.
   */
  subscribe(init: Omit<SubscriptionInit, 'after' | 'prefix'> & { since: Position | null }): HubSubscription | null {
    const peer = init.peer;
    if (init.since && !this.ring.covers(init.since)) {
      const recreated = this.recreatedAt !== null && compareWalPositions(init.since, this.recreatedAt) <= 0;
      // Older than the ring, maybe not than the stream: caught up from there (older-history.ts).
      if (!recreated && this.older?.mayCover(init.since)) return this.fromOlder(init, init.since, 'strict');
      this.counters.resyncs++;
      peer.push(resync(init.id, recreated ? 'slot_recreated' : 'position_outside_window', init.ref));
      peer.flush();
      return null;
    }
    const head = this.ring.head;
    const now = compareWalPositions(this.nowFloor, head) > 0 ? this.nowFloor : head;
    // A table the node does not follow yet (or not since that position): from older history
    // until its feed carries the table.
    if (this.interests && this.older && !this.covered(init.table, init.routes ?? null, init.since ?? now)) return this.fromOlder(init, init.since ?? now, init.since ? 'uncovered' : 'now');
    const sub = new HubSubscription({ ...init, after: init.since ?? now, prefix: this.prefixes.acquire(init.id) });
    sub.release = this.interests?.follow(sub.table, sub.routes) ?? null;
    this.subscriptionsOf(peer).set(key(init.id), sub);
    if (!init.since) {
      this.goLive(sub);
      peer.flush();
      return sub;
    }
    sub.cursor = this.ring.seqAfter(init.since);
    this.catchingUp.add(sub);
    return sub;
  }

  /** A subscription caught up from older history first (a segment opens when its catch-up runs). */
  private fromOlder(init: Omit<SubscriptionInit, 'after' | 'prefix'>, from: Position, start: SegmentStart): HubSubscription {
    const sub = new HubSubscription({ ...init, after: from, prefix: this.prefixes.acquire(init.id) });
    sub.release = this.interests?.follow(sub.table, sub.routes) ?? null;
    sub.older = start;
    this.subscriptionsOf(init.peer).set(key(init.id), sub);
    this.catchingUp.add(sub);
    return sub;
  }

  /** Whether the ring holds every change of `table` (of those `routes`) after `pos` (always, but for what the node does not follow). */
  private covered(table: string, routes: readonly string[] | null, pos: Position): boolean {
    if (!this.interests) return true;
    const from = this.interests.coveredFrom(table, routes);
    return from !== null && compareWalPositions(pos, from) >= 0;
  }

  /** The last position the hub has applied: where a snapshot's catch-up may start (snapshotStart). */
  head(): Position {
    return this.ring.head;
  }

  /**
   * Where the catch-up after a snapshot starts: `from` (the head before the snapshot was taken),
   * or earlier when a transaction the hub applied before it is not in the snapshot: its commit
   * record was written and streamed, its commit not yet visible (a short window in Postgres,
   * long with synchronous replication, where a commit waits for the standby before it becomes
   * visible; its xid may then be in progress for the snapshot or at or past its xmax). The last
   * `maxScan` entries before `from` are looked at; the catch-up then skips every transaction the
   * snapshot contains.
   */
  snapshotStart(from: Position, contains: (xid: number) => boolean, maxScan: number): Position {
    let start = from;
    const end = this.ring.seqAfter(from);
    for (let seq = end - 1; seq >= Math.max(this.ring.startSeq, end - maxScan); seq--) {
      const tx = this.ring.get(seq)?.tx;
      if (tx && !contains(tx.xid)) start = { lsn: tx.lsn - 1n, index: LAST_INDEX };
    }
    return start;
  }

  unsubscribe(peer: Peer, id: string | number): boolean {
    const subs = this.peers.get(peer);
    const sub = subs?.get(key(id));
    if (!sub || !subs) return false;
    subs.delete(key(id));
    this.end(sub);
    return true;
  }

  removePeer(peer: Peer): void {
    this.channels?.removePeer(peer);
    const subs = this.peers.get(peer);
    if (!subs) return;
    for (const sub of subs.values()) this.end(sub);
    this.peers.delete(peer);
  }

  /** Every subscription (or each one `which` picks) is told to refetch and subscribe anew. */
  resyncAll(reason: ResyncReason, which?: (sub: HubSubscription) => boolean): void {
    for (const [peer, subs] of this.peers) {
      let told = false;
      for (const [k, sub] of subs) {
        if (which && !which(sub)) continue;
        subs.delete(k);
        this.end(sub);
        this.counters.resyncs++;
        peer.push(resync(sub.id, reason));
        told = true;
      }
      if (told) peer.flush();
    }
  }

  /** A catching-up peer's socket drained: go on. */
  drained(peer: Peer): void {
    const subs = this.peers.get(peer);
    if (subs) for (const sub of subs.values()) if (sub.state === 'catching_up') return this.scheduleCatchUp();
  }

  /** `progress` for idle clients whose last position is behind the head. */
  sendProgress(): void {
    this.progress.start();
  }

  // ── delivery ────────────────────────────────────────────────────────────────────────────

  private dispatch(entry: RingEntry, tx: Transaction, c: CapturedChange): void {
    if (notForWindow(c)) {
      if (c.relation.qualified === SNAPSHOT_MARKS_TABLE) {
        if (c.tag === 'insert') this.marks?.seen(c.new.token); // the delete that follows is nothing
      } else this.sqlBroadcasts?.onChange(tx, c, this.nowFloor); // a row of walcast.broadcasts: to its channel
      return;
    }
    const stamp = ++this.stampSeq;
    this.frames.clear();
    this.decisions[0].clear();
    this.decisions[1].clear();
    const visit = (sub: HubSubscription) => {
      if (sub.state === 'live') this.deliver(entry, tx, c, sub, true);
    };
    const table = c.relation.qualified;
    if (c.tag === 'truncate') {
      this.index.all(table, stamp, visit);
      return;
    }
    const row = c.tag === 'delete' ? c.old : c.new;
    const other = c.tag === 'update' ? c.old : null;
    // With policies that bound who a row can reach (relations, owners, roles), the candidates
    // are those users' subscriptions, not every subscription of the table.
    const users = this.auth ? this.reach(table, row, other) : null;
    if (users && users.size < this.index.sizeOf(table)) this.index.ofUsers(table, users, stamp, visit);
    else this.index.candidates(table, row, other, stamp, visit);
  }

  private reach(table: string, row: Row, other: Row | null): ReadonlySet<string> | null {
    const auth = this.auth as Authorizer;
    const users = auth.reach(table, row);
    if (!users || !other) return users;
    const more = auth.reach(table, other);
    if (!more) return null;
    const all = new Set(users);
    for (const u of more) all.add(u);
    return all;
  }

  /** Sends one change to one subscription if it wants it and may see it (delivery.ts). */
  private deliver(entry: RingEntry, tx: Transaction, c: CapturedChange, sub: HubSubscription, live: boolean): number {
    return this.delivery.deliver(entry, tx, c, sub, live, this.stampSeq);
  }

  private readonly flushTouched = (): void => {
    this.flushScheduled = false;
    const last = this.flushedUpTo;
    for (const peer of this.touched) {
      peer.lastPos = last;
      peer.flush();
    }
    this.touched.clear();
  };

  private scheduleCatchUp(): void {
    this.catchingUp.schedule();
  }

  private resyncOne(sub: HubSubscription, reason: ResyncReason): void {
    this.subscriptionsOf(sub.peer).delete(key(sub.id));
    this.end(sub);
    this.counters.resyncs++;
    sub.peer.push(resync(sub.id, reason, sub.ref));
    sub.peer.flush();
  }

  private goLive(sub: HubSubscription): void {
    this.catchingUp.remove(sub);
    sub.state = 'live';
    sub.skip = null;
    this.index.add(sub);
    const head = this.ring.head;
    const pos = compareWalPositions(sub.after, head) > 0 ? sub.after : head;
    sub.peer.push(subscribed(sub.id, formatWalPosition(pos.lsn, pos.index), sub.ref));
    // The client now holds `pos`: progress only once the head moves past it.
    const last = sub.peer.lastPos;
    if (!last || compareWalPositions(pos, last) > 0) sub.peer.lastPos = pos;
  }

  private end(sub: HubSubscription): void {
    if (sub.state === 'ended') return;
    if (sub.state === 'live') this.index.remove(sub);
    else this.catchingUp.remove(sub);
    this.prefixes.release(sub.id);
    sub.release?.();
    sub.release = null;
    sub.state = 'ended';
  }
}

/** Map key of a subscription id: the number 5 and the string "5" are different ids. */
export function key(id: string | number): string {
  return typeof id === 'number' ? `n:${id}` : `s:${id}`;
}
