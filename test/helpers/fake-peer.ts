// The hub's view of a client without a socket, for unit tests of the hub and the channels: a
// recording Peer, and the relation (table) of hand-made transactions.

import type { Identity } from '../../src/auth/jwt.js';
import type { Relation } from '../../src/capture/pgoutput.types.js';
import type { Position } from '../../src/protocol/position.js';
import type { Peer } from '../../src/hub/types.js';

let seq = 0;

/**
 * A peer that records what it is sent: push/pushFrame queue a frame, flush() parses the queue
 * into `frames` (as a socket sends at flush), and it is never behind (backlog 0). Each one has
 * its own id; `identity` is null unless given.
 */
export class FakePeer implements Peer {
  id = `p${++seq}`;
  closed = false;
  lastPos: Position | null = null;
  frames: Record<string, unknown>[] = [];
  private queued: string[] = [];
  constructor(public identity: Identity | null = null) {}
  push(f: string) {
    this.queued.push(f);
  }
  pushFrame(frame: Buffer) {
    this.queued.push(frame.toString());
  }
  flush() {
    for (const f of this.queued) this.frames.push(JSON.parse(f));
    this.queued = [];
  }
  backlog() {
    return 0;
  }
  /** The frames of one type, in the order they were flushed. */
  of(type: string) {
    return this.frames.filter((f) => f.type === type);
  }
  /** The changes of one subscription as `op:row` (the new row, or the old one of a delete). */
  changes(sub: string) {
    return this.of('change')
      .filter((f) => f.sub === sub)
      .map((f) => `${f.op}:${JSON.stringify(f.new ?? f.old)}`);
  }
}

/** An id column (int4), the default columns of relation(). */
export const ID_COLUMN = { name: 'id', typeOid: 23 };

/** Table public.<name>, oid 1; its key is the column named `id`. */
export function relation(
  name: string,
  { columns = [ID_COLUMN], replicaIdentity = 'full' }: { columns?: Array<{ name: string; typeOid: number }>; replicaIdentity?: Relation['replicaIdentity'] } = {},
): Relation {
  return {
    oid: 1, schema: 'public', name, qualified: `public.${name}`, replicaIdentity,
    columns: columns.map((c) => ({ ...c, key: c.name === 'id', typeMod: -1 })), decoders: [],
  };
}
