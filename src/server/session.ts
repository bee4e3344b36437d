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
  private queue: string[] = [];

  constructor(
    private readonly ws: WebSocket<SessionData>,
    private readonly limit: number,
    private readonly onSlow: (s: Session) => void,
  ) {}

  push(frame: string): void {
    if (!this.closed) this.queue.push(frame);
  }

  flush(): void {
    if (this.closed || this.queue.length === 0) return;
    const frames = this.queue;
    this.queue = [];
    let slow = false;
    this.ws.cork(() => {
      for (const f of frames) {
        // Checked before each frame: one flush may carry a large transaction, and past our limit
        // the socket is closed with 4008 rather than buffered further. 2 means uWS dropped it.
        if (this.ws.getBufferedAmount() > this.limit || this.ws.send(f, false) === 2) {
          slow = true;
          break;
        }
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
