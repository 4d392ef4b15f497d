/**
 * Loads the AssemblyScript core (wasm/build/ext4ts.wasm) over one shared
 * `WebAssembly.Memory({ shared: true })`: the engine thread calls loadWasmCore(), posts core.share()
 * ({ module, memory }) to each worker, and the worker calls instantiateWasmCore() on it,
 * so every thread runs the same kernels over the same bytes.
 *
 * The module is compiled once per process (synchronously, ~1 ms for its 4 KiB) and cached.
 * A kernel call from JS costs tens of nanoseconds; below that scale use the TS twins.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { assert } from '../assert.js';
import { crc32cTs, installCrc32c } from '../format/crc32c.js';
import { FsError } from '../vfs/errors.js';
import {
  CONTROL_SCRATCH_CLAIM_INDEX, SCRATCH_SLOT_BYTES, SCRATCH_SLOT_COUNT, WASM_MAXIMUM_PAGES, WASM_PAGE_BYTES,
  arenaBaseOf, controlWordPtrOf, scratchSlotPtrOf,
} from './layout.js';
import { type WasmMemory, type WasmModule, webAssembly } from './webassembly.js';

/** Same path from packages/core/src/wasm/ (vitest) and packages/core/dist/wasm/ (compiled). */
const WASM_URL = new URL('../../../../wasm/build/ext4ts.wasm', import.meta.url);

/**
 * crc32c of bytes outside wasm memory: below this length the TS twin is faster than
 * copying into scratch and calling the kernel (measured: equal near 32 B, 1.3x faster
 * at 128 B, 1.7x at 4 KiB; inside wasm memory, no copy: ~2x; see bench/micro.ts).
 */
export const CRC32C_WASM_MIN_BYTES = 64;
/** Attempts at the scratch-claim CAS before giving up (another thread keeps changing the word). */
const SCRATCH_CLAIM_ATTEMPTS_MAX = 64;

/** The kernels, typed. Pointers and lengths are byte offsets into the memory (u32). */
export interface WasmKernels {
  /** crc32c (ext4 raw form) of [ptr, ptr + lengthBytes) continuing from seed; u32 result. */
  crc32c(seed: number, ptr: number, lengthBytes: number): number;
  /** First zero bit in [startBit, endBit) of the bitmap at ptr, or -1. */
  bitmapFindFirstZero(ptr: number, startBit: number, endBit: number): number;
  /** First set bit in [startBit, endBit), or -1. */
  bitmapFindFirstSet(ptr: number, startBit: number, endBit: number): number;
  /**
   * Start of the first run of runLength zero bits in [0, bitCount) at or after goalBit,
   * else the first such run starting before goalBit (runs never wrap the end), else -1.
   */
  bitmapFindZeroRun(ptr: number, bitCount: number, goalBit: number, runLength: number): number;
  bitmapSetRange(ptr: number, startBit: number, endBit: number): void;
  bitmapClearRange(ptr: number, startBit: number, endBit: number): void;
  bitmapCountSet(ptr: number, startBit: number, endBit: number): number;
  /** Index of the last 16-byte extent record (layout.ts) whose logical start ≤ logicalBlock, or -1. */
  extentSearch(ptr: number, recordCount: number, logicalBlock: number): number;
  /** memmove semantics. */
  bytesCopy(targetPtr: number, sourcePtr: number, lengthBytes: number): void;
  bytesZero(ptr: number, lengthBytes: number): void;
  /** First differing offset in [0, lengthBytes), or -1. */
  bytesCompare(aPtr: number, bPtr: number, lengthBytes: number): number;
}

/** What a worker needs to instantiate the core over the same memory (structured-cloneable). */
export interface WasmCoreShare {
  module: WasmModule;
  memory: WasmMemory;
}

