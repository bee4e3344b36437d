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
import type { BindingRequest } from './bindings.js';

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
  /** Binding ids whose frame heads its subscriptions hold, one per acquire (released when the topic goes). */
  readonly heads: number[] = [];
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
  ) {
    this.presence = config.presenceEnabled;
  }
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
