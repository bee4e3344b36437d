// One stored message of the cluster stream, read back: a control message, or a change with its
// transaction's head (its table's shape looked up by reference). Malformed input throws
// ClusterMessageError; readers skip it and go on.
import type { MsgHdrs } from '@nats-io/transport-node';
import type { Relation } from '../capture/pgoutput.types.js';
import { ClusterMessageError } from '../errors.js';
import { decodeChange, toCaptured, type DecodedChange } from './codec.js';
import { CLUSTER_HEADERS, decodeCtl, type CtlMessage } from './ctl.js';
import { parseSubject } from './subjects.js';

export type StreamItem = { tag: 'ctl'; ctl: CtlMessage } | ({ tag: 'change'; /** the last change of its transaction */ last: boolean } & DecodedChange);

export async function readStreamMessage(
  ns: string,
  m: { subject: string; data: Uint8Array; headers?: MsgHdrs },
  relationOf: (ref: string) => Promise<Relation>,
): Promise<StreamItem> {
  const parts = parseSubject(ns, m.subject);
  if (parts?.kind === 'ctl') return { tag: 'ctl', ctl: decodeCtl(m.data) };
  if (parts?.kind !== 'change') throw new ClusterMessageError(`unexpected subject ${m.subject}`);
  const msg = decodeChange(m.data);
  const { head, change } = toCaptured(msg, await relationOf(msg.rel));
  return { tag: 'change', head, change, last: m.headers?.get(CLUSTER_HEADERS.last) === '1' };
}
