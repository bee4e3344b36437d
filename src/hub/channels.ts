// Channels: broadcast (typing indicators) and presence (online indicators) on the same sockets
// and policies as row changes (docs/AUTHORIZATION.md §8, docs/PROTOCOL.md §5-6). Joining needs the `join` action on
// {kind: "channel", name}, sending `broadcast`, tracking `presence`. Membership is checked
// again whenever policies or relations changed since it was last checked, before anything is
// delivered, so a member removed from a room stops receiving its channel at once.
// What clients send is bounded (issue 11): presence per user and per channel (presence.ts),
// broadcasts per connection and per user (rate.ts).
// In a cluster a bridge (ChannelBridge, src/cluster/channels-bridge.ts) carries broadcasts and
// presence to and from the members on other nodes; without one, channels are this node's alone.
import type { Authorizer } from '../auth/types.js';
import { isAnonymous } from '../auth/jwt.js';
import { BadRequestError, ForbiddenError, LimitExceededError, TooLargeError } from '../errors.js';
import { broadcastMsg, joined, left, presenceDiff, presenceState } from '../protocol/frames.js';
import { errorMsgFrom } from '../protocol/wire-errors.js';
import type { Ref } from '../protocol/types.js';
import type { SERVER_DEFAULTS } from '../constants.js';
import { ChannelPresence, type PresenceDiff, type PresenceLimits, type PresenceMap } from './presence.js';
import { BroadcastBudgets, TokenBucket, type BroadcastRate } from './rate.js';
import type { Peer } from './types.js';

export interface ChannelLimits {
  /** Channels one socket may be in at once. */
  maxPerPeer: number;
  /** Largest broadcast payload or presence state, as JSON bytes. */
  maxPayloadBytes: number;
  /** Presence updates per socket: a bucket of `burst`, refilled at `perSecond`. */
  presenceBurst: number;
  presencePerSecond: number;
  /** What a channel's presence may hold (per user, and in all: what a joiner receives). */
  presence: PresenceLimits;
  /** Client broadcasts: messages and payload bytes, per connection and per user. */
  broadcastPerConnection: BroadcastRate;
  broadcastPerUser: BroadcastRate;
}

/**
 * The other nodes of a cluster, as channels see them. Calls out are made in order, at once (no
 * await), so that a bridge numbering presence diffs sees them as members do.
 */
export interface ChannelBridge {
  /**
   * The first member on this node joined `name`: the bridge follows the channel. A promise:
   * joiners get `joined` when it settles (the bridge bounds the wait), so that their
   * presence_state holds what the other nodes hold; null: no wait.
   */
  opened(name: string): Promise<void> | null;
  /** The last member on this node left `name`. */
  closed(name: string): void;
  /** A client's broadcast, authorized and within budget here: for the members on other nodes. */
  broadcast(name: string, event: string, payloadJson: string, from: string): void;
  /** This node's presence in `name` changed. */
  presence(name: string, diff: PresenceDiff): void;
  /** What the other nodes hold in `name`: one map per node. */
  remoteState(name: string): PresenceMap[];
}

export interface ChannelOptions extends ChannelLimits {
  auth: Authorizer | null;
  now?: () => number;
}

/**
 * The presence and broadcast bounds of ChannelLimits, from the defaults' flat names. A
 * channel's presence stays under a quarter of the backpressure limit, so that a joiner's
 * presence_state never closes it (--max-backpressure may be set low). --broadcast-rate and
 * --broadcast-bytes-rate scale the broadcast budgets (bursts, per user) as the defaults are
 * scaled; a byte burst always lets one payload of the largest size through.
 */
