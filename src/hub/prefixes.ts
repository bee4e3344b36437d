// Change-frame prefixes (`{"type":"change","sub":<id>`), interned: subscriptions with the same
// id (clients commonly number theirs 1, 2, 3...) share one Buffer, so a change's whole frame can
// be built once per distinct prefix and sent to all of them.
import { changePrefix } from '../protocol/frames.js';

interface Interned {
  buf: Buffer;
  refs: number;
}

export class PrefixTable {
  private readonly byId = new Map<string, Interned>();

  acquire(id: string | number): Buffer {
    const key = typeof id === 'number' ? `n${id}` : `s${id}`;
    let e = this.byId.get(key);
    if (!e) this.byId.set(key, (e = { buf: Buffer.from(changePrefix(id)), refs: 0 }));
    e.refs++;
    return e.buf;
  }

  release(id: string | number): void {
    const key = typeof id === 'number' ? `n${id}` : `s${id}`;
    const e = this.byId.get(key);
    if (e && --e.refs <= 0) this.byId.delete(key);
  }

  get size(): number {
    return this.byId.size;
  }
}
