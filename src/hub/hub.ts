// The hub: committed transactions in, deliveries out. Every transaction is appended to the
// history ring, then dispatched to the live subscriptions its changes can reach (found through
// the index, filtered on candidates only). A subscription resuming from a position first
// catches up from the ring, in slices, then turns live in the same step that delivers the
// ring's last entry, so the seam has no gap and no duplicate.
//
//   subscribe ─► (since outside window) ─► resync
//       │
//       ▼
//   catching_up ──(cursor reached the ring's end)──► live ──► unsubscribed | resync | closed
import { comparePositions, formatPosition, type Position } from '../capture/position.js';
import type { Change, Transaction } from '../capture/types.js';
import type { MsgMessage, Row } from '../capture/pgoutput.types.js';
import type { Channels } from './channels.js';
import { BROADCAST_PREFIX } from '../constants.js';
import { HistoryRing, type RingEntry } from '../history/ring.js';
import { changeBody, encodeBody, estimateBytes, leaveBody } from './render.js';
import { PrefixTable } from './prefixes.js';
import { crossesOversized } from './oversize.js';
import { Subscription, SubscriptionIndex, type SubscriptionInit } from './subscriptions.js';
import { progress, resync, subscribed } from '../server/protocol.js';
import type { ResyncReason } from '../server/protocol.types.js';
import type { Peer } from './types.js';
import type { Authorizer } from '../auth/types.js';
import type { Identity } from '../auth/jwt.js';
import { ForbiddenError } from '../errors.js';
import { errorMsgFrom } from '../server/protocol.js';

export interface HubOptions {
  ring: HistoryRing;
  /** Ring entries one catch-up slice may deliver before yielding to other work. */
  catchUpSlice?: number;
  /** A catching-up peer with more bytes than this unsent waits for its socket to drain. */
  catchUpHighWater?: number;
  /** Minimum spacing of idle marks in the ring. */
  markIntervalMs?: number;
  /** Row-level authorization; null or absent under --no-auth (everyone reads everything). */
  auth?: Authorizer | null;
  /** Broadcast and presence; SQL broadcasts arrive through the hub in commit order. */
  channels?: Channels | null;
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

/** Peers one turn of the progress sweep writes to. */
const PROGRESS_SLICE = 256;

export class Hub {
  readonly ring: HistoryRing;
  readonly index = new SubscriptionIndex();
  readonly counters: HubCounters = { changesIn: 0, transactionsIn: 0, deliveries: 0, resyncs: 0, windowShrinks: 0, oversized: 0 };
  private readonly peers = new Map<Peer, Map<string, Subscription>>();
  private readonly catchingUp = new Set<Subscription>();
  private readonly touched = new Set<Peer>();
  private stampSeq = 0;
  private catchUpScheduled = false;
  private lastMarkAt = 0;
  private nowFloor: Position = { lsn: 0n, index: 0 };
  /** Where the slot was last created anew by this daemon (nothing before it can be replayed). */
  private recreatedAt: Position | null = null;
  private flushScheduled = false;
  /** Peers of the progress sweep under way, and how far it got. */
  private sweep: Peer[] | null = null;
  private sweepAt = 0;
  /** Frames of the change being dispatched, by interned prefix. */
  private readonly frames = new Map<Buffer, Buffer>();
  readonly prefixes = new PrefixTable();
  private flushedUpTo: Position = { lsn: 0n, index: 0 };
  /** Decisions of the change being dispatched, per identity: [new row, old row]. */
  private readonly decisions: [Map<Identity, boolean>, Map<Identity, boolean>] = [new Map(), new Map()];
  private readonly slice: number;
  private readonly highWater: number;
  private readonly markIntervalMs: number;
  readonly auth: Authorizer | null;
  readonly channels: Channels | null;

  constructor(opts: HubOptions) {
    this.auth = opts.auth ?? null;
    this.channels = opts.channels ?? null;
    this.ring = opts.ring;
    this.slice = opts.catchUpSlice ?? 256;
    this.highWater = opts.catchUpHighWater ?? 1024 * 1024;
    this.markIntervalMs = opts.markIntervalMs ?? 1_000;
  }

  get subscriptionCount(): number {
    return this.index.size + this.catchingUp.size;
  }

  /** The slot's commit LSN that must stay: the start of the window. */
  hold = (): bigint | null => this.ring.oldestLsn();

  // ── input from capture ──────────────────────────────────────────────────────────────────

  onTransaction = (tx: Transaction): void => {
    this.counters.transactionsIn++;
    this.counters.changesIn += tx.changes.length;
    const entry = this.ring.appendTransaction(tx, estimateBytes(tx));
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
    this.auth?.forget(this.ring.floor);
    return shrink;
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
    for (const [k, sub] of subs) {
      if (this.mayEverRead(peer.identity, sub.table)) continue;
      subs.delete(k);
      this.end(sub);
      peer.push(errorMsgFrom(new ForbiddenError(`the refreshed token may not read ${sub.table}: subscription ended`), { id: sub.id }));
    }
    peer.flush();
  }

  // ── subscriptions ───────────────────────────────────────────────────────────────────────

