/**
 * The slice of the WebAssembly JS API the core uses, typed here because the project's
 * libs (ES2022 + @types/node 20) do not declare the `WebAssembly` global. Local types
 * keep the emitted .d.ts self-contained for consumers (no global augmentation).
 */

/** A compiled module (structured-cloneable to worker threads). */
export interface WasmModule {
  readonly [Symbol.toStringTag]: string;
}

/** A shared linear memory (structured-cloneable; every thread sees the same bytes). */
export interface WasmMemory {
  /** A new SharedArrayBuffer object after each growth; the same object otherwise. */
  readonly buffer: SharedArrayBuffer;
  /** Grow by pageCount 64 KiB pages; returns the old size in pages; RangeError past the maximum. */
  grow(pageCount: number): number;
}

export interface WasmInstance {
  readonly exports: Record<string, unknown>;
}

interface WebAssemblyApi {
  Module: new (bytes: Uint8Array) => WasmModule;
  Memory: new (descriptor: { initial: number; maximum: number; shared: true }) => WasmMemory;
  Instance: new (module: WasmModule, imports: Record<string, Record<string, unknown>>) => WasmInstance;
}

export const webAssembly: WebAssemblyApi = (globalThis as unknown as { WebAssembly: WebAssemblyApi }).WebAssembly;
