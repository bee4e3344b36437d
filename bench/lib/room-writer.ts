// The churn and soak benchmarks' table and writer. Chat-message-shaped rows, each carrying its
// room's sequence number `seq` (1, 2, 3… per room) and `sent_at_ms` (the writer's clock just
// before the INSERT). Rows of one room always go over the same connection, so they commit in
// seq order: a subscriber of a room must see 1, 2, 3… with no hole and no repeat, across a
// reconnect that resumes with `since` too (bench/lib/churn-clients.ts checks that).
// The writer runs until stopped, in one-second chunks of writer.ts's pacedInserts, each started
// on the second.
import type pg from 'pg';
import { Histogram, type HistogramData } from './histogram.js';
import { log, sleepUntil } from './common.js';
import { nowMs } from './rpc.js';
import { pacedInserts } from './writer.js';

/** Column order of the table: the clients read `room`, `seq` and `sent_at_ms` in this order. */
export async function createRoomTable(db: pg.Client, table: string): Promise<void> {
  await db.query(`create table ${table} (
    id bigint primary key, room int not null, seq int not null, sent_at_ms float8 not null, author text not null, body text not null)`);
  await db.query(`select walcast.enable('${table}')`);
}

/** What the writer did since the last take(). */
export interface WriterTake {
  commits: number;
  /** Writer-side round trip of each INSERT (statement + commit), ms. */
  commit: HistogramData;
  /** How late a one-second chunk started at worst (the previous one still committing), ms. */
  maxLagMs: number;
  failures: number;
}

export class RoomWriter {
  private readonly seq: Int32Array;
  private nextId = 1;
  private stopping = false;
  private loop: Promise<void> | null = null;
  private readonly commit = new Histogram();
  private commits = 0;
  private maxLagMs = 0;
  private failures = 0;
  /** Rows written in all. */
  total = 0;

  constructor(
    private readonly conns: pg.Client[],
    private readonly table: string,
    private readonly rooms: number,
    private readonly rate: number,
  ) {
    if (rooms < conns.length) throw new Error(`RoomWriter: ${rooms} rooms for ${conns.length} connections`);
    this.seq = new Int32Array(rooms);
  }

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.loop;
  }

  take(): WriterTake {
    const t: WriterTake = { commits: this.commits, commit: this.commit.take(), maxLagMs: this.maxLagMs, failures: this.failures };
    this.commits = 0;
    this.maxLagMs = 0;
    this.failures = 0;
    return t;
  }

  private async run(): Promise<void> {
    const text = `insert into ${this.table} (id, room, seq, sent_at_ms, author, body) values ($1, $2, $3, $4, $5, $6)`;
    const w = this.conns.length;
    const t0 = nowMs();
    // Chunk j (one second's worth of rows, paced by pacedInserts) starts at t0 + j s, or as
    // soon as chunk j − 1 has committed when that is later: the writer never runs ahead of its
    // schedule, and falls behind only when Postgres cannot keep up (maxLagMs says by how much).
    for (let j = 0; !this.stopping; j++) {
      await sleepUntil(t0 + j * 1000);
      if (this.stopping) break;
      this.maxLagMs = Math.max(this.maxLagMs, nowMs() - (t0 + j * 1000));
      const n = this.rate;
      let k = 0;
      let seq = 0;
      // pacedInserts sends the k-th row of a chunk over conns[k % w]: pick its room among those
      // of that connection (room % w === k % w), so one room's rows commit in order.
      const next = (): { id: number; room: number } => {
        const lane = k++ % w;
        const room = lane + w * Math.floor(Math.random() * Math.ceil((this.rooms - lane) / w));
        seq = ++this.seq[room];
        return { id: this.nextId++, room };
      };
      try {
        const r = await pacedInserts(this.conns, this.rate, n, text, next, (id, room, sent) => [id, room, seq, sent, `u${id % 1000}`, 'lorem ipsum '.repeat(1 + (id % 8)) + id]);
        for (let i = 0; i < r.commitMs.length; i++) this.commit.add(r.commitMs[i]);
      } catch (err) {
        // A failed INSERT leaves a hole in its room's seq: the clients would report it as a gap.
        this.failures++;
        log(`writer: ${(err as Error).message}`);
      }
      this.commits += n;
      this.total += n;
    }
  }
}
