// One replication connection: START_REPLICATION through pg-logical-replication, raw pgoutput
// payloads out, our own standby status updates in, and pause/resume for backpressure.
// The library's automatic and timer acks are off (its ack also adds 1 to the LSN, which would
// skip the transaction at exactly the acknowledged commit LSN on replay); we write the status
// update ourselves: https://www.postgresql.org/docs/current/protocol-replication.html
import { LogicalReplicationService } from 'pg-logical-replication';
import { AbstractPlugin } from 'pg-logical-replication/dist/output-plugins/abstract.plugin.js';
import type pg from 'pg';
import { PG_EPOCH_MS, PGOUTPUT_PROTO_VERSION, REPLICATION_SESSION_OPTIONS } from '../constants.js';
import { clientConfig } from '../pg/connect.js';
import { quoteIdent } from '../pg/ident.js';
import { formatLsn, parseLsn } from '../protocol/lsn.js';

export interface StreamOptions {
  url: string;
  slot: string;
  publication: string;
  /** Create the slot as TEMPORARY on this very connection first (it dies with it). */
  temporary: boolean;
  startLsn: bigint;
}

export interface StreamHandlers {
  /** A pgoutput payload. The buffer is only valid during the call: copy what you keep. */
  data(payload: Buffer): void;
  keepalive(walEnd: bigint, replyRequested: boolean): void;
  started(): void;
  /** The stream ended: error, or null on a clean stop. Called once. */
  ended(err: Error | null): void;
}

class PgoutputRaw extends AbstractPlugin<StreamOptions> {
  get name(): string {
    return 'pgoutput';
  }
  parse(buffer: Buffer): Buffer {
    return buffer; // decoded by src/capture/pgoutput.ts
  }
  async start(client: pg.Client, slotName: string, lastLsn: string): Promise<unknown> {
    const o = this.options;
    if (o.temporary) {
      await client.query(`CREATE_REPLICATION_SLOT ${quoteIdent(slotName)} TEMPORARY LOGICAL pgoutput (SNAPSHOT 'nothing')`);
    }
    const pub = quoteIdent(o.publication).replace(/'/g, "''");
    // messages 'false': logical decoding messages are not sent at all. Any role that can log in
    // can emit them (pg_logical_emit_message), millions in one transaction; walcast reads none.
    return client.query(
      `START_REPLICATION SLOT ${quoteIdent(slotName)} LOGICAL ${lastLsn} ` +
        `(proto_version '${PGOUTPUT_PROTO_VERSION}', publication_names '${pub}', messages 'false')`,
    );
  }
}

interface Internals {
  _connection: { stream?: { pause(): void; resume(): void }; sendCopyFromChunk(b: Buffer): void } | null;
}

export class ReplicationStream {
  private readonly service: LogicalReplicationService;
  private endedOnce = false;
  private stopping = false;

  constructor(private readonly opts: StreamOptions, private readonly on: StreamHandlers) {
    this.service = new LogicalReplicationService(
      { ...clientConfig(opts.url), options: REPLICATION_SESSION_OPTIONS },
      { acknowledge: { auto: false, timeoutSeconds: 0 }, flowControl: { enabled: false } },
    );
    this.service.on('data', (_lsn: string, payload: Buffer) => this.on.data(payload));
    this.service.on('heartbeat', (lsn: string, _ts: number, reply: boolean) => this.on.keepalive(parseLsn(lsn), reply));
    this.service.on('start', () => this.on.started());
    this.service.on('error', (err: Error) => this.end(err));
  }

  open(): void {
    const plugin = new PgoutputRaw(this.opts);
    this.service.subscribe(plugin, this.opts.slot, formatLsn(this.opts.startLsn)).then(
      () => this.end(this.stopping ? null : new Error('replication stream ended')),
      (err: Error) => this.end(this.stopping ? null : err),
    );
  }

  /** Standby status update: `flushed` becomes the slot's confirmed_flush_lsn. */
  sendStatus(received: bigint, flushed: bigint, requestReply: boolean): boolean {
    const conn = this.connection();
    if (!conn) return false;
    const b = Buffer.alloc(34);
    b[0] = 0x72; // 'r'
    b.writeBigUInt64BE(received, 1);
    b.writeBigUInt64BE(flushed, 9);
    b.writeBigUInt64BE(flushed, 17);
    b.writeBigInt64BE(BigInt(Date.now() - PG_EPOCH_MS) * 1000n, 25);
    b[33] = requestReply ? 1 : 0;
    conn.sendCopyFromChunk(b);
    return true;
  }

  pause(): void {
    this.connection()?.stream?.pause();
  }

  resume(): void {
    this.connection()?.stream?.resume();
  }

  async close(): Promise<void> {
    this.stopping = true;
    await this.service.destroy().catch(() => {});
    this.end(null);
  }

  private connection(): Internals['_connection'] {
    // The library keeps the pg connection private; we need its socket for pause/resume and to
    // send our own status updates.
    return (this.service as unknown as Internals)._connection;
  }

  private end(err: Error | null): void {
    if (this.endedOnce) return;
    this.endedOnce = true;
    if (!this.stopping) void this.service.destroy().catch(() => {});
    this.on.ended(err);
  }
}

