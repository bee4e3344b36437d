// A bounded map for caches keyed by what clients send (channel names, table names): past `max`
// entries the least recently used one goes. Recency is kept the "second chance" way (CLOCK): a
// hit only sets a flag, so the hot path costs one Map lookup; eviction walks from the oldest
// entry, moving the ones used since they were last passed to the back. A flood of names used
// once therefore evicts its own kind first, not the entries in use.

interface Slot<V> {
  v: V;
  used: boolean;
}

export class Lru<K, V> {
  private readonly map = new Map<K, Slot<V>>();

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
  }

  keys(): IterableIterator<K> {
    return this.map.keys();
  }

  /** Drops one entry: the oldest not used since the hand last passed it. */
  private evict(): void {
    // Each pass clears a flag or evicts, so this ends within size + 1 steps.
    for (;;) {
      const first = this.map.entries().next();
      if (first.done) return;
      const [k, s] = first.value;
      this.map.delete(k);
      if (!s.used) return;
      s.used = false;
      this.map.set(k, s);
    }
  }
}
