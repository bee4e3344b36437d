// Channels: broadcast (typing indicators) and presence (online indicators) on the same sockets
// and policies as row changes (docs/AUTHORIZATION.md §8, docs/PROTOCOL.md §5-6). Joining needs the `join` action on
// {kind: "channel", name}, sending `broadcast`, tracking `presence`. Membership is checked
// again whenever policies or relations changed since it was last checked, before anything is
// delivered, so a member removed from a room stops receiving its channel at once.
// What clients send is bounded (issue 11): presence per user and per channel (presence.ts),
// broadcasts per connection and per user (rate.ts).
import type { Authorizer } from '../auth/types.js';
import { BadRequestError, ForbiddenError, LimitExceededError, TooLargeError } from '../errors.js';
import { broadcastMsg, joined, left, presenceDiff, presenceState } from '../protocol/frames.js';
import { errorMsgFrom } from '../protocol/wire-errors.js';
import type { Ref } from '../protocol/types.js';
import type { SERVER_DEFAULTS } from '../constants.js';
import { ChannelPresence, type PresenceDiff, type PresenceLimits } from './presence.js';
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
}

class ChannelRoom {
  readonly members = new Map<Peer, Member>();
  readonly presence: ChannelPresence;
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
      peer.push(joined(name, ref));
      peer.push(presenceState(name, existing.presence.state()));
      peer.flush();
      return;
    }
    if ((mine?.size ?? 0) >= this.o.maxPerPeer) throw new LimitExceededError(`at most ${this.o.maxPerPeer} channels per connection`);
    if (!this.may(peer, name, 'join')) throw new ForbiddenError(`no policy allows ${who(peer)} to join ${name}`);
    let ch = existing;
    if (!ch) this.channels.set(name, (ch = new ChannelRoom(name, this.o.presence)));
    ch.members.set(peer, { epoch: this.o.auth?.epoch ?? 0 });
    if (mine) mine.add(ch);
    else this.byPeer.set(peer, new Set([ch]));
    peer.push(joined(name, ref));
    peer.push(presenceState(name, ch.presence.state()));
    peer.flush();
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
  }

  /** `walcast.broadcast()` from SQL, committed: to every member. */
  fromSql(name: string, event: string, payloadJson: string): void {
    const ch = this.channels.get(name);
    if (ch) this.send(ch, broadcastMsg(name, event, payloadJson), null);
  }

  /** Tracks (state) or untracks (null) this socket's presence in a channel it has joined. */
  presence(peer: Peer, name: string, state: Record<string, unknown> | null): void {
    const ch = this.joinedOrThrow(peer, name);
    if (!this.take(peer)) throw new LimitExceededError(`presence updates are limited to ${this.o.presencePerSecond} per second per connection`);
    let diff: PresenceDiff | null;
    if (state === null) diff = ch.presence.untrack(keyOf(peer), peer.id);
    else {
      const bytes = Buffer.byteLength(JSON.stringify(state));
      if (bytes > this.o.maxPayloadBytes) throw new TooLargeError(`a presence state is at most ${this.o.maxPayloadBytes} bytes of JSON`);
      if (!this.may(peer, name, 'presence')) throw new ForbiddenError(`no policy allows ${who(peer)} to share presence on ${name}`);
      diff = ch.presence.track(keyOf(peer), peer.id, state, bytes);
    }
    if (diff) this.send(ch, presenceDiff(name, diff.joins, diff.leaves), null);
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

  /** The socket's identity changed (token refresh): channels it may no longer join are left. */
  reauthorize(peer: Peer): void {
    for (const ch of [...(this.byPeer.get(peer) ?? [])]) {
      if (this.may(peer, ch.name, 'join')) continue;
      this.evict(peer, ch);
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
    ch.members.delete(peer);
    this.byPeer.get(peer)?.delete(ch);
    if (this.byPeer.get(peer)?.size === 0) this.byPeer.delete(peer);
    const diff = ch.presence.untrack(keyOf(peer), peer.id);
    if (diff) this.send(ch, presenceDiff(ch.name, diff.joins, diff.leaves), null);
    if (ch.members.size === 0 && ch.presence.keys === 0) this.channels.delete(ch.name);
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
    this.remove(peer, ch);
    if (peer.closed) return;
    peer.push(errorMsgFrom(new ForbiddenError(`${who(peer)} may no longer join ${ch.name}`)));
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

/** Presence key: the user (its sockets are one key), or the socket under --no-auth. */
function keyOf(peer: Peer): string {
  return peer.identity?.id ?? peer.id;
}

function who(peer: Peer): string {
  return peer.identity ? JSON.stringify(peer.identity.id) : 'this connection';
}
