// Capture: one permanent (or, for `walcast tail`, temporary) logical slot read through pgoutput,
// committed transactions handed downstream in commit order, acknowledged only as far as allowed.
//
// States and the only changes between them: src/capture/state.ts (checked by setState).
// Checkpoint marks: src/capture/checkpoint.ts. Ordered delivery: src/capture/handoff.ts.
// Memory: a transaction holds at most maxTransactionBytes of changes (src/capture/assembler.ts);
// the handoff pauses the socket past maxPendingTransactions or that many bytes waiting; while
// types load the socket is paused too, so the backlog is what was already read.
import { EventEmitter } from 'node:events';
import pg from 'pg';
import { CAPTURE, DEFAULTS } from '../constants.js';
import { CaptureStateError, ReplicationLostError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { clientConfig, connect } from '../pg/connect.js';
import { RetryBackoff } from '../util/backoff.js';
import { TransactionAssembler } from './assembler.js';
import { Checkpoint } from './checkpoint.js';
import { Handoff } from './handoff.js';
import { formatLsn, parseLsn } from '../protocol/lsn.js';
import { asDecodeError, isRowChange, PgoutputDecoder } from './pgoutput.js';
import { checkServer, deadAfter, ensureSlot, ensureSlotWhenFree, readSenderTimeout } from './preflight.js';
import { explainStreamError, isFatalAtStart } from './start-failures.js';
import { canMove } from './state.js';
import { ReplicationStream } from './stream.js';
import { ALL_TYPES_SQL, TYPE_INFO_SQL, TypeRegistry, type PgTypeInfo } from './types-registry.js';
import type { CaptureOptions } from './capture-options.js';
import type { CaptureState, Transaction } from './types.js';

export type { CaptureOptions } from './capture-options.js';

interface Pending {
  tx: Transaction | null; // null: a replayed transaction, skipped, that only advances the mark
  endLsn: bigint;
  /** Bytes of its change messages (what the handoff may hold is bounded by these too). */
  bytes: number;
}

export class Capture extends EventEmitter {
  private state: CaptureState = 'idle';
  private readonly log: Logger;
  private readonly types = new TypeRegistry();
  private readonly assembler: TransactionAssembler;
  private readonly backoff: RetryBackoff;
  private meta: pg.Pool | null = null;
  private stream: ReplicationStream | null = null;
  private decoder: PgoutputDecoder;
  private generation = 0;
  private readonly checkpoint: Checkpoint;
  private readonly handoff: Handoff<Pending>;
  // Raw messages waiting while type metadata loads.
  private blocked = false;
  private backlog: Buffer[] = [];
  private consumerHeld = false;
  private lastMessageAt = 0;
  private timer: NodeJS.Timeout | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private firstStart: { resolve: () => void; reject: (e: Error) => void } | null = null;
  private released: Promise<void> | null = null;
  private stopping: Promise<void> | null = null;
  private readonly limits: Required<Pick<CaptureOptions, 'statusIntervalMs' | 'maxPendingTransactions' | 'pingAfterMs' | 'deadAfterMs'>>;

  constructor(private readonly opts: CaptureOptions) {
    super();
    this.log = opts.logger ?? silentLogger;
    const maxTransactionBytes = opts.maxTransactionBytes ?? DEFAULTS.maxTransactionBytes;
    this.assembler = new TransactionAssembler({ after: opts.after ?? null, maxBytes: maxTransactionBytes, onChange: opts.onChange });
    this.backoff = new RetryBackoff(opts.backoffBaseMs ?? DEFAULTS.backoffBaseMs, opts.backoffCapMs ?? DEFAULTS.backoffCapMs);
    this.decoder = new PgoutputDecoder(this.types);
    this.checkpoint = new Checkpoint(opts.hold);
    this.limits = {
      statusIntervalMs: opts.statusIntervalMs ?? DEFAULTS.statusIntervalMs,
      maxPendingTransactions: opts.maxPendingTransactions ?? DEFAULTS.maxPendingTransactions,
      pingAfterMs: opts.pingAfterMs ?? CAPTURE.pingAfterMs,
      deadAfterMs: opts.deadAfterMs ?? CAPTURE.minDeadAfterMs,
    };
    this.handoff = new Handoff<Pending>(
      {
        deliver: (p) => (p.tx ? opts.onTransaction?.(p.tx) : opts.onCommit?.()),
        done: (p) => this.checkpoint.markProcessed(p.endLsn),
        failed: (err) => this.downstreamFailed(err),
        pressure: (paused) => (paused ? this.stream?.pause() : this.resumeIfFree()),
      },
      this.limits.maxPendingTransactions,
      (p) => p.bytes,
      maxTransactionBytes,
    );
  }

  /** Checkpoint marks for metrics: the furthest WAL position seen and the acknowledged one. */
  get lsns(): { received: bigint; acked: bigint; processed: bigint } {
    const c = this.checkpoint;
    return { received: c.receivedLsn, acked: c.ackedLsn, processed: c.processedLsn };
  }

  /** The state, read through a getter so TypeScript does not narrow it across awaits. */
  get current(): CaptureState {
    return this.state;
  }

  get status(): { state: CaptureState; acked: string; processed: string; pending: number } {
    const c = this.checkpoint;
    return { state: this.state, acked: formatLsn(c.ackedLsn), processed: formatLsn(c.processedLsn), pending: this.handoff.size };
  }

  /**
   * Resolves once streaming; rejects (state `failed`) when a preflight check fails or the first
   * stream fails in a way retrying cannot mend (isFatalAtStart). Such a failure is reported here
   * only, not also as 'fatal'.
   */
  async start(): Promise<void> {
    if (this.state !== 'idle') throw new CaptureStateError(`capture already ${this.state}: start() is called once`, 'report it: it is a bug in walcast');
    this.setState('connecting');
    try {
      await this.preflight();
    } catch (err) {
      if (this.current === 'connecting') this.setState('failed'); // unless stop() came first
      await this.release();
      throw err;
    }
    if (this.current !== 'connecting') {
      // stop() was called while the checks ran: do not start streaming behind its back.
      await this.meta?.end().catch(() => {});
      throw new Error('capture stopped before it started');
    }
    const started = new Promise<void>((resolve, reject) => (this.firstStart = { resolve, reject }));
    this.timer = setInterval(() => this.tick(), this.limits.statusIntervalMs);
    this.connectStream();
    return started;
  }

  /**
   * Final acknowledgement of what was processed, then close: `stopping`, then `stopped`. After a
   * failure it releases what is left and the state stays `failed`. Every call waits for the same.
   */
  stop(): Promise<void> {
    if (this.state === 'failed') return this.release();
    return (this.stopping ??= (async () => {
      this.setState('stopping');
      await this.release();
      this.setState('stopped');
      const first = this.firstStart;
      this.firstStart = null;
      first?.reject(new Error('stopped before streaming'));
    })());
  }

  /**
   * Lets go of everything: timers, a last status update (what was processed), the stream, the
   * pool. Done once, for whoever asks first (stop(), a fatal error); later calls wait for it.
   */
  private release(): Promise<void> {
    return (this.released ??= (async () => {
      if (this.timer) clearInterval(this.timer);
      if (this.retryTimer) clearTimeout(this.retryTimer);
      this.sendStatus(false);
      const stream = this.stream;
      this.stream = null;
      this.generation++; // late callbacks of the stream become stale
      await stream?.close();
      await this.meta?.end().catch(() => {});
    })());
  }

  /**
   * A failure nothing will retry: straight to `failed`, which /status and the health check
   * report while the owner shuts down, then everything is released. Reported once: through
   * start() while it is pending, else as 'fatal'. While stopping, or once stopped, the state
   * stays (the table lists no way from there) and the error is still reported.
   */
  private fail(err: Error): void {
    const first = this.firstStart;
    this.firstStart = null;
    if (canMove(this.state, 'failed')) {
      this.setState('failed');
      void this.release();
    }
    if (first) first.reject(err);
    else this.emit('fatal', err);
  }

  private async preflight(): Promise<void> {
    const client = await connect(this.opts.url);
    try {
      await checkServer(client, this.opts.publication);
      if (!this.opts.temporary) {
        const slot = await ensureSlotWhenFree(client, this.opts.slot);
        this.checkpoint.resumeFrom(slot.confirmedFlush);
        // Downstream's window starts at confirmedFlush: nothing before it will be sent again.
        // What committed before walAtStart is replayed history, not news.
        const { rows: wal } = await client.query<{ lsn: string }>('select pg_current_wal_lsn()::text as lsn');
        this.emit('ready', { confirmedFlush: slot.confirmedFlush, created: slot.created, walAtStart: parseLsn(wal[0].lsn) });
        if (slot.created) this.emit('slotCreated', { invalidated: slot.invalidated, confirmedFlush: slot.confirmedFlush, atStart: true });
        if (slot.invalidated) this.log.warn({ slot: this.opts.slot }, 'slot had been invalidated and was recreated');
      }
      if (this.opts.deadAfterMs === undefined) this.limits.deadAfterMs = deadAfter(await readSenderTimeout(client));
      const { rows } = await client.query<PgTypeInfo>(ALL_TYPES_SQL);
      for (const row of rows) this.types.add(row);
    } finally {
      await client.end().catch(() => {});
    }
    this.meta = new pg.Pool({ ...clientConfig(this.opts.url), max: 1 });
    this.meta.on('error', () => {}); // an idle pooled client losing its server is not fatal
  }

  private connectStream(): void {
    const gen = ++this.generation;
    if (!this.setState('connecting')) return;
    this.decoder = new PgoutputDecoder(this.types); // relations are sent again per session
    this.assembler.reset();
    this.backlog = [];
    this.blocked = false;
    this.lastMessageAt = Date.now();
    this.stream = new ReplicationStream(
      { url: this.opts.url, slot: this.opts.slot, publication: this.opts.publication, temporary: !!this.opts.temporary, startLsn: this.startLsn() },
      {
        data: (payload) => gen === this.generation && this.onData(payload),
        keepalive: (walEnd, reply) => gen === this.generation && this.onKeepalive(walEnd, reply),
        started: () => gen === this.generation && this.onStarted(),
        ended: (err) => gen === this.generation && this.onEnded(err),
      },
    );
    this.stream.open();
  }

  /**
   * Where the stream starts: the slot's acknowledged position, or `startLsn` when it is further
   * (a cluster capture resuming after what the stream holds: Postgres then skips the commits
   * before it itself, rather than sending them for the assembler to skip).
   */
  private startLsn(): bigint {
    const from = this.opts.startLsn;
    return from !== undefined && from > this.checkpoint.ackedLsn ? from : this.checkpoint.ackedLsn;
  }

  private onStarted(): void {
    if (!this.setState('streaming')) return;
    if (this.consumerHeld) this.stream?.pause(); // a new stream after a reconnect: still held
    this.log.info({ slot: this.opts.slot, from: formatLsn(this.startLsn()) }, 'replication streaming');
    const first = this.firstStart;
    this.firstStart = null;
    first?.resolve();
  }

  private onEnded(err: Error | null): void {
    // Only a live stream can be lost. Stopping, failed, or waiting to reconnect: one retry loop at a time.
    if (this.state !== 'connecting' && this.state !== 'streaming') return;
    this.stream = null;
    if (this.firstStart && isFatalAtStart(err)) {
      // Nothing streamed yet: start() rejects with it, like a failed check.
      this.fail(explainStreamError(err as Error, this.opts.slot));
      return;
    }
    if (this.opts.temporary) {
      // A temporary slot died with its connection: what committed meanwhile is unrecoverable.
      this.fail(
        new ReplicationLostError(
          `replication connection lost (${err?.message ?? 'stream ended'}); a temporary slot cannot resume`,
          'run it again, or read a permanent slot with --slot NAME to resume where it stopped',
          { cause: err },
        ),
      );
      return;
    }
    const delay = this.backoff.next();
    const hint = err ? explainStreamError(err, this.opts.slot).hint : undefined;
    this.log.warn({ err: err?.message, hint, retryInMs: delay, attempt: this.backoff.attempts }, 'replication stream lost; reconnecting');
    if (this.setState('backoff')) this.retryTimer = setTimeout(() => void this.reconnect(), delay);
  }

  private async reconnect(): Promise<void> {
    if (this.state !== 'backoff') return;
    try {
      const client = await connect(this.opts.url);
      try {
        const slot = await ensureSlot(client, this.opts.slot);
        if (slot.created) {
          // Dropped or invalidated from outside: positions before now cannot be honoured.
          this.log.warn({ slot: this.opts.slot, invalidated: slot.invalidated }, 'slot was gone and has been recreated');
          this.checkpoint.reset(slot.confirmedFlush);
          this.emit('slotCreated', { invalidated: slot.invalidated, confirmedFlush: slot.confirmedFlush });
        }
      } finally {
        await client.end().catch(() => {});
      }
    } catch (err) {
      // Server still down, or the old walsender has not yet released the slot: wait again.
      if (this.state !== 'backoff') return;
      const delay = this.backoff.next();
      this.log.warn({ err: (err as Error).message, retryInMs: delay, attempt: this.backoff.attempts }, 'reconnect failed');
      this.retryTimer = setTimeout(() => void this.reconnect(), delay);
      return;
    }
    if (this.state === 'backoff') this.connectStream();
  }

  private onData(payload: Buffer): void {
    this.lastMessageAt = Date.now();
    if (this.blocked) {
      this.backlog.push(Buffer.from(payload)); // pg reuses its read buffer: copy what we keep
      return;
    }
    this.process(payload);
  }

  private process(payload: Buffer): void {
    let msg;
    try {
      if (this.assembler.oversized || (isRowChange(payload) && this.assembler.overflowsWith(payload.length))) {
        // Past the bound: a row change is only counted, its rows are not even decoded.
        const relations = this.decoder.relationsOf(payload);
        if (relations) return this.assembler.skip(relations, payload.length);
      }
      msg = this.decoder.decode(payload);
    } catch (err) {
      this.failStream(asDecodeError(err));
      return;
    }
    if (msg.tag === 'relation') {
      this.emit('relation', msg.relation); // sent at first use and after schema changes
      const missing = this.decoder.unknownTypes(msg.relation);
      if (missing.length > 0) this.loadTypes(missing, msg.relation.oid);
      return;
    }
    let tx: Transaction | null;
    try {
      tx = this.assembler.push(msg, payload.length);
    } catch (err) {
      this.failStream(asDecodeError(err));
      return;
    }
    if (msg.tag === 'commit') {
      this.checkpoint.markReceived(msg.endLsn);
      // An oversized transaction holds no changes: it weighs nothing.
      this.handoff.push({ tx, endLsn: msg.endLsn, bytes: tx && !tx.oversize ? this.assembler.lastBytes : 0 });
    }
  }

  /** Types created after start (enums, domains, arrays of them): hold the stream until known. */
  private loadTypes(oids: number[], relationOid: number): void {
    const gen = this.generation;
    this.blocked = true;
    this.stream?.pause();
    const meta = this.meta;
    if (!meta) return;
    meta.query<PgTypeInfo>(TYPE_INFO_SQL, [oids]).then(
      ({ rows }) => {
        if (gen !== this.generation) return;
        for (const row of rows) this.types.add(row);
        this.decoder.refreshDecoders(relationOid);
        this.blocked = false;
        const backlog = this.backlog;
        this.backlog = [];
        for (let i = 0; i < backlog.length; i++) {
          if (this.blocked) {
            this.backlog.push(...backlog.slice(i)); // blocked again by a later relation
            return;
          }
          this.process(backlog[i]);
        }
        this.resumeIfFree();
      },
      (err: Error) => gen === this.generation && this.failStream(err),
    );
  }

  /**
   * A streaming consumer (onChange) whose output is full holds the socket until it drained: its
   * changes arrive mid-transaction, where the handoff's pressure cannot act.
   */
  holdInput(held: boolean): void {
    this.consumerHeld = held;
    if (held) this.stream?.pause();
    else this.resumeIfFree();
  }

  private resumeIfFree(): void {
    if (!this.blocked && !this.consumerHeld && !this.handoff.isPaused) this.stream?.resume();
  }

  private onKeepalive(walEnd: bigint, replyRequested: boolean): void {
    this.lastMessageAt = Date.now();
    this.checkpoint.markReceived(walEnd);
    // Nothing half-received or unprocessed: everything before walEnd has been handled.
    if (!this.assembler.inTransaction && this.handoff.size === 0 && !this.blocked && walEnd > this.checkpoint.processedLsn) {
      this.checkpoint.markProcessed(walEnd);
      this.emit('progress', walEnd);
    }
    if (replyRequested) this.sendStatus(false, true);
  }

  /** Downstream could not take a transaction: fail without acknowledging it, so it is kept. */
  private downstreamFailed(err: Error): void {
    this.log.error({ err: err.message }, 'downstream failed; capture stops without acknowledging');
    this.fail(err);
  }

  /** Drops the current stream (its late callbacks become stale) and goes the way of a lost one. */
  private failStream(err: Error): void {
    this.log.error({ err: err.message }, 'replication stream failed');
    const stream = this.stream;
    this.stream = null;
    this.generation++;
    void stream?.close();
    this.onEnded(err);
  }

  private tick(): void {
    if (this.state !== 'streaming') return;
    const silentFor = Date.now() - this.lastMessageAt;
    if (silentFor > this.limits.deadAfterMs) {
      this.log.warn({ silentForMs: silentFor }, 'replication stream silent; reconnecting');
      this.failStream(new Error(`no message from the server for ${silentFor} ms`));
      return;
    }
    this.sendStatus(silentFor > this.limits.pingAfterMs);
  }

  /**
   * Our standby status update; sent when the target moved, or when the server asks for one.
   *
   * A reply the server asked for while the window holds the slot back reports flush as invalid
   * (0), which leaves the slot where it is. A walsender shutting down (Postgres stopped with
   * -m fast) asks for a reply and exits only once the reported flush position, or the write
   * position when flush is invalid, reaches what it sent: a held-back flush never would, and
   * the shutdown would hang until pg_ctl gave up. See WalSndDone and
   * ProcessStandbyReplyMessage in src/backend/replication/walsender.c.
   */
  private sendStatus(requestReply: boolean, reply = false): void {
    const target = this.checkpoint.target();
    const write = this.checkpoint.receivedFor(target);
    const moved = target !== this.checkpoint.ackedLsn;
    if ((moved || requestReply || (reply && target === write)) && this.stream?.sendStatus(write, target, requestReply)) this.checkpoint.confirm(target);
    // Sent last, so that it is what the walsender holds (a new target went just before).
    if (reply && target < write) this.stream?.sendStatus(write, 0n, false);
  }

  /**
   * Moves to `to` when TRANSITIONS (src/capture/state.ts) lists the change; says whether it did.
   *
   * A change the table does not list is a bug here. It is refused, logged at error level and
   * ends the capture like any fatal error (CaptureStateError, through start() or 'fatal'), not
   * thrown: setState runs inside the replication socket's callbacks and timers, where a throw is
   * an uncaught exception that kills the daemon mid-callback, without the last status update or
   * the 1001 close its clients get from an orderly stop. Through 'fatal' the owner (serve, tail)
   * shuts down in order; nothing unprocessed was acknowledged, so a restart resumes from the slot.
   */
  private setState(to: CaptureState): boolean {
    const from = this.state;
    if (from === to) return true; // not a change
    if (!canMove(from, to)) {
      this.log.error({ from, to }, 'capture state change refused: not in the transition table');
      this.fail(new CaptureStateError(`capture cannot go from ${from} to ${to}`, 'report it: it is a bug in walcast; a restart resumes from the slot'));
      return false;
    }
    this.state = to;
    if (to === 'streaming') this.backoff.reset();
    this.emit('state', to);
    return true;
  }
}
