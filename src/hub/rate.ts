// Token buckets for what clients send on channels: presence updates per connection, and
// broadcasts per connection and per user (messages and payload bytes). A user's budget is
// shared by all its connections, so opening more sockets does not buy more throughput; it is
// kept only while the user has a connection that used it, so the map stays bounded by the
// connected users.
import type { Peer } from './types.js';
import { isAnonymous } from '../auth/jwt.js';

/** A bucket of `burst` tokens, refilled at `perSecond`. */
export interface Rate {
  burst: number;
  perSecond: number;
}

export interface BroadcastRate {
  messages: Rate;
  /** Payload bytes (as JSON). */
  bytes: Rate;
}

export class TokenBucket {
  private tokens: number;
  private at: number;
  constructor(
    readonly rate: Rate,
    now: number,
  ) {
    this.tokens = rate.burst;
    this.at = now;
  }

  /** Whether `n` tokens are there (after refilling up to now); takes nothing. */
  has(n: number, now: number): boolean {
    this.tokens = Math.min(this.rate.burst, this.tokens + (Math.max(0, now - this.at) / 1000) * this.rate.perSecond);
    this.at = now;
    return this.tokens >= n;
  }

  take(n: number): void {
    this.tokens -= n;
  }
}

class Budget {
  readonly messages: TokenBucket;
  readonly bytes: TokenBucket;
  constructor(r: BroadcastRate, now: number) {
    this.messages = new TokenBucket(r.messages, now);
    this.bytes = new TokenBucket(r.bytes, now);
  }
}

interface UserBudget {
  budget: Budget;
  /** Connections that drew on it and are still open. */
  peers: number;
}

export interface BroadcastBudgetOptions {
  perConnection: BroadcastRate;
  perUser: BroadcastRate;
  now: () => number;
}

/** Per connection and per user broadcast budgets. */
export class BroadcastBudgets {
  private readonly byPeer = new WeakMap<Peer, Budget>();
  private readonly byUser = new Map<string, UserBudget>();
  /** The user a connection was counted under (identity ids do not change on refresh). */
  private readonly userOf = new WeakMap<Peer, string>();

  constructor(private readonly o: BroadcastBudgetOptions) {}

  /** Users holding a budget (for tests and status). */
  get users(): number {
    return this.byUser.size;
  }

  /**
   * Takes one message of `bytes` from the connection's and its user's budgets, all or nothing:
   * null when taken, else which limit was reached. Refused messages take nothing, so a flooder
   * still gets its allowed rate through, and no more.
   */
  take(peer: Peer, bytes: number): string | null {
    const now = this.o.now();
    let mine = this.byPeer.get(peer);
    if (!mine) this.byPeer.set(peer, (mine = new Budget(this.o.perConnection, now)));
    const user = this.userBudget(peer, now);
    const over = exceeded(mine, bytes, now, 'connection') ?? (user ? exceeded(user, bytes, now, 'user') : null);
    if (over) return over;
    for (const b of user ? [mine, user] : [mine]) {
      b.messages.take(1);
      b.bytes.take(bytes);
    }
    return null;
  }

  /** A connection closed: its user's budget goes with the user's last connection. */
  forget(peer: Peer): void {
    const id = this.userOf.get(peer);
    if (id === undefined) return;
    this.userOf.delete(peer);
    const u = this.byUser.get(id);
    if (u && --u.peers <= 0) this.byUser.delete(id);
  }

  private userBudget(peer: Peer, now: number): Budget | null {
    let id = this.userOf.get(peer);
    if (id === undefined) {
      // Under --no-auth there is no user, and anonymous clients (an anon key) are not one user:
      // the connection's own budget is all there is.
      if (!peer.identity || isAnonymous(peer.identity)) return null;
      id = peer.identity.id;
      this.userOf.set(peer, id);
      const u = this.byUser.get(id);
      if (u) u.peers++;
      else this.byUser.set(id, { budget: new Budget(this.o.perUser, now), peers: 1 });
    }
    return this.byUser.get(id)?.budget ?? null;
  }
}

function exceeded(b: Budget, bytes: number, now: number, per: string): string | null {
  const m = b.messages.rate;
  const y = b.bytes.rate;
  if (!b.messages.has(1, now)) return `broadcasts are limited to ${m.perSecond} per second per ${per} (bursts of ${m.burst})`;
  if (!b.bytes.has(bytes, now)) return `broadcasts are limited to ${y.perSecond} payload bytes per second per ${per} (bursts of ${y.burst})`;
  return null;
}
