// Who catches up, and how much, in each turn of the event loop. Catching up from the history
// window is the one piece of work a client can ask for in bulk (100 subscriptions per socket,
// each resuming from the window's floor), so it is bounded three ways:
//   - a global budget of work units per turn, shared round-robin by every running catch-up, after
//     which the turn ends (setImmediate) and live dispatch and socket I/O run;
//   - at most `perConnection` running catch-ups per connection and `perUser` per user (identity
//     id; jobs without one are bounded per connection only);
//   - the rest wait, per connection in the order they came, and start as slots free up. A waiting
//     job keeps its position; nothing is skipped.
// Pure: it knows jobs by their connection and user and calls back to do the work.

export interface CatchUpLimits {
  /** Work units per turn (the caller's measure; catchup.ts: changes examined and KiB sent). */
  budgetPerTurn: number;
  perConnection: number;
  perUser: number;
}

export interface CatchUpJob {
  /** The connection (peer) it belongs to. */
  readonly conn: object;
  /** Its user (identity id), null when connections have none (--no-auth). */
  readonly user: string | null;
}

export interface CatchUpStats {
  running: number;
  waiting: number;
  /** Most jobs waiting at once. */
  maxWaiting: number;
  /** Most jobs of one connection / one user running at once (started, not yet removed). */
  maxRunningPerConnection: number;
  maxRunningPerUser: number;
  /** Turns that did work, and the most units one turn spent. */
  turns: number;
  maxTurnUnits: number;
}

interface Lane<J> {
  running: number;
  /** Waiting jobs of this connection, oldest first, with their arrival numbers. */
  queue: { job: J; seq: number }[];
}

interface Group<J> {
  running: number;
  lanes: Map<object, Lane<J>>;
}

/** Smallest share of the budget one job gets per visit, however many run. */
const MIN_QUANTUM = 16;

export class CatchUpScheduler<J extends CatchUpJob> {
  /** Running jobs, in round-robin order: a job that worked goes to the back. */
  private readonly running = new Set<J>();
  private readonly groups = new Map<object | string, Group<J>>();
  private waitingCount = 0;
  private arrivals = 0;
  readonly stats: CatchUpStats = {
    running: 0, waiting: 0, maxWaiting: 0, maxRunningPerConnection: 0, maxRunningPerUser: 0, turns: 0, maxTurnUnits: 0,
  };

  constructor(readonly limits: CatchUpLimits) {}

  get size(): number {
    return this.running.size + this.waitingCount;
  }

  isRunning(job: J): boolean {
    return this.running.has(job);
  }

  /** Adds a job: running at once when its connection and user have a free slot, else waiting. */
  add(job: J): boolean {
    const group = this.group(job, true) as Group<J>;
    const lane = this.lane(group, job.conn);
    if (lane.queue.length === 0 && this.fits(job, group, lane)) {
      this.start(job, group, lane);
      this.sync();
      return true;
    }
    lane.queue.push({ job, seq: this.arrivals++ });
    this.waitingCount++;
    this.stats.maxWaiting = Math.max(this.stats.maxWaiting, this.waitingCount);
    this.sync();
    return false;
  }

  /** Removes a job (done, ended, or its connection closed); starts waiting ones that now fit. */
  remove(job: J): void {
    const group = this.group(job, false);
    const lane = group?.lanes.get(job.conn);
    if (!group || !lane) return;
    if (this.running.delete(job)) {
      lane.running--;
      group.running--;
      this.promote(group);
    } else {
      const i = lane.queue.findIndex((w) => w.job === job);
      if (i < 0) return;
      lane.queue.splice(i, 1);
      this.waitingCount--;
    }
    if (lane.running === 0 && lane.queue.length === 0) group.lanes.delete(job.conn);
    if (group.lanes.size === 0) this.groups.delete(this.groupKey(job));
    this.sync();
  }

  /**
   * One turn: running jobs take turns, each given a share of the budget per visit, until the
   * budget is spent or no job can use it. `step` does a job's work within `units` and returns the
   * units it spent (0: it cannot go on now, e.g. its socket is full; more than `units` only by
   * its last indivisible piece); it may remove jobs and add others. Returns the units spent.
   */
  runTurn(step: (job: J, units: number) => number): number {
    let budget = this.limits.budgetPerTurn;
    const quantum = Math.max(MIN_QUANTUM, Math.ceil(budget / Math.max(1, this.running.size)));
    // Iterating a Set visits what is re-added during the loop: a job that worked goes to the back
    // and comes round again while budget is left; one that spent nothing stays put and is not
    // visited twice, so the loop ends.
    for (const job of this.running) {
      if (budget <= 0) break;
      const spent = step(job, Math.min(quantum, budget));
      if (spent <= 0) continue;
      budget -= spent;
      if (this.running.delete(job)) this.running.add(job);
    }
    const used = this.limits.budgetPerTurn - budget;
    if (used > 0) {
      this.stats.turns++;
      this.stats.maxTurnUnits = Math.max(this.stats.maxTurnUnits, used);
    }
    return used;
  }

  private fits(job: J, group: Group<J>, lane: Lane<J>): boolean {
    return lane.running < this.limits.perConnection && (job.user === null || group.running < this.limits.perUser);
  }

  private start(job: J, group: Group<J>, lane: Lane<J>): void {
    lane.running++;
    group.running++;
    this.running.add(job);
    this.stats.maxRunningPerConnection = Math.max(this.stats.maxRunningPerConnection, lane.running);
    if (job.user !== null) this.stats.maxRunningPerUser = Math.max(this.stats.maxRunningPerUser, group.running);
  }

  /** Starts the group's oldest waiting jobs that fit (a slot of one connection or user freed). */
  private promote(group: Group<J>): void {
    for (;;) {
      let best: Lane<J> | null = null;
      for (const lane of group.lanes.values()) {
        const head = lane.queue[0];
        if (!head || !this.fits(head.job, group, lane)) continue;
        if (!best || head.seq < best.queue[0].seq) best = lane;
      }
      if (!best) return;
      const { job } = best.queue.shift() as { job: J };
      this.waitingCount--;
      this.start(job, group, best);
    }
  }

  /** Jobs with a user are grouped by user; without one, each connection is its own group. */
  private groupKey(job: J): object | string {
    return job.user === null ? job.conn : `u:${job.user}`;
  }

  private group(job: J, create: boolean): Group<J> | undefined {
    const k = this.groupKey(job);
    let g = this.groups.get(k);
    if (!g && create) this.groups.set(k, (g = { running: 0, lanes: new Map() }));
    return g;
  }

  private lane(group: Group<J>, conn: object): Lane<J> {
    let lane = group.lanes.get(conn);
    if (!lane) group.lanes.set(conn, (lane = { running: 0, queue: [] }));
    return lane;
  }

  private sync(): void {
    this.stats.running = this.running.size;
    this.stats.waiting = this.waitingCount;
  }
}
