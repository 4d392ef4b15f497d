// Every wasm kernel against its TS twin (twins.ts) on seeded random inputs and edges.
// Mutating kernels run on the wasm memory while the twin runs on a copy of the same
// region; both regions must then be byte-identical.
import { beforeAll, describe, expect, it } from 'vitest';
import { loadWasmCore, type WasmCore } from './core.js';
import { EXTENT_RECORD_BYTES, arenaBaseOf } from './layout.js';
import { ensureWasmBuilt, randomBelow, seededRandom } from './testing.js';
import { twins } from './twins.js';

const REGION_BYTES = 1 << 20;

// Index of the first differing byte of two equal-length arrays, or -1 (faster than toEqual).
function firstDifference(actual: Uint8Array, expected: Uint8Array): number {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < actual.length; i++) if (actual[i] !== expected[i]) return i;
  return -1;
}
let core: WasmCore;
let regionPtr: number;

beforeAll(() => {
  ensureWasmBuilt();
  core = loadWasmCore({ maximumPages: 1024 });
  regionPtr = arenaBaseOf(core.heapBase);
  core.ensureMemoryBytes(regionPtr + REGION_BYTES);
});

// Fill [ptr, ptr + lengthBytes) with a bitmap of a random shape: random bits of a random
// density, or alternating runs of zeros and ones of random lengths.
function fillBitmap(random: () => number, ptr: number, lengthBytes: number): void {
  const bytes = core.bytes();
  const shape = randomBelow(random, 6);
  if (shape < 5) {
    const density = [0, 0.02, 0.5, 0.98, 1][shape];
    for (let i = 0; i < lengthBytes * 8; i++) {
      const set = random() / 2 ** 32 < density;
      const index = ptr + (i >>> 3);
      bytes[index] = set ? bytes[index] | (1 << (i & 7)) : bytes[index] & ~(1 << (i & 7));
    }
    return;
  }
  let bit = 0;
  let value = randomBelow(random, 2) === 1;
  while (bit < lengthBytes * 8) {
    const runBits = 1 + randomBelow(random, randomBelow(random, 2) === 0 ? 8 : 300);
    for (let i = bit; i < Math.min(bit + runBits, lengthBytes * 8); i++) {
      const index = ptr + (i >>> 3);
      bytes[index] = value ? bytes[index] | (1 << (i & 7)) : bytes[index] & ~(1 << (i & 7));
    }
    bit += runBits;
    value = !value;
  }
}

function randomRange(random: () => number, bitCount: number): [number, number] {
  const a = randomBelow(random, bitCount + 1);
  const b = randomBelow(random, 4) === 0 ? bitCount : randomBelow(random, bitCount + 1);
  return a <= b ? [a, b] : [b, a];
}

