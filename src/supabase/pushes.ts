// A Phoenix `broadcast` or `presence` push as the walcast message it becomes, checked by
// walcast's own rules (validateClientMessage: sizes, nesting, names); a WireError says why not.
import { BadRequestError, WireError } from '../errors.js';
import { validateClientMessage } from '../protocol/parse.js';
import type { ClientMessage } from '../protocol/types.js';
import type { LabelledPresence } from '../server/handlers.js';
import type { DecodedFrame } from './phoenix.types.js';
import type { Topic } from './topic.js';

/** `{type: "broadcast", event, payload}` (or a binary kind 3 push) to the topic's channel, with its `self`. */
export function broadcastMessage(topic: Topic, m: DecodedFrame): ClientMessage {
  if (m.binary && m.payload.encoding === 'binary') throw new BadRequestError('binary broadcast payloads are not supported by walcast: send JSON');
  const p = m.payload as Record<string, unknown>;
  return validateClientMessage({ type: 'broadcast', channel: topic.channel, event: p.event, payload: p.payload ?? null, self: topic.config.self });
}

/** `{type: "presence", event: "track" | "untrack", payload}`, labelled with the topic's presence key. */
export function presenceMessage(topic: Topic, m: DecodedFrame): LabelledPresence {
  const p = m.payload as Record<string, unknown>;
  if (p.event !== 'track' && p.event !== 'untrack') throw new BadRequestError('presence.event must be "track" or "untrack"');
  const state = p.event === 'track' ? (p.payload ?? {}) : null;
  return { ...(validateClientMessage({ type: 'presence', channel: topic.channel, state }) as LabelledPresence), label: topic.config.presenceKey };
}

/** What a refusal says in a Phoenix reply. */
export function reasonOf(err: unknown): string {
  return err instanceof WireError ? err.message : 'internal error';
}