export function channelLimits(
  d: typeof SERVER_DEFAULTS,
  cfg: { maxBackpressure: number; broadcastRate: number; broadcastBytesRate: number },
): Pick<ChannelLimits, 'presence' | 'broadcastPerConnection' | 'broadcastPerUser'> {
  const m = cfg.broadcastRate / d.broadcastPerSecond;
  const b = cfg.broadcastBytesRate / d.broadcastBytesPerSecond;
  const bytes = (burst: number, perSecond: number) => ({ burst: Math.max(d.maxPayloadBytes, Math.floor(burst * b)), perSecond: perSecond * b });
  return {
    presence: {
      metasPerKey: d.presenceMetasPerUser,
      bytesPerKey: d.presenceBytesPerUser,
      metasTotal: d.presenceEntriesPerChannel,
      bytesTotal: Math.min(d.presenceBytesPerChannel, Math.floor(cfg.maxBackpressure / 4)),
    },
    broadcastPerConnection: {
      messages: { burst: Math.max(1, Math.round(d.broadcastBurst * m)), perSecond: d.broadcastPerSecond * m },
      bytes: bytes(d.broadcastBytesBurst, d.broadcastBytesPerSecond),
    },
    broadcastPerUser: {
      messages: { burst: Math.max(1, Math.round(d.userBroadcastBurst * m)), perSecond: d.userBroadcastPerSecond * m },
      bytes: bytes(d.userBroadcastBytesBurst, d.userBroadcastBytesPerSecond),
    },
  };
}

/** Channel frames kept while the policies are read anew (see defer). */
const MAX_DEFERRED = 10_000;

interface Member {
  /** Authorizer epoch at which `join` was last found allowed. */
  epoch: number;
  /** Joined while the room was opening (ChannelBridge.opened): the refs `joined` is owed to. */
  pending: (Ref | undefined)[] | null;
  /**
   * The key its presence is tracked under, null when none: a Supabase connection may switch
   * users, and what it tracked as the old one must still be found to be untracked.
   */
  tracked: string | null;
}

class ChannelRoom {
  readonly members = new Map<Peer, Member>();
  readonly presence: ChannelPresence;
  /** False while the bridge gathers the other nodes' presence: members wait for `joined`. */
  ready = true;
  constructor(
    readonly name: string,
    limits: PresenceLimits,
  ) {
    this.presence = new ChannelPresence(limits);
  }
}

export class Channels {
  private readonly channels = new Map<string, ChannelRoom>();
  private readonly byPeer = new Map<Peer, Set<ChannelRoom>>();
  private readonly buckets = new WeakMap<Peer, TokenBucket>();
  private readonly budgets: BroadcastBudgets;
  private readonly now: () => number;
  private readonly touched = new Set<Peer>();
  private flushScheduled = false;
  /** Frames sent while the policies are read anew, in order, to go out once they are known. */
  private deferred: [ChannelRoom, string, Peer | null][] | null = null;
  private bridge: ChannelBridge | null = null;
  droppedWhileLoading = 0;
  broadcasts = 0;

  constructor(private readonly o: ChannelOptions) {
    this.now = o.now ?? Date.now;
    this.budgets = new BroadcastBudgets({ perConnection: o.broadcastPerConnection, perUser: o.broadcastPerUser, now: this.now });
  }

  /** Users holding a broadcast budget (bounded by the connected users). */
  get budgetUsers(): number {
    return this.budgets.users;
  }

  get count(): number {
    return this.channels.size;
  }

  /** The bounds a bridge checks other nodes' messages against. */
  get limits(): { maxPayloadBytes: number; presence: PresenceLimits } {
    return { maxPayloadBytes: this.o.maxPayloadBytes, presence: this.o.presence };
  }

  /** The cluster's bridge, when attached. */
  get bridged(): ChannelBridge | null {
    return this.bridge;
  }

  /** Connects the other nodes of a cluster; before any join. */
  attach(bridge: ChannelBridge): void {
    if (this.channels.size > 0) throw new Error('a channel bridge is attached before any channel is joined');
    this.bridge = bridge;
  }

  /** Another node's client broadcast: to the members here (membership re-checked as for any frame). */
  fromRemote(name: string, event: string, payloadJson: string, from: string): void {
    const ch = this.channels.get(name);
    if (ch) this.send(ch, broadcastMsg(name, event, payloadJson, from), null);
  }

  /** Another node's presence changed (the bridge holds it): the members here are told. */
  remotePresence(name: string, diff: PresenceDiff): void {
    const ch = this.channels.get(name);
    if (ch) this.send(ch, presenceDiff(name, diff.joins, diff.leaves), null);
  }