export interface WasmCore extends WasmCoreShare {
  readonly kernels: WasmKernels;
  /** First byte after the module's static data (layout.ts derives every region from it). */
  readonly heapBase: number;
  /** This instance's scratch slot pointer (SCRATCH_SLOT_BYTES long), or -1 when none was free. */
  readonly scratchPtr: number;
  /** A Uint8Array over the whole memory as it is now (re-made after growth). */
  bytes(): Uint8Array;
  /** Grow the memory (once, in whole pages) so that it is at least sizeBytes long. */
  ensureMemoryBytes(sizeBytes: number): void;
  /** crc32c over bytes[start, end), wherever the bytes live; a drop-in for format's crc32c. */
  crc32cOf(seed: number, bytes: Uint8Array, start?: number, end?: number): number;
  /** Route format/crc32c.ts's crc32c through this core (installCrc32c(null) undoes it). */
  installCrc32c(): void;
  share(): WasmCoreShare;
  /** Release this instance's scratch slot; the core must not be used afterwards. */
  close(): void;
}

export interface LoadWasmCoreOptions {
  /** Initial memory size in 64 KiB pages; default: just enough for the reserved region. */
  initialPages?: number;
  /** Maximum memory size in pages, ≤ 65536 (4 GiB); default 65536. */
  maximumPages?: number;
}

let cachedModule: WasmModule | null = null;

/** The compiled module, compiled on first use and cached for the process. */
export function wasmModule(): WasmModule {
  if (cachedModule !== null) return cachedModule;
  let bytes: Buffer;
  try {
    bytes = readFileSync(fileURLToPath(WASM_URL));
  } catch (cause) {
    throw new Error(`ext4ts wasm core not found at ${fileURLToPath(WASM_URL)}: run \`pnpm run build:wasm\``, { cause });
  }
  cachedModule = new webAssembly.Module(bytes);
  return cachedModule;
}

function invalidOption(detail: string): FsError {
  return new FsError('EINVAL', { syscall: 'loadWasmCore', detail });
}

/** Create a shared memory and instantiate the core over it (engine thread). */
export function loadWasmCore(options: LoadWasmCoreOptions = {}): WasmCore {
  const module = wasmModule();
  const maximumPages = options.maximumPages ?? WASM_MAXIMUM_PAGES;
  if (!Number.isInteger(maximumPages) || maximumPages < 1 || maximumPages > WASM_MAXIMUM_PAGES) {
    throw invalidOption(`maximumPages ${maximumPages} not in [1, ${WASM_MAXIMUM_PAGES}]`);
  }
  // heapBase is known only once instantiated, so by default start at one page and grow
  // to the end of the reserved region right after (growth only maps address space).
  const initialPages = options.initialPages ?? 1;
  if (!Number.isInteger(initialPages) || initialPages < 1 || initialPages > maximumPages) {
    throw invalidOption(`initialPages ${initialPages} not in [1, ${maximumPages}]`);
  }
  const memory = new webAssembly.Memory({ initial: initialPages, maximum: maximumPages, shared: true });
  const core = instantiateWasmCore({ module, memory });
  if (options.initialPages === undefined) core.ensureMemoryBytes(arenaBaseOf(core.heapBase));
  return core;
}

/** Instantiate the core over an existing memory (a worker, given core.share()). */
export function instantiateWasmCore(share: WasmCoreShare): WasmCore {
  const { module, memory } = share;
  const instance = new webAssembly.Instance(module, { env: { memory } });
  const exports = instance.exports as unknown as WasmKernels & { heapBase(): number };
  const heapBase = exports.heapBase();
  assert(heapBase > 0 && heapBase % 16 === 0, 'heapBase is a positive, 16-aligned address');
  return new WasmCoreInstance(module, memory, exports, heapBase);
}

class WasmCoreInstance implements WasmCore {
  readonly kernels: WasmKernels;
  scratchPtr = -1;
  private view: Uint8Array;
  private scratchSlot = -1;

  constructor(
    readonly module: WasmModule,
    readonly memory: WasmMemory,
    exports: WasmKernels,
    readonly heapBase: number,
  ) {
    this.kernels = typedKernels(exports);
    this.view = new Uint8Array(memory.buffer);
    if (memory.buffer.byteLength >= arenaBaseOf(heapBase)) this.claimScratch();
  }

  bytes(): Uint8Array {
    const buffer = this.memory.buffer;
    if (this.view.buffer !== buffer) this.view = new Uint8Array(buffer);
    return this.view;
  }

