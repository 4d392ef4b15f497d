import { describe, it, expect } from 'vitest';
import { bitmapCountSet, bitmapFindFirstSet, bitmapFindZeroRun } from './bitmap-search.js';
import { crc32cBackend, processWasmCore } from './process-core.js';
import { twins } from './twins.js';
import { ensureWasmBuilt, randomBelow, seededRandom } from './testing.js';

describe('bitmap-search', () => {
  it('bitmap-search runs on the WASM kernels and agrees with the TS twins on random block bitmaps', () => {
    ensureWasmBuilt();
    expect(processWasmCore()).toBeDefined();
    expect(crc32cBackend().backend).toBe('wasm');
    const random = seededRandom(77);
    for (let round = 0; round < 300; round++) {
      const bitmap = new Uint8Array(4096);
      const density = randomBelow(random, 100) / 100;
      for (let i = 0; i < bitmap.length * 8; i++) if (random() / 2 ** 32 < density) bitmap[i >> 3] |= 1 << (i & 7);
      const bits = 1 + randomBelow(random, 32768);
      const goal = randomBelow(random, bits);
      const run = 1 + randomBelow(random, 64);
      expect(bitmapFindZeroRun(bitmap, bits, goal, run)).toBe(twins.bitmapFindZeroRun(bitmap, 0, bits, goal, run));
      const a = randomBelow(random, bits), b = a + randomBelow(random, bits - a + 1);
      expect(bitmapFindFirstSet(bitmap, a, b)).toBe(twins.bitmapFindFirstSet(bitmap, 0, a, b));
      expect(bitmapCountSet(bitmap, a, b)).toBe(twins.bitmapCountSet(bitmap, 0, a, b));
    }
  });
});