  /** This node's presence in `name` (what the bridge tells other nodes); null when nobody here joined it. */
  localPresence(name: string): PresenceMap | null {
    return this.channels.get(name)?.presence.state() ?? null;
  }

  join(peer: Peer, name: string, ref?: Ref): void {
    const mine = this.byPeer.get(peer);
    const existing = this.channels.get(name);
    const member = existing?.members.get(peer);
    if (existing && member) {
      // Checked first: a member whose right was taken away (and not yet noticed, as no message
      // of the channel was sent since) is removed, as before a delivery, and told so.
      if (!this.may(peer, name, 'join')) {
        this.remove(peer, existing);
        peer.push(errorMsgFrom(new ForbiddenError(`${who(peer)} may no longer join ${name}`), { ref }));
        peer.push(left(name));
        peer.flush();
        return;
      }
      member.epoch = this.o.auth?.epoch ?? 0;
      if (member.pending) {
        member.pending.push(ref);
        return;
      }
      peer.push(joined(name, ref));
      peer.push(presenceState(name, this.stateOf(existing)));
      peer.flush();
      return;
    }
    if ((mine?.size ?? 0) >= this.o.maxPerPeer) throw new LimitExceededError(`at most ${this.o.maxPerPeer} channels per connection`);
    if (!this.may(peer, name, 'join')) throw new ForbiddenError(`no policy allows ${who(peer)} to join ${name}`);
    let ch = existing;
    let opening: Promise<void> | null = null;
    if (!ch) {
      this.channels.set(name, (ch = new ChannelRoom(name, this.o.presence)));
      opening = this.bridge?.opened(name) ?? null;
      if (opening) ch.ready = false;
    }
    ch.members.set(peer, { epoch: this.o.auth?.epoch ?? 0, pending: ch.ready ? null : [ref], tracked: null });
    if (mine) mine.add(ch);
    else this.byPeer.set(peer, new Set([ch]));
    if (opening) {
      const room = ch;
      const settle = () => this.settle(room);
      opening.then(settle, settle);
      return;
    }
    if (!ch.ready) return;
    peer.push(joined(name, ref));
    peer.push(presenceState(name, this.stateOf(ch)));
    peer.flush();
  }

  /** The bridge has gathered the other nodes' presence: the room's joiners get `joined` and the state. */
  private settle(ch: ChannelRoom): void {
    if (this.channels.get(ch.name) !== ch || ch.ready) return;
    ch.ready = true;
    const epoch = this.o.auth?.epoch ?? 0;
    const state = this.stateOf(ch);
    for (const [peer, m] of ch.members) {
      const refs = m.pending;
      if (!refs) continue;
      m.pending = null;
      if (peer.closed) continue;
      // The policies may have changed during the wait.
      if (m.epoch !== epoch && !this.may(peer, ch.name, 'join')) {
        this.remove(peer, ch);
        for (const ref of refs) peer.push(errorMsgFrom(new ForbiddenError(`no policy allows ${who(peer)} to join ${ch.name}`), { ref }));
        peer.flush();
        continue;
      }
      m.epoch = epoch;
      for (const ref of refs) {
        peer.push(joined(ch.name, ref));
        peer.push(presenceState(ch.name, state));
      }
      peer.flush();
    }
  }

  /** presence_state: this node's presence and, in a cluster, the other nodes' (a key's metas together). */
  private stateOf(ch: ChannelRoom): PresenceMap {
    const state = ch.presence.state();
    for (const remote of this.bridge?.remoteState(ch.name) ?? []) {
      for (const [key, metas] of Object.entries(remote)) state[key] = state[key] ? [...state[key], ...metas] : metas;
    }
    return state;
  }

  leave(peer: Peer, name: string, ref?: Ref): void {
    const ch = this.channels.get(name);
    if (ch?.members.has(peer)) this.remove(peer, ch);
    peer.push(left(name, ref));
    peer.flush();
  }

