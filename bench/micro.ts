/**
 * Micro-benchmark: each wasm kernel against its pure-TS twin (packages/core/src/wasm/twins.ts)
 * at the sizes the engine uses them, over the same bytes in the shared wasm memory.
 * Run: `pnpm run bench:micro` (≈ 50 s: these kernels ≈ 15 s, then the engine's own pieces —
 * ES tree, mapBlocks, folio lookup, one 1 MiB / 4 KiB read and write by stage — from
 * micro-engine.ts, ≈ 35 s). Prints kernel, size, TS, WASM and WASM/TS, then its tables.
 *
 * Sub-microsecond kernels run in batches per tinybench iteration, so the timer's own cost
 * (tens of ns) does not swamp them; rates are per single call.
 */
import { Bench } from 'tinybench';
import type * as CrcModule from '../packages/core/dist/format/crc32c.js';
import type * as WasmModule from '../packages/core/dist/wasm/index.js';
import type { WasmCore } from '../packages/core/dist/wasm/index.js';
import { engineMicroMain } from './micro-engine.js';

// The core's compiled modules, by path: types come from the source-relative path above
// (type-only, erased), values from the same files relative to this file's output in
// bench/dist/, one level deeper. (The package entry does not export the wasm core.)
const coreDist = new URL('../../packages/core/dist/', import.meta.url);
const { crc32cTs } = (await import(new URL('format/crc32c.js', coreDist).href)) as typeof CrcModule;
const { loadWasmCore, twins, wasmLayout } = (await import(new URL('wasm/index.js', coreDist).href)) as typeof WasmModule;
const { EXTENT_RECORD_BYTES, arenaBaseOf } = wasmLayout;

const KIB = 1024;
const MIB = 1024 * KIB;
const TASK_TIME_MS = 300;
const WARMUP_TIME_MS = 80;

interface Case {
  kernel: string;
  size: string;
  /** Bytes per call, for MB/s; 0 reports calls per second instead. */
  bytesPerCall: number;
  /** Calls made by one run of ts()/wasm(). */
  callsPerRun: number;
  ts: () => unknown;
  wasm: () => unknown;
}

let sink = 0; // results land here so the JIT cannot drop the calls

function fillRandom(bytes: Uint8Array, ptr: number, lengthBytes: number, seed: number): void {
  let state = seed;
  for (let i = 0; i < lengthBytes; i++) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    bytes[ptr + i] = state >>> 24;
  }
}

function byteCases(core: WasmCore, regionPtr: number): Case[] {
  const bytes = core.bytes();
  const k = core.kernels;
  const a = regionPtr;
  const b = regionPtr + 2 * MIB;
  fillRandom(bytes, a, 2 * MIB, 7);
  bytes.copyWithin(b, a, a + 2 * MIB);
  const outside = bytes.slice(a, a + 4 * KIB); // an ordinary JS buffer, outside wasm memory
  const cases: Case[] = [];
  for (const [size, lengthBytes] of [['4 KiB', 4 * KIB], ['1 MiB', MIB]] as const) {
    const callsPerRun = lengthBytes === MIB ? 1 : 64;
    const repeat = (f: () => void) => () => { for (let i = 0; i < callsPerRun; i++) f(); };
    cases.push(
      { kernel: 'crc32c', size, bytesPerCall: lengthBytes, callsPerRun,
        ts: repeat(() => { sink ^= crc32cTs(~0, bytes, a, a + lengthBytes); }),
        wasm: repeat(() => { sink ^= k.crc32c(~0, a, lengthBytes); }) },
      { kernel: 'bytesCopy', size, bytesPerCall: lengthBytes, callsPerRun,
        ts: repeat(() => twins.bytesCopy(bytes, b, a, lengthBytes)),
        wasm: repeat(() => k.bytesCopy(b, a, lengthBytes)) },
      { kernel: 'bytesZero', size, bytesPerCall: lengthBytes, callsPerRun,
        ts: repeat(() => twins.bytesZero(bytes, b + 2 * lengthBytes, lengthBytes)),
        wasm: repeat(() => k.bytesZero(b + 2 * lengthBytes, lengthBytes)) },
      { kernel: 'bytesCompare (equal)', size, bytesPerCall: lengthBytes, callsPerRun,
        ts: repeat(() => { sink ^= twins.bytesCompare(bytes, a, b, lengthBytes); }),
        wasm: repeat(() => { sink ^= k.bytesCompare(a, b, lengthBytes); }) },
    );
  }
  cases.push({ kernel: 'crc32cOf (JS buffer, copy in)', size: '4 KiB', bytesPerCall: 4 * KIB, callsPerRun: 64,
    ts: () => { for (let i = 0; i < 64; i++) sink ^= crc32cTs(~0, outside); },
    wasm: () => { for (let i = 0; i < 64; i++) sink ^= core.crc32cOf(~0, outside); } });
  return cases;
}

