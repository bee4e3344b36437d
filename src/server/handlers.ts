// What the server does with each client message. Validation errors become `error` replies with
// their code; the connection stays open.
import { WireError, UnknownTableError, DuplicateIdError, LimitExceededError, UnknownSubscriptionError, BadRequestError } from '../errors.js';
import type { Catalog } from '../hub/catalog.js';
import { compileFilter, eqIndexable, parseFilter } from '../hub/filter.js';
import { key, type Hub } from '../hub/hub.js';
import type { Logger } from '../log.js';
import { errorMsgFrom, parseClientMessage, pong, unsubscribed, withContext } from './protocol.js';
import type { ClientMessage, SubscribeMessage } from './protocol.types.js';
import type { Session } from './session.js';

export interface HandlerDeps {
  hub: Hub;
  catalog: Catalog;
  log: Logger;
  maxMessageBytes: number;
  maxSubscriptions: number;
}

export class Handlers {
  constructor(private readonly d: HandlerDeps) {}

  message(session: Session, data: ArrayBuffer, isBinary: boolean): void {
    let msg: ClientMessage;
    try {
      msg = parseClientMessage(data, isBinary, this.d.maxMessageBytes);
    } catch (err) {
      this.fail(session, err);
      return;
    }
    switch (msg.type) {
      case 'ping':
        session.reply(pong(msg.ref));
        return;
      case 'subscribe':
        this.subscribe(session, msg).catch((err) => this.fail(session, err, msg));
        return;
      case 'unsubscribe':
        if (this.d.hub.unsubscribe(session, msg.id)) session.reply(unsubscribed(msg.id, msg.ref));
        else this.fail(session, new UnknownSubscriptionError(`no subscription with id ${JSON.stringify(msg.id)}`), msg);
        return;
      case 'auth':
        return; // authorization is off (--no-auth): tokens are accepted and not needed
      default:
        this.fail(session, new BadRequestError(`"${msg.type}" is not available yet: channels come with a later version`), msg);
    }
  }

  private async subscribe(session: Session, msg: SubscribeMessage): Promise<void> {
    const hub = this.d.hub;
    const k = key(msg.id);
    const subs = hub.subscriptionsOf(session);
    if (subs.has(k) || session.pending?.has(k)) {
      throw new DuplicateIdError(`subscription id ${JSON.stringify(msg.id)} is already in use on this connection`);
    }
    if (subs.size + (session.pending?.size ?? 0) >= this.d.maxSubscriptions) {
      throw new LimitExceededError(`at most ${this.d.maxSubscriptions} subscriptions per connection`);
    }
    (session.pending ??= new Set()).add(k);
    try {
      const filter = parseFilter(msg.filter);
      const table = await this.d.catalog.table(msg.table.qualified);
      if (!table) {
        throw new UnknownTableError(`table ${msg.table.qualified} does not exist or is not enabled (select walcast.enable('${msg.table.qualified}'))`);
      }
      const predicate = compileFilter(filter, table.columns);
      const indexTerm = filter.terms.find((t) => t.op === 'eq' && eqIndexable(table.columns.find((c) => c.name === t.column)?.typeOid ?? 0)) ?? null;
      if (session.closed) return;
      hub.subscribe({
        peer: session,
        id: msg.id,
        ref: msg.ref,
        table: table.qualified,
        events: msg.events ? new Set(msg.events) : null,
        predicate,
        indexTerm,
        since: msg.since ?? null,
      });
    } finally {
      session.pending?.delete(k);
    }
  }

  private fail(session: Session, err: unknown, msg?: { ref?: string | number; id?: string | number }): void {
    if (!(err instanceof WireError)) {
      this.d.log.error({ err: (err as Error)?.message, stack: (err as Error)?.stack }, 'unexpected error handling a client message');
      err = new BadRequestError('internal error handling this message');
    }
    const e = withContext(err as WireError, { ref: msg?.ref, id: msg && 'id' in msg ? msg.id : undefined });
    session.reply(errorMsgFrom(e));
  }
}
