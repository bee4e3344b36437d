// Control messages of the cluster's stream (`walcast.<ns>.s.ctl`, docs/dev/cluster-plan.md §3.1,
// §3.3): written by the capture node between change messages, so they take their place in the
// one order every node follows.
//   epoch    a new capture leader took over; written with the stream's last sequence expected,
//            so it is the fence: everything a deposed leader still sends after it fails
//   mark     the slot moved on with nothing to publish (idle keepalive): progress positions
//   reset    positions before `floor` can no longer be honoured (the slot was recreated)
//   oversize a transaction past --max-transaction-bytes: its tables, not its changes
// And the headers every stream message carries.
import { ClusterMessageError } from '../errors.js';
import { formatLsn, isLsn, parseLsn } from '../protocol/lsn.js';
import { formatWalPosition, parseWalPosition, type Position } from '../protocol/position.js';
import { CHAIN_HEADER } from './chain-codec.js';
import { CODEC_VERSION } from './codec.js';

/** Headers of stream messages. */
export const CLUSTER_HEADERS = {
  /**
   * The position a message covers: a change's own, a mark's `<wal end - 1>:<max>`, an epoch
   * marker's the last position before it. A new capture leader resumes after the last one.
   */
  position: 'Walcast-Pos',
  /** `1` on the last change message of a transaction: followers hand it on then. */
  last: 'Walcast-Last',
  /** The epoch (the leader's election revision) of the capture that wrote the message. */
  epoch: 'Walcast-Epoch',
  /** `<epoch>;<inc>=<prevSeq>,…`: the incarnations a message concerns and each one's previous seq (chain-codec.ts); absent when it concerns nobody, and on epoch markers. */
  chain: CHAIN_HEADER,
  /** `<inc>,<inc>`: this change is the last of its transaction concerning these incs (not on the transaction's last change: `Walcast-Last` ends it for everyone). */
  ends: 'Walcast-Ends',
} as const;

/** Why a reset: the slot was recreated, or the stream lost messages the slot no longer holds. */
export type ResetReason = 'slot_recreated' | 'position_outside_window';

export type CtlMessage =
  | { type: 'epoch'; epoch: number; node: string; after: Position | null; end: bigint | null }
  | { type: 'mark'; wal: bigint }
  | { type: 'reset'; floor: Position; reason: ResetReason }
  | { type: 'oversize'; xid: number; lsn: bigint; end: bigint; t: string; tables: string[]; changes: number; bytes: number };

function bad(what: string): never {
  throw new ClusterMessageError(`malformed cluster control message: ${what}`);
}

export function encodeCtl(m: CtlMessage): Buffer {
  let body: Record<string, unknown>;
  switch (m.type) {
    case 'epoch':
      body = { type: m.type, epoch: m.epoch, node: m.node, after: m.after ? formatWalPosition(m.after.lsn, m.after.index) : null, end: m.end === null ? null : formatLsn(m.end) };
      break;
    case 'mark':
      body = { type: m.type, wal: formatLsn(m.wal) };
      break;
    case 'reset':
      body = { type: m.type, floor: formatWalPosition(m.floor.lsn, m.floor.index), reason: m.reason };
      break;
    case 'oversize':
      body = { type: m.type, xid: m.xid, lsn: formatLsn(m.lsn), end: formatLsn(m.end), t: m.t, tables: m.tables, changes: m.changes, bytes: m.bytes };
      break;
  }
  return Buffer.from(JSON.stringify({ v: CODEC_VERSION, ...body }), 'utf8');
}

function position(v: unknown, what: string): Position {
  const p = readPositionHeader(typeof v === 'string' ? v : undefined);
  if (!p) bad(what);
  return p;
}

function lsn(v: unknown, what: string): bigint {
  if (typeof v !== 'string' || !isLsn(v)) bad(what);
  return parseLsn(v);
}

function count(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) bad(what);
  return v;
}

/** Decodes and validates a control message. Throws only ClusterMessageError. */
export function decodeCtl(data: Uint8Array): CtlMessage {
  let m: unknown;
  try {
    m = JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8'));
  } catch {
    bad('not JSON');
  }
  if (typeof m !== 'object' || m === null || Array.isArray(m)) bad('not a JSON object');
  const o = m as Record<string, unknown>;
  if (o.v !== CODEC_VERSION) bad(`version ${JSON.stringify(o.v) ?? 'missing'}`);
  switch (o.type) {
    case 'epoch':
      if (typeof o.node !== 'string') bad('node');
      return { type: 'epoch', epoch: count(o.epoch, 'epoch'), node: o.node, after: o.after === null ? null : position(o.after, 'after'), end: o.end === null || o.end === undefined ? null : lsn(o.end, 'end') };
    case 'mark':
      return { type: 'mark', wal: lsn(o.wal, 'wal') };
    case 'reset':
      if (o.reason !== 'slot_recreated' && o.reason !== 'position_outside_window') bad('reason');
      return { type: 'reset', floor: position(o.floor, 'floor'), reason: o.reason };
    case 'oversize':
      if (typeof o.t !== 'string' || !Array.isArray(o.tables) || !o.tables.every((x) => typeof x === 'string')) bad('t / tables');
      return {
        type: 'oversize',
        xid: count(o.xid, 'xid'),
        lsn: lsn(o.lsn, 'lsn'),
        end: lsn(o.end, 'end'),
        t: o.t,
        tables: o.tables as string[],
        changes: count(o.changes, 'changes'),
        bytes: count(o.bytes, 'bytes'),
      };
    default:
      bad(`type ${JSON.stringify(o.type)}`);
  }
}

/** Text of a position for the `Walcast-Pos` header. */
export function positionHeader(p: Position): string {
  return formatWalPosition(p.lsn, p.index);
}

/** The `Walcast-Pos` header's position; null when absent or malformed. */
export function readPositionHeader(value: string | undefined): Position | null {
  if (!value) return null;
  try {
    return parseWalPosition(value);
  } catch {
    return null;
  }
}
