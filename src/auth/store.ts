// Policy rules and role/relation links, each with its history over the resume window, so that a
// catch-up is authorized with the policies in force at each change's commit, not today's.
//
// Every key holds a count (rows that say it: a relation table may repeat a pair) and the list of
// changes to that count inside the window. The count at position t is the count now minus the
// changes after t. Changes already contained in the state loaded at start (their transaction is
// in the load's snapshot) are recorded for history without being counted twice.
import { compareWalPositions, type Position } from '../protocol/position.js';

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
    for (let i = ops.length - 1; i >= 0 && compareWalPositions(ops[i].pos, at) > 0; i--) n -= ops[i].d;
    return n;
  }

  /** Whether it counted at some point from `since` (null: now) until now. */
  existedSince(since: Position | null): boolean {
    if (this.now > 0) return true;
    if (since === null || this.ops === null) return false;
    // A change after `since` means it counted just before or just after that change.
    return this.at(since) > 0 || compareWalPositions(this.ops[this.ops.length - 1].pos, since) > 0;
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
      while (k < ops.length && compareWalPositions(ops[k].pos, before) <= 0) k++;
      if (k === ops.length) this.ops = null;
      else if (k > 0) ops.splice(0, k);
    }
    return this.now <= 0 && this.ops === null;
  }
}

/** Max depth of role/relation chains, as Casbin's default role manager. */
const MAX_HIERARCHY = 10;

/**
 * What the source of a link is. The link graph has two kinds of nodes, users and groups (roles,
 * relation objects), kept apart so that no user id (a token's `sub`) is ever a group by being
 * spelled like one (issue 11): 'u' a user (a relation whose subject is one `{column}`), 'g' a
 * group (any other relation subject, `team:{id}`), '?' decided by the name (casbin_rule `g A B`
 * rows): a group when it is a group name, else a user.
 */
export type SourceKind = 'u' | 'g' | '?';

/**
 * Names that are groups, across every role definition: those with a ':' and those some link
 * points to (a link's target is always a group). A group name is never a user.
 */
export class GroupNames {
  /** Target → how many links (with their history in the window) point to it. */
  private readonly targets = new Map<string, number>();

  has(name: string): boolean {
    return name.includes(':') || this.targets.has(name);
  }

  add(name: string, n = 1): void {
    this.targets.set(name, (this.targets.get(name) ?? 0) + n);
  }

  remove(name: string, n = 1): void {
    const left = (this.targets.get(name) ?? 0) - n;
    if (left > 0) this.targets.set(name, left);
    else this.targets.delete(name);
  }
}

/**
 * The links of one role definition (g, g2, …): source → target, both directions indexed.
 * Sources are keyed with their kind in front ("u" + id, "g" + name, "?" + name); targets are
 * always groups, keyed by name.
 */
export class LinkStore {
  private readonly fwd = new Map<string, Map<string, Counted>>();
  private readonly rev = new Map<string, Map<string, Counted>>();
  size = 0;

  constructor(private readonly groups: GroupNames = new GroupNames()) {}

  change(kind: SourceKind, a: string, b: string, d: number, pos: Position | null, counted: boolean): void {
    const src = kind + a;
    let out = this.fwd.get(src);
    if (!out) this.fwd.set(src, (out = new Map()));
    let c = out.get(b);
    if (!c) {
      out.set(b, (c = new Counted()));
      let back = this.rev.get(b);
      if (!back) this.rev.set(b, (back = new Map()));
      back.set(src, c);
      this.groups.add(b);
      this.size++;
    }
    if (pos) c.change(d, pos, counted);
    else c.now += d;
  }

  /**
   * Casbin's hasLink, with users and groups apart: the user `user` reaches the group `group`
   * through at most MAX_HIERARCHY links; or `group` is no group name and is `user` itself (a
   * rule naming a user id). A user's first link leaves its user node; every later one leaves a
   * group node, so a `sub` spelled like a group ("room:1", "role:admin") is not that group.
   */
  has(user: string, group: string, at: Position | null): boolean {
    const groups = this.groups;
    if (user === group && !groups.has(group)) return true;
    const u = this.fwd.get('u' + user);
    if ((u?.get(group)?.at(at) ?? 0) > 0) return true;
    const q = groups.has(user) ? undefined : this.fwd.get('?' + user);
    if ((q?.get(group)?.at(at) ?? 0) > 0) return true;
    if (!u && !q) return false;
    // Longer chains (user → role → role): breadth first over group nodes.
    const seen = new Set<string>();
    let frontier: string[] = [];
    const step = (out: Map<string, Counted> | undefined, next: string[]): boolean => {
      for (const [y, c] of out ?? []) {
        if (seen.has(y) || c.at(at) <= 0) continue;
        if (y === group) return true;
        seen.add(y);
        next.push(y);
      }
      return false;
    };
    if (step(u, frontier) || step(q, frontier)) return true;
    for (let depth = 1; depth < MAX_HIERARCHY && frontier.length > 0; depth++) {
      const next: string[] = [];
      for (const x of frontier) if (step(this.fwd.get('g' + x), next) || step(this.fwd.get('?' + x), next)) return true;
      frontier = next;
    }
    return false;
  }

  /**
   * Every user who reaches the group b now (and b itself when it is no group name: a user id),
   * read backwards: the users a relation lets see a row. Exactly the users has() lets through.
   */
  reaching(b: string, into: Set<string>): void {
    const groups = this.groups;
    if (!groups.has(b)) into.add(b);
    const seen = new Set<string>([b]);
    let frontier = [b];
    for (let depth = 0; depth < MAX_HIERARCHY && frontier.length > 0; depth++) {
      const next: string[] = [];
      for (const y of frontier) {
        for (const [src, c] of this.rev.get(y) ?? []) {
          if (c.now <= 0) continue;
          const name = src.slice(1);
          if (src[0] === 'u' || (src[0] === '?' && !groups.has(name))) into.add(name);
          else if (!seen.has(name)) {
            seen.add(name);
            next.push(name);
          }
        }
      }
      frontier = next;
    }
  }

  forget(before: Position): void {
    for (const [src, out] of this.fwd) {
      for (const [b, c] of out) {
        if (!c.forget(before)) continue;
        out.delete(b);
        const back = this.rev.get(b);
        back?.delete(src);
        if (back?.size === 0) this.rev.delete(b);
        this.groups.remove(b);
        this.size--;
      }
      if (out.size === 0) this.fwd.delete(src);
    }
  }

  clear(): void {
    for (const [b, back] of this.rev) this.groups.remove(b, back.size);
    this.fwd.clear();
    this.rev.clear();
    this.size = 0;
  }
}