function bitmapCases(core: WasmCore, regionPtr: number): Case[] {
  const bytes = core.bytes();
  const k = core.kernels;
  const bits = 32768;
  const full = regionPtr; // all set but its last bit: a full group, worst case for search
  k.bitmapSetRange(full, 0, bits);
  k.bitmapClearRange(full, bits - 1, bits);
  const fragmented = regionPtr + 8 * KIB; // 1-bit holes every 16 bits, a 64-bit hole at 3/4
  k.bitmapSetRange(fragmented, 0, bits);
  for (let bit = 7; bit < bits; bit += 16) k.bitmapClearRange(fragmented, bit, bit + 1);
  k.bitmapClearRange(fragmented, 24576, 24640);
  const rangeBitmap = regionPtr + 16 * KIB;
  const calls = 256;
  const batch = (f: () => void) => () => { for (let i = 0; i < calls; i++) f(); };
  const size = '32768 bits';
  return [
    { kernel: 'bitmapFindFirstZero (full)', size, bytesPerCall: 0, callsPerRun: calls,
      ts: batch(() => { sink ^= twins.bitmapFindFirstZero(bytes, full, 0, bits); }),
      wasm: batch(() => { sink ^= k.bitmapFindFirstZero(full, 0, bits); }) },
    { kernel: 'bitmapFindZeroRun 64 (fragmented)', size, bytesPerCall: 0, callsPerRun: calls,
      ts: batch(() => { sink ^= twins.bitmapFindZeroRun(bytes, fragmented, bits, 100, 64); }),
      wasm: batch(() => { sink ^= k.bitmapFindZeroRun(fragmented, bits, 100, 64); }) },
    { kernel: 'bitmapCountSet', size, bytesPerCall: 0, callsPerRun: calls,
      ts: batch(() => { sink ^= twins.bitmapCountSet(bytes, fragmented, 3, bits); }),
      wasm: batch(() => { sink ^= k.bitmapCountSet(fragmented, 3, bits); }) },
    { kernel: 'bitmapSetRange+ClearRange', size: '2000 bits', bytesPerCall: 0, callsPerRun: calls,
      ts: batch(() => { twins.bitmapSetRange(bytes, rangeBitmap, 5, 2005); twins.bitmapClearRange(bytes, rangeBitmap, 5, 2005); }),
      wasm: batch(() => { k.bitmapSetRange(rangeBitmap, 5, 2005); k.bitmapClearRange(rangeBitmap, 5, 2005); }) },
  ];
}

function extentCases(core: WasmCore, regionPtr: number): Case[] {
  const view = new DataView(core.memory.buffer);
  const bytes = core.bytes();
  const cases: Case[] = [];
  for (const recordCount of [340, 100_000]) {
    for (let i = 0; i < recordCount; i++) view.setUint32(regionPtr + i * EXTENT_RECORD_BYTES, i * 37, true);
    const ptr = regionPtr;
    regionPtr += recordCount * EXTENT_RECORD_BYTES;
    const queries = Uint32Array.from({ length: 1024 }, (_, i) => (Math.imul(i, 2654435761) >>> 0) % (recordCount * 37));
    cases.push({ kernel: 'extentSearch', size: `${recordCount} records`, bytesPerCall: 0, callsPerRun: queries.length,
      ts: () => { for (const q of queries) sink ^= twins.extentSearch(bytes, ptr, recordCount, q); },
      wasm: () => { for (const q of queries) sink ^= core.kernels.extentSearch(ptr, recordCount, q); } });
  }
  return cases;
}

// Calls per second of one variant.
async function measure(name: string, run: () => unknown, callsPerRun: number): Promise<number> {
  const bench = new Bench({ time: TASK_TIME_MS, warmupTime: WARMUP_TIME_MS });
  bench.add(name, run);
  await bench.run();
  const result = bench.tasks[0].result;
  if (result.state !== 'completed') throw new Error(`${name}: ${result.state}`);
  return (1000 / result.period) * callsPerRun;
}

function formatRate(callsPerSecond: number, bytesPerCall: number): string {
  if (bytesPerCall > 0) return `${((callsPerSecond * bytesPerCall) / 1e6).toFixed(0)} MB/s`;
  return `${(callsPerSecond / 1e6).toFixed(2)} M/s`;
}

async function main(): Promise<void> {
  const core = loadWasmCore();
  const regionPtr = arenaBaseOf(core.heapBase);
  core.ensureMemoryBytes(regionPtr + 8 * MIB);
  const cases = [
    ...byteCases(core, regionPtr),
    ...bitmapCases(core, regionPtr + 6 * MIB),
    ...extentCases(core, regionPtr + 6 * MIB + 64 * KIB),
  ];
  const rows: string[][] = [['kernel', 'size', 'TS', 'WASM', 'WASM/TS']];
  for (const c of cases) {
    const ts = await measure(`${c.kernel} ts`, c.ts, c.callsPerRun);
    const wasm = await measure(`${c.kernel} wasm`, c.wasm, c.callsPerRun);
    rows.push([c.kernel, c.size, formatRate(ts, c.bytesPerCall), formatRate(wasm, c.bytesPerCall), `${(wasm / ts).toFixed(2)}x`]);
  }
  const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)));
  for (const row of rows) console.log(row.map((cell, column) => cell.padEnd(widths[column])).join('  '));
  console.log(`(M/s = million calls per second; sink ${sink & 1})`);
  core.close();
}

await main();
console.log();
await engineMicroMain();
