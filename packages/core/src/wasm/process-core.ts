/**
 * One WASM core per process for the metadata hot paths that need no engine state
 * (crc32c of every checksummed block). Loaded on first mount; if the module cannot be
 * loaded (not built), metadata checksums stay on the pure-TS twin, which gives the same
 * results ~2x slower — `crc32cBackend()` says which is in use.
 */
import { loadWasmCore, type WasmCore } from './core.js';

/** The loader grows to the 8 MiB arena boundary at once (address space only: untouched pages cost nothing). */
const PROCESS_CORE_MAXIMUM_PAGES = 256;

let core: WasmCore | undefined;
let failure: Error | undefined;

export function processWasmCore(): WasmCore | undefined {
  if (core === undefined && failure === undefined) {
    try {
      core = loadWasmCore({ maximumPages: PROCESS_CORE_MAXIMUM_PAGES });
      core.installCrc32c();
    } catch (error) {
      failure = error as Error;
    }
  }
  return core;
}

export function crc32cBackend(): { backend: 'wasm' | 'ts'; reason?: string } {
  return core !== undefined ? { backend: 'wasm' } : { backend: 'ts', reason: failure?.message };
}
