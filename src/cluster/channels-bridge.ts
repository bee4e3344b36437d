// Channels across the nodes of a cluster (docs/dev/cluster-plan.md §9), on the node's NATS
// connection, core NATS only (nothing here is stored: broadcasts and presence are ephemeral).
// SQL broadcasts are not sent here: they are in the stream, which every node follows.
//
//   first member here joins C ──► subscribe .c.C, .p.C; ask .psync.C (gather ≤ 100 ms); subscribe .psync.C
//   client broadcast on C     ──► members here (Channels), and .c.C ──► members on the other nodes
//   presence change here      ──► .p.C {node, inc, seq, joins, leaves} ──► the other nodes' tables
//   last member here leaves C ──► unsubscribe, forget the other nodes' presence of C
//   every 2 s                 ──► .alive {node, inc}; a node unheard of for 10 s, or heard with a
//                                 new inc, is dead: its presence leaves (presence_diff) everywhere
//
// Channel names are hashed into subject tokens: the name travels in the body, and a message
// whose name is not the subscription's channel is dropped. Every node receives its own messages
// too (the connection is shared, so no noEcho): messages carry the node id and are ignored by
// their sender. Anything inbound is validated (channel-codec.ts); what fails is dropped and
// counted, and nothing thrown leaves a NATS callback. Receivers deliver through Channels, which
// checks each member's right to the channel against this node's policies before every frame.
import { randomInt } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { createInbox, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { CLUSTER, CLUSTER_CHANNELS as C } from '../constants.js';
import { ClusterMessageError, ClusterMessageVersionError } from '../errors.js';
import type { ChannelBridge, Channels } from '../hub/channels.js';
import type { PresenceDiff, PresenceMap } from '../hub/presence.js';
import type { Logger } from '../log.js';
import {
  decodeAlive,
  decodeBroadcast,
  decodePresence,
  decodeSnapshot,
  decodeSyncRequest,
  encodeAlive,
  encodeBroadcast,
  encodePresence,
  encodeSnapshot,
  encodeSyncRequest,
  type CodecLimits,
  type SnapshotMessage,
} from './channel-codec.js';
import { Liveness } from './liveness.js';
import { isEmptyDiff, RemotePresence } from './remote-presence.js';
import { aliveSubject, broadcastSubject, presenceSubject, presenceSyncSubject } from './subjects.js';

export interface ChannelsBridgeOptions {
  nc: NatsConnection;
  /** The cluster namespace (--cluster). */
  ns: string;
  nodeId: string;
  channels: Channels;
  log: Logger;
  /** Monotonic milliseconds (tests). */
  now?: () => number;
}

export interface ChannelsBridgeStats {
  /** Channels open on this node (followed on NATS). */
  rooms: number;
  /** Other nodes alive. */
  nodes: number;
  /** (channel, node) presence entries held. */
  remoteEntries: number;
  published: number;
  received: number;
  /** foreign (a name not the subject's channel) is part of malformed; stale: of a replaced incarnation. */
  dropped: { malformed: number; version: number; foreign: number; stale: number; overLimit: number };
  publishErrors: number;
  syncRequests: number;
  snapshots: number;
  expiredNodes: number;
}

interface Room {
  readonly name: string;
  readonly subs: Subscription[];
  /** Diffs of this node's presence published since the room opened (their seq). */
  seq: number;
  /** The opening's gather of the other nodes' presence, while it runs. */
  gather: Gather | null;
}

interface Gather {
  readonly id: string;
  readonly room: Room;
  readonly answered: Set<string>;
  stall: NodeJS.Timeout | null;
  readonly max: NodeJS.Timeout;
  readonly resolve: () => void;
}

/** A snapshot arriving in parts, per (channel, node). */
interface Parts {
  inc: number;
  seq: number;
  next: number;
  metas: number;
  state: PresenceMap;
}

/** Starts following liveness and attaches to `channels` (before any join). */
export function startChannelsBridge(o: ChannelsBridgeOptions): ChannelsBridge {
  const bridge = new ChannelsBridge(o);
  bridge.start();
  return bridge;
}

export class ChannelsBridge implements ChannelBridge {
  /** This process's incarnation: random per start. */
  readonly inc = randomInt(0, 2 ** 48 - 1);
  private readonly rooms = new Map<string, Room>();
  private readonly remote: RemotePresence;
  private readonly liveness = new Liveness({ expiryMs: C.nodeExpiryMs, maxNodes: C.maxNodes, deadIncarnations: C.deadIncarnations });
  private readonly limits: CodecLimits;
  private readonly gathers = new Map<string, Gather>();
  /** Targeted sync requests awaiting a snapshot, per (channel, node): their timeout. */
  private readonly syncs = new Map<string, NodeJS.Timeout>();
  private readonly parts = new Map<string, Parts>();
  private readonly inbox = createInbox();
  private readonly now: () => number;
  private subs: Subscription[] = [];
  private timers: NodeJS.Timeout[] = [];
  private nextGather = 0;
  private stopped = false;
  private lastWarn = -Infinity;
  private warnedSameId = false;
  private readonly counts: Omit<ChannelsBridgeStats, 'rooms' | 'nodes' | 'remoteEntries'> = {
    published: 0,
    received: 0,
    dropped: { malformed: 0, version: 0, foreign: 0, stale: 0, overLimit: 0 },
    publishErrors: 0,
    syncRequests: 0,
    snapshots: 0,
    expiredNodes: 0,
  };

  constructor(private readonly o: ChannelsBridgeOptions) {
    this.now = o.now ?? (() => performance.now());
    this.limits = o.channels.limits;
    this.remote = new RemotePresence(this.limits.presence);
  }

  get stats(): ChannelsBridgeStats {
    const c = this.counts;
    return { ...c, dropped: { ...c.dropped, overLimit: this.remote.overLimit }, rooms: this.rooms.size, nodes: this.liveness.count, remoteEntries: this.remote.size };
  }

  start(): void {
    const { nc, ns } = this.o;
    this.o.channels.attach(this);
    this.subs = [
      nc.subscribe(aliveSubject(ns), { callback: (err, msg) => this.guard(err, () => this.onAlive(msg)) }),
      nc.subscribe(`${this.inbox}.*`, { callback: (err, msg) => this.guard(err, () => this.onReply(msg)) }),
    ];
    const alive = () => this.pub(aliveSubject(ns), encodeAlive({ node: this.o.nodeId, inc: this.inc, gone: false }));
    alive();
    this.timers = [setInterval(alive, C.aliveIntervalMs), setInterval(() => this.guard(null, () => this.sweep(), false), C.sweepIntervalMs)];
    for (const t of this.timers) t.unref();
  }

  /** Graceful: this node's presence leaves everywhere, then it says it is gone. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    for (const t of this.syncs.values()) clearTimeout(t);
    this.syncs.clear();
    for (const g of [...this.gathers.values()]) this.finish(g);
    const self = { node: this.o.nodeId, inc: this.inc };
    for (const room of this.rooms.values()) {
      const state = this.o.channels.localPresence(room.name);
      if (state && Object.keys(state).length > 0) {
        this.pub(presenceSubject(this.o.ns, room.name), encodePresence({ ...self, channel: room.name, seq: ++room.seq, joins: {}, leaves: state }));
      }
      for (const s of room.subs) unsubscribe(s);
    }
    this.pub(aliveSubject(this.o.ns), encodeAlive({ ...self, gone: true }));
    for (const s of this.subs) unsubscribe(s);
    this.rooms.clear();
    this.parts.clear();
    if (this.o.nc.isClosed()) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.o.nc.flush().catch(() => {}), new Promise<void>((r) => (timer = setTimeout(r, CLUSTER.drainTimeoutMs)))]);
    clearTimeout(timer);
  }

  // ── ChannelBridge: calls from Channels ──────────────────────────────────────────────────

  opened(name: string): Promise<void> | null {
    if (this.stopped || this.rooms.has(name)) return null;
    const { nc, ns } = this.o;
    const room: Room = { name, subs: [], seq: 0, gather: null };
    this.rooms.set(name, room);
    try {
      room.subs.push(
        nc.subscribe(broadcastSubject(ns, name), { callback: (err, msg) => this.guard(err, () => this.onBroadcast(room, msg)) }),
        nc.subscribe(presenceSubject(ns, name), { callback: (err, msg) => this.guard(err, () => this.onPresence(room, msg)) }),
      );
      // Asked before subscribing to the sync subject: with no other node following C the server
      // answers "no responders" at once, and the joiner does not wait.
      const wait = this.gather(room);
      room.subs.push(nc.subscribe(presenceSyncSubject(ns, name), { callback: (err, msg) => this.guard(err, () => this.onSyncRequest(room, msg)) }));
      return wait;
    } catch (err) {
      // NATS closed or draining: the channel works on this node alone.
      this.o.log.warn({ channel: name, err: (err as Error).message }, 'channel not followed across the cluster');
      return null;
    }
  }

  closed(name: string): void {
    const room = this.rooms.get(name);
    if (!room) return;
    this.rooms.delete(name);
    for (const s of room.subs) unsubscribe(s);
    if (room.gather) this.finish(room.gather);
    for (const [key, t] of this.syncs) {
      if (channelOfKey(key) === name) {
        clearTimeout(t);
        this.syncs.delete(key);
      }
    }
    for (const key of this.parts.keys()) if (channelOfKey(key) === name) this.parts.delete(key);
    this.remote.dropChannel(name);
  }

  broadcast(name: string, event: string, payloadJson: string, from: string): void {
    if (this.stopped || !this.rooms.has(name)) return;
    this.pub(broadcastSubject(this.o.ns, name), encodeBroadcast({ node: this.o.nodeId, inc: this.inc, channel: name, event, payloadJson, from }));
  }

  presence(name: string, diff: PresenceDiff): void {
    const room = this.rooms.get(name);
    if (this.stopped || !room) return;
    room.seq++;
    this.pub(presenceSubject(this.o.ns, name), encodePresence({ node: this.o.nodeId, inc: this.inc, channel: name, seq: room.seq, joins: diff.joins, leaves: diff.leaves }));
  }

  remoteState(name: string): PresenceMap[] {
    return this.remote.states(name);
  }

  // ── inbound ─────────────────────────────────────────────────────────────────────────────

  private onBroadcast(room: Room, msg: Msg): void {
    const m = decodeBroadcast(msg.data, this.limits, (n) => this.matches(room, n));
    if (!this.sighted(m.node, m.inc) || this.rooms.get(room.name) !== room) return;
    this.o.channels.fromRemote(room.name, m.event, m.payloadJson, m.from);
  }

  private onPresence(room: Room, msg: Msg): void {
    const m = decodePresence(msg.data, this.limits, (n) => this.matches(room, n));
    if (!this.sighted(m.node, m.inc) || this.rooms.get(room.name) !== room) return;
    const out = this.remote.diff(m);
    if (out.kind === 'applied') {
      if (!isEmptyDiff(out.diff)) this.o.channels.remotePresence(room.name, out.diff);
    } else if (out.kind === 'gap') this.requestSync(room, m.node, m.inc);
  }

  private onSyncRequest(room: Room, msg: Msg): void {
    const r = decodeSyncRequest(msg.data, (n) => this.matches(room, n));
    if (!this.sighted(r.node, r.inc) || this.rooms.get(room.name) !== room) return;
    if ((r.target !== null && r.target !== this.o.nodeId) || !msg.reply) return;
    const state = this.o.channels.localPresence(room.name) ?? {};
    for (const part of encodeSnapshot({ node: this.o.nodeId, inc: this.inc }, room.name, room.seq, state, C.snapshotPartBytes)) this.pub(msg.reply, part);
  }

  /** Answers to sync requests (snapshots), and the server's "no responders". */
  private onReply(msg: Msg): void {
    const id = msg.subject.slice(this.inbox.length + 1);
    if (msg.headers?.code === 503) {
      const g = this.gathers.get(id);
      if (g) this.finish(g);
      return;
    }
    // Any channel: a late answer for a channel closed meanwhile is ignored, not malformed.
    const m = decodeSnapshot(msg.data, this.limits);
    if (!this.sighted(m.node, m.inc)) return;
    this.onSnapshot(m, this.gathers.get(id) ?? null);
  }

  private onSnapshot(m: SnapshotMessage, gather: Gather | null): void {
    const room = this.rooms.get(m.channel);
    if (!room) return;
    const key = pairKey(m.channel, m.node);
    const acc: Parts | undefined = m.part === 0 ? { inc: m.inc, seq: m.seq, next: 0, metas: 0, state: Object.create(null) as PresenceMap } : this.parts.get(key);
    if (!acc || acc.inc !== m.inc || acc.seq !== m.seq || acc.next !== m.part) {
      this.parts.delete(key);
      this.dropped('malformed', new ClusterMessageError('channel message: a snapshot part out of order'));
      return;
    }
    for (const [k, metas] of Object.entries(m.state)) {
      acc.state[k] = acc.state[k] ? [...acc.state[k], ...metas] : metas;
      acc.metas += metas.length;
    }
    if (acc.metas > this.limits.presence.metasTotal) {
      this.parts.delete(key);
      this.dropped('malformed', new ClusterMessageError(`channel message: a snapshot of over ${this.limits.presence.metasTotal} metas`));
      return;
    }
    acc.next++;
    if (m.more) {
      this.parts.set(key, acc);
      return;
    }
    this.parts.delete(key);
    this.counts.snapshots++;
    this.clearSync(key);
    const diff = this.remote.snapshot(m.channel, m.node, m.inc, m.seq, acc.state);
    if (!isEmptyDiff(diff)) this.o.channels.remotePresence(m.channel, diff);
    if (gather && gather.room === room) this.answered(gather, m.node);
  }

  private onAlive(msg: Msg): void {
    const m = decodeAlive(msg.data);
    if (m.node === this.o.nodeId) {
      if (m.inc !== this.inc && !this.warnedSameId) {
        this.warnedSameId = true;
        this.o.log.warn({ node: m.node }, 'another process runs with this --node-id: its channel messages are ignored');
      }
      return;
    }
    if (m.gone) {
      if (this.liveness.gone(m.node, m.inc)) this.forget(m.node);
      return;
    }
    this.sighted(m.node, m.inc);
  }

  // ── liveness ────────────────────────────────────────────────────────────────────────────

  /**
   * A valid message of (node, inc): whether to act on it (not our own, not of a replaced
   * incarnation). A new incarnation's predecessor is forgotten first; a node back after being
   * expired is asked again for its presence.
   */
  private sighted(node: string, inc: number): boolean {
    if (node === this.o.nodeId) return false;
    const s = this.liveness.seen(node, inc, this.now());
    switch (s.kind) {
      case 'stale':
        this.counts.dropped.stale++;
        return false;
      case 'restarted':
        this.o.log.info({ node }, 'cluster node restarted: the presence of its previous process is gone');
        this.forget(node);
        return true;
      case 'returned':
        for (const c of s.channels) {
          const room = this.rooms.get(c);
          if (room) this.requestSync(room, node, inc);
        }
        return true;
      case 'live':
        return true;
    }
  }

  private sweep(): void {
    for (const { node, inc } of this.liveness.sweep(this.now())) {
      this.counts.expiredNodes++;
      this.liveness.rememberExpired(node, inc, this.remote.channelsOf(node));
      this.o.log.warn({ node, afterMs: C.nodeExpiryMs }, 'cluster node unheard of: its presence is gone');
      this.forget(node);
    }
  }

  /** Everything a node held leaves (presence_diff to the members here). */
  private forget(node: string): void {
    for (const [key, t] of this.syncs) {
      if (nodeOfKey(key) === node) {
        clearTimeout(t);
        this.syncs.delete(key);
      }
    }
    for (const key of this.parts.keys()) if (nodeOfKey(key) === node) this.parts.delete(key);
    for (const [channel, diff] of this.remote.dropNode(node)) this.o.channels.remotePresence(channel, diff);
  }

  // ── presence sync ───────────────────────────────────────────────────────────────────────

  /** Asks every node following the room's channel for its presence; settles within syncWaitMs. */
  private gather(room: Room): Promise<void> {
    const id = `g${++this.nextGather}`;
    return new Promise<void>((resolve) => {
      const g: Gather = { id, room, answered: new Set(), stall: null, max: setTimeout(() => this.finish(g), C.syncWaitMs), resolve };
      this.gathers.set(id, g);
      room.gather = g;
      this.counts.syncRequests++;
      const sent = this.pub(presenceSyncSubject(this.o.ns, room.name), encodeSyncRequest({ node: this.o.nodeId, inc: this.inc, channel: room.name, target: null }), `${this.inbox}.${id}`);
      if (!sent) this.finish(g);
    });
  }

  private answered(g: Gather, node: string): void {
    g.answered.add(node);
    if (g.answered.size >= this.liveness.count) {
      this.finish(g);
      return;
    }
    if (g.stall) clearTimeout(g.stall);
    g.stall = setTimeout(() => this.finish(g), C.syncStallMs);
  }

  private finish(g: Gather): void {
    if (!this.gathers.delete(g.id)) return;
    clearTimeout(g.max);
    if (g.stall) clearTimeout(g.stall);
    if (g.room.gather === g) g.room.gather = null;
    g.resolve();
  }

  /**
   * Diffs of `node` were missed: its presence of the room's channel is asked for; diffs wait for
   * the snapshot. No snapshot within syncTimeoutMs: the node is taken not to hold the channel.
   */
  private requestSync(room: Room, node: string, inc: number): void {
    const key = pairKey(room.name, node);
    if (this.syncs.has(key)) return;
    this.remote.markSyncing(room.name, node, inc);
    // The opening's gather asked every node already, unless this one has answered it.
    if (!room.gather || room.gather.answered.has(node)) {
      this.counts.syncRequests++;
      this.pub(presenceSyncSubject(this.o.ns, room.name), encodeSyncRequest({ node: this.o.nodeId, inc: this.inc, channel: room.name, target: node }), `${this.inbox}.t`);
    }
    const timer = setTimeout(() => {
      this.syncs.delete(key);
      if (this.rooms.get(room.name) !== room || !this.remote.isSyncing(room.name, node)) return;
      const d = this.remote.drop(room.name, node);
      if (d && !isEmptyDiff(d)) this.o.channels.remotePresence(room.name, d);
    }, C.syncTimeoutMs);
    timer.unref();
    this.syncs.set(key, timer);
  }

  private clearSync(key: string): void {
    const t = this.syncs.get(key);
    if (!t) return;
    clearTimeout(t);
    this.syncs.delete(key);
  }

  // ── plumbing ────────────────────────────────────────────────────────────────────────────

  /** The channel named in a message is the room's (a hashed token may be shared by two names). */
  private matches(room: Room, name: string): boolean {
    if (name === room.name) return true;
    this.counts.dropped.foreign++;
    return false;
  }

  private pub(subject: string, data: Uint8Array, reply?: string): boolean {
    if (this.o.nc.isClosed()) return false;
    try {
      this.o.nc.publish(subject, data, reply ? { reply } : undefined);
      this.counts.published++;
      return true;
    } catch (err) {
      // Over the server's max_payload, or the connection closing: dropped, as on a lost link.
      this.counts.publishErrors++;
      this.o.log.debug({ subject, bytes: data.length, err: (err as Error).message }, 'channel message not published');
      return false;
    }
  }

  /** Runs a NATS callback's work: never throws; malformed input dropped and counted. */
  private guard(err: Error | null, fn: () => void, inbound = true): void {
    if (err) {
      this.o.log.debug({ err: err.message }, 'channel subscription error');
      return;
    }
    if (this.stopped) return;
    if (inbound) this.counts.received++;
    try {
      fn();
    } catch (e) {
      if (e instanceof ClusterMessageVersionError) this.dropped('version', e);
      else if (e instanceof ClusterMessageError) this.dropped('malformed', e);
      else this.o.log.error({ err: (e as Error).message, stack: (e as Error).stack }, 'channel message handling failed');
    }
  }

  private dropped(kind: 'malformed' | 'version', e: Error): void {
    this.counts.dropped[kind]++;
    const now = this.now();
    // One line a minute at most: a misbehaving publisher must not flood the log.
    if (now - this.lastWarn < 60_000) return;
    this.lastWarn = now;
    this.o.log.warn({ reason: e.message, dropped: this.counts.dropped }, 'channel messages from NATS dropped');
  }
}

/** A (channel, node) pair as a map key: node ids are visible ASCII (no NUL), channels anything. */
function pairKey(channel: string, node: string): string {
  return `${node}\u0000${channel}`;
}

function nodeOfKey(key: string): string {
  return key.slice(0, key.indexOf('\u0000'));
}

function channelOfKey(key: string): string {
  return key.slice(key.indexOf('\u0000') + 1);
}

function unsubscribe(s: Subscription): void {
  try {
    s.unsubscribe();
  } catch {
    // the connection is closed: nothing to undo
  }
}
