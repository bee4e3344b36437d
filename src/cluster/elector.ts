// The capture-leader election (docs/dev/cluster-plan.md §4): a lease in the cluster's KV bucket.
// The key holds `{node, since}` (plus `epoch` from the first renew on); every write is a CAS on
// the key's revision, so of racers exactly one wins, and the revision of the winning write is
// the leader's epoch. The leader renews every renewMs; candidates read the key as often and take
// it when it is free (deleted, purged, never written) or when its revision has not changed for
// expiryMs of their own monotonic clock. A leader steps down when a renew loses its CAS, or when
// staleMs passed since it sent its last successful renew: checked first thing on every tick and
// in isLeader, so a process frozen (SIGSTOP) and woken (SIGCONT) notices before acting on it,
// and by a deadline timer at exactly staleMs (ticks alone could be up to renewMs late).
// Since staleMs < expiryMs and a candidate's clock starts only once it saw the renew stored, the
// old leader has stepped down by the time anyone else can win. States: elector-state.ts.
import { JetStreamApiError } from '@nats-io/jetstream';
import type { KV, KvEntry } from '@nats-io/kv';
import { CLUSTER_ELECTION, CLUSTER_KV } from '../constants.js';
import type { Logger } from '../log.js';
import { canElectorMove, DEPOSED, type DeposedReason, type ElectorState } from './elector-state.js';

export interface ElectorOptions {
  /** Bucket `walcast_<ns>_cluster` (history 1), opened by the caller. */
  kv: KV;
  /** Default CLUSTER_KV.capture. */
  key?: string;
  nodeId: string;
  /** The leader renews, candidates read the key, this often (default CLUSTER_ELECTION.renewMs). */
  renewMs?: number;
  /** A candidate takes the lease once its revision has not changed for this long. */
  expiryMs?: number;
  /** A leader without a successful renew for this long steps down. */
  staleMs?: number;
  /** After resign(), not a candidate for this long. */
  cooldownMs?: number;
  log: Logger;
  /** epoch = the KV revision of the winning write. */
  onElected: (epoch: number) => void;
  /** reason: DEPOSED (lost, stale, resigned, stopped). */
  onDeposed: (reason: DeposedReason) => void;
}

/** The JSON in the key. `epoch` is absent from the winning write (its revision is the epoch). */
interface LeaseValue {
  node: string;
  since: string;
  epoch?: number;
}

/** JetStream's "wrong last sequence": the key's revision was not the one the write expected. */
const CAS_CODES: readonly number[] = [10071, 10164];

export function isCasFailure(err: unknown): boolean {
  return err instanceof JetStreamApiError && CAS_CODES.includes(err.code);
}

export class Elector {
  private state: ElectorState = 'new';
  private timer: NodeJS.Timeout | null = null;
  /** While leader: fires when the lease goes stale unless a renew moved it on. */
  private deadline: NodeJS.Timeout | null = null;
  /** The tick's async step in flight (never rejects); at most one at a time. */
  private busy: Promise<void> | null = null;
  private stopping: Promise<void> | null = null;
  /** halt() (tests): no timer runs, none is armed, until resume(). */
  private halted = false;
  private readonly key: string;
  private readonly renewMs: number;
  private readonly expiryMs: number;
  private readonly staleMs: number;
  private readonly cooldownMs: number;
  private readonly log: Logger;

  // While leader: the epoch, and when (performance.now) the last successful write was sent.
  private leaderEpoch: number | null = null;
  private since = '';
  private lastRenewAt = 0;
  /** Revision of our last successful write, while it may still be the key's: release() deletes only that. */
  private ownRev: number | null = null;
  /** The key's revision last read, and when it was first seen (own monotonic clock). */
  private seenRev: number | null = null;
  private seenAt = 0;
  private seen: { node: string; epoch: number } | null = null;
  private cooldownUntil = 0;
  /** KV calls failing in a row: the first is a warning, the rest debug until one succeeds. */
  private failing = false;