describe('bitmap kernels', () => {
  it('bitmapFindFirstZero/FindFirstSet/CountSet match the twins on random bitmaps and ranges', () => {
    const random = seededRandom(0x5eed_0001);
    for (let round = 0; round < 300; round++) {
      const ptr = regionPtr + randomBelow(random, 64);
      const bitCount = 1 + randomBelow(random, round % 10 === 0 ? 70_000 : 600);
      fillBitmap(random, ptr, (bitCount + 7) >>> 3);
      const bytes = core.bytes();
      for (let query = 0; query < 20; query++) {
        const [startBit, endBit] = randomRange(random, bitCount);
        const where = `seed round ${round} ptr ${ptr} [${startBit}, ${endBit})`;
        for (const name of ['bitmapFindFirstZero', 'bitmapFindFirstSet', 'bitmapCountSet'] as const) {
          expect(core.kernels[name](ptr, startBit, endBit), `${name} ${where}`).toBe(twins[name](bytes, ptr, startBit, endBit));
        }
      }
    }
  });

  it('bitmapFindZeroRun matches the twin, including wrap-around and runs ending at the last bit', () => {
    const random = seededRandom(0x5eed_0002);
    for (let round = 0; round < 400; round++) {
      const ptr = regionPtr + randomBelow(random, 64);
      const bitCount = 1 + randomBelow(random, round % 10 === 0 ? 40_000 : 700);
      fillBitmap(random, ptr, (bitCount + 7) >>> 3);
      const bytes = core.bytes();
      for (let query = 0; query < 10; query++) {
        const goalBit = randomBelow(random, bitCount + 2);
        const runLength = [0, 1, 2, 7, 63, 64, 65, 200, 1 + randomBelow(random, bitCount)][randomBelow(random, 9)];
        const expected = twins.bitmapFindZeroRun(bytes, ptr, bitCount, goalBit, runLength);
        const where = `round ${round} bits ${bitCount} goal ${goalBit} run ${runLength}`;
        expect(core.kernels.bitmapFindZeroRun(ptr, bitCount, goalBit, runLength), where).toBe(expected);
      }
    }
  });

  it('bitmapFindZeroRun finds a run flush with the end, wraps to an earlier run, and fails on a full bitmap', () => {
    const ptr = regionPtr;
    const bitCount = 32768;
    core.kernels.bitmapSetRange(ptr, 0, bitCount);
    expect(core.kernels.bitmapFindZeroRun(ptr, bitCount, 0, 1)).toBe(-1);
    core.kernels.bitmapClearRange(ptr, bitCount - 70, bitCount);
    expect(core.kernels.bitmapFindZeroRun(ptr, bitCount, 100, 70)).toBe(bitCount - 70);
    expect(core.kernels.bitmapFindZeroRun(ptr, bitCount, 100, 71)).toBe(-1);
    core.kernels.bitmapClearRange(ptr, 10, 20);
    // Past the goal only a 5-bit run fits at the end; a 10-bit run must wrap to bit 10.
    expect(core.kernels.bitmapFindZeroRun(ptr, bitCount, bitCount - 5, 10)).toBe(10);
    // A run that starts before the goal and extends past it is found on the wrap pass.
    expect(core.kernels.bitmapFindZeroRun(ptr, bitCount, 15, 10)).toBe(bitCount - 70);
    expect(core.kernels.bitmapFindZeroRun(ptr, bitCount, bitCount - 60, 60)).toBe(bitCount - 60);
  });

  it('bitmapSetRange and bitmapClearRange change exactly the bits the twins change', () => {
    const random = seededRandom(0x5eed_0003);
    for (let round = 0; round < 400; round++) {
      const ptr = regionPtr + randomBelow(random, 64);
      const bitCount = 1 + randomBelow(random, 2000);
      const lengthBytes = (bitCount + 7) >>> 3;
      fillBitmap(random, ptr, lengthBytes + 16);
      const [startBit, endBit] = randomRange(random, bitCount);
      const name = randomBelow(random, 2) === 0 ? 'bitmapSetRange' : 'bitmapClearRange';
      // The twin works on a copy with 8 guard bytes either side, which must not change.
      const expected = core.bytes().slice(ptr - 8, ptr + lengthBytes + 8);
      twins[name](expected, 8, startBit, endBit);
      core.kernels[name](ptr, startBit, endBit);
      const actual = core.bytes().subarray(ptr - 8, ptr + lengthBytes + 8);
      expect(firstDifference(actual, expected), `${name} round ${round} [${startBit}, ${endBit})`).toBe(-1);
    }
  });

  it('bitmap kernels return -1/0 on empty ranges and do not write', () => {
    const ptr = regionPtr + 3;
    core.bytes().fill(0xa5, ptr, ptr + 16);
    for (const [startBit, endBit] of [[0, 0], [17, 17], [40, 3]]) {
      expect(core.kernels.bitmapFindFirstZero(ptr, startBit, endBit)).toBe(-1);
      expect(core.kernels.bitmapFindFirstSet(ptr, startBit, endBit)).toBe(-1);
      expect(core.kernels.bitmapCountSet(ptr, startBit, endBit)).toBe(0);
      core.kernels.bitmapSetRange(ptr, startBit, endBit);
      core.kernels.bitmapClearRange(ptr, startBit, endBit);
    }
    expect(Array.from(core.bytes().subarray(ptr, ptr + 16))).toEqual(new Array(16).fill(0xa5));
  });

  it('bitmap kernels read a bitmap that ends at the last byte of memory without trapping', () => {
    const memoryBytes = core.memory.buffer.byteLength;
    const ptr = memoryBytes - 13; // 100 bits: 13 bytes, the last one partial
    core.kernels.bitmapSetRange(ptr, 0, 100);
    core.kernels.bitmapClearRange(ptr, 99, 100);
    expect(core.kernels.bitmapFindFirstZero(ptr, 0, 100)).toBe(99);
    expect(core.kernels.bitmapCountSet(ptr, 1, 100)).toBe(98);
    expect(core.kernels.bitmapFindZeroRun(ptr, 100, 5, 1)).toBe(99);
    expect(core.kernels.bitmapFindFirstSet(ptr, 99, 100)).toBe(-1);
  });
});

