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
});