  subscriptionsOf(peer: Peer): Map<string, Subscription> {
    let subs = this.peers.get(peer);
    if (!subs) this.peers.set(peer, (subs = new Map()));
    return subs;
  }

  /**
   * Adds a subscription whose request was validated. Returns null (and sends resync) when its
   * position is outside the window.
   */
  subscribe(init: Omit<SubscriptionInit, 'after' | 'prefix'> & { since: Position | null }): Subscription | null {
    const peer = init.peer;
    if (init.since && !this.ring.covers(init.since)) {
      this.counters.resyncs++;
      const recreated = this.recreatedAt !== null && comparePositions(init.since, this.recreatedAt) <= 0;
      peer.push(resync(init.id, recreated ? 'slot_recreated' : 'position_outside_window', init.ref));
      peer.flush();
      return null;
    }
    const head = this.ring.head;
    const now = comparePositions(this.nowFloor, head) > 0 ? this.nowFloor : head;
    const sub = new Subscription({ ...init, after: init.since ?? now, prefix: this.prefixes.acquire(init.id) });
    this.subscriptionsOf(peer).set(key(init.id), sub);
    if (!init.since) {
      this.goLive(sub);
      peer.flush();
      return sub;
    }
    sub.cursor = this.ring.seqAfter(init.since);
    this.catchingUp.add(sub);
    this.catchUp(sub);
    return sub;
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
  resyncAll(reason: ResyncReason, which?: (sub: Subscription) => boolean): void {
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
    if (subs) for (const sub of subs.values()) if (sub.state === 'catching_up') this.scheduleCatchUp();
  }

  /** `progress` for idle clients whose last position is behind the head. */
  sendProgress(): void {
    if (this.sweep) return; // the last sweep is still going
    this.sweep = [...this.peers.keys()];
    this.sweepAt = 0;
    this.progressSlice();
  }

  /**
   * One slice of the progress sweep. With many idle clients a sweep is that many writes, so it
   * is spread over turns of the event loop rather than blocking it (bench/README.md, auth).
   */
  private readonly progressSlice = (): void => {
    const peers = this.sweep;
    if (!peers) return;
    const head = this.ring.head;
    const frame = progress(formatPosition(head.lsn, head.index));
    const end = Math.min(peers.length, this.sweepAt + PROGRESS_SLICE);
    for (; this.sweepAt < end; this.sweepAt++) {
      const peer = peers[this.sweepAt];
      const subs = this.peers.get(peer);
      // Peers with frames waiting for this turn's flush get their position from those.
      if (!subs || peer.closed || subs.size === 0 || this.touched.has(peer)) continue;
      if (peer.lastPos && comparePositions(peer.lastPos, head) >= 0) continue;
      let catching = false;
      for (const sub of subs.values()) if (sub.state === 'catching_up') catching = true;
      if (catching) continue;
      peer.lastPos = head;
      peer.push(frame);
      peer.flush();
    }
    if (this.sweepAt < peers.length) setImmediate(this.progressSlice);
    else this.sweep = null;
  };

  // ── delivery ────────────────────────────────────────────────────────────────────────────

  private dispatch(entry: RingEntry, tx: Transaction, c: Change): void {
    if (c.tag === 'message') {
      this.sqlBroadcast(tx, c);
      return;
    }
    const stamp = ++this.stampSeq;
    this.frames.clear();
    this.decisions[0].clear();
    this.decisions[1].clear();
    const visit = (sub: Subscription) => {
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

  /**
   * walcast.broadcast() committed: to the channel's members. Only news: what the slot replays
   * after a restart was broadcast before this daemon started.
   */
  private sqlBroadcast(tx: Transaction, c: MsgMessage): void {
    if (!this.channels || c.prefix !== BROADCAST_PREFIX || !c.transactional) return;
    if (comparePositions({ lsn: tx.lsn, index: c.index }, this.nowFloor) <= 0) return;
    let m: { channel?: unknown; event?: unknown; payload?: unknown };
    try {
      m = JSON.parse(c.content.toString('utf8'));
    } catch {
      return; // not ours: someone else's message under our prefix
    }
    if (typeof m.channel !== 'string' || typeof m.event !== 'string') return;
    this.channels.fromSql(m.channel, m.event, JSON.stringify(m.payload ?? null));
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

  /**
   * Whether the subscriber may see this row: its filter, then the policies (in force now when
   * live, at the change's commit when catching up). Live decisions are shared by the
   * subscriptions of one identity for the change being dispatched.
   */
  private visible(sub: Subscription, c: Change & { relation: { qualified: string } }, row: Row, which: 0 | 1, lsn: bigint | null): boolean {
    if (!sub.predicate(row)) return false;
    const auth = this.auth;
    if (!auth) return true;
    const identity = sub.peer.identity;
    if (!identity) return false;
    if (lsn !== null) return auth.mayRead(identity, c.relation.qualified, row, { lsn, index: c.index });
    const cache = this.decisions[which];
    let ok = cache.get(identity);
    if (ok === undefined) cache.set(identity, (ok = auth.mayRead(identity, c.relation.qualified, row, null)));
    return ok;
  }

  /** Sends one change to one subscription if it wants it; true when something was sent. */
  private deliver(entry: RingEntry, tx: Transaction, c: Change, sub: Subscription, live: boolean): boolean {
    if (tx.lsn <= sub.after.lsn && (tx.lsn < sub.after.lsn || c.index <= sub.after.index)) return false;
    let leave = false;
    const at = live ? null : tx.lsn;
    switch (c.tag) {
      case 'insert':
        if (!sub.wantsInsert || !this.visible(sub, c, c.new, 0, at)) return false;
        break;
      case 'update':
        if (this.visible(sub, c, c.new, 0, at)) {
          if (!sub.wantsUpdate) return false;
        } else if (c.old && (sub.wantsUpdate || sub.wantsDelete) && this.visible(sub, c, c.old, 1, at)) {
          leave = true;
        } else return false;
        break;
      case 'delete':
        if (!sub.wantsDelete || !this.visible(sub, c, c.old, 0, at)) return false;
        break;
      case 'truncate':
        if (!sub.wantsDelete) return false;
        break;
      default:
        return false;
    }
    sub.peer.pushFrame(leave ? Buffer.concat([sub.prefix, Buffer.from(leaveBody(tx, c as Change & { tag: 'update' }))]) : this.frame(entry, tx, c, sub.prefix, live));
    this.counters.deliveries++;
    if (live) this.touched.add(sub.peer);
    return true;
  }

  /**
   * The whole frame of a change for one prefix. The body is encoded once per change (kept in the
   * ring for catch-ups); during a live dispatch, frames are shared by every subscription with the
   * same prefix, so a change costs one copy per distinct subscription id, not per subscriber.
   */
  private frame(entry: RingEntry, tx: Transaction, c: Change, prefix: Buffer, live: boolean): Buffer {
    const body = entry.bodies?.[c.index] ?? this.ring.addBody(entry, c.index, encodeBody(changeBody(tx, c)));
    if (!live) return Buffer.concat([prefix, body]);
    let f = this.frames.get(prefix);
    if (!f) this.frames.set(prefix, (f = Buffer.concat([prefix, body])));
    return f;
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
    if (this.catchUpScheduled) return;
    this.catchUpScheduled = true;
    setImmediate(() => {
      this.catchUpScheduled = false;
      for (const sub of this.catchingUp) this.catchUp(sub);
    });
  }

  /** Delivers one slice of the ring to a catching-up subscription; live when it reaches the end. */
  private catchUp(sub: Subscription): void {
    const peer = sub.peer;
    if (sub.state !== 'catching_up' || peer.closed) return;
    if (sub.cursor < this.ring.startSeq) {
      // The window moved past what it had not yet received.
      this.resyncOne(sub, 'position_outside_window');
      return;
    }
    let budget = this.slice;
    while (sub.cursor < this.ring.endSeq && budget-- > 0) {
      const entry = this.ring.get(sub.cursor++) as RingEntry;
      if (entry.tx?.oversize && crossesOversized(entry.tx, sub)) return this.resyncOne(sub, 'transaction_too_large');
      // Only the subscription's own table: live dispatch finds it through the index, catch-up reads every entry.
      if (entry.tx) for (const c of entry.tx.changes) if (c.tag !== 'message' && c.relation.qualified === sub.table) this.deliver(entry, entry.tx, c, sub, false);
      // Entries vary in size: stop as soon as the socket has enough to chew on.
      peer.flush();
      if (peer.closed || peer.backlog() > this.highWater) break;
    }
    if (!peer.closed && sub.cursor >= this.ring.endSeq) this.goLive(sub);
    peer.flush();
    if (sub.state === 'catching_up' && !peer.closed) {
      if (peer.backlog() <= this.highWater) this.scheduleCatchUp();
      // else: wait for drained()
    }
  }

  private resyncOne(sub: Subscription, reason: ResyncReason): void {
    this.subscriptionsOf(sub.peer).delete(key(sub.id));
    this.end(sub);
    this.counters.resyncs++;
    sub.peer.push(resync(sub.id, reason, sub.ref));
    sub.peer.flush();
  }

  private goLive(sub: Subscription): void {
    this.catchingUp.delete(sub);
    sub.state = 'live';
    this.index.add(sub);
    const head = this.ring.head;
    const pos = comparePositions(sub.after, head) > 0 ? sub.after : head;
    sub.peer.push(subscribed(sub.id, formatPosition(pos.lsn, pos.index), sub.ref));
    // The client now holds `pos`: progress only once the head moves past it.
    const last = sub.peer.lastPos;
    if (!last || comparePositions(pos, last) > 0) sub.peer.lastPos = pos;
  }

  private end(sub: Subscription): void {
    if (sub.state === 'ended') return;
    if (sub.state === 'live') this.index.remove(sub);
    this.catchingUp.delete(sub);
    this.prefixes.release(sub.id);
    sub.state = 'ended';
  }
}

/** Map key of a subscription id: the number 5 and the string "5" are different ids. */
export function key(id: string | number): string {
  return typeof id === 'number' ? `n:${id}` : `s:${id}`;
}
