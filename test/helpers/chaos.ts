// Pieces of the chaos suites (issue 6): a `walcast serve` child that can be killed and started
// again on the same port, a client that resumes on every disconnect and refetches on `resync`,
// a writer that keeps committing through server restarts, and the delivery oracle.

import pg from 'pg';
import type { Test } from 'tap';
import { query, sleep, waitUntil } from './capture.js';
import { spawnCli, type CliProcess } from './cli.js';
import { hsToken, SECRET } from './tokens.js';
import { comparePos, freePort, servedPort, WsClient, type ChangeMsg, type Msg } from './ws.js';

/** `walcast serve` as a child process on a fixed port; `start` retries while the port or the slot is still held by a killed one. */
export class ServeChild {
  proc: CliProcess | null = null;
  /** Starts that had to wait for the slot (a killed daemon's walsender still holding it). */
  slotBusy = 0;
  private readonly all: CliProcess[] = [];

  constructor(private readonly args: string[]) {}

  async start(): Promise<CliProcess> {
    for (let attempt = 0; ; attempt++) {
      const p = spawnCli(['serve', ...this.args], { timeoutMs: 240_000 });
      this.all.push(p);
      try {
        await p.waitFor(() => servedPort(p.stderr) !== null, 'the serving line', 15_000);
        this.proc = p;
        return p;
      } catch (err) {
        const r = await p.wait(2_000);
        if (attempt < 50 && /in use|address in use|cannot listen/i.test(r.stderr)) {
          if (/in use/.test(r.stderr)) this.slotBusy++;
          await sleep(100);
          continue;
        }
        throw err;
      }
    }
  }

  get pid(): number | undefined {
    return this.proc?.child.pid;
  }

  /** SIGKILL, then wait for the exit; resolves with the signal that ended it. */
  async kill(): Promise<NodeJS.Signals | null> {
    const p = this.proc;
    this.proc = null;
    if (!p) return null;
    p.kill('SIGKILL');
    return (await p.wait(5_000)).signal;
  }

  /** SIGTERM and the exit code (0 for a clean stop). */
  async stop(): Promise<number | null> {
    const p = this.proc;
    this.proc = null;
    if (!p) return null;
    p.kill('SIGTERM');
    return (await p.wait(15_000)).code;
  }

  /** Kills whatever is left (teardown). */
  killAll(): void {
    for (const p of this.all) p.kill('SIGKILL');
  }
}

export interface Row {
  id: number;
  room: number;
}

/**
 * One subscriber that behaves as docs/PROTOCOL.md §7 asks of a client:
 *
 *   connecting ─► subscribed(since) ─► live ──(close)──► backoff ─► connecting
 *                       │ resync
 *                       ▼
 *       subscribe anew (no since) ─► `subscribed` ─► refetch the table ─► live
 *
 * It records every change it is sent, the rows a refetch gave it, and every resync.
 */
export class ResumingClient {
  /** Changes received, in arrival order, each tagged with the epoch (resyncs before it). */
  readonly got: { id: number; room: number; pos: string; epoch: number }[] = [];
  /** Row ids a refetch after `resync` returned. */
  readonly refetched = new Set<number>();
  readonly resyncs: string[] = [];
  readonly errors: Msg[] = [];
  connections = 0;
  lastPos: string | null = null;
  private epoch = 0;
  private stopped = false;
  private paused = false;
  private current: WsClient | null = null;
  private live = false;
  private fresh = true;
  private readonly loop: Promise<void>;

  constructor(
    readonly user: string,
    private readonly port: () => number,
    private readonly table: string,
    /** SQL returning `id` of every row this user may read (the refetch after resync). */
    private readonly entitled: { url: string; sql: string },
  ) {
    this.loop = this.run();
  }

  get isLive(): boolean {
    return this.live && this.current?.isOpen === true;
  }

  /** Disconnects and stays away until `resume()` (keeping its position). */
  async pause(): Promise<void> {
    this.paused = true;
    this.current?.terminate();
    await waitUntil(() => this.current === null, 5_000, () => `${this.user} disconnected`);
  }

  resume(): void {
    this.paused = false;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.current?.terminate();
    await this.loop;
  }

  private async run(): Promise<void> {
    let delay = 20;
    while (!this.stopped) {
      if (this.paused) {
        await sleep(20);
        continue;
      }
      let c: WsClient;
      try {
        c = await WsClient.connect(`ws://127.0.0.1:${this.port()}/ws?token=${await hsToken({ sub: this.user })}`, { timeoutMs: 2_000 });
      } catch {
        await sleep(delay);
        delay = Math.min(delay * 2, 500);
        continue;
      }
      delay = 20;
      this.current = c;
      this.connections++;
      this.live = false;
      c.onMessage((m) => void this.onMessage(c, m));
      this.subscribe(c);
      await c.closed;
      this.live = false;
      this.current = null;
    }
  }

