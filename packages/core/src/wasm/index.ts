/** The shared-memory WASM core: loader, typed kernels, their TS twins, layout and the folio arena. */
export {
  CRC32C_WASM_MIN_BYTES, instantiateWasmCore, loadWasmCore, wasmModule,
  type LoadWasmCoreOptions, type WasmCore, type WasmCoreShare, type WasmKernels,
} from './core.js';
export { BuddyArena, arenaOrderForBytes, createArena, type ArenaOptions, type ArenaStats } from './arena.js';
export { twins } from './twins.js';
export type { WasmMemory, WasmModule } from './webassembly.js';
export * as wasmLayout from './layout.js';
export { processWasmCore, crc32cBackend } from './process-core.js';
