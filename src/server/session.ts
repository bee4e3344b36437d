// One WebSocket client: the hub's Peer. Frames are queued and sent corked at flush(); a socket
// past its backpressure limit is closed with 4008 (the client resumes from its last position),
// never silently skipped. A closed socket is never touched again (uWS would throw).
import { randomUUID } from 'node:crypto';
import type { WebSocket } from 'uWebSockets.js';
import type { Position } from '../capture/position.js';
import { CLOSE } from '../constants.js';
import type { Peer } from '../hub/types.js';

export interface SessionData {
  session: Session | null;
}

export class Session implements Peer {
  readonly id = randomUUID();
  closed = false;
  lastPos: Position | null = null;
  /** Subscribe requests between validation and registration, by id key (duplicate check). */
  readonly pending = new Set<string>();
  /** Strings are whole frames; a Buffer is a change's prefix, always followed by its body. */
  private queue: (string | Buffer)[] = [];

  constructor(
    private readonly ws: WebSocket<SessionData>,
    private readonly limit: number,
    private readonly onSlow: (s: Session) => void,
  ) {}

  push(frame: string): void {
    if (!this.closed) this.queue.push(frame);
  }

  pushChange(prefix: Buffer, body: Buffer): void {
    if (!this.closed) this.queue.push(prefix, body);
  }

  flush(): void {
    if (this.closed || this.queue.length === 0) return;
    const frames = this.queue;
    this.queue = [];
    let slow = false;
    const ws = this.ws;
    ws.cork(() => {
      for (let i = 0; i < frames.length; i++) {
        // Checked before each frame: one flush may carry a large transaction, and past our limit
        // the socket is closed with 4008 rather than buffered further.
        if (ws.getBufferedAmount() > this.limit) {
          slow = true;
          break;
        }
        const f = frames[i];
        if (typeof f === 'string') {
          if (ws.send(f, false) === 2) slow = true; // 2: uWS dropped it
        } else {
          // The body is shared by every subscriber: sent as a continuation fragment, not copied.
          ws.sendFirstFragment(f, false);
          ws.sendLastFragment(frames[++i] as Buffer);
        }
        if (slow) break;
      }
    });
    if (slow || this.ws.getBufferedAmount() > this.limit) this.closeSlow();
  }

  backlog(): number {
    return this.closed ? 0 : this.ws.getBufferedAmount();
  }

  /** Sends one frame now (replies to the client's own messages). */
  reply(frame: string): void {
    this.push(frame);
    this.flush();
  }

  end(code: number, reason: string): void {
    if (this.closed) return;
    this.queue = [];
    this.ws.end(code, reason); // runs the close handler, which marks us closed
    this.closed = true;
  }

  private closeSlow(): void {
    this.onSlow(this);
    this.end(CLOSE.tooSlow, 'too slow: reconnect and resume from your last position');
  }
}