  constructor(private readonly opts: ElectorOptions) {
    this.key = opts.key ?? CLUSTER_KV.capture;
    this.renewMs = opts.renewMs ?? CLUSTER_ELECTION.renewMs;
    this.expiryMs = opts.expiryMs ?? CLUSTER_ELECTION.expiryMs;
    this.staleMs = opts.staleMs ?? CLUSTER_ELECTION.staleMs;
    this.cooldownMs = opts.cooldownMs ?? CLUSTER_ELECTION.cooldownMs;
    if (!(this.renewMs > 0 && this.renewMs < this.staleMs && this.staleMs < this.expiryMs) || !(this.cooldownMs >= 0)) {
      throw new RangeError(`election timings need 0 < renewMs < staleMs < expiryMs (got ${this.renewMs}, ${this.staleMs}, ${this.expiryMs}) and cooldownMs >= 0`);
    }
    this.log = opts.log.child({ elector: opts.nodeId, key: this.key });
  }

  get currentState(): ElectorState {
    return this.state;
  }

  /** Leader, and its lease not stale by its own clock (false at once after a freeze, before any tick). */
  get isLeader(): boolean {
    return this.state === 'leader' && performance.now() - this.lastRenewAt < this.staleMs;
  }

  /** The epoch while isLeader. */
  get epoch(): number | null {
    return this.isLeader ? this.leaderEpoch : null;
  }

  /** The last holder seen in the key (this node while leader); null when it was free. */
  get holder(): { node: string; epoch: number } | null {
    return this.seen ? { ...this.seen } : null;
  }

  start(): void {
    if (this.state !== 'new') return;
    this.move('candidate');
    this.timer = setInterval(() => this.onTimer(), this.renewMs);
    this.onTimer();
  }

  /** Leader: step down (onDeposed('resigned')), delete the key if it is still ours, sit out cooldownMs. Else nothing. */
  async resign(): Promise<void> {
    if (this.state !== 'leader') return;
    this.cooldownUntil = performance.now() + this.cooldownMs;
    // Deposed before the key is freed: no one else can be elected while this one still leads.
    this.leave('cooldown', DEPOSED.resigned);
    await this.settle();
    await this.release();
  }

  /** Resigns if leader (onDeposed('stopped')), deletes the key if ours, stops the timer. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.clearTimer();
      if (this.state === 'leader') this.leave('stopped', DEPOSED.stopped);
      else if (this.state !== 'stopped') this.move('stopped');
      await this.settle();
      await this.release();
    })();
    return this.stopping;
  }

  /**
   * For tests: freezes this elector like SIGSTOP does (no ticks) without touching the key.
   * A step already in flight still completes.
   */
  halt(): void {
    this.halted = true;
    this.clearTimer();
  }

  /** For tests: wakes a halted elector like SIGCONT: the overdue tick runs at once. */
  resume(): void {
    if (!this.halted || this.state === 'stopped' || this.state === 'new') return;
    this.halted = false;
    this.timer = setInterval(() => this.onTimer(), this.renewMs);
    this.onTimer();
    this.armDeadline();
  }

  // --- ticks -----------------------------------------------------------------------------------

  private onTimer(): void {
    try {
      const now = performance.now();
      // Staleness first, synchronously, even while a renew hangs: nothing may act on a stale lease.
      this.checkStale(now);
      if (this.state === 'cooldown' && now >= this.cooldownUntil) this.move('candidate');
      if (this.busy || this.state === 'stopped' || this.state === 'new') return;
      this.busy = this.step()
        .then(() => this.recovered())
        .catch((err: unknown) => this.failed(err))
        .finally(() => {
          this.busy = null;
        });
    } catch (err) {
      this.log.error({ err }, 'election tick failed');
    }
  }