  /** A client's broadcast: to the channel's other members (and itself with `self`). */
  broadcast(peer: Peer, name: string, event: string, payloadJson: string, self: boolean): void {
    const ch = this.joinedOrThrow(peer, name);
    const bytes = Buffer.byteLength(payloadJson);
    if (bytes > this.o.maxPayloadBytes) throw new TooLargeError(`a broadcast payload is at most ${this.o.maxPayloadBytes} bytes of JSON`);
    if (!this.may(peer, name, 'broadcast')) throw new ForbiddenError(`no policy allows ${who(peer)} to broadcast on ${name}`);
    const over = this.budgets.take(peer, bytes);
    if (over) throw new LimitExceededError(over);
    this.send(ch, broadcastMsg(name, event, payloadJson, keyOf(peer)), self ? null : peer);
    this.bridge?.broadcast(name, event, payloadJson, keyOf(peer));
  }

  /** `walcast.broadcast()` from SQL, committed: to every member. */
  fromSql(name: string, event: string, payloadJson: string): void {
    const ch = this.channels.get(name);
    if (ch) this.send(ch, broadcastMsg(name, event, payloadJson), null);
  }

  /**
   * Tracks (state) or untracks (null) this socket's presence in a channel it has joined; `label`:
   * the key a Supabase client chose (Meta.label).
   */
  presence(peer: Peer, name: string, state: Record<string, unknown> | null, label?: string): void {
    const ch = this.joinedOrThrow(peer, name);
    const m = ch.members.get(peer) as Member;
    if (!this.take(peer)) throw new LimitExceededError(`presence updates are limited to ${this.o.presencePerSecond} per second per connection`);
    let diff: PresenceDiff | null;
    if (state === null) diff = this.untrack(peer, ch, m);
    else {
      const bytes = Buffer.byteLength(JSON.stringify(state));
      if (bytes > this.o.maxPayloadBytes) throw new TooLargeError(`a presence state is at most ${this.o.maxPayloadBytes} bytes of JSON`);
      if (!this.may(peer, name, 'presence')) throw new ForbiddenError(`no policy allows ${who(peer)} to share presence on ${name}`);
      // Tracked as another user (the connection switched): that user's presence goes first.
      if (m.tracked !== null && m.tracked !== keyOf(peer)) this.dropPresence(peer, ch, m);
      diff = ch.presence.track(keyOf(peer), peer.id, state, bytes, label);
      m.tracked = keyOf(peer);
    }
    if (diff) this.presenceChanged(ch, diff);
  }

  /** Untracks a member's presence, under the key it was tracked under; null when it had none. */
  private untrack(peer: Peer, ch: ChannelRoom, m: Member | undefined): PresenceDiff | null {
    const diff = ch.presence.untrack(m?.tracked ?? keyOf(peer), peer.id);
    if (m) m.tracked = null;
    return diff;
  }

  private dropPresence(peer: Peer, ch: ChannelRoom, m: Member): void {
    const diff = this.untrack(peer, ch, m);
    if (diff) this.presenceChanged(ch, diff);
  }

  private presenceChanged(ch: ChannelRoom, diff: PresenceDiff): void {
    this.send(ch, presenceDiff(ch.name, diff.joins, diff.leaves), null);
    this.bridge?.presence(ch.name, diff);
  }

  /**
   * The policies are being read anew (slot recreated): nobody can be checked, so frames wait,
   * then go to the members allowed under the policies read (every membership is checked again:
   * the reload changed the epoch). Past the cap the oldest go: broadcasts are ephemeral, and a
   * reload that keeps failing must not hold memory without bound.
   */
  private defer(auth: Authorizer, ch: ChannelRoom, frame: string, except: Peer | null): void {
    if (!this.deferred) {
      this.deferred = [];
      void auth.whenReady().then(() => {
        const frames = this.deferred ?? [];
        this.deferred = null;
        for (const [c, f, e] of frames) this.send(c, f, e);
      });
    }
    if (this.deferred.length >= MAX_DEFERRED) {
      this.deferred.shift();
      this.droppedWhileLoading++;
    }
    this.deferred.push([ch, frame, except]);
  }

  /**
   * The socket's identity changed (token refresh): channels it may no longer join are left, and
   * in the others, what it tracked as another user (a Supabase connection switched) is untracked.
   */
  reauthorize(peer: Peer): void {
    for (const ch of [...(this.byPeer.get(peer) ?? [])]) {
      if (!this.may(peer, ch.name, 'join')) this.evict(peer, ch);
      else {
        const m = ch.members.get(peer);
        if (m && m.tracked !== null && m.tracked !== keyOf(peer)) this.dropPresence(peer, ch, m);
      }
    }
  }