  private subscribe(c: WsClient): void {
    this.fresh = this.lastPos === null;
    c.send({ type: 'subscribe', id: 'k', table: this.table, ...(this.lastPos ? { since: this.lastPos } : {}) });
  }

  /** The rows a client reads from the table when it starts without a position; retried through restarts. */
  private async refetch(): Promise<void> {
    for (;;) {
      try {
        const rows = await query<{ id: string }>(this.entitled.url, this.entitled.sql);
        for (const r of rows) this.refetched.add(Number(r.id));
        return;
      } catch {
        await sleep(100);
      }
    }
  }

  private async onMessage(c: WsClient, m: Msg): Promise<void> {
    if (m.type === 'change' && m.sub === 'k') {
      const ch = m as ChangeMsg;
      const row = ch.new ?? ch.old;
      this.got.push({ id: Number(row?.id), room: Number(row?.room), pos: ch.pos, epoch: this.epoch });
      this.lastPos = ch.pos;
    } else if (m.type === 'progress' && m.sub === 'k' && this.live) {
      this.lastPos = m.pos as string;
    } else if (m.type === 'subscribed' && m.id === 'k') {
      // Subscribed without a position (the first time, or after a resync): what committed up
      // to here comes from the table.
      if (this.fresh) await this.refetch();
      this.live = true;
    } else if (m.type === 'resync') {
      this.resyncs.push(String(m.reason));
      this.epoch++;
      this.lastPos = null;
      this.live = false;
      if (c.isOpen) this.subscribe(c);
    } else if (m.type === 'error') {
      this.errors.push(m);
    }
  }
}

/** Rooms the steady writer writes to; a test's own rows go elsewhere. */
export const WRITER_ROOMS = 3;

/** Commits 1–3 row transactions into `table (room)` until stopped, reconnecting through server restarts. */
export function steadyWriter(url: string, table: string, rooms = WRITER_ROOMS, gapMs = 4) {
  let stop = false;
  let committed = 0;
  let failures = 0;
  const done = (async () => {
    let client: pg.Client | null = null;
    while (!stop) {
      try {
        if (!client) {
          const cl = new pg.Client({ connectionString: url });
          cl.on('error', () => {});
          await cl.connect();
          client = cl;
        }
        const n = 1 + Math.floor(Math.random() * 3);
        await client.query('begin');
        for (let i = 0; i < n; i++) await client.query(`insert into ${table} (room) values ($1)`, [1 + Math.floor(Math.random() * rooms)]);
        await client.query('commit');
        committed += n;
      } catch {
        failures++; // the server went away mid-transaction: the table says whether it committed
        await client?.end().catch(() => {});
        client = null;
        await sleep(50);
      }
      await sleep(gapMs);
    }
    await client?.end().catch(() => {});
  })();
  return {
    get committed() {
      return committed;
    },
    get failures() {
      return failures;
    },
    async stop(): Promise<void> {
      stop = true;
      await done;
    },
  };
}

/** Rows the client has, by stream or by refetch. */
function covered(c: ResumingClient): Set<number> {
  const s = new Set(c.refetched);
  for (const g of c.got) s.add(g.id);
  return s;
}

/** Waits until every client has every row it is entitled to among `rows`. */
export async function converged(clients: { c: ResumingClient; may: (r: Row) => boolean }[], rows: Row[], timeoutMs = 30_000): Promise<void> {
  await waitUntil(
    () => clients.every(({ c, may }) => {
      const have = covered(c);
      return rows.every((r) => !may(r) || have.has(r.id));
    }),
    timeoutMs,
    // One set per client (not per row: 35k rows made that minutes long, past tap's timeout).
    () =>
      clients
        .map(({ c, may }) => {
          const have = covered(c);
          return `${c.user}: missing ${rows.filter((r) => may(r) && !have.has(r.id)).length}`;
        })
        .join(', '),
  );
}

/**
 * The oracle, for rows up to the newest of `rows` (the writer may still be going): each entitled
 * row reached the client exactly once, or came from a refetch after a resync (then at most once
 * by stream); no row it may not read; within an epoch, positions and ids strictly increase.
 */
