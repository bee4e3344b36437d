// The presence other nodes hold in the channels open on this node: per (channel, node) a
// ChannelPresence with the same bounds as a local channel (so a channel's presence totals are
// per node: a joiner may receive up to nodes × the bound), the seq of the last diff applied, and
// whether a snapshot of it has been asked for. Pure: the bridge (channels-bridge.ts) feeds it
// what NATS delivers and sends what it returns to the local members.
//
// Diffs of one node for one channel are numbered from 1 at each opening of the channel on that
// node: seq 1 says "nothing before", so it replaces whatever was held; seq = last + 1 applies;
// anything else is a gap, repaired by a snapshot (the node's presence of the channel, and the seq
// it includes). NATS keeps one publisher's messages in order, so diffs arriving while a snapshot
// is awaited are ones it includes: they are dropped.
import { LimitExceededError } from '../errors.js';
import { ChannelPresence, type Meta, type PresenceDiff, type PresenceLimits, type PresenceMap } from '../hub/presence.js';
import type { PresenceMessage } from './channel-codec.js';

export type DiffOutcome =
  | { kind: 'applied'; diff: PresenceDiff }
  /** A duplicate, or a diff a pending snapshot includes. */
  | { kind: 'ignored' }
  /** Diffs were missed: ask the node for a snapshot (markSyncing). */
  | { kind: 'gap' };

interface Entry {
  inc: number;
  seq: number;
  presence: ChannelPresence;
  syncing: boolean;
}

function emptyDiff(): PresenceDiff {
  return { joins: Object.create(null) as PresenceMap, leaves: Object.create(null) as PresenceMap };
}

function add(map: PresenceMap, key: string, meta: Meta): void {
  (map[key] ??= []).push(meta);
}

function merge(into: PresenceDiff, d: PresenceDiff): void {
  for (const [k, metas] of Object.entries(d.leaves)) for (const m of metas) add(into.leaves, k, m);
  for (const [k, metas] of Object.entries(d.joins)) for (const m of metas) add(into.joins, k, m);
}

export function isEmptyDiff(d: PresenceDiff): boolean {
  return Object.keys(d.joins).length === 0 && Object.keys(d.leaves).length === 0;
}

export class RemotePresence {
  private readonly byChannel = new Map<string, Map<string, Entry>>();
  /** Metas refused because a node sent more than the bounds allow (another configuration). */
  overLimit = 0;

  constructor(private readonly limits: PresenceLimits) {}

  /** A diff of (m.node, m.inc), the node's current incarnation (the caller checks). */
  diff(m: PresenceMessage): DiffOutcome {
    const nodes = this.byChannel.get(m.channel);
    const e = nodes?.get(m.node);
    if (m.seq === 1) {
      // The channel (re)opened on that node: nothing it held before counts.
      const out = e ? this.all(e.presence, 'leaves') : emptyDiff();
      const fresh: Entry = { inc: m.inc, seq: 1, presence: new ChannelPresence(this.limits), syncing: false };
      this.nodes(m.channel).set(m.node, fresh);
      merge(out, this.apply(fresh.presence, m.joins, m.leaves));
      return { kind: 'applied', diff: out };
    }
    if (!e) return { kind: 'gap' };
    if (e.syncing || m.seq <= e.seq) return { kind: 'ignored' };
    if (m.seq !== e.seq + 1) return { kind: 'gap' };
    e.seq = m.seq;
    return { kind: 'applied', diff: this.apply(e.presence, m.joins, m.leaves) };
  }

  /** A snapshot has been asked of `node` for `channel`: diffs wait for it. */
  markSyncing(channel: string, node: string, inc: number): void {
    const nodes = this.nodes(channel);
    const e = nodes.get(node);
    if (e) e.syncing = true;
    else nodes.set(node, { inc, seq: 0, presence: new ChannelPresence(this.limits), syncing: true });
  }

  isSyncing(channel: string, node: string): boolean {
    return this.byChannel.get(channel)?.get(node)?.syncing ?? false;
  }