  /** A socket closed: it leaves every channel, its presence with it. */
  removePeer(peer: Peer): void {
    this.budgets.forget(peer);
    const mine = this.byPeer.get(peer);
    if (!mine) return;
    for (const ch of [...mine]) this.remove(peer, ch);
  }

  private joinedOrThrow(peer: Peer, name: string): ChannelRoom {
    const ch = this.channels.get(name);
    if (!ch?.members.has(peer)) throw new BadRequestError(`join ${name} first`);
    return ch;
  }

  private may(peer: Peer, name: string, act: string): boolean {
    const auth = this.o.auth;
    if (!auth) return true;
    return peer.identity !== null && auth.mayAct(peer.identity, 'channel', name, act);
  }

  private remove(peer: Peer, ch: ChannelRoom): void {
    const m = ch.members.get(peer);
    ch.members.delete(peer);
    this.byPeer.get(peer)?.delete(ch);
    if (this.byPeer.get(peer)?.size === 0) this.byPeer.delete(peer);
    const diff = this.untrack(peer, ch, m);
    if (diff) this.presenceChanged(ch, diff);
    if (ch.members.size === 0 && ch.presence.keys === 0 && this.channels.get(ch.name) === ch) {
      this.channels.delete(ch.name);
      this.bridge?.closed(ch.name);
    }
  }

  /** To every member still allowed to be there (re-checked after policy changes), but `except`. */
  private send(ch: ChannelRoom, frame: string, except: Peer | null): void {
    const auth = this.o.auth;
    if (auth && !auth.ready) {
      this.defer(auth, ch, frame, except);
      return;
    }
    const epoch = auth?.epoch ?? 0;
    let evicted: Peer[] | null = null;
    for (const [peer, m] of ch.members) {
      // Not yet told `joined` (the room is opening): settle() sends the state as of then.
      if (m.pending) continue;
      if (m.epoch !== epoch) {
        if (peer.closed || !this.may(peer, ch.name, 'join')) {
          (evicted ??= []).push(peer);
          continue;
        }
        m.epoch = epoch;
      }
      if (peer === except || peer.closed) continue;
      peer.push(frame);
      this.touched.add(peer);
    }
    this.broadcasts++;
    // One corked write per socket per turn of the event loop, not one per message: the write
    // syscalls are what fan-out costs (bench/README.md, channels).
    if (!this.flushScheduled && this.touched.size > 0) {
      this.flushScheduled = true;
      setImmediate(this.flushTouched);
    }
    for (const peer of evicted ?? []) this.evict(peer, ch);
  }

  private evict(peer: Peer, ch: ChannelRoom): void {
    // Still waiting for `joined` (the room is opening): its joins are answered, on their refs.
    const refs = ch.members.get(peer)?.pending ?? [undefined];
    this.remove(peer, ch);
    if (peer.closed) return;
    for (const ref of refs) peer.push(errorMsgFrom(new ForbiddenError(`${who(peer)} may no longer join ${ch.name}`), { ref }));
    peer.push(left(ch.name));
    peer.flush();
  }

  private readonly flushTouched = (): void => {
    this.flushScheduled = false;
    for (const peer of this.touched) peer.flush();
    this.touched.clear();
  };

  /** One presence update from the socket's bucket; false when it is empty. */
  private take(peer: Peer): boolean {
    const now = this.now();
    let b = this.buckets.get(peer);
    if (!b) this.buckets.set(peer, (b = new TokenBucket({ burst: this.o.presenceBurst, perSecond: this.o.presencePerSecond }, now)));
    if (!b.has(1, now)) return false;
    b.take(1);
    return true;
  }
}

/** A peer's presence key: its user's id (its sockets are one key); the socket's own for anonymous clients and under --no-auth. */
function keyOf(peer: Peer): string {
  const identity = peer.identity;
  return identity && !isAnonymous(identity) ? identity.id : peer.id;
}

function who(peer: Peer): string {
  return peer.identity ? JSON.stringify(peer.identity.id) : 'this connection';
}
