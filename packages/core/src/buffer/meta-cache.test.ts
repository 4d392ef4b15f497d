import { describe, it, expect } from 'vitest';
import { MetaCache } from './meta-cache.js';

describe('MetaCache', () => {
  it('MetaCache evicts the least recently used entry past its bound', () => {
    const cache = new MetaCache<number, string>(3);
    cache.set(1, 'a'); cache.set(2, 'b'); cache.set(3, 'c');
    expect(cache.get(1)).toBe('a'); // 1 is now the most recent
    cache.set(4, 'd');
    expect(cache.get(2)).toBeUndefined();
    expect([cache.get(1), cache.get(3), cache.get(4)]).toEqual(['a', 'c', 'd']);
    expect(cache.size).toBe(3);
    expect([cache.hits, cache.misses]).toEqual([4, 1]);
  });

  it('MetaCache replaces a key without growing and refuses a zero bound', () => {
    const cache = new MetaCache<string, number>(2);
    cache.set('x', 1); cache.set('x', 2);
    expect(cache.size).toBe(1);
    expect(cache.get('x')).toBe(2);
    expect(() => new MetaCache(0)).toThrow(/positive/);
  });

  it('MetaCache leaves a hit among the newest half in place and still evicts only old entries', () => {
    const cache = new MetaCache<number, number>(8); // newest half: the last 4 moves
    for (let k = 0; k < 8; k++) cache.set(k, k);
    expect(cache.get(6)).toBe(6); // among the newest 4: not moved
    cache.set(8, 8); // evicts 0, the oldest
    expect(cache.get(0)).toBeUndefined();
    expect(cache.get(1)).toBe(1); // old: moved to the newest end
    for (let k = 9; k < 13; k++) cache.set(k, k); // 4 more moves push 2..5 out... until the bound
    expect(cache.get(1)).toBe(1); // moved 4 moves ago: still inside
    expect([cache.get(2), cache.get(3), cache.get(4), cache.get(5)]).toEqual([undefined, undefined, undefined, undefined]);
    expect(cache.size).toBe(8);
    cache.set(12, 120); // a hot replace: in place
    expect(cache.get(12)).toBe(120);
    expect(cache.size).toBe(8);
  });
});
