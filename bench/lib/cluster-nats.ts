// What NATS itself says about the cluster's traffic: each server's /connz (the connections named
// `walcast <node-id>`: in_bytes is what the node sent, out_bytes what it received) and the
// stream's state (messages, bytes, last sequence), read by a bench connection of its own.
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { ThrowawayNats } from '../../src/nats/throwaway.js';
import { nowMs } from './rpc.js';

const NODE_PREFIX = 'walcast ';
const SENT = /"sent_at_ms":([0-9.eE+-]+)/;

export interface ConnBytes {
  /** The server the node is connected to, and the connection's id there. */
  server: string;
  cid: number;
  inBytes: number;
  outBytes: number;
  inMsgs: number;
  outMsgs: number;
}

interface Connz {
  connections?: Array<{ cid: number; name?: string; in_bytes: number; out_bytes: number; in_msgs: number; out_msgs: number }>;
}

/** Every running server's open connections named `walcast <id>`, by node id. */
export async function nodeConnections(nats: ThrowawayNats): Promise<Map<string, ConnBytes>> {
  const out = new Map<string, ConnBytes>();
  await Promise.all(
    nats.servers.filter((s) => s.running).map(async (s) => {
      const z = await s.monitor<Connz>('connz?limit=4096');
      for (const c of z.connections ?? []) {
        if (!c.name?.startsWith(NODE_PREFIX)) continue;
        out.set(c.name.slice(NODE_PREFIX.length), { server: s.name, cid: c.cid, inBytes: c.in_bytes, outBytes: c.out_bytes, inMsgs: c.in_msgs, outMsgs: c.out_msgs });
      }
    }),
  );
  return out;
}

export interface ConnDelta {
  /** Bytes NATS sent the node (the server's out_bytes): what the node received. */
  received: number;
  /** Bytes the node sent (publishes, acks, requests). */
  sent: number;
  receivedMsgs: number;
  sentMsgs: number;
  server: string;
  /** The node's connection changed between the readings (a reconnect): the figures are not a delta. */
  reconnected: boolean;
}

export function connDelta(before: ConnBytes | undefined, after: ConnBytes | undefined): ConnDelta | null {
  if (!after) return null;
  const same = !!before && before.server === after.server && before.cid === after.cid;
  const b = same ? before : { inBytes: 0, outBytes: 0, inMsgs: 0, outMsgs: 0 };
  return {
    received: after.outBytes - b.outBytes,
    sent: after.inBytes - b.inBytes,
    receivedMsgs: after.outMsgs - b.outMsgs,
    sentMsgs: after.inMsgs - b.inMsgs,
    server: after.server,
    reconnected: !same,
  };
}

export interface StreamState {
  messages: number;
  bytes: number;
  lastSeq: number;
  leader: string | null;
}

/** The bench's own NATS connection (named so that it is not taken for a node). */
export class StreamWatch {
  private constructor(
    private readonly nc: NatsConnection,
    private readonly jsm: JetStreamManager,
    readonly stream: string,
  ) {}

  static async open(nats: ThrowawayNats, stream: string): Promise<StreamWatch> {
    const nc = await connect({ servers: nats.urls.split(','), name: 'walcast-bench', maxReconnectAttempts: -1 });
    return new StreamWatch(nc, await jetstreamManager(nc), stream);
  }

  async state(): Promise<StreamState> {
    const info = await this.jsm.streams.info(this.stream);
    return { messages: info.state.messages, bytes: info.state.bytes, lastSeq: info.state.last_seq, leader: info.cluster?.leader ?? null };
  }

  /**
   * Arrival time − sent_at_ms of every change RePublished on `subject` (core NATS, sent by the
   * stream leader once a message is stored) whose row was sent at or after `sinceMs`: commit,
   * capture and the stream's replication, without the node that follows it.
   */
  tap(subject: string, sinceMs: number): { stop(): Promise<Float64Array> } {
    const samples: number[] = [];
    const sub = this.nc.subscribe(subject, {
      callback: (_err, m) => {
        const t = nowMs();
        const hit = SENT.exec(m.string());
        if (!hit) return;
        const sent = Number(hit[1]);
        if (sent >= sinceMs) samples.push(t - sent);
      },
    });
    return {
      stop: async () => {
        await this.nc.flush();
        sub.unsubscribe();
        return Float64Array.from(samples).sort();
      },
    };
  }

  async close(): Promise<void> {
    await this.nc.close().catch(() => {});
  }
}
