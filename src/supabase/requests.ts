// walcast messages a Supabase connection makes of its Phoenix pushes, and their answers. Each
// carries a ref of our own ("sb1", "sb2"...), so that walcast's reply is told apart from
// everything else and reaches the part of the Phoenix exchange that waits for it. Messages
// walcast answers only on failure (broadcast, presence) are followed by a `ping`: its `pong`
// comes after any error, and means success otherwise.
import type { ClientMessage } from '../protocol/types.js';
import type { Handlers, RenderedSubscribe } from '../server/handlers.js';
import type { Session } from '../server/session.js';

/** A walcast frame, parsed. */
export type Native = { type: string; [field: string]: unknown };
export type Waiter = (f: Native) => void;

const REF_PREFIX = 'sb';

export class Requests {
  private readonly waiting = new Map<string, Waiter>();
  /**
   * Subscribes not answered yet, by walcast id → the ref their answer carries: a subscription
   * ended before it went live (a cluster catch-up cut short) is answered by a resync or error
   * naming its id, without the ref.
   */
  private readonly unanswered = new Map<number, string>();
  private nextRef = 0;

  constructor(
    private readonly handlers: Handlers,
    private readonly session: Session,
  ) {}

  /** Runs a walcast message; `then` gets its reply (none: the reply is dropped). */
  run(msg: ClientMessage | RenderedSubscribe, then: Waiter = noop): void {
    const id = msg.type === 'subscribe' && typeof msg.id === 'number' ? msg.id : null;
    const ref = this.ref(id === null ? then : (f) => (this.unanswered.delete(id), then(f)));
    this.handlers.run(this.session, { ...msg, ref } as ClientMessage);
    // Still unanswered (a subscription not live yet): its end may come by id.
    if (id !== null && this.waiting.has(ref)) this.unanswered.set(id, ref);
  }

  /** Runs a message walcast answers only on failure; `answer(null)` when it succeeded. */
  acknowledged(msg: ClientMessage, answer: (err: string | null) => void): void {
    let err: string | null = null;
    const ref = this.ref((f) => (err = messageOf(f)));
    this.handlers.run(this.session, { ...msg, ref } as ClientMessage);
    this.run({ type: 'ping' }, () => {
      this.waiting.delete(ref);
      answer(err);
    });
  }

  /**
   * A walcast frame that answers one of ours (by its ref, or a resync or error naming a
   * subscription not answered yet): handed to its waiter, true. False for everything else.
   */
  answer(f: Native): boolean {
    if (typeof f.ref === 'string' && f.ref.startsWith(REF_PREFIX) && this.take(f.ref, f)) return true;
    if (f.type !== 'resync' && f.type !== 'error') return false;
    const id = f.type === 'resync' ? f.sub : f.id;
    const ref = typeof id === 'number' ? this.unanswered.get(id) : undefined;
    return ref !== undefined && this.take(ref, f);
  }

  clear(): void {
    this.waiting.clear();
    this.unanswered.clear();
  }

  private take(ref: string, f: Native): boolean {
    const waiter = this.waiting.get(ref);
    if (!waiter) return false;
    this.waiting.delete(ref);
    waiter(f);
    return true;
  }

  private ref(waiter: Waiter): string {
    const ref = `${REF_PREFIX}${++this.nextRef}`;
    this.waiting.set(ref, waiter);
    return ref;
  }
}

function noop(): void {}

/** What a refusal says, for a Phoenix reply. */
export function messageOf(f: Native): string {
  if (typeof f.message === 'string') return f.message;
  if (f.type === 'resync') return `the subscription ended before it went live (${String(f.reason)}); retry`;
  return `unexpected reply ${JSON.stringify(f.type)}`;
}
