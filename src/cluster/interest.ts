// An edge process's interests in the interest bucket (docs/dev/cluster-plan.md, item 6; key
// format in src/cluster/interest-keys.ts). Subscriptions acquire (table, route) interests,
// refcounted per key: the first puts the KV key, the last release lets it linger (30 s by
// default) before the delete, so clients resubscribing cause no KV churn. The put's revision is
// what the edge later waits for capture to have applied (its heartbeat's appliedRev ≥ it).
//
// Writes go through one queue, at most writeConcurrency in flight: a burst of thousands of
// subscriptions becomes a steady stream of puts, and a key acquired and released again before its
// turn costs nothing. A failed write is retried with backoff; callers never see an error (the
// interest is late, not lost: the edge waits for its revision either way).
//
// Keys an incarnation leaves behind (a crash, or close() not finishing in time) are not cleaned
// up by a later incarnation of the same node, which cannot know the earlier random id: capture
// drops incarnations whose node is dead (InterestTable.dropInc; the presence key `<inc>.node`
// maps each incarnation to its node id) and may delete their keys.
import type { KV } from '@nats-io/kv';
import { CLUSTER_INTEREST } from '../constants.js';
import type { Logger } from '../log.js';
import { RetryBackoff } from '../util/backoff.js';
import { dataInterestKey, isFollowableRoute, newIncarnation, presenceKey, type PresenceValue } from './interest-keys.js';
import { token } from './subjects.js';

export { newIncarnation };

/** One held interest. */
export interface Interest {
  /** The KV key it holds. */
  readonly key: string;
  /** The route followed: null for the whole table (asked for, or the fallback past maxRouteKeys). */
  readonly route: string | null;
  /** The KV revision of the put that stored the key; null if the registry closed (or the interest was let go) first. */
  readonly revision: Promise<number | null>;
  /** Lets go of it; idempotent. */
  release(): void;
}

export interface InterestRegistryOptions {
  kv: Pick<KV, 'put' | 'delete'>;
  nodeId: string;
  log: Logger;
  /** This process's incarnation; newIncarnation() by default. */
  inc?: string;
  lingerMs?: number;
  maxRouteKeys?: number;
  writeConcurrency?: number;
  retryBaseMs?: number;
  retryCapMs?: number;
  closeTimeoutMs?: number;
}

export interface InterestRegistryStats {
  /** Keys held or still in the KV (lingering, being deleted), presence included. */
  keys: number;
  routeKeys: number;
  /** Route interests that followed their whole table instead (maxRouteKeys reached). */
  fallbacks: number;
  /** KV writes done, and failed (each retried). */
  writes: number;
  failures: number;
  /** Keys waiting for a write. */
  queued: number;
}

interface Generation {
  readonly promise: Promise<number | null>;
  resolve(rev: number | null): void;
}

function generation(): Generation {
  let settle: (rev: number | null) => void = () => {};
  const promise = new Promise<number | null>((r) => (settle = r));
  let done = false;
  return {
    promise,
    resolve(rev) {
      if (done) return;
      done = true;
      settle(rev);
    },
  };
}

const RESOLVED_NULL: Promise<number | null> = Promise.resolve(null);

/** A key's wanted and stored state. */
interface KeyState {
  readonly route: boolean;
  refs: number;
  /** Should be in the KV (held, or lingering). */
  desired: boolean;
  /** Is in the KV (a put succeeded, no delete since). */
  written: boolean;
  rev: number;
  gen: Generation;
  linger: NodeJS.Timeout | null;
}

export class InterestRegistry {
  readonly inc: string;
  private readonly kv: Pick<KV, 'put' | 'delete'>;
  private readonly log: Logger;
  private readonly lingerMs: number;
  private readonly maxRouteKeys: number;
  private readonly concurrency: number;
  private readonly closeTimeoutMs: number;
  private readonly backoff: RetryBackoff;
  private readonly presence: string;
  private readonly presenceValue: string;
  private readonly keys = new Map<string, KeyState>();
  /** Keys to write, in order; a key queued twice is written once. */
  private readonly queue = new Set<string>();
  private pumping: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  private routeKeys = 0;
  private fallbacks = 0;
  private writes = 0;
  private failures = 0;
  private closed = false;
  /** close() gave up: the queue is abandoned. */
  private abandoned = false;
  private closing: Promise<void> | null = null;

  constructor(o: InterestRegistryOptions) {
    this.inc = o.inc ?? newIncarnation();
    this.kv = o.kv;
    this.log = o.log;
    this.lingerMs = o.lingerMs ?? CLUSTER_INTEREST.lingerMs;
    this.maxRouteKeys = o.maxRouteKeys ?? CLUSTER_INTEREST.maxRouteKeys;
    this.concurrency = Math.max(1, o.writeConcurrency ?? CLUSTER_INTEREST.writeConcurrency);
    this.closeTimeoutMs = o.closeTimeoutMs ?? CLUSTER_INTEREST.closeTimeoutMs;
    this.backoff = new RetryBackoff(o.retryBaseMs ?? CLUSTER_INTEREST.retryBaseMs, o.retryCapMs ?? CLUSTER_INTEREST.retryCapMs);
    this.presence = presenceKey(this.inc);
    const v: PresenceValue = { node: o.nodeId, started: new Date().toISOString() };
    this.presenceValue = JSON.stringify(v);
  }

  /** Puts the presence key `<inc>.node` (capture learns of this incarnation); resolves with its revision. */
  start(): Promise<number | null> {
    if (this.closed) return RESOLVED_NULL;
    return this.ref(this.presence, false);
  }

