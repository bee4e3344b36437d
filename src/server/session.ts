// One WebSocket client: the hub's Peer. Frames are queued and sent corked at flush(); a socket
// past its backpressure limit is closed with 4008 (the client resumes from its last position),
// never silently skipped. A closed socket is never touched again (uWS would throw).
import { randomUUID } from 'node:crypto';
import type { WebSocket } from 'uWebSockets.js';
import type { Position } from '../capture/position.js';
import { CLOSE } from '../constants.js';
import type { Peer } from '../hub/types.js';
import type { Identity } from '../auth/jwt.js';

export interface SessionData {
  session: Session | null;
}

export class Session implements Peer {
  readonly id = randomUUID();
  closed = false;
  lastPos: Position | null = null;
  identity: Identity | null = null;
  /**
   * Subscribe requests between validation and registration, by id key (duplicate check);
   * created on first use: most connections never have two in flight, and idle ones are many.
   */
  pending: Set<string> | null = null;
  private queue: (string | Buffer)[] = [];

  constructor(
    private readonly ws: WebSocket<SessionData>,
    private readonly limit: number,
    private readonly onSlow: (s: Session) => void,
  ) {}

  push(frame: string): void {
    if (!this.closed) this.queue.push(frame);
  }

  pushFrame(frame: Buffer): void {
    if (!this.closed) this.queue.push(frame);
  }

  flush(): void {
    if (this.closed || this.queue.length === 0) return;
    const frames = this.queue;
    this.queue = [];
    let slow = false;
    const ws = this.ws;
    const limit = this.limit;
    ws.cork(() => {
      for (let i = 0; i < frames.length; i++) {
        // One flush may carry a large transaction: past our limit the socket is closed with 4008
        // rather than buffered further. Asking uWS costs a native call, so it is asked every
        // few frames and whenever a send reports backpressure (bounded overshoot: 16 frames).
        if ((i & 15) === 0 && ws.getBufferedAmount() > limit) {
          slow = true;
          break;
        }
        const r = ws.send(frames[i], false);
        if (r === 2) slow = true; // dropped by uWS
        const pressed = r !== 1;
        if (slow || (pressed && ws.getBufferedAmount() > limit)) {
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
