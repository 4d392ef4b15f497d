/**
 * MetaCache: a bounded least-recently-used map, used for metadata blocks and decoded
 * inodes. Generic: knows nothing of ext4.
 *
 * A Map keeps insertion order, so "touch" = delete + re-insert and the eviction victim
 * is the first key. A hit on an entry already among the newest half (moved or inserted
 * within the last maxEntries/2 moves) is not moved again: hot entries — the inode and
 * bitmap the buffer_head path touches for every block it allocates — cost one hash
 * lookup, and an entry is still evicted only after at least maxEntries/2 newer moves.
 *
 *   order:  [ oldest ............ | newest half ]   evict ← left;  move → right
 *           a hit left of "|" moves the entry; a hit right of it only reads
 *
 * Cost: O(1) per get/set: one hash lookup on a hot hit or replace, three on a cold one.
 */
import { assert } from '../assert.js';

interface Entry<V> {
  value: V;
  /** The move count when the entry last went to the newest end. */
  stamp: number;
}

export class MetaCache<K, V> {
  readonly maxEntries: number;
  private readonly entries = new Map<K, Entry<V>>();
  /** Moves to the newest end so far (inserts and cold hits). */
  private moves = 0;
  private readonly hotMoves: number;
  hits = 0;
  misses = 0;

  constructor(maxEntries: number) {
    assert(Number.isInteger(maxEntries) && maxEntries > 0, `cache size ${maxEntries} must be a positive integer`);
    this.maxEntries = maxEntries;
    this.hotMoves = Math.floor(maxEntries / 2);
  }

  get size(): number {
    return this.entries.size;
  }

  /** The value for `key`, made most recently used (unless it is among the newest half already); undefined on a miss. */
  get(key: K): V | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    if (this.moves - entry.stamp >= this.hotMoves) {
      this.entries.delete(key);
      entry.stamp = ++this.moves;
      this.entries.set(key, entry);
    }
    return entry.value;
  }

  /** Insert or replace (in place if the entry is among the newest half); evicts the least recently used entry past maxEntries. */
  set(key: K, value: V): void {
    const entry = this.entries.get(key);
    if (entry !== undefined && this.moves - entry.stamp < this.hotMoves) {
      entry.value = value;
      return;
    }
    this.entries.delete(key);
    this.entries.set(key, { value, stamp: ++this.moves });
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
