import { Worker } from 'node:worker_threads';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { crc32c, crc32cTs, installCrc32c } from '../format/crc32c.js';
import { FsError } from '../vfs/errors.js';
import { CRC32C_WASM_MIN_BYTES, instantiateWasmCore, loadWasmCore, wasmModule, type WasmCore } from './core.js';
import { SCRATCH_SLOT_BYTES, arenaBaseOf, reservedBaseOf, scratchSlotPtrOf } from './layout.js';
import { ensureWasmBuilt, randomBelow, seededRandom } from './testing.js';

beforeAll(() => ensureWasmBuilt());
afterEach(() => installCrc32c(null));

function smallCore(): WasmCore {
  return loadWasmCore({ maximumPages: 512 });
}

describe('loadWasmCore', () => {
  it('loadWasmCore caches the module and lays out scratch above heapBase', () => {
    const core = smallCore();
    expect(wasmModule()).toBe(core.module);
    expect(core.heapBase).toBeGreaterThan(16 * 1024); // crc32c tables are static data
    expect(core.memory.buffer.byteLength).toBeGreaterThanOrEqual(arenaBaseOf(core.heapBase));
    expect(core.scratchPtr).toBe(scratchSlotPtrOf(core.heapBase, 0));
    expect(core.scratchPtr).toBeGreaterThan(reservedBaseOf(core.heapBase));
    core.close();
  });

  it('loadWasmCore rejects page counts outside [1, 65536] with EINVAL', () => {
    for (const options of [{ maximumPages: 0 }, { maximumPages: 65537 }, { initialPages: 20, maximumPages: 10 }]) {
      expect(() => loadWasmCore(options)).toThrowError(FsError);
    }
  });

  it('ensureMemoryBytes grows past the maximum as EINVAL, not a RangeError', () => {
    const core = smallCore();
    expect(() => core.ensureMemoryBytes(513 * 65536)).toThrowError(/EINVAL/);
    core.close();
  });
});

describe('crc32cOf', () => {
  it('crc32cOf matches crc32cTs for bytes outside wasm memory across the copy threshold and chunking', () => {
    const core = smallCore();
    const random = seededRandom(0xc0c0_0001);
    const lengths = [0, 1, CRC32C_WASM_MIN_BYTES - 1, CRC32C_WASM_MIN_BYTES, 4096, SCRATCH_SLOT_BYTES + 17, 3 * SCRATCH_SLOT_BYTES];
    for (const lengthBytes of lengths) {
      const bytes = Uint8Array.from({ length: lengthBytes + 40 }, () => random() & 0xff);
      const start = randomBelow(random, 20);
      const end = start + lengthBytes;
      const seed = random();
      expect(core.crc32cOf(seed, bytes, start, end), `length ${lengthBytes}`).toBe(crc32cTs(seed, bytes, start, end));
    }
    core.close();
  });

  it('crc32cOf reads views over wasm memory in place', () => {
    const core = smallCore();
    const ptr = arenaBaseOf(core.heapBase) - 4096;
    const view = core.bytes().subarray(ptr, ptr + 9);
    view.set(new TextEncoder().encode('123456789'));
    expect(core.crc32cOf(0xffff_ffff, view)).toBe(0x1cf9_6d7c);
    core.close();
  });

  it('installCrc32c routes format crc32c through the wasm core with identical results', () => {
    const core = smallCore();
    const bytes = Uint8Array.from({ length: 5000 }, (_, i) => (i * 31) & 0xff);
    const expected = crc32cTs(0x1234_5678, bytes, 3, 4999);
    let calls = 0;
    const crc32cOf = core.crc32cOf.bind(core);
    core.crc32cOf = (...args) => (calls++, crc32cOf(...args));
    core.installCrc32c();
    expect(crc32c(0x1234_5678, bytes, 3, 4999)).toBe(expected);
    expect(calls).toBe(1);
    core.close();
  });
});

describe('instantiateWasmCore', () => {
  it('instantiateWasmCore over the same memory sees the same bytes and claims another scratch slot', () => {
    const first = smallCore();
    const second = instantiateWasmCore(first.share());
    expect(second.heapBase).toBe(first.heapBase);
    expect(second.scratchPtr).toBe(scratchSlotPtrOf(first.heapBase, 1));
    const ptr = arenaBaseOf(first.heapBase) - 8192;
    first.bytes().set([1, 2, 3, 4, 5], ptr);
    expect(second.kernels.crc32c(0, ptr, 5)).toBe(first.kernels.crc32c(0, ptr, 5));
    second.kernels.bytesZero(ptr, 2);
    expect(Array.from(first.bytes().subarray(ptr, ptr + 5))).toEqual([0, 0, 3, 4, 5]);
    second.close();
    const third = instantiateWasmCore(first.share());
    expect(third.scratchPtr).toBe(scratchSlotPtrOf(first.heapBase, 1)); // slot 1 was released
    third.close();
    first.close();
  });

  it('a worker_threads Worker instantiates the posted module over the shared memory and sees the same bytes', async () => {
    const core = smallCore();
    const ptr = arenaBaseOf(core.heapBase) - 65536;
    const random = seededRandom(0xc0c0_0002);
    for (let i = 0; i < 4096; i++) core.bytes()[ptr + i] = random() & 0xff;
    const expectedCrc = core.kernels.crc32c(0xffff_ffff, ptr, 4096);
    // The worker body is plain JS: vitest runs TS sources, a Worker needs JS.
    const workerCode = `
      const { parentPort, workerData } = require('node:worker_threads');
      const { module, memory, ptr } = workerData;
      const { exports } = new WebAssembly.Instance(module, { env: { memory } });
      const crc = exports.crc32c(-1, ptr, 4096) >>> 0;
      const bytes = new Uint8Array(memory.buffer);
      bytes.set([0xde, 0xad, 0xbe, 0xef], ptr + 4096);
      parentPort.postMessage({ crc, firstByte: bytes[ptr], heapBase: exports.heapBase() });
    `;
    const worker = new Worker(workerCode, { eval: true, workerData: { ...core.share(), ptr } });
    const reply = await new Promise<{ crc: number; firstByte: number; heapBase: number }>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    await worker.terminate();
    expect(reply).toEqual({ crc: expectedCrc, firstByte: core.bytes()[ptr], heapBase: core.heapBase });
    expect(Array.from(core.bytes().subarray(ptr + 4096, ptr + 4100))).toEqual([0xde, 0xad, 0xbe, 0xef]);
    // The worker's start function rewrote the crc32c tables; they must be unchanged for us.
    expect(core.kernels.crc32c(0xffff_ffff, ptr, 4096)).toBe(expectedCrc);
    core.close();
  });
});
