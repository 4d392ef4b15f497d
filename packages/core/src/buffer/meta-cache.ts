/**
 * MetaCache: a bounded least-recently-used map, used for metadata blocks and decoded
 * inodes. Generic: knows nothing of ext4.
 *
 * A Map keeps insertion order, so "touch" = delete + re-insert and the eviction victim
 * is the first key. Cost: O(1) per get/set (two hash operations on a hit).
 */
import { assert } from '../assert.js';

export class MetaCache<K, V> {
  readonly maxEntries: number;
  private readonly entries = new Map<K, V>();
  hits = 0;
  misses = 0;

  constructor(maxEntries: number) {
    assert(Number.isInteger(maxEntries) && maxEntries > 0, `cache size ${maxEntries} must be a positive integer`);
    this.maxEntries = maxEntries;
  }

  get size(): number {
    return this.entries.size;
  }

  /** The value for `key`, made most recently used; undefined on a miss. */
  get(key: K): V | undefined {
    const value = this.entries.get(key);
    if (value === undefined) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    this.entries.delete(key);
    this.entries.set(key, value);
    return value;
  }

  /** Insert or replace; evicts the least recently used entry past maxEntries. */
  set(key: K, value: V): void {
    this.entries.delete(key);
    this.entries.set(key, value);
    if (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value as K;
      this.entries.delete(oldest);
    }
    assert(this.entries.size <= this.maxEntries, 'cache over its bound');
  }

  delete(key: K): boolean {
    return this.entries.delete(key);
  }

  clear(): void {
    this.entries.clear();
  }
}
