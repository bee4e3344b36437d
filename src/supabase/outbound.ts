// What a walcast frame for a Supabase connection becomes in Phoenix: broadcasts and presence of
// its channels (written once for all the members, shared-frames.ts), and the ends walcast decides
// (a resync, rights lost), which end the topic (phx_error: realtime-js rejoins, judged anew).
import { SUPABASE } from '../constants.js';
import { diffToPhoenix, toPhoenix, type WalcastPresence } from './presence.js';
import type { Vsn } from './phoenix.types.js';
import type { Native } from './requests.js';
import { sharedText } from './shared-frames.js';
import type { Topic } from './topic.js';

const E = SUPABASE.events;

/** The connection, as translation sees it. */
export interface Outbound {
  readonly vsn: Vsn;
  ofChannel(channel: string): Topic | undefined;
  ofSub(id: number): Topic | undefined;
  /** Sends (or holds, while joining) a Phoenix frame of a topic. */
  emit(topic: Topic, text: string): void;
  /** The topic can no longer go on as it was. */
  errored(topic: Topic, message: string): void;
}

/** `f` is `frame` parsed, and no answer to a request of the connection's. */
export function translate(f: Native, frame: string, to: Outbound): void {
  switch (f.type) {
    case 'broadcast': {
      const topic = to.ofChannel(f.channel as string);
      if (topic?.member) to.emit(topic, sharedText(frame, to.vsn, topic.name, E.broadcast, () => ({ type: 'broadcast', event: f.event, payload: f.payload })));
      return;
    }
    case 'presence_state': {
      const topic = to.ofChannel(f.channel as string);
      if (topic?.member && topic.presence) to.emit(topic, sharedText(frame, to.vsn, topic.name, E.presenceState, () => toPhoenix(f.state as WalcastPresence)));
      return;
    }
    case 'presence_diff': {
      const topic = to.ofChannel(f.channel as string);
      if (!topic?.member || !topic.presence) return;
      const diff = diffToPhoenix(f.joins as WalcastPresence, f.leaves as WalcastPresence);
      if (Object.keys(diff.joins).length + Object.keys(diff.leaves).length > 0) to.emit(topic, sharedText(frame, to.vsn, topic.name, E.presenceDiff, () => diff));
      return;
    }
    case 'left': {
      // Not ours: the channel's policies no longer let this user in.
      const topic = to.ofChannel(f.channel as string);
      if (!topic?.member) return;
      topic.member = false;
      to.errored(topic, `no longer a member of ${topic.channel}`);
      return;
    }
    case 'resync': {
      const topic = to.ofSub(f.sub as number);
      if (topic) to.errored(topic, `changes can no longer be delivered in order (${String(f.reason)}); rejoining`);
      return;
    }
    case 'error': {
      // A subscription ended by walcast (a refreshed token may not read its table).
      const topic = typeof f.id === 'number' ? to.ofSub(f.id) : undefined;
      if (topic) to.errored(topic, String(f.message));
      return;
    }
    default:
    // welcome, progress, pong, authenticated...: nothing for a Supabase client.
  }
}