export function checkDelivery(t: Test, c: ResumingClient, rows: Row[], may: (r: Row) => boolean, what: string): void {
  const maxId = rows.length ? rows[rows.length - 1].id : 0;
  const got = c.got.filter((g) => g.id <= maxId);
  const counts = new Map<number, number>();
  for (const g of got) counts.set(g.id, (counts.get(g.id) ?? 0) + 1);
  const twice = [...counts].filter(([, n]) => n > 1).map(([id]) => id);
  const entitled = rows.filter(may);
  const missing = entitled.filter((r) => !counts.has(r.id) && !c.refetched.has(r.id)).map((r) => r.id);
  const allowed = new Set(entitled.map((r) => r.id));
  const leaked = got.filter((g) => !allowed.has(g.id)).map((g) => g.id);
  let disorder = 0;
  for (let i = 1; i < got.length; i++) {
    const a = got[i - 1];
    const b = got[i];
    // One writer commits rooms 1..WRITER_ROOMS in id order: for its rows, id order is commit order.
    const writers = a.room <= WRITER_ROOMS && b.room <= WRITER_ROOMS;
    if (a.epoch === b.epoch && (comparePos(a.pos, b.pos) >= 0 || (writers && a.id >= b.id))) disorder++;
  }
  t.same(missing.slice(0, 10), [], `${what}: ${c.user} has all ${entitled.length} rows it may read (${missing.length} missing)`);
  t.same(twice.slice(0, 10), [], `${what}: ${c.user} got no row twice`);
  t.same(leaked.slice(0, 10), [], `${what}: ${c.user} got no row it may not read`);
  t.equal(disorder, 0, `${what}: ${c.user}: positions and commit order strictly increasing`);
}

/** The users of the chaos suites and what each may read of `items`, as policies and as an oracle. */
export const USERS: { user: string; cond: string; sql: string; may: (r: Row) => boolean }[] = [
  { user: 'alice', cond: 'r.obj.row.room == 1', sql: 'room = 1', may: (r) => r.room === 1 },
  { user: 'bob', cond: 'r.obj.row.room == 2', sql: 'room = 2', may: (r) => r.room === 2 },
  { user: 'carol', cond: 'true', sql: 'true', may: () => true },
  { user: 'dave', cond: 'r.obj.row.room == 9', sql: 'room = 9', may: (r) => r.room === 9 },
];

export interface ChaosWorld {
  url: string;
  port: number;
  serve: ServeChild;
  clients: { c: ResumingClient; may: (r: Row) => boolean }[];
  client(user: string): ResumingClient;
  rows(): Promise<Row[]>;
  /** Waits for every client to have every committed row, then checks the oracle for each. */
  checkpoint(t: Test, what: string): Promise<Row[]>;
}

/**
 * A migrated database with `items (id, room)` and one policy per user, `walcast serve` started
 * as a child (JWT auth, slot `chaos`), and a resuming client per user, all live.
 */
export async function chaosWorld(t: Test, url: string, serveArgs: string[] = []): Promise<ChaosWorld> {
  await query(url, `create table items (id bigserial primary key, room int not null, body text not null default repeat('x', 40)); select walcast.enable('items')`);
  for (const u of USERS) {
    await query(url, "insert into walcast.casbin_rule (ptype, v0, v1, v2, v3, v4) values ('p', $1, 'table', 'public.items', 'read', $2)", [u.user, u.cond]);
  }
  const port = await freePort();
  const serve = new ServeChild(['--db', url, '--port', String(port), '--slot', 'chaos', '--jwt-secret', SECRET, '--progress-interval', '300ms', ...serveArgs]);
  t.teardown(() => {
    if (!t.passing()) t.comment(`walcast serve, last lines:\n${serve.proc?.stderr.split('\n').slice(-25).join('\n')}`);
    serve.killAll();
  });
  await serve.start();
  const clients = USERS.map((u) => ({ c: new ResumingClient(u.user, () => port, 'public.items', { url, sql: `select id from items where ${u.sql}` }), may: u.may }));
  t.teardown(() => Promise.all(clients.map(({ c }) => c.stop())));
  await waitUntil(() => clients.every(({ c }) => c.isLive), 15_000, () => 'every client subscribed');
  const rows = async () => (await query<{ id: string; room: number }>(url, 'select id::text as id, room from items order by items.id')).map((r) => ({ id: Number(r.id), room: r.room }));
  return {
    url,
    port,
    serve,
    clients,
    rows,
    client: (user) => clients.find(({ c }) => c.user === user)!.c,
    async checkpoint(t, what) {
      const all = await rows();
      await converged(clients, all);
      await sleep(200); // a duplicate would arrive now
      for (const { c, may } of clients) checkDelivery(t, c, all, may, what);
      return all;
    },
  };
}