  ensureMemoryBytes(sizeBytes: number): void {
    const missingBytes = sizeBytes - this.memory.buffer.byteLength;
    if (missingBytes > 0) growMemory(this.memory, Math.ceil(missingBytes / WASM_PAGE_BYTES));
    if (this.scratchPtr < 0 && this.memory.buffer.byteLength >= arenaBaseOf(this.heapBase)) this.claimScratch();
  }

  crc32cOf(seed: number, bytes: Uint8Array, start = 0, end = bytes.length): number {
    const lengthBytes = end - start;
    if (bytes.buffer === this.memory.buffer) return this.kernels.crc32c(seed, bytes.byteOffset + start, lengthBytes);
    if (lengthBytes < CRC32C_WASM_MIN_BYTES || this.scratchPtr < 0) return crc32cTs(seed, bytes, start, end);
    const view = this.bytes();
    let crc = seed;
    for (let chunkStart = start; chunkStart < end; chunkStart += SCRATCH_SLOT_BYTES) {
      const chunkEnd = Math.min(end, chunkStart + SCRATCH_SLOT_BYTES);
      view.set(bytes.subarray(chunkStart, chunkEnd), this.scratchPtr);
      crc = this.kernels.crc32c(crc, this.scratchPtr, chunkEnd - chunkStart);
    }
    return crc;
  }

  installCrc32c(): void {
    installCrc32c((seed, bytes, start, end) => this.crc32cOf(seed, bytes, start, end));
  }

  share(): WasmCoreShare {
    return { module: this.module, memory: this.memory };
  }

  close(): void {
    if (this.scratchSlot < 0) return;
    const words = new Int32Array(this.memory.buffer);
    Atomics.and(words, controlWordPtrOf(this.heapBase, CONTROL_SCRATCH_CLAIM_INDEX) >> 2, ~(1 << this.scratchSlot));
    this.scratchSlot = -1;
    this.scratchPtr = -1;
  }

  // Claim a free scratch slot with a CAS on the claim word (layout.ts has the ordering rule).
  private claimScratch(): void {
    const words = new Int32Array(this.memory.buffer);
    const index = controlWordPtrOf(this.heapBase, CONTROL_SCRATCH_CLAIM_INDEX) >> 2;
    for (let attempt = 0; attempt < SCRATCH_CLAIM_ATTEMPTS_MAX; attempt++) {
      const claimed = Atomics.load(words, index);
      const slot = lowestClearBit(claimed);
      if (slot < 0 || slot >= SCRATCH_SLOT_COUNT) return;
      if (Atomics.compareExchange(words, index, claimed, claimed | (1 << slot)) === claimed) {
        this.scratchSlot = slot;
        this.scratchPtr = scratchSlotPtrOf(this.heapBase, slot);
        return;
      }
    }
  }
}

function growMemory(memory: WasmMemory, pageCount: number): void {
  try {
    memory.grow(pageCount);
  } catch (cause) {
    // RangeError: past the memory's maximum or out of address space.
    const detail = `cannot grow wasm memory by ${pageCount} pages`;
    throw new FsError('EINVAL', { syscall: 'ensureMemoryBytes', detail, cause });
  }
}

function lowestClearBit(word: number): number {
  const free = ~word;
  return free === 0 ? -1 : 31 - Math.clz32(free & -free);
}

// The raw exports, except crc32c's u32 result which wasm returns as a signed i32.
function typedKernels(exports: WasmKernels): WasmKernels {
  const crc32cRaw = exports.crc32c;
  return {
    crc32c: (seed, ptr, lengthBytes) => crc32cRaw(seed, ptr, lengthBytes) >>> 0,
    bitmapFindFirstZero: exports.bitmapFindFirstZero,
    bitmapFindFirstSet: exports.bitmapFindFirstSet,
    bitmapFindZeroRun: exports.bitmapFindZeroRun,
    bitmapSetRange: exports.bitmapSetRange,
    bitmapClearRange: exports.bitmapClearRange,
    bitmapCountSet: exports.bitmapCountSet,
    extentSearch: exports.extentSearch,
    bytesCopy: exports.bytesCopy,
    bytesZero: exports.bytesZero,
    bytesCompare: exports.bytesCompare,
  };
}