  private step(): Promise<void> {
    if (this.state === 'leader') return this.renew();
    if (this.state === 'candidate') return this.contend();
    return this.read().then(() => {}); // cooldown: only watch
  }

  private async renew(): Promise<void> {
    const epoch = this.leaderEpoch;
    const rev = this.ownRev;
    if (epoch === null || rev === null) throw new Error('leader without epoch or revision');
    const sentAt = performance.now();
    let next: number;
    try {
      next = await this.opts.kv.update(this.key, this.value(epoch), rev, this.staleMs);
    } catch (err) {
      if (!isCasFailure(err)) throw err; // a timeout, NATS away: retried next tick until stale
      await this.renewLost(epoch);
      return;
    }
    this.ownRev = next;
    if (!this.stillLeader(epoch)) return; // stepped down meanwhile: release() deletes via ownRev
    this.lastRenewAt = sentAt;
    // The answer may come after a freeze: stale all the same if it was sent too long ago.
    if (!this.checkStale()) this.armDeadline();
  }

  /** Leader whose last successful renew was sent staleMs ago or more: steps down. True if it did. */
  private checkStale(now = performance.now()): boolean {
    if (this.state !== 'leader' || now - this.lastRenewAt < this.staleMs) return false;
    this.leave('candidate', DEPOSED.stale, { sinceRenewMs: Math.round(now - this.lastRenewAt) });
    return true;
  }

  private armDeadline(): void {
    if (this.deadline) clearTimeout(this.deadline);
    this.deadline = null;
    if (this.state !== 'leader' || this.halted) return;
    this.deadline = setTimeout(
      () => {
        this.deadline = null;
        try {
          if (!this.checkStale()) this.armDeadline(); // fired a hair early (the loop's cached clock)
        } catch (err) {
          this.log.error({ err }, 'election deadline failed');
        }
      },
      Math.max(0, Math.ceil(this.lastRenewAt + this.staleMs - performance.now())),
    );
  }

  /** A renew's CAS failed: someone else wrote, unless our own earlier renew (timed out here) landed. */
  private async renewLost(epoch: number): Promise<void> {
    const e = await this.read();
    if (!this.stillLeader(epoch)) return;
    const v = e ? parseValue(e) : null;
    if (e && v?.node === this.opts.nodeId && v.epoch === epoch) {
      this.ownRev = e.revision; // ours: go on from it (lastRenewAt stays: when it was sent is unknown)
      this.seen = { node: this.opts.nodeId, epoch };
      return;
    }
    this.ownRev = null;
    this.leave('candidate', DEPOSED.lost, { holder: this.seen });
  }

  private async contend(): Promise<void> {
    const e = await this.read();
    if (this.state !== 'candidate') return;
    if (e === null) {
      await this.tryWrite(() => this.opts.kv.create(this.key, this.value()), 'free');
    } else if (e.revision === this.seenRev && performance.now() - this.seenAt >= this.expiryMs) {
      this.log.info({ holder: this.seen, revision: e.revision, unchangedMs: Math.round(performance.now() - this.seenAt) }, 'capture lease expired: taking it');
      await this.tryWrite(() => this.opts.kv.update(this.key, this.value(), e.revision, this.staleMs), 'expired');
    }
  }

  /** One CAS attempt to take the lease; winning makes this node leader with epoch = the revision written. */
  private async tryWrite(write: () => Promise<number>, how: string): Promise<void> {
    const sentAt = performance.now();
    let rev: number;
    try {
      rev = await write();
    } catch (err) {
      if (!isCasFailure(err)) throw err;
      this.log.debug({ how }, 'lost the race for the capture lease');
      await this.read(); // see the winner
      return;
    }
    this.ownRev = rev;
    if (this.state !== 'candidate') return; // stopped meanwhile: stop() deletes via ownRev
    this.leaderEpoch = rev;
    this.lastRenewAt = sentAt;
    this.seen = { node: this.opts.nodeId, epoch: rev };
    this.move('leader');
    this.armDeadline();
    this.log.info({ epoch: rev, how }, 'elected capture leader');
    this.emit(() => this.opts.onElected(rev));
  }