  /**
   * Follows a table (`route` null) or one route of it: `route` is a route token as
   * src/cluster/route.ts gives it (termRouteTokens: a name token, or `=0` for NULL). Schema and
   * table are names as in the database. Past maxRouteKeys a route interest follows the whole table.
   */
  acquire(schema: string, table: string, route: string | null): Interest {
    if (route !== null && !isFollowableRoute(route)) throw new RangeError(`not a route token one can follow: ${JSON.stringify(route)}`);
    const schemaTok = token(schema);
    const tableTok = token(table);
    let key = dataInterestKey(this.inc, schemaTok, tableTok, route);
    let followed = route;
    if (route !== null && !this.keys.has(key) && this.routeKeys >= this.maxRouteKeys) {
      key = dataInterestKey(this.inc, schemaTok, tableTok, null);
      followed = null;
      if (this.fallbacks++ === 0) this.log.warn({ maxRouteKeys: this.maxRouteKeys, schema, table }, 'too many route interests: following whole tables instead');
    }
    if (this.closed) return { key, route: followed, revision: RESOLVED_NULL, release: () => {} };
    const revision = this.ref(key, followed !== null);
    let released = false;
    return {
      key,
      route: followed,
      revision,
      release: () => {
        if (released) return;
        released = true;
        this.unref(key);
      },
    };
  }

  stats(): InterestRegistryStats {
    return { keys: this.keys.size, routeKeys: this.routeKeys, fallbacks: this.fallbacks, writes: this.writes, failures: this.failures, queued: this.queue.size };
  }

  /**
   * Deletes this incarnation's keys, within closeTimeoutMs (NATS down: the keys stay, and capture
   * expires the incarnation). Interests acquired afterwards are inert.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      for (const [key, st] of this.keys) {
        if (st.linger) clearTimeout(st.linger);
        st.linger = null;
        st.desired = false;
        st.gen.resolve(null);
        if (key !== this.presence) this.enqueue(key);
      }
      // The presence key queued last: the incarnation stays known while its interests go.
      this.queue.delete(this.presence);
      if (this.keys.has(this.presence)) this.enqueue(this.presence);
      this.wake?.();
      let timer: NodeJS.Timeout | undefined;
      const bound = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), this.closeTimeoutMs)));
      const done = await Promise.race([(this.pumping ?? Promise.resolve()).then(() => true), bound]);
      clearTimeout(timer);
      if (!done) {
        this.abandoned = true;
        this.wake?.();
        this.log.warn({ inc: this.inc, left: this.queue.size }, 'interest keys not all deleted at close; capture expires them with this incarnation');
      }
    })();
    return this.closing;
  }

  private ref(key: string, route: boolean): Promise<number | null> {
    let st = this.keys.get(key);
    if (!st) {
      st = { route, refs: 0, desired: false, written: false, rev: 0, gen: generation(), linger: null };
      this.keys.set(key, st);
      if (route) this.routeKeys++;
    }
    st.refs++;
    if (st.linger) {
      clearTimeout(st.linger);
      st.linger = null;
    }
    if (!st.desired) {
      st.desired = true;
      st.gen = generation();
      this.enqueue(key);
    }
    return st.gen.promise;
  }

  private unref(key: string): void {
    const st = this.keys.get(key);
    if (!st || st.refs === 0 || --st.refs > 0 || this.closed) return;
    const drop = (): void => {
      st.linger = null;
      if (st.refs > 0 || !st.desired) return;
      st.desired = false;
      st.gen.resolve(null);
      this.enqueue(key);
    };
    if (this.lingerMs <= 0) drop();
    else {
      st.linger = setTimeout(drop, this.lingerMs);
      st.linger.unref();
    }
  }

  private enqueue(key: string): void {
    this.queue.add(key);
    if (this.pumping === null && !this.abandoned) this.pumping = this.pump();
  }

  /** Writes queued keys, a batch of at most `concurrency` at a time, until the queue is empty. */
  private async pump(): Promise<void> {
    try {
      while (this.queue.size > 0 && !this.abandoned) {
        const batch: string[] = [];
        for (const key of this.queue) {
          batch.push(key);
          if (batch.length >= this.concurrency) break;
        }
        for (const key of batch) this.queue.delete(key);
        const failed = (await Promise.all(batch.map((key) => this.sync(key)))).filter((k): k is string => k !== null);
        if (failed.length === 0) {
          this.backoff.reset();
          continue;
        }
        // Retried after the keys queued meanwhile: one bad key does not hold back the rest.
        for (const key of failed) this.queue.add(key);
        if (this.abandoned) break;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, this.backoff.next());
          timer.unref();
          this.wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.wake = null;
      }
    } finally {
      // In the same turn as the loop's last check: a key queued after it starts a new pump.
      this.pumping = null;
    }
  }

  /** Brings one key's KV state to its wanted state; the key when that failed (retry), else null. */
  private async sync(key: string): Promise<string | null> {
    const st = this.keys.get(key);
    if (!st) return null;
    try {
      if (st.desired && !st.written) {
        const rev = await this.kv.put(key, key === this.presence ? this.presenceValue : '1');
        this.writes++;
        st.written = true;
        st.rev = rev;
        // Released meanwhile: the delete is queued by then (the release enqueued the key).
        if (st.desired) st.gen.resolve(rev);
      } else if (st.desired) {
        st.gen.resolve(st.rev);
      } else if (st.written) {
        await this.kv.delete(key);
        this.writes++;
        st.written = false;
      }
    } catch (err) {
      this.failures++;
      this.log.debug({ key, err: (err as Error).message }, 'an interest key write failed; retrying');
      return key;
    }
    if (!st.desired && !st.written && st.refs === 0 && st.linger === null && this.keys.get(key) === st) {
      this.keys.delete(key);
      if (st.route) this.routeKeys--;
    }
    return null;
  }
}
