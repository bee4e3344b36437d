// postgres_changes messages in Supabase Realtime's wire shape, built by the hub's delivery for
// subscriptions of the Supabase endpoint (a ChangeRender each). What a subscriber may see was
// decided by the hub; this only writes it:
//
//   {"ids":[<binding id>],"data":{"schema","table","commit_timestamp","type","columns",
//                                 "record"?,"old_record"?,"errors":null}}
//
// realtime-js turns `data` into `{eventType, new, old}`, converting values by `columns[].type`.
// The `data` of a change is written once per change and kind, and a whole frame once per
// distinct (serializer, topic, binding id) during a live dispatch: clients on the same channel
// with the same bindings (the common case) share one Buffer, as walcast's own frames do.
//
// walcast's kinds in Supabase's terms: an update that takes a row out of the subscriber's view
// (walcast's `leave`) is a DELETE of the row as last seen; one that brings a row in whose old
// version it may not read (walcast sends an insert) is an UPDATE without `old_record`, as
// Supabase sends updates without REPLICA IDENTITY FULL; TRUNCATE is not sent (nor by Supabase).
import type { Relation } from '../capture/pgoutput.types.js';
import type { CapturedChange, Transaction } from '../capture/types.js';
import { builtinTypeName } from '../capture/types-registry.js';
import type { ChangeRender, DeliveryKind } from '../hub/types.js';
import { SUPABASE } from '../constants.js';
import { encodeFramePrefix } from './phoenix.js';
import type { Vsn } from './phoenix.types.js';

/** A frame's fixed parts for one (serializer, topic, binding id), interned. */
export interface FrameHead {
  readonly head: Buffer;
  readonly tail: Buffer;
}

interface Interned extends FrameHead {
  refs: number;
}

type Row = Record<string, unknown>;

const KINDS = 3;
const KIND_INDEX: Readonly<Record<DeliveryKind, number>> = { change: 0, leave: 1, enter: 2 };

/** Shared by every Supabase subscription of a daemon: the per-change cache and the interned heads. */
export class SupabaseChanges {
  private readonly heads = new Map<string, Interned>();
  private readonly columns = new WeakMap<Relation, string>();
  /** The change being dispatched live (its stamp) and, per kind, its data and frames by head. */
  private stamp = -1;
  private readonly data: (string | null)[] = new Array<string | null>(KINDS).fill(null);
  private readonly frames: Map<FrameHead, Buffer>[] = Array.from({ length: KINDS }, () => new Map());
  /** The last frame returned during this change: the next subscriber usually has the same head. */
  private lastHead: FrameHead | null = null;
  private lastKind: DeliveryKind | null = null;
  private lastFrame: Buffer | null = null;

  /** @param typeName a column type's pg_type name (the catalog's), undefined when unknown. */
  constructor(private readonly typeName: (oid: number) => string | undefined) {}

  /** Distinct frame heads held (bounded by the subscriptions that hold them). */
  get size(): number {
    return this.heads.size;
  }

  acquire(vsn: Vsn, topic: string, id: number): FrameHead {
    const key = `${vsn}\u0000${id}\u0000${topic}`;
    let e = this.heads.get(key);
    if (!e) {
      const p = encodeFramePrefix(vsn, null, null, topic, SUPABASE.events.postgresChanges);
      e = { head: Buffer.from(`${p.head}{"ids":[${id}],"data":`), tail: Buffer.from(`}${p.tail}`), refs: 0 };
      this.heads.set(key, e);
    }
    e.refs++;
    return e;
  }

  release(vsn: Vsn, topic: string, id: number): void {
    const key = `${vsn}\u0000${id}\u0000${topic}`;
    const e = this.heads.get(key);
    if (e && --e.refs <= 0) this.heads.delete(key);
  }

  /** The whole frame of a change for one head; null when Supabase sends nothing for it. */
  frame(head: FrameHead, tx: Transaction, c: CapturedChange, kind: DeliveryKind, live: boolean, stamp: number): Buffer | null {
    if (c.tag === 'truncate') return null;
    if (!live) {
      const data = this.render(tx, c, kind);
      return Buffer.concat([head.head, Buffer.from(data), head.tail]);
    }
    if (stamp !== this.stamp) {
      this.stamp = stamp;
      this.data.fill(null);
      for (const m of this.frames) m.clear();
      this.lastHead = null;
    } else if (head === this.lastHead && kind === this.lastKind) return this.lastFrame;
    const k = KIND_INDEX[kind];
    const frames = this.frames[k];
    let f = frames.get(head);
    if (!f) {
      const data = (this.data[k] ??= this.render(tx, c, kind));
      frames.set(head, (f = Buffer.concat([head.head, Buffer.from(data), head.tail])));
    }
    this.lastHead = head;
    this.lastKind = kind;
    this.lastFrame = f;
    return f;
  }

  /** `data` of a change: what realtime-js's transformers read. */
  render(tx: Transaction, c: CapturedChange, kind: DeliveryKind): string {
    const r = c.relation;
    let type: string;
    let record: Row | null = null;
    let old: Row | null = null;
    switch (c.tag) {
      case 'insert':
        type = 'INSERT';
        record = c.new;
        break;
      case 'update':
        if (kind === 'leave') {
          type = 'DELETE';
          old = c.old;
        } else {
          type = 'UPDATE';
          record = c.new;
          // The old row only where walcast would send it: full identity, and readable (not `enter`).
          if (kind === 'change' && c.old && r.replicaIdentity === 'full') old = c.old;
        }
        break;
      case 'delete':
        type = 'DELETE';
        old = c.old;
        break;
      default:
        type = 'TRUNCATE';
    }
    let s = `{"schema":${JSON.stringify(r.schema)},"table":${JSON.stringify(r.name)},"commit_timestamp":"${tx.commitTime}","type":"${type}","columns":${this.columnsOf(r)}`;
    if (record) s += `,"record":${JSON.stringify(record)}`;
    if (old) s += `,"old_record":${JSON.stringify(old)}`;
    return s + ',"errors":null}';
  }

  /** `[{name, type}]` of a relation, written once per relation message (a new one follows ALTER TABLE). */
  private columnsOf(r: Relation): string {
    let s = this.columns.get(r);
    if (s === undefined) {
      s = JSON.stringify(r.columns.map((col) => ({ name: col.name, type: this.typeName(col.typeOid) ?? builtinTypeName(col.typeOid) ?? 'text' })));
      this.columns.set(r, s);
    }
    return s;
  }
}

/**
 * The renderer of one binding's subscription. While its topic's join is not answered yet, its
 * frames are held by the topic (realtime-js would match them to no binding), not sent.
 */
export class BindingRender implements ChangeRender {
  readonly leavesAsDeletes = true;

  constructor(
    private readonly changes: SupabaseChanges,
    private readonly head: FrameHead,
    /** Its topic: joined (nothing held, not gone) is the common case, checked without a call. */
    private readonly topic: { readonly held: unknown[] | null; readonly state: string },
    private readonly hold: (frame: Buffer) => boolean,
  ) {}

  frame(tx: Transaction, c: CapturedChange, kind: DeliveryKind, live: boolean, stamp: number): Buffer | null {
    const f = this.changes.frame(this.head, tx, c, kind, live, stamp);
    if (f === null || (this.topic.held === null && this.topic.state !== 'gone')) return f;
    return this.hold(f) ? null : f;
  }
}