  /** Reads the key: the holder, and the revision's first sighting. null: the key is free. */
  private async read(): Promise<KvEntry | null> {
    const e = await this.opts.kv.get(this.key);
    const now = performance.now();
    if (e === null || e.operation !== 'PUT') {
      this.seen = null;
      return null;
    }
    if (e.revision !== this.seenRev) {
      this.seenRev = e.revision;
      this.seenAt = now;
    }
    const v = parseValue(e);
    if (v === null) this.log.warn({ revision: e.revision }, 'capture lease value unreadable: treated as held until it expires');
    this.seen = { node: v?.node ?? '', epoch: v?.epoch ?? e.revision };
    return e;
  }

  // --- transitions -----------------------------------------------------------------------------

  private move(to: ElectorState): void {
    if (!canElectorMove(this.state, to)) throw new Error(`elector cannot move ${this.state} → ${to}`);
    this.state = to;
  }

  /** Leaves `leader` and says so (onDeposed) before anything else happens. */
  private leave(to: ElectorState, reason: DeposedReason, detail?: Record<string, unknown>): void {
    const epoch = this.leaderEpoch;
    this.move(to);
    this.leaderEpoch = null;
    this.armDeadline(); // clears it
    this.log.info({ epoch, reason, ...detail }, 'capture leader stepped down');
    this.emit(() => this.opts.onDeposed(reason));
  }

  private stillLeader(epoch: number): boolean {
    return this.state === 'leader' && this.leaderEpoch === epoch;
  }

  /** Deletes the key if it still holds our last write (previousSeq); else it is someone else's. */
  private async release(): Promise<void> {
    const rev = this.ownRev;
    if (rev === null) return;
    try {
      await this.opts.kv.delete(this.key, { previousSeq: rev });
      this.log.info({ revision: rev }, 'capture lease released');
      this.seen = null;
    } catch (err) {
      if (!isCasFailure(err)) {
        this.log.warn({ err }, 'could not release the capture lease: it expires instead');
        return;
      }
    }
    if (this.ownRev === rev) this.ownRev = null;
  }

  // --- plumbing --------------------------------------------------------------------------------

  private value(epoch?: number): string {
    if (epoch === undefined) this.since = new Date().toISOString();
    const v: LeaseValue = { node: this.opts.nodeId, since: this.since, ...(epoch === undefined ? {} : { epoch }) };
    return JSON.stringify(v);
  }

  private async settle(): Promise<void> {
    while (this.busy) await this.busy;
  }

  /** Both timers: a halted elector does nothing at all until resume(). */
  private clearTimer(): void {
    if (this.timer) clearInterval(this.timer);
    if (this.deadline) clearTimeout(this.deadline);
    this.timer = null;
    this.deadline = null;
  }

  private emit(call: () => void): void {
    try {
      call();
    } catch (err) {
      this.log.error({ err }, 'election callback threw');
    }
  }

  private recovered(): void {
    if (this.failing) this.log.info('capture lease: NATS KV answers again');
    this.failing = false;
  }

  private failed(err: unknown): void {
    if (this.failing) this.log.debug({ err, state: this.state }, 'capture lease: KV call failed again');
    else this.log.warn({ err, state: this.state }, 'capture lease: KV call failed; retrying every tick');
    this.failing = true;
  }
}

function parseValue(e: KvEntry): LeaseValue | null {
  try {
    const v = e.json<Partial<LeaseValue>>();
    if (typeof v?.node !== 'string') return null;
    return { node: v.node, since: String(v.since ?? ''), ...(Number.isSafeInteger(v.epoch) ? { epoch: v.epoch } : {}) };
  } catch {
    return null;
  }
}
