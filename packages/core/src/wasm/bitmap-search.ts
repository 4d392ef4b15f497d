/**
 * Bitmap searches for the allocators, on the WASM kernels: the bitmap (a 4 KiB block
 * bitmap, or less) is copied into this process core's scratch slot and searched there
 * (copy ~0.2 µs; the run search is ~30x the TS twin, see bench/micro.ts). Without a core
 * (module not built) the TS twins answer, with the same results.
 *
 * Synchronous on purpose: the scratch slot is shared with crc32cOf on this thread, and
 * no other use can interleave between the copy and the kernel call.
 */
import { SCRATCH_SLOT_BYTES } from './layout.js';
import { processWasmCore } from './process-core.js';
import { twins } from './twins.js';
import type { WasmCore } from './core.js';

function staged(bitmap: Uint8Array): WasmCore | undefined {
  const core = processWasmCore();
  if (core === undefined || core.scratchPtr < 0 || bitmap.length > SCRATCH_SLOT_BYTES) return undefined;
  core.bytes().set(bitmap, core.scratchPtr);
  return core;
}

/** First run of `runLength` zero bits in [0, bitCount), from goalBit first (see the kernel), or -1. */
export function bitmapFindZeroRun(bitmap: Uint8Array, bitCount: number, goalBit: number, runLength: number): number {
  const core = staged(bitmap);
  if (core === undefined) return twins.bitmapFindZeroRun(bitmap, 0, bitCount, goalBit, runLength);
  return core.kernels.bitmapFindZeroRun(core.scratchPtr, bitCount, goalBit, runLength);
}

/** First set bit in [startBit, endBit), or -1. */
export function bitmapFindFirstSet(bitmap: Uint8Array, startBit: number, endBit: number): number {
  const core = staged(bitmap);
  if (core === undefined) return twins.bitmapFindFirstSet(bitmap, 0, startBit, endBit);
  return core.kernels.bitmapFindFirstSet(core.scratchPtr, startBit, endBit);
}

/** Set bits in [startBit, endBit). */
export function bitmapCountSet(bitmap: Uint8Array, startBit: number, endBit: number): number {
  const core = staged(bitmap);
  if (core === undefined) return twins.bitmapCountSet(bitmap, 0, startBit, endBit);
  return core.kernels.bitmapCountSet(core.scratchPtr, startBit, endBit);
}
