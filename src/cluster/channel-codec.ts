// What nodes say to each other about channels on core NATS (docs/dev/cluster-plan.md §9):
// client broadcasts, presence diffs, presence snapshots (answers to a sync request), sync
// requests and liveness. Versioned JSON. Anyone allowed to publish on the cluster's subjects can
// send anything, so every decoder checks size, shape and bounds and throws only
// ClusterMessageError / ClusterMessageVersionError; the bridge drops and counts what fails.
import { ClusterMessageError, ClusterMessageVersionError } from '../errors.js';
import { CLUSTER, CLUSTER_CHANNELS } from '../constants.js';
import { LIMITS } from '../protocol/limits.js';
import type { Meta, PresenceLimits, PresenceMap } from '../hub/presence.js';

export const CHANNEL_CODEC_VERSION = 1;

/** One incarnation of a node: `inc` is random per process start. */
export interface NodeRef {
  node: string;
  inc: number;
}

export interface BroadcastMessage extends NodeRef {
  channel: string;
  event: string;
  /** The payload as JSON text (re-serialized from what was parsed: always valid JSON). */
  payloadJson: string;
  /** The sending user (the `from` of the frame). */
  from: string;
}

export interface PresenceMessage extends NodeRef {
  channel: string;
  /** Per (node, channel), from 1 at each opening of the channel on that node. */
  seq: number;
  joins: PresenceMap;
  leaves: PresenceMap;
}

export interface SyncRequest extends NodeRef {
  channel: string;
  /** Only this node should answer; null: every node with the channel open. */
  target: string | null;
}

export interface SnapshotMessage extends NodeRef {
  channel: string;
  /** The seq of the last diff this snapshot includes (0: none yet). */
  seq: number;
  state: PresenceMap;
  /** Its place among the parts of one snapshot (from 0), and whether more follow. */
  part: number;
  more: boolean;
}

export interface AliveMessage extends NodeRef {
  /** The node is stopping: forget it now. */
  gone: boolean;
}

/** What decoding checks beyond shape (the channel bounds of the receiving node). */
export interface CodecLimits {
  maxPayloadBytes: number;
  presence: PresenceLimits;
}

const NODE_ID = /^[\x21-\x7e]+$/;
const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: true });

function head(r: NodeRef): string {
  return `{"v":${CHANNEL_CODEC_VERSION},"node":${JSON.stringify(r.node)},"inc":${r.inc}`;
}

export function encodeBroadcast(m: BroadcastMessage): Uint8Array {
  // payloadJson is spliced in as is: it was serialized by the protocol parser.
  return enc.encode(`${head(m)},"channel":${JSON.stringify(m.channel)},"event":${JSON.stringify(m.event)},"from":${JSON.stringify(m.from)},"payload":${m.payloadJson}}`);
}

export function encodePresence(m: PresenceMessage): Uint8Array {
  return enc.encode(`${head(m)},"channel":${JSON.stringify(m.channel)},"seq":${m.seq},"joins":${JSON.stringify(m.joins)},"leaves":${JSON.stringify(m.leaves)}}`);
}

export function encodeSyncRequest(m: SyncRequest): Uint8Array {
  return enc.encode(`${head(m)},"channel":${JSON.stringify(m.channel)},"target":${JSON.stringify(m.target)}}`);
}

export function encodeAlive(m: AliveMessage): Uint8Array {
  return enc.encode(`${head(m)},"gone":${m.gone}}`);
}

/**
 * A node's presence of a channel as one or more snapshot messages of about `partBytes` each
 * (whole keys per part; NATS refuses messages above its max_payload). Always at least one.
 */
export function encodeSnapshot(r: NodeRef, channel: string, seq: number, state: PresenceMap, partBytes: number): Uint8Array[] {
  const parts: string[][] = [];
  let cur: string[] = [];
  let size = 0;
  for (const [key, metas] of Object.entries(state)) {
    const item = `${JSON.stringify(key)}:${JSON.stringify(metas)}`;
    if (cur.length > 0 && size + item.length > partBytes) {
      parts.push(cur);
      cur = [];
      size = 0;
    }
    cur.push(item);
    size += item.length + 1;
  }
  parts.push(cur);
  return parts.map((items, i) =>
    enc.encode(`${head(r)},"channel":${JSON.stringify(channel)},"seq":${seq},"part":${i},"more":${i < parts.length - 1},"state":{${items.join(',')}}}`),
  );
}

type Obj = Record<string, unknown>;

function bad(what: string): never {
  throw new ClusterMessageError(`channel message: ${what}`);
}

/** The JSON object of a message, its version and node checked. */
function open(data: Uint8Array): Obj & NodeRef {
  if (data.length > CLUSTER_CHANNELS.maxMessageBytes) bad(`${data.length} bytes, over ${CLUSTER_CHANNELS.maxMessageBytes}`);
  let v: unknown;
  try {
    v = JSON.parse(dec.decode(data));
  } catch {
    bad('not UTF-8 JSON');
  }
  if (!isObject(v)) bad('not a JSON object');
  if (v.v !== CHANNEL_CODEC_VERSION) {
    if (typeof v.v === 'number') throw new ClusterMessageVersionError(`channel message of version ${v.v}; this walcast reads ${CHANNEL_CODEC_VERSION}`);
    bad('no version');
  }
  nodeId(v, 'node');
  if (!Number.isSafeInteger(v.inc) || (v.inc as number) < 0) bad('inc is not a non-negative integer');
  return v as Obj & NodeRef;
}

function isObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(o: Obj, field: string, max: number): string {
  const s = o[field];
  if (typeof s !== 'string' || s.length === 0 || s.length > max) bad(`${field} is not a string of 1 to ${max} characters`);
  return s;
}

/** A node id as --node-id allows it (config.ts): visible ASCII. */
function nodeId(o: Obj, field: string): string {
  const s = str(o, field, CLUSTER.maxNodeIdLength);
  if (!NODE_ID.test(s)) bad(`${field} is not visible ASCII`);
  return s;
}

function seqOf(o: Obj, min: number): number {
  const s = o.seq;
  if (!Number.isSafeInteger(s) || (s as number) < min) bad(`seq is not an integer ≥ ${min}`);
  return s as number;
}

/** The channel named in the body; `expect` (from the subject) must be it. */
function channelOf(o: Obj, expect: ((name: string) => boolean) | null): string {
  const c = str(o, 'channel', LIMITS.channelLength);
  if (expect && !expect(c)) bad('channel does not match the subject');
  return c;
}

export function decodeBroadcast(data: Uint8Array, l: CodecLimits, expect: ((name: string) => boolean) | null = null): BroadcastMessage {
  const o = open(data);
  const channel = channelOf(o, expect);
  const event = str(o, 'event', LIMITS.eventLength);
  const from = str(o, 'from', CLUSTER_CHANNELS.maxKeyLength);
  if (!('payload' in o)) bad('no payload');
  const payloadJson = JSON.stringify(o.payload);
  if (Buffer.byteLength(payloadJson) > l.maxPayloadBytes) bad(`payload over ${l.maxPayloadBytes} bytes`);
  return { node: o.node, inc: o.inc, channel, event, payloadJson, from };
}

export function decodePresence(data: Uint8Array, l: CodecLimits, expect: ((name: string) => boolean) | null = null): PresenceMessage {
  const o = open(data);
  const channel = channelOf(o, expect);
  const seq = seqOf(o, 1);
  return { node: o.node, inc: o.inc, channel, seq, joins: presenceMap(o.joins, 'joins', l), leaves: presenceMap(o.leaves, 'leaves', l) };
}

export function decodeSyncRequest(data: Uint8Array, expect: ((name: string) => boolean) | null = null): SyncRequest {
  const o = open(data);
  const channel = channelOf(o, expect);
  const target = o.target === null ? null : nodeId(o, 'target');
  return { node: o.node, inc: o.inc, channel, target };
}

export function decodeSnapshot(data: Uint8Array, l: CodecLimits, expect: ((name: string) => boolean) | null = null): SnapshotMessage {
  const o = open(data);
  const channel = channelOf(o, expect);
  const seq = seqOf(o, 0);
  if (typeof o.more !== 'boolean') bad('more is not a boolean');
  if (!Number.isSafeInteger(o.part) || (o.part as number) < 0) bad('part is not a non-negative integer');
  return { node: o.node, inc: o.inc, channel, seq, state: presenceMap(o.state, 'state', l), part: o.part as number, more: o.more };
}

export function decodeAlive(data: Uint8Array): AliveMessage {
  const o = open(data);
  if (typeof o.gone !== 'boolean') bad('gone is not a boolean');
  return { node: o.node, inc: o.inc, gone: o.gone };
}

/**
 * `{key: [{session, state}, …]}` within the presence bounds of one node: keys and sessions of
 * bounded length, states JSON objects of at most maxPayloadBytes, at most metasPerKey per key and
 * metasTotal in all. Null-prototype: keys are user ids ("__proto__" is an ordinary one).
 */
function presenceMap(v: unknown, field: string, l: CodecLimits): PresenceMap {
  if (!isObject(v)) bad(`${field} is not an object`);
  const out = Object.create(null) as PresenceMap;
  let total = 0;
  for (const [key, metas] of Object.entries(v)) {
    if (key.length === 0 || key.length > CLUSTER_CHANNELS.maxKeyLength) bad(`${field}: a key of ${key.length} characters`);
    if (!Array.isArray(metas) || metas.length === 0 || metas.length > l.presence.metasPerKey) bad(`${field}: not 1 to ${l.presence.metasPerKey} metas under a key`);
    total += metas.length;
    if (total > l.presence.metasTotal) bad(`${field}: over ${l.presence.metasTotal} metas`);
    out[key] = metas.map((m: unknown): Meta => {
      if (!isObject(m)) bad(`${field}: a meta is not an object`);
      const session = str(m, 'session', CLUSTER_CHANNELS.maxSessionLength);
      if (!isObject(m.state)) bad(`${field}: a state is not an object`);
      if (Buffer.byteLength(JSON.stringify(m.state)) > l.maxPayloadBytes) bad(`${field}: a state over ${l.maxPayloadBytes} bytes`);
      if (m.label === undefined) return { session, state: m.state };
      if (typeof m.label !== 'string' || m.label.length > CLUSTER_CHANNELS.maxKeyLength) bad(`${field}: a label not a string of at most ${CLUSTER_CHANNELS.maxKeyLength} characters`);
      return { session, state: m.state, label: m.label };
    });
  }
  return out;
}
