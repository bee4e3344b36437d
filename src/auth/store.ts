// Policy rules and role/relation links, each with its history over the resume window, so that a
// catch-up is authorized with the policies in force at each change's commit, not today's.
//
// Every key holds a count (rows that say it: a relation table may repeat a pair) and the list of
// changes to that count inside the window. The count at position t is the count now minus the
// changes after t. Changes already contained in the state loaded at start (their transaction is
// in the load's snapshot) are recorded for history without being counted twice.
import { comparePositions, type Position } from '../capture/position.js';

interface Op {
  pos: Position;
  d: number;
}

export class Counted {
  now = 0;
  ops: Op[] | null = null;

  /** The count at `at`, or now when `at` is null. */
  at(at: Position | null): number {
    const ops = this.ops;
    if (at === null || ops === null) return this.now;
    let n = this.now;
    for (let i = ops.length - 1; i >= 0 && comparePositions(ops[i].pos, at) > 0; i--) n -= ops[i].d;
    return n;
  }

  /** Whether it counted at some point from `since` (null: now) until now. */
  existedSince(since: Position | null): boolean {
    if (this.now > 0) return true;
    if (since === null || this.ops === null) return false;
    // A change after `since` means it counted just before or just after that change.
    return this.at(since) > 0 || comparePositions(this.ops[this.ops.length - 1].pos, since) > 0;
  }

  /** Records a change; `counted` false when the loaded state already includes it. */
  change(d: number, pos: Position, counted: boolean): void {
    if (counted) this.now += d;
    (this.ops ??= []).push({ pos, d });
  }

  /** Drops history at or before `before`; true when nothing is left to keep. */
  forget(before: Position): boolean {
    const ops = this.ops;
    if (ops) {
      let k = 0;
      while (k < ops.length && comparePositions(ops[k].pos, before) <= 0) k++;
      if (k === ops.length) this.ops = null;
      else if (k > 0) ops.splice(0, k);
    }
    return this.now <= 0 && this.ops === null;
  }
}

/** Max depth of role/relation chains, as Casbin's default role manager. */
const MAX_HIERARCHY = 10;

/** The links of one role definition (g, g2, …): name1 → name2, both directions indexed. */
export class LinkStore {
  private readonly fwd = new Map<string, Map<string, Counted>>();
  private readonly rev = new Map<string, Map<string, Counted>>();
  size = 0;

  change(a: string, b: string, d: number, pos: Position | null, counted: boolean): void {
    let out = this.fwd.get(a);
    if (!out) this.fwd.set(a, (out = new Map()));
    let c = out.get(b);
    if (!c) {
      out.set(b, (c = new Counted()));
      let back = this.rev.get(b);
      if (!back) this.rev.set(b, (back = new Map()));
      back.set(a, c);
      this.size++;
    }
    if (pos) c.change(d, pos, counted);
    else c.now += d;
  }

  /** Casbin's hasLink: a reaches b through at most MAX_HIERARCHY links (a reaches itself). */
  has(a: string, b: string, at: Position | null): boolean {
    if (a === b) return true;
    const direct = this.fwd.get(a);
    if (!direct) return false;
    if ((direct.get(b)?.at(at) ?? 0) > 0) return true;
    // Longer chains (user → role → role): breadth first.
    const seen = new Set<string>([a]);
    let frontier = [a];
    for (let depth = 0; depth < MAX_HIERARCHY && frontier.length > 0; depth++) {
      const next: string[] = [];
      for (const x of frontier) {
        for (const [y, c] of this.fwd.get(x) ?? []) {
          if (seen.has(y) || c.at(at) <= 0) continue;
          if (y === b) return true;
          seen.add(y);
          next.push(y);
        }
      }
      frontier = next;
    }
    return false;
  }

  /** Everyone who reaches b now (b included): the users a relation lets see a row. */
  reaching(b: string, into: Set<string>): void {
    into.add(b);
    let frontier = [b];
    for (let depth = 0; depth < MAX_HIERARCHY && frontier.length > 0; depth++) {
      const next: string[] = [];
      for (const y of frontier) {
        for (const [x, c] of this.rev.get(y) ?? []) {
          if (c.now <= 0 || into.has(x)) continue;
          into.add(x);
          next.push(x);
        }
      }
      frontier = next;
    }
  }

  forget(before: Position): void {
    for (const [a, out] of this.fwd) {
      for (const [b, c] of out) {
        if (!c.forget(before)) continue;
        out.delete(b);
        const back = this.rev.get(b);
        back?.delete(a);
        if (back?.size === 0) this.rev.delete(b);
        this.size--;
      }
      if (out.size === 0) this.fwd.delete(a);
    }
  }

  clear(): void {
    this.fwd.clear();
    this.rev.clear();
    this.size = 0;
  }
}
