// Table shapes of the stream's change messages: a message names its relation by reference
// (`<oid>.<hash>`, src/cluster/publisher.ts), whose metadata capture put into the cluster bucket
// once. Read on first use and kept (a bound, not a working set: a table has one shape at a time).
import type { KV } from '@nats-io/kv';
import type { Relation } from '../capture/pgoutput.types.js';
import { CLUSTER_FOLLOWER } from '../constants.js';
import { ClusterMessageError } from '../errors.js';
import { decodeRelation } from './codec.js';
import { relationKey } from './subjects.js';

export class RelationCache {
  private readonly relations = new Map<string, Relation>();

  constructor(private readonly kv: KV) {}

  /** The relation a reference names; a failure to read the bucket rejects (not the message's fault). */
  async get(ref: string): Promise<Relation> {
    let rel = this.relations.get(ref);
    if (rel) return rel;
    const entry = await this.kv.get(relationKey(ref));
    if (!entry || entry.operation !== 'PUT') throw new ClusterMessageError(`no metadata for relation ${ref} in the cluster bucket`);
    rel = decodeRelation(entry.value);
    if (this.relations.size >= CLUSTER_FOLLOWER.maxRelations) this.relations.clear();
    this.relations.set(ref, rel);
    return rel;
  }
}