describe('extentSearch', () => {
  function writeRecords(ptr: number, starts: number[]): void {
    const view = new DataView(core.memory.buffer);
    starts.forEach((start, index) => {
      view.setUint32(ptr + index * EXTENT_RECORD_BYTES, start, true);
      view.setUint32(ptr + index * EXTENT_RECORD_BYTES + 4, 0xdead_beef, true);
      view.setBigUint64(ptr + index * EXTENT_RECORD_BYTES + 8, BigInt(index) * 12345n, true);
    });
  }

  it('extentSearch matches the twin on sorted starts across the whole u32 range', () => {
    const random = seededRandom(0x5eed_0004);
    for (let round = 0; round < 100; round++) {
      const count = [0, 1, 2, 3, 340, 1000][randomBelow(random, 6)];
      const starts = new Set<number>();
      const span = randomBelow(random, 2) === 0 ? 5000 : 2 ** 32;
      while (starts.size < count) starts.add(randomBelow(random, span));
      const sorted = [...starts].sort((a, b) => a - b);
      const ptr = regionPtr + 16 * randomBelow(random, 8);
      writeRecords(ptr, sorted);
      const queries = [0, 2 ** 32 - 1, 2 ** 31, 2 ** 31 - 1, ...sorted.flatMap((s) => [s, s - 1, s + 1])];
      for (let i = 0; i < 20; i++) queries.push(randomBelow(random, span));
      for (const raw of queries) {
        const query = raw >>> 0;
        const expected = twins.extentSearch(core.bytes(), ptr, count, query);
        expect(core.kernels.extentSearch(ptr, count, query), `round ${round} count ${count} query ${query}`).toBe(expected);
      }
    }
  });

  it('extentSearch returns -1 before the first record and the last index past the end', () => {
    writeRecords(regionPtr, [10, 20, 30]);
    expect(core.kernels.extentSearch(regionPtr, 3, 9)).toBe(-1);
    expect(core.kernels.extentSearch(regionPtr, 3, 10)).toBe(0);
    expect(core.kernels.extentSearch(regionPtr, 3, 29)).toBe(1);
    expect(core.kernels.extentSearch(regionPtr, 3, 2 ** 32 - 1)).toBe(2);
    expect(core.kernels.extentSearch(regionPtr, 0, 50)).toBe(-1);
  });
});

