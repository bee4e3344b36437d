// The node's one connection to NATS: named `walcast <node-id>` (how operators and the benchmark
// find a node in the servers' /connz), reconnecting forever once it has connected, and a typed
// error when no server of the list can be reached at start.
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { ClusterConfig } from '../config.js';
import { CLUSTER } from '../constants.js';
import { NatsUnreachableError } from '../errors.js';
import type { Logger } from '../log.js';

/** The NATS connection name of a node: a fixed contract (docs/dev/cluster-plan.md §2). */
export function connectionName(nodeId: string): string {
  return `${CLUSTER.connectionNamePrefix}${nodeId}`;
}

/**
 * The wait before the next attempt grows with the outage: half its length so far, within
 * [reconnectMinMs, reconnectMaxMs], ±20 % so that nodes cut off together do not come back in
 * step. nats.js asks for it at each turn of its dial loop (per server), hence a function of
 * the outage's start rather than a counter.
 */
export function reconnectDelay(outageStart: number, now: number, random: () => number = Math.random): number {
  const base = Math.min(CLUSTER.reconnectMaxMs, Math.max(CLUSTER.reconnectMinMs, (now - outageStart) / 2));
  return Math.round(base * (0.8 + 0.4 * random()));
}

export interface NatsLink {
  readonly nc: NatsConnection;
  readonly name: string;
  /** Drains and closes; idempotent. */
  close(): Promise<void>;
}

export async function connectNats(cfg: Pick<ClusterConfig, 'servers' | 'tls' | 'nodeId'>, log: Logger): Promise<NatsLink> {
  const name = connectionName(cfg.nodeId);
  let outageStart: number | null = null;
  let nc: NatsConnection;
  try {
    nc = await connect({
      servers: cfg.servers,
      name,
      tls: cfg.tls ? {} : undefined,
      timeout: CLUSTER.connectTimeoutMs,
      // At start each server is tried once (waitOnFirstConnect off): none answering is an
      // error for the operator now, not a silent wait. Once connected: never give up.
      maxReconnectAttempts: -1,
      reconnectDelayHandler: () => reconnectDelay((outageStart ??= Date.now()), Date.now()),
    });
  } catch (err) {
    throw new NatsUnreachableError(
      `cannot connect to NATS at ${cfg.servers.join(',')}: ${err instanceof Error ? err.message : String(err)}`,
      'check --nats (WALCAST_NATS): the servers run, listen on those addresses and accept this node',
      { cause: err },
    );
  }
  log.info({ nats: nc.getServer(), name }, 'connected to NATS');
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') log.warn({ server: s.server }, 'NATS connection lost; reconnecting');
      else if (s.type === 'reconnect') {
        outageStart = null;
        log.info({ server: s.server }, 'NATS connection back');
      } else if (s.type === 'error') log.warn({ err: s.error.message }, 'NATS error');
    }
  })().catch(() => {}); // the iterator ends with the connection
  let closing: Promise<void> | null = null;
  return {
    nc,
    name,
    close() {
      closing ??= (async () => {
        if (nc.isClosed()) return;
        // drain() flushes what was published; a connection that is down (reconnecting) may
        // never drain, and a shutdown must not wait on NATS: bounded, then closed outright.
        let timer: NodeJS.Timeout | undefined;
        const bound = new Promise<void>((resolve) => (timer = setTimeout(resolve, CLUSTER.drainTimeoutMs)));
        await Promise.race([nc.drain().catch(() => {}), bound]);
        clearTimeout(timer);
        if (!nc.isClosed()) await nc.close().catch(() => {});
        await nc.closed();
      })();
      return closing;
    },
  };
}
