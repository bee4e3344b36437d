// The cluster stream's figures for GET /status, `walcast status` and the metrics: read every
// couple of seconds (one STREAM.INFO request, and a message read when the first or last
// sequence moved), never on the request path.
import type { JetStreamManager } from '@nats-io/jetstream';
import { CLUSTER_NODES } from '../constants.js';
import { formatWalPosition } from '../protocol/position.js';
import { CLUSTER_HEADERS, readPositionHeader } from './ctl.js';
import { NS_PER_MS } from './stream.js';

export interface StreamFigures {
  name: string;
  replicas: number;
  /** The NATS server leading the stream (its Raft leader). */
  leader: string | null;
  /** Replicas behind or offline, by server name. */
  lagging: string[];
  messages: number;
  bytes: number;
  firstSeq: number;
  lastSeq: number;
  /** Positions of the first and last messages: the cluster's resume window. */
  firstPosition: string | null;
  lastPosition: string | null;
  maxAgeSeconds: number;
  maxBytes: number;
  /** When these figures were read (ISO). */
  readAt: string;
}

/** Reads the stream's figures once. */
export async function readStreamFigures(jsm: JetStreamManager, stream: string, known?: StreamFigures | null): Promise<StreamFigures> {
  const info = await jsm.streams.info(stream);
  const s = info.state;
  const position = async (seq: number, was: string | null | undefined, wasSeq: number | undefined): Promise<string | null> => {
    if (s.messages === 0 || seq === 0) return null;
    if (was !== undefined && wasSeq === seq) return was;
    const m = await jsm.streams.getMessage(stream, { seq }).catch(() => null);
    const p = readPositionHeader(m?.header?.get(CLUSTER_HEADERS.position));
    return p ? formatWalPosition(p.lsn, p.index) : null;
  };
  const [firstPosition, lastPosition] = await Promise.all([position(s.first_seq, known?.firstPosition, known?.firstSeq), position(s.last_seq, known?.lastPosition, known?.lastSeq)]);
  return {
    name: stream,
    replicas: info.config.num_replicas,
    leader: info.cluster?.leader ?? null,
    lagging: (info.cluster?.replicas ?? []).filter((r) => !r.current || r.offline).map((r) => r.name),
    messages: s.messages,
    bytes: s.bytes,
    firstSeq: s.first_seq,
    lastSeq: s.last_seq,
    firstPosition,
    lastPosition,
    maxAgeSeconds: info.config.max_age / NS_PER_MS / 1000,
    maxBytes: info.config.max_bytes,
    readAt: new Date().toISOString(),
  };
}

/** Keeps the figures fresh in the background; `current` is null until the first read. */
export class StreamWatch {
  private timer: NodeJS.Timeout | null = null;
  private figures: StreamFigures | null = null;
  private reading = false;

  constructor(
    private readonly jsm: JetStreamManager,
    private readonly stream: string,
  ) {}

  get current(): StreamFigures | null {
    return this.figures;
  }

  start(): void {
    void this.read();
    this.timer = setInterval(() => void this.read(), CLUSTER_NODES.streamReadMs);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private async read(): Promise<void> {
    if (this.reading) return;
    this.reading = true;
    try {
      this.figures = await readStreamFigures(this.jsm, this.stream, this.figures);
    } catch {
      // NATS unreachable: the last figures stay, their readAt says how old they are
    } finally {
      this.reading = false;
    }
  }
}
