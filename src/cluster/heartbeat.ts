import { CLUSTER_CAPTURE_CHAIN } from '../constants.js';

// Capture's heartbeat on core NATS (`walcast.<ns>.hb`, every half second while it leads): what
// edges need to know that core NATS lost nothing at the end of their chain (`last`), and from
// which stream seq capture routes their interests (`appliedRev` / `appliedSeq`).
export interface CaptureHeartbeat {
  v: 1;
  node: string;
  epoch: number;
  /** The epoch marker's seq. */
  markerSeq: number;
  /** The interest bucket's revision capture routes by… */
  appliedRev: number;
  /** …for every message after this seq. */
  appliedSeq: number;
  /** Every seq up to it is stored. */
  acked: number;
  /** Per incarnation, the last stored seq concerning it. */
  last: Record<string, number>;
}

const MAX_BYTES = 1024 * 1024;

/** The JSON body of a heartbeat. */
export function encodeHeartbeat(hb: Omit<CaptureHeartbeat, 'v'>): string {
  return JSON.stringify({ v: CLUSTER_CAPTURE_CHAIN.heartbeatVersion, ...hb });
}

const uint = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** The heartbeat in a message, or null when it is not one (foreign or malformed: ignored). */
export function parseHeartbeat(data: Uint8Array): CaptureHeartbeat | null {
  if (data.length > MAX_BYTES) return null;
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.length).toString('utf8'));
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null) return null;
  const h = v as Record<string, unknown>;
  if (h.v !== 1 || typeof h.node !== 'string' || !uint(h.epoch) || !uint(h.markerSeq) || !uint(h.appliedRev) || !uint(h.appliedSeq) || !uint(h.acked)) return null;
  if (typeof h.last !== 'object' || h.last === null || Array.isArray(h.last)) return null;
  const last: Record<string, number> = {};
  for (const [inc, seq] of Object.entries(h.last as Record<string, unknown>)) {
    if (!uint(seq)) return null;
    last[inc] = seq;
  }
  return { v: 1, node: h.node, epoch: h.epoch, markerSeq: h.markerSeq, appliedRev: h.appliedRev, appliedSeq: h.appliedSeq, acked: h.acked, last };
}