describe('byte kernels', () => {
  function randomBytes(random: () => number, ptr: number, lengthBytes: number): void {
    const bytes = core.bytes();
    for (let i = 0; i < lengthBytes; i++) bytes[ptr + i] = random() & 0xff;
  }

  it('bytesCopy and bytesZero match the twins, including overlapping copies both ways', () => {
    const random = seededRandom(0x5eed_0005);
    const windowBytes = 12_000;
    for (let round = 0; round < 300; round++) {
      randomBytes(random, regionPtr, windowBytes);
      const lengthBytes = randomBelow(random, round % 5 === 0 ? 9000 : 300);
      const sourcePtr = regionPtr + randomBelow(random, windowBytes - lengthBytes);
      const targetPtr = regionPtr + randomBelow(random, windowBytes - lengthBytes);
      const expected = core.bytes().slice(regionPtr, regionPtr + windowBytes);
      if (round % 3 === 0) {
        twins.bytesZero(expected, targetPtr - regionPtr, lengthBytes);
        core.kernels.bytesZero(targetPtr, lengthBytes);
      } else {
        twins.bytesCopy(expected, targetPtr - regionPtr, sourcePtr - regionPtr, lengthBytes);
        core.kernels.bytesCopy(targetPtr, sourcePtr, lengthBytes);
      }
      const actual = core.bytes().subarray(regionPtr, regionPtr + windowBytes);
      expect(firstDifference(actual, expected), `round ${round}`).toBe(-1);
    }
  });

  it('bytesCompare returns the first differing offset like the twin, or -1 for equal ranges', () => {
    const random = seededRandom(0x5eed_0006);
    for (let round = 0; round < 500; round++) {
      const lengthBytes = randomBelow(random, round % 5 === 0 ? 5000 : 200);
      const aPtr = regionPtr + randomBelow(random, 32);
      const bPtr = regionPtr + 8192 + randomBelow(random, 32);
      randomBytes(random, aPtr, lengthBytes);
      core.kernels.bytesCopy(bPtr, aPtr, lengthBytes);
      const differences = randomBelow(random, 3);
      for (let d = 0; d < differences && lengthBytes > 0; d++) core.bytes()[bPtr + randomBelow(random, lengthBytes)] ^= 1 << randomBelow(random, 8);
      const expected = twins.bytesCompare(core.bytes(), aPtr, bPtr, lengthBytes);
      expect(core.kernels.bytesCompare(aPtr, bPtr, lengthBytes), `round ${round} length ${lengthBytes}`).toBe(expected);
    }
  });

  it('bytesCompare finds a difference in the last byte of a 1 MiB range', () => {
    const lengthBytes = 512 * 1024;
    core.kernels.bytesZero(regionPtr, 2 * lengthBytes);
    expect(core.kernels.bytesCompare(regionPtr, regionPtr + lengthBytes, lengthBytes)).toBe(-1);
    core.bytes()[regionPtr + 2 * lengthBytes - 1] = 1;
    expect(core.kernels.bytesCompare(regionPtr, regionPtr + lengthBytes, lengthBytes)).toBe(lengthBytes - 1);
  });
});

describe('crc32c kernel', () => {
  it('crc32c gives the ext4 test vector crc32c(~0, "123456789") = 0x1CF96D7C', () => {
    core.bytes().set(new TextEncoder().encode('123456789'), regionPtr);
    expect(core.kernels.crc32c(0xffff_ffff, regionPtr, 9)).toBe(0x1cf9_6d7c);
  });

  it('crc32c matches crc32cTs bit for bit on random data, unaligned pointers and seeds', () => {
    const random = seededRandom(0x5eed_0007);
    for (let round = 0; round < 300; round++) {
      const lengthBytes = randomBelow(random, round % 10 === 0 ? 70_000 : 300);
      const ptr = regionPtr + randomBelow(random, 64);
      const bytes = core.bytes();
      for (let i = 0; i < lengthBytes; i++) bytes[ptr + i] = random() & 0xff;
      const seed = random();
      expect(core.kernels.crc32c(seed, ptr, lengthBytes), `round ${round}`).toBe(twins.crc32c(bytes, seed, ptr, lengthBytes));
    }
  });
});
