/**
 * Page-aligned scratch buffers for device I/O.
 *
 * Why not `Buffer.alloc` and a subarray at an aligned byteOffset: a byteOffset is
 * relative to the ArrayBuffer's start, whose address JS cannot see (malloc puts a
 * header before it), so "aligned offset" says nothing about the address the kernel
 * copies to. A WebAssembly.Memory is reserved with mmap, so its first byte sits on a
 * page boundary (in fact a 64 KiB one): its buffer is aligned by construction.
 *
 * Kernel read()/write() into buffers that are not 32-byte aligned were measured ~4x
 * slower on these machines for some sizes; aligned buffers avoid that whatever the size.
 * Cost: each buffer reserves address space (not memory) for a wasm memory; keep few,
 * long-lived ones.
 */
import { assert } from '../assert.js';

export const WASM_PAGE_SIZE_BYTES = 64 * 1024;

/** The one WebAssembly API used here, typed locally: lib ES2022 and @types/node 20 omit it. */
interface WasmMemoryConstructor {
  new (descriptor: { initial: number; maximum?: number }): { readonly buffer: ArrayBuffer };
}
const WasmMemory = (globalThis as unknown as { WebAssembly: { Memory: WasmMemoryConstructor } }).WebAssembly.Memory;

/** A zero-filled buffer of `lengthBytes` whose first byte is page-aligned in memory. */
export function allocAligned(lengthBytes: number): Uint8Array {
  assert(Number.isSafeInteger(lengthBytes) && lengthBytes > 0, 'allocAligned length is a positive integer');
  const pageCount = Math.ceil(lengthBytes / WASM_PAGE_SIZE_BYTES);
  const memory = new WasmMemory({ initial: pageCount, maximum: pageCount });
  return new Uint8Array(memory.buffer, 0, lengthBytes);
}

let zerosShared: Uint8Array | undefined;

/** A shared, never-written, aligned buffer of zeros (1 MiB) used as a write source. */
export function sharedZeros(): Uint8Array {
  zerosShared ??= allocAligned(1024 * 1024);
  return zerosShared;
}
