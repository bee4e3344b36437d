// One joined (or joining) Phoenix topic of a Supabase connection: `realtime:<channel>`, its
// postgres_changes bindings (each one walcast subscription per table), its membership of the
// walcast channel, and what its join's `config` asked for.
//
//   phx_join ──► joining ──(every part answered)──► joined ──phx_leave──► (gone, phx_close)
//                   │                                  │
//                   └──(a part refused)──► (gone, phx_reply error)
//                                                      └──(resync, rights lost)──► (gone, phx_error: the client rejoins)
//
// While joining, what the hub and the channels send for the topic is held here, in order, and
// sent after the join's reply: realtime-js matches postgres_changes to bindings by the ids that
// reply carries.
import { SUPABASE } from '../constants.js';
import { BadRequestError } from '../errors.js';
import type { BindingRequest } from './bindings.js';
import type { Vsn } from './phoenix.types.js';
import type { FrameHead, SupabaseChanges } from './render.js';

export type TopicState = 'joining' | 'joined' | 'gone';

/** A postgres_changes binding: the client's request, its id, and the walcast subscriptions it became. */
export interface Binding {
  readonly id: number;
  readonly request: BindingRequest;
  /** One per table; several for a whole schema (no `table`), where a table the user may not read is left out. */
  readonly subs: number[];
}

export class Topic {
  state: TopicState = 'joining';
  /** Bindings with their subscriptions; those not yet answered are counted in `waiting`. */
  bindings: Binding[] = [];
  /** Binding ids whose frame heads its subscriptions hold, one per acquire (released by close()). */
  private readonly heads: number[] = [];
  /** Parts of the join not yet answered (the channel join, each subscription). */
  waiting = 0;
  /** The first refusal of a part: the join fails with it. */
  failure: string | null = null;
  /** Member of the walcast channel (broadcast, presence): its join policy allowed it. */
  member = false;
  /** Presence frames are forwarded (config.presence.enabled, or this connection tracked). */
  presence: boolean;
  /** Frames for the topic while joining, in order (strings: Phoenix text; Buffers: changes). */
  held: (string | Buffer)[] | null = [];
  /** Their bytes (string lengths for text). */
  heldBytes = 0;
  timer: NodeJS.Timeout | null = null;

  constructor(
    readonly name: string,
    readonly channel: string,
    readonly joinRef: string | null,
    /** The phx_join push's ref, for its reply. */
    readonly joinPushRef: string | null,
    readonly config: TopicConfig,
    private readonly changes: SupabaseChanges,
    private readonly vsn: Vsn,
  ) {
    this.presence = config.presenceEnabled;
  }

  /** The frame head of a binding's subscription, held until the topic closes. */
  head(bindingId: number): FrameHead {
    this.heads.push(bindingId);
    return this.changes.acquire(this.vsn, this.name, bindingId);
  }

  /** The topic is gone: its timer stops, what it held goes, its frame heads are let go. */
  close(budget: HeldBudget): void {
    this.state = 'gone';
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.unhold(budget);
    for (const id of this.heads) this.changes.release(this.vsn, this.name, id);
    this.heads.length = 0;
  }

  /**
   * Holds a frame while the join is being answered (true); false once joined. Past the bounds
   * (frames per join, bytes for all of a connection's joins) the join fails, realtime-js
   * retries it, and what it held goes now, not when it is answered.
   */
  hold(frame: string | Buffer, budget: HeldBudget): boolean {
    if (this.state === 'gone') return true; // its subscriptions are being ended: nothing more for it
    if (this.held === null) return false;
    if (this.failure === null && this.held.length < SUPABASE.maxHeldPerJoin && budget.bytes + frame.length <= budget.max) {
      this.held.push(frame);
      this.heldBytes += frame.length;
      budget.bytes += frame.length;
      return true;
    }
    this.failure ??= 'too many messages for the channel while it was being joined; retry';
    this.unhold(budget);
    this.held = [];
    return true;
  }

  /** The held frames, no longer held (to be sent, or dropped). */
  unhold(budget: HeldBudget): (string | Buffer)[] {
    const held = this.held ?? [];
    this.held = null;
    budget.bytes -= this.heldBytes;
    this.heldBytes = 0;
    return held;
  }
}

/** Bytes held by a connection's joining topics together (each copies its changes), and their bound. */
export interface HeldBudget {
  bytes: number;
  readonly max: number;
}

/** What a join's `config` asked for (the rest of it is ignored). */
export interface TopicConfig {
  /** config.broadcast.self: the sender gets its own broadcasts. */
  readonly self: boolean;
  /** config.broadcast.ack: broadcasts are answered with phx_reply. */
  readonly ack: boolean;
  /** config.presence.key: the key this connection's presence shows under (else the user id). */
  readonly presenceKey: string | undefined;
  readonly presenceEnabled: boolean;
}

/** A join's `config`: its broadcast and presence options, checked. */
export function readTopicConfig(config: Record<string, unknown>): TopicConfig {
  const broadcast = optionalObject(config.broadcast, 'config.broadcast');
  const presence = optionalObject(config.presence, 'config.presence');
  const key = presence.key;
  if (key !== undefined && key !== null && typeof key !== 'string') throw new BadRequestError('config.presence.key must be a string');
  if (typeof key === 'string' && key.length > SUPABASE.maxPresenceKey) throw new BadRequestError(`config.presence.key is at most ${SUPABASE.maxPresenceKey} characters`);
  return {
    self: broadcast.self === true,
    ack: broadcast.ack === true,
    presenceKey: typeof key === 'string' && key !== '' ? key : undefined,
    presenceEnabled: presence.enabled === true,
  };
}

/** An object field of a push (absent or null: empty); BadRequestError for anything else. */
export function optionalObject(v: unknown, what: string): Record<string, unknown> {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw new BadRequestError(`${what} must be an object`);
  return v as Record<string, unknown>;
}
