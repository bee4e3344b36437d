// walcast frames turned into Phoenix text once, not once per connection: a broadcast or presence
// frame is the same string for every member of a channel (Channels pushes one string to all), so
// the last one is parsed once, and its Phoenix text written once per serializer and topic.
import { encodeFrame } from './phoenix.js';
import type { Vsn } from './phoenix.types.js';
import type { Native } from './requests.js';

/** The last walcast frame translated, parsed, and its Phoenix texts by serializer and topic. */
const last = { frame: '', parsed: null as Native | null, out: new Map<string, string>() };

/** A walcast frame, parsed; null when it is not a JSON object. */
export function parsed(frame: string): Native | null {
  if (frame !== last.frame) {
    let f: unknown = null;
    try {
      f = JSON.parse(frame);
    } catch {
      // not a frame of ours: dropped
    }
    last.frame = frame;
    last.parsed = f !== null && typeof f === 'object' ? (f as Native) : null;
    last.out.clear();
  }
  return last.parsed;
}

/** The Phoenix text of `frame` (the one last parsed) for a topic: `payload()` is called once per serializer and topic. */
export function sharedText(frame: string, vsn: Vsn, topic: string, event: string, payload: () => unknown): string {
  const key = `${vsn}\u0000${topic}`;
  let text = last.frame === frame ? last.out.get(key) : undefined;
  if (text === undefined) {
    text = encodeFrame(vsn, { joinRef: null, ref: null, topic, event, payload: payload() });
    if (last.frame === frame) last.out.set(key, text);
  }
  return text;
}
