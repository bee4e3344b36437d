// Which other nodes are alive, as one node sees them (docs/dev/cluster-plan.md §9): a node is
// alive while it is heard from (its `alive` heartbeat, or any channel message) within the expiry;
// each process start is a new incarnation (`inc`), so hearing a node with a new inc means the old
// process is gone. Late messages of a replaced incarnation are recognised and dropped. A node
// that expired and is heard again with the same inc was only cut off: the channels it held
// presence in are returned so that they can be asked again. Pure; time comes in as `now`
// (monotonic milliseconds).

export type Sighting =
  /** Known and current, or first heard of: nothing to do. */
  | { kind: 'live' }
  /** A new incarnation: what the old one held is gone. */
  | { kind: 'restarted'; old: number }
  /** A message of a replaced incarnation, or of a node past the bound: drop it. */
  | { kind: 'stale' }
  /** Expired earlier, alive after all: ask it again for these channels. */
  | { kind: 'returned'; channels: string[] };

export interface LivenessOptions {
  expiryMs: number;
  /** Live nodes at most; as many expired or replaced ones are remembered besides. */
  maxNodes: number;
  /** Replaced incarnations remembered per node. */
  deadIncarnations: number;
}

interface Live {
  inc: number;
  seen: number;
}

export class Liveness {
  private readonly live = new Map<string, Live>();
  private readonly dead = new Map<string, number[]>();
  private readonly expired = new Map<string, { inc: number; channels: string[] }>();

  constructor(private readonly o: LivenessOptions) {}

  /** Nodes alive. */
  get count(): number {
    return this.live.size;
  }

  /** Whether (node, inc) is alive: its current incarnation, heard within the expiry. */
  isLive(node: string, inc: number): boolean {
    return this.live.get(node)?.inc === inc;
  }

  /** A valid message from (node, inc) arrived at `now`. */
  seen(node: string, inc: number, now: number): Sighting {
    if (this.dead.get(node)?.includes(inc)) return { kind: 'stale' };
    const l = this.live.get(node);
    if (l) {
      if (l.inc === inc) {
        l.seen = now;
        return { kind: 'live' };
      }
      this.bury(node, l.inc);
      this.live.set(node, { inc, seen: now });
      return { kind: 'restarted', old: l.inc };
    }
    if (this.live.size >= this.o.maxNodes) return { kind: 'stale' };
    this.live.set(node, { inc, seen: now });
    const gone = this.expired.get(node);
    if (!gone) return { kind: 'live' };
    this.expired.delete(node);
    if (gone.inc === inc) return { kind: 'returned', channels: gone.channels };
    this.bury(node, gone.inc);
    return { kind: 'live' };
  }

  /** (node, inc) said it is stopping; true when that was the live incarnation (forget it). */
  gone(node: string, inc: number): boolean {
    if (this.live.get(node)?.inc !== inc) return false;
    this.live.delete(node);
    this.bury(node, inc);
    return true;
  }

  /** Nodes unheard of for longer than the expiry: no longer alive. */
  sweep(now: number): { node: string; inc: number }[] {
    const out: { node: string; inc: number }[] = [];
    for (const [node, l] of this.live) {
      if (now - l.seen <= this.o.expiryMs) continue;
      this.live.delete(node);
      out.push({ node, inc: l.inc });
    }
    return out;
  }

  /** An expired node held presence in these channels (asked again if it comes back). */
  rememberExpired(node: string, inc: number, channels: string[]): void {
    this.expired.delete(node);
    this.trim();
    this.expired.set(node, { inc, channels });
  }

  private bury(node: string, inc: number): void {
    const incs = this.dead.get(node) ?? [];
    this.dead.delete(node); // re-inserted last: the oldest node goes first when trimming
    incs.push(inc);
    if (incs.length > this.o.deadIncarnations) incs.shift();
    this.trim();
    this.dead.set(node, incs);
  }

  /** Room for one more remembered node: the oldest replaced or expired ones go. */
  private trim(): void {
    while (this.dead.size + this.expired.size >= this.o.maxNodes && (this.dead.size > 0 || this.expired.size > 0)) {
      const map = this.dead.size > 0 ? this.dead : this.expired;
      const first = map.keys().next().value as string;
      map.delete(first);
    }
  }
}
