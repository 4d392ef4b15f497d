/**
 * ext4ts WebAssembly core: hot kernels over (pointer, length, index) primitives in one
 * module instantiated over an imported shared memory (engine thread and every worker
 * instantiate the same compiled module over the same memory). No allocation happens
 * here: callers own every byte range they pass. Layout of shared state lives in
 * packages/core/src/wasm/layout.ts.
 */
// trap.ts provides abort (see build.mjs --use abort=...).
import './trap';

export { crc32c } from './crc32c';
export {
  bitmapFindFirstZero,
  bitmapFindFirstSet,
  bitmapFindZeroRun,
  bitmapSetRange,
  bitmapClearRange,
  bitmapCountSet,
} from './bitmap';
export { extentSearch } from './extent';
export { bytesCopy, bytesZero, bytesCompare } from './bytes';

/** First byte after the module's static data (the crc32c tables); callers lay out shared state above it. */
export function heapBase(): usize {
  return __heap_base;
}
