// A connection of the Supabase endpoint: a walcast Session (backpressure, timers, the hub's Peer)
// whose walcast frames are translated into Phoenix ones before they are queued. Change frames
// come already in Phoenix form (render.ts) and go out as they are.
import { Session } from '../server/session.js';

export class PhoenixSession extends Session {
  /** Turns a walcast frame (a reply, a broadcast, presence...) into Phoenix frames (connection.ts). */
  translate: (frame: string) => void = () => {};

  override push(frame: string): void {
    if (!this.closed) this.translate(frame);
  }

  /** Queues a Phoenix text frame as it is. */
  out(text: string): void {
    super.push(text);
  }
}
