// A bounded map for caches keyed by what clients send (channel names, table names): past `max`
// entries, one not used lately goes. Recency is kept the "second chance" way: a hit only sets a
// flag, so the hot path costs one Map lookup; entries queue in insertion order, and eviction
// takes the oldest, except that one used since it was last at the front goes to the back with
// its flag cleared. An entry used once per turn of the queue stays, whatever a flood of names
// used once does. The front is a live Map iterator, so an eviction does not walk again over the
// holes the previous ones left.

interface Slot<V> {
  v: V;
  used: boolean;
}

export class Lru<K, V> {
  private readonly map = new Map<K, Slot<V>>();
  /** Iterates from the front of the queue: every entry before it is gone or re-queued. */
  private front: Iterator<[K, Slot<V>]> | null = null;

  constructor(readonly max: number) {
    if (!Number.isSafeInteger(max) || max < 1) throw new RangeError(`an LRU holds at least 1 entry, not ${max}`);
  }

  get size(): number {
    return this.map.size;
  }

  get(k: K): V | undefined {
    const s = this.map.get(k);
    if (s === undefined) return undefined;
    s.used = true;
    return s.v;
  }

  has(k: K): boolean {
    return this.map.has(k);
  }

  set(k: K, v: V): void {
    const s = this.map.get(k);
    if (s) {
      s.v = v;
      s.used = true;
      return;
    }
    if (this.map.size >= this.max) this.evict();
    this.map.set(k, { v, used: false });
  }

  delete(k: K): boolean {
    return this.map.delete(k);
  }

  clear(): void {
    this.map.clear();
    this.front = null;
  }

  /** Keys from the oldest to the newest. */
  keys(): IterableIterator<K> {
    return this.map.keys();
  }

  /** Drops the oldest entry not used since it was last at the front. */
  private evict(): void {
    // Each step re-queues a used entry (clearing its flag) or evicts: at most size + 1 steps.
    for (;;) {
      let r = this.front?.next();
      if (!r || r.done) {
        this.front = this.map.entries();
        r = this.front.next();
        if (r.done) return;
      }
      const [k, s] = r.value;
      this.map.delete(k);
      if (!s.used) return;
      s.used = false;
      this.map.set(k, s);
    }
  }
}