  /** A node's whole presence of a channel as of its diff `seq`: replaces what was held; the difference. */
  snapshot(channel: string, node: string, inc: number, seq: number, state: PresenceMap): PresenceDiff {
    const nodes = this.nodes(channel);
    const old = nodes.get(node);
    const fresh: Entry = { inc, seq, presence: new ChannelPresence(this.limits), syncing: false };
    nodes.set(node, fresh);
    this.apply(fresh.presence, state, {});
    const before = old ? old.presence.state() : ({} as PresenceMap);
    const after = fresh.presence.state();
    const out = emptyDiff();
    const sig = (m: Meta) => `${m.session}\u0000${JSON.stringify(m.state)}`;
    const index = (s: PresenceMap) => new Set(Object.entries(s).flatMap(([k, ms]) => ms.map((m) => `${k}\u0000${sig(m)}`)));
    const [had, has] = [index(before), index(after)];
    for (const [k, ms] of Object.entries(before)) for (const m of ms) if (!has.has(`${k}\u0000${sig(m)}`)) add(out.leaves, k, m);
    for (const [k, ms] of Object.entries(after)) for (const m of ms) if (!had.has(`${k}\u0000${sig(m)}`)) add(out.joins, k, m);
    return out;
  }

  /** Forgets one node's presence of a channel; what left. */
  drop(channel: string, node: string): PresenceDiff | null {
    const nodes = this.byChannel.get(channel);
    const e = nodes?.get(node);
    if (!nodes || !e) return null;
    nodes.delete(node);
    if (nodes.size === 0) this.byChannel.delete(channel);
    return this.all(e.presence, 'leaves');
  }

  /** Forgets a node everywhere (dead, or replaced by a new incarnation); what left, per channel. */
  dropNode(node: string): [string, PresenceDiff][] {
    const out: [string, PresenceDiff][] = [];
    for (const channel of [...this.byChannel.keys()]) {
      const d = this.drop(channel, node);
      if (d && !isEmptyDiff(d)) out.push([channel, d]);
    }
    return out;
  }

  /** The channel closed on this node: nobody here to tell. */
  dropChannel(channel: string): void {
    this.byChannel.delete(channel);
  }

  /** What each node holds in the channel (for presence_state). */
  states(channel: string): PresenceMap[] {
    const out: PresenceMap[] = [];
    for (const e of this.byChannel.get(channel)?.values() ?? []) if (e.presence.keys > 0) out.push(e.presence.state());
    return out;
  }

  /** Channels in which `node` holds presence. */
  channelsOf(node: string): string[] {
    return [...this.byChannel].filter(([, nodes]) => (nodes.get(node)?.presence.keys ?? 0) > 0).map(([c]) => c);
  }

  /** Entries held (channel × node), for status. */
  get size(): number {
    let n = 0;
    for (const nodes of this.byChannel.values()) n += nodes.size;
    return n;
  }

  private nodes(channel: string): Map<string, Entry> {
    let nodes = this.byChannel.get(channel);
    if (!nodes) this.byChannel.set(channel, (nodes = new Map()));
    return nodes;
  }

  private all(p: ChannelPresence, side: 'joins' | 'leaves'): PresenceDiff {
    const out = emptyDiff();
    for (const [k, ms] of Object.entries(p.state())) for (const m of ms) add(out[side], k, m);
    return out;
  }

  /** Leaves, then joins, within the bounds; what changed. */
  private apply(p: ChannelPresence, joins: PresenceMap, leaves: PresenceMap): PresenceDiff {
    const out = emptyDiff();
    for (const [k, ms] of Object.entries(leaves)) {
      for (const m of ms) {
        const d = p.untrack(k, m.session);
        if (d) merge(out, d);
      }
    }
    for (const [k, ms] of Object.entries(joins)) {
      for (const m of ms) {
        try {
          merge(out, p.track(k, m.session, m.state, Buffer.byteLength(JSON.stringify(m.state)), m.label));
        } catch (err) {
          if (!(err instanceof LimitExceededError)) throw err;
          this.overLimit++;
        }
      }
    }
    return out;
  }
}
