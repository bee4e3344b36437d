// The client's keepalive: after `everyMs` without any message from the server, send a `ping`;
// no message at all within the next interval means the connection is dead (a half-open TCP
// connection never reports its own death).

/** @internal */
export class Keepalive {
  private timer: ReturnType<typeof setInterval> | null = null;
  private lastMessageAt = 0;
  private awaitingPong = false;

  /** `everyMs` 0 (or less) disables it. */
  constructor(private readonly everyMs: number) {}

  /**
   * Watches a connection that just opened. `ping` sends a ping (false when it could not);
   * `dead` drops the connection.
   */
  start(ping: () => boolean, dead: (reason: string) => void): void {
    this.stop();
    const every = this.everyMs;
    if (!(every > 0)) return;
    this.lastMessageAt = Date.now();
    this.timer = setInterval(() => {
      if (this.awaitingPong) {
        dead(`no reply to a ping within ${every} ms`);
        return;
      }
      if (Date.now() - this.lastMessageAt >= every - 10 && ping()) this.awaitingPong = true;
    }, every);
  }

  /** Any message from the server: the connection is alive. */
  heard(): void {
    this.lastMessageAt = Date.now();
    this.awaitingPong = false;
  }

  /** The connection is gone. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.awaitingPong = false;
  }
}
