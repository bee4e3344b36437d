// The walcast processes of bench/cluster.ts: `node bin/walcast.js serve …` children (each on its
// own core when there is one, each SIGKILLable), as one single node or as cluster nodes on one
// slot; their GET /status, which node captures, and the warnings they log.
import { startWalcast, type Walcast } from './daemon.js';
import { log, sleep } from './common.js';

export interface NodeStatus {
  replication: string;
  clients: number;
  subscriptions: number;
  cluster?: {
    node: string;
    role: 'capture' | 'edge';
    capture: { node: string; epoch: number } | null;
    follower: { seq: number; position: string | null; epoch: number | null; gaps: number; skipped: number; fetched: number } | null;
  };
}

/** One walcast process: running (w) or not, the same id through restarts. */
export class WalcastNode {
  w: Walcast | null = null;
  starts = 0;
  /** Warning and error lines it logged (pino JSON), the last ones kept. */
  readonly warnings: string[] = [];
  warningCount = 0;

  constructor(
    readonly id: string,
    private readonly serveArgs: string[],
  ) {}

  get port(): number {
    return this.w?.port ?? 0;
  }

  get pid(): number {
    return this.w?.pid ?? 0;
  }

  async start(): Promise<void> {
    const keep = (rest: string, level: string): void => {
      if (rest.includes('AUTHORIZATION IS OFF')) return; // --no-auth, as asked
      this.warningCount++;
      this.warnings.push(`${level}${rest}`);
      if (this.warnings.length > 20) this.warnings.shift();
    };
    this.w = await startWalcast({
      nodeArgs: [],
      profileDir: null,
      serveArgs: this.serveArgs,
      // With --log-level warn every pino line is a warning or worse.
      marks: Object.fromEntries(['40', '50', '60'].map((l) => [`{"level":${l}`, (rest: string) => keep(rest, `{"level":${l}`)])),
      startTimeoutMs: 60_000,
      stopTimeoutMs: 15_000,
    });
    this.starts++;
  }

  /** SIGKILL; resolves once it has exited. */
  async kill(): Promise<void> {
    const w = this.w;
    this.w = null;
    if (!w) return;
    w.child.kill('SIGKILL');
    await w.exited;
  }

  async stop(): Promise<void> {
    const w = this.w;
    this.w = null;
    await w?.stop();
  }

  async status(timeoutMs = 1_000): Promise<NodeStatus | null> {
    if (!this.w) return null;
    try {
      const res = await fetch(`http://127.0.0.1:${this.w.port}/status`, { signal: AbortSignal.timeout(timeoutMs) });
      return (await res.json()) as NodeStatus;
    } catch {
      return null;
    }
  }

  /** The capture node by its own status: role capture and its replication streaming. */
  async capturing(): Promise<boolean> {
    const s = await this.status();
    return s?.cluster?.role === 'capture' && s.replication === 'streaming';
  }
}

export interface ClusterNodeOptions {
  db: string;
  nats: string;
  slot: string;
  namespace: string;
  ackDelay: string;
  streamMaxBytes: string;
  replicas: number;
}

/** `count` cluster nodes n1…nN on one slot and stream. */
export function clusterNodes(count: number, o: ClusterNodeOptions): WalcastNode[] {
  return Array.from({ length: count }, (_, i) => {
    const id = `n${i + 1}`;
    return new WalcastNode(id, [
      '--db', o.db, '--no-auth', '--port', '0', '--slot', o.slot, '--log-level', 'warn',
      '--nats', o.nats, '--node-id', id, '--cluster', o.namespace,
      '--stream-replicas', String(o.replicas), '--stream-max-bytes', o.streamMaxBytes, '--nats-ack-delay', o.ackDelay,
    ]);
  });
}

/** A single node without NATS, as deployed before cluster mode. */
export function singleNode(db: string, slot: string): WalcastNode {
  return new WalcastNode('single', ['--db', db, '--no-auth', '--port', '0', '--slot', slot, '--log-level', 'warn']);
}

/** Index of the running node that captures and streams (skipping `except`), or -1. */
export async function captureIndex(nodes: readonly WalcastNode[], except = -1): Promise<number> {
  const ok = await Promise.all(nodes.map((n, i) => (i === except || !n.w ? false : n.capturing())));
  return ok.indexOf(true);
}

/** Polls every `everyMs` until a node (not `except`) captures and streams; its index, or -1 on timeout. */
export async function waitCapture(nodes: readonly WalcastNode[], timeoutMs: number, except = -1, everyMs = 50): Promise<number> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const i = await captureIndex(nodes, except);
    if (i >= 0 || Date.now() > until) return i;
    await sleep(everyMs);
  }
}

/** Waits until every running node has read the stream up to `seq` (its follower's sequence). */
export async function waitFollowed(nodes: readonly WalcastNode[], seq: number, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const st = await Promise.all(nodes.map((n) => (n.w ? n.status() : Promise.resolve(null))));
    const behind = nodes.filter((n, i) => n.w && (st[i]?.cluster?.follower?.seq ?? -1) < seq);
    if (behind.length === 0) return true;
    if (Date.now() > until) {
      log(`  ${behind.map((n) => n.id).join(', ')} not at stream seq ${seq} after ${timeoutMs} ms`);
      return false;
    }
    await sleep(100);
  }
}
