// The cluster's node list (docs/dev/cluster-plan.md §10): each node keeps its entry in the
// cluster bucket (`node.<id token>`), rewritten every few seconds and on a role change, deleted
// when it stops. `walcast status` and GET /status read it; an entry not rewritten for a while
// is a node that died without deleting it (2.9's KV has no per-key TTL: readers judge by age).
import type { KV } from '@nats-io/kv';
import { CLUSTER_NODES } from '../constants.js';
import type { Logger } from '../log.js';
import { nodeKey } from './subjects.js';

/** What a node writes about itself. */
export interface NodeEntry {
  node: string;
  role: 'capture' | 'edge';
  /** host:port of its WebSocket listener, once listening. */
  address: string | null;
  /** When this process started (ISO). */
  since: string;
  /** When the entry was written (ISO, the writer's clock). */
  at: string;
}

/** An entry as read, with its age by the stored message's timestamp. */
export interface NodeSeen extends NodeEntry {
  /** Seconds since the entry was last written (by the NATS server's clock). */
  ageSeconds: number;
  /** Not rewritten for CLUSTER_NODES.staleAfterMs: the node is gone or cut off. */
  stale: boolean;
}

export class NodeRegistry {
  private timer: NodeJS.Timeout | null = null;
  private address: string | null = null;
  private readonly since = new Date().toISOString();
  private writing: Promise<void> = Promise.resolve();

  constructor(
    private readonly kv: KV,
    private readonly nodeId: string,
    private readonly role: () => 'capture' | 'edge',
    private readonly log: Logger,
  ) {}

  start(): void {
    this.beat();
    this.timer = setInterval(() => this.beat(), CLUSTER_NODES.beatMs);
  }

  /** The listener's address, known once it listens. */
  announce(address: string): void {
    this.address = address;
    this.beat();
  }

  /** Writes the entry now (a role change). */
  beat(): void {
    const entry: NodeEntry = { node: this.nodeId, role: this.role(), address: this.address, since: this.since, at: new Date().toISOString() };
    this.writing = this.writing.then(() =>
      this.kv.put(nodeKey(this.nodeId), JSON.stringify(entry)).then(
        () => {},
        (err: unknown) => this.log.debug({ err: (err as Error).message }, 'writing this node\'s registry entry failed'),
      ),
    );
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.writing;
    await this.kv.delete(nodeKey(this.nodeId)).catch(() => {});
  }
}

/** Every node entry in the bucket, oldest-written last; malformed entries are skipped. */
export async function listNodes(kv: KV, now = Date.now()): Promise<NodeSeen[]> {
  const keys: string[] = [];
  for await (const k of await kv.keys('node.>')) keys.push(k);
  const out: NodeSeen[] = [];
  for (const k of keys.slice(0, CLUSTER_NODES.maxListed)) {
    const e = await kv.get(k);
    if (!e || e.operation !== 'PUT') continue;
    try {
      const v = JSON.parse(e.string()) as NodeEntry;
      if (typeof v.node !== 'string' || (v.role !== 'capture' && v.role !== 'edge')) continue;
      const ageMs = Math.max(0, now - e.created.getTime());
      out.push({ node: v.node, role: v.role, address: typeof v.address === 'string' ? v.address : null, since: String(v.since), at: String(v.at), ageSeconds: ageMs / 1000, stale: ageMs > CLUSTER_NODES.staleAfterMs });
    } catch {
      // not JSON: skipped
    }
  }
  return out.sort((a, b) => a.node.localeCompare(b.node));
}
