/**
 * Engine micro-benchmarks (tinybench): the pieces a buffered I/O call is made of, each
 * timed alone, so that when `ext4ts bench` moves, this says which piece moved.
 *
 *   ES tree        ExtentStatusTree lookup / insert on trees of 1k and 100k records
 *   mapBlocks      an ES hit, and an ES miss (on-disk extent tree walk + cacheExtent), on a
 *                  file of 10k extents (every other 4 KiB block written, then synced)
 *   folio lookup   AddressSpace.lookup / getOrCreate / create+delete on populated mappings
 *   one call       FileHandle.read and .write of 1 MiB and of 4 KiB — a cached read, an
 *                  overwrite of cached data, a fresh delalloc append — broken down by stage
 *
 * How one call is broken down. Each stage runs alone, with the same inputs as the call:
 *   - the layers above the data path run their real code over a stub of the layer below
 *     that answers at once: a FileHandle over a host whose Ext4Files.read/write return the
 *     length, and an Ext4Files (Object.create of the mount's) over a stub data path;
 *   - the data path's call (path.read / path.write) is timed whole, and its steps alone on
 *     the same Ext4IomapInode (the path's state and mapping, as iomap_path.ts builds it),
 *     folio, iomap and buffer: chooseWriteOps, the iomapIter loop over a stub begin/actor,
 *     throttle, ops.begin (+ end), getOrCreate + put, lock + cookie check + unlock,
 *     fillFolioBlocks, the copy (folio.copyIn/copyOut), markUptodate + markDirty;
 *   - a write's mtime stamp (one inode handle at most every TIME_UPDATE_MS) is the handle's
 *     measured cost spread over the calls that fit in that period at the whole call's speed.
 * The table sets the stages' sum beside the whole call, and splits the rest in two
 * measured differences: the path's own glue (path − its steps: iomapRead/iomapWrite's
 * code and awaits) and the hops between layers (whole − path − the layers above).
 * Caller buffers come from fs.allocBuffer (copies are memory.copy inside wasm memory, as
 * `ext4ts bench` does); the JS Buffer variant and the raw copies are shown beside.
 *
 *   1 MiB cached read, one run here: whole 19.9 µs = copy 17.6 (88 %) + 0.1 page cache
 *   check + 0.4 the layers above + 1.2 path glue + 0.7 hops (before reads looked in the page
 *   cache first: 22.9 µs, with begin, iomapIter, folio lock and fill on every call). 4 KiB:
 *   whole 0.77 µs (was 2.1), the copy 0.09, the layers above the path 0.39. A fresh 1 MiB
 *   append: 47.7 µs, the copy into a new folio 33.6 (the same folio again: 18.2).
 *
 * Run: `pnpm run bench:micro` (the kernels of micro.ts, then this) or, built,
 * `node --expose-gc bench/dist/micro-engine.js` (this alone, ≈ 35 s).
 * Cost of a run: one 512 MiB MemoryDevice, a mount with a 256 MiB page cache (its arena
 * touched once up front: first touch of fresh memory runs at ~0.5 GiB/s here and would be
 * charged to the first fresh write), ~110 tinybench tasks of 0.25 s. Figures are medians
 * of runs (see Timer.usPerCall): on two shared cores a mean takes in every preemption.
 */
import { pathToFileURL } from 'node:url';
import { Bench } from 'tinybench';
import type * as IndexModule from '../packages/core/dist/index.js';
import type * as EsModule from '../packages/core/dist/ext4/extents_status.js';
import type * as MapBlocksModule from '../packages/core/dist/ext4/map_blocks.js';
import type * as ExtentsModule from '../packages/core/dist/ext4/extents.js';
import type * as IomapOpsModule from '../packages/core/dist/ext4/iomap_ops.js';
import type * as FileModule from '../packages/core/dist/ext4/file.js';
import type * as TruncateModule from '../packages/core/dist/ext4/truncate.js';
import type * as IomapModule from '../packages/core/dist/iomap/index.js';
import type * as FolioIoModule from '../packages/core/dist/iomap/folio-io.js';
import type * as MmModule from '../packages/core/dist/mm/index.js';
import type * as WasmModule from '../packages/core/dist/wasm/index.js';
import type { Ext4Filesystem, Ext4Files, FileHandle, MemoryDevice } from '../packages/core/dist/index.js';
import type { Ext4DataPath } from '../packages/core/dist/ext4/data-path.js';
import type { Ext4InodeState } from '../packages/core/dist/ext4/map_blocks.js';
import type { Ext4IomapInode } from '../packages/core/dist/ext4/iomap_ops.js';
import type { Iomap, IomapOps } from '../packages/core/dist/iomap/types.js';
import type { AddressSpace, Folio } from '../packages/core/dist/mm/index.js';
import type { FileHandleHost } from '../packages/core/dist/vfs/file-handle.js';

const KIB = 1024;
const MIB = 1024 * KIB;
const PAGE_BYTES = 4096;
const BLOCK_BYTES = 4096;

// ─── The core's modules ─────────────────────────────────────────────────────────────────

/** The engine modules this file drives, loaded from one root so that every class is the same instance. */
export interface EngineCore {
  index: typeof IndexModule;
  es: typeof EsModule;
  mapBlocks: typeof MapBlocksModule;
  extents: typeof ExtentsModule;
  iomapOps: typeof IomapOpsModule;
  file: typeof FileModule;
  truncate: typeof TruncateModule;
  iomap: typeof IomapModule;
  folioIo: typeof FolioIoModule;
  mm: typeof MmModule;
  wasm: typeof WasmModule;
}

/** The compiled core, relative to this file's output in bench/dist/ (the package entry does not export the internals). */
export function distCoreRoot(): URL {
  return new URL('../../packages/core/dist/', import.meta.url);
}

/** Load the modules from `root` (the compiled core, or the sources under vitest). */
export async function loadEngineCore(root: URL): Promise<EngineCore> {
  const load = (path: string): Promise<unknown> => import(new URL(path, root).href);
  const [index, es, mapBlocks, extents, iomapOps, file, truncate, iomap, folioIo, mm, wasm] = await Promise.all([
    load('index.js'), load('ext4/extents_status.js'), load('ext4/map_blocks.js'), load('ext4/extents.js'),
    load('ext4/iomap_ops.js'), load('ext4/file.js'), load('ext4/truncate.js'), load('iomap/index.js'),
    load('iomap/folio-io.js'), load('mm/index.js'), load('wasm/index.js'),
  ]);
  return {
    index: index as typeof IndexModule, es: es as typeof EsModule, mapBlocks: mapBlocks as typeof MapBlocksModule,
    extents: extents as typeof ExtentsModule, iomapOps: iomapOps as typeof IomapOpsModule, file: file as typeof FileModule,
    truncate: truncate as typeof TruncateModule, iomap: iomap as typeof IomapModule, folioIo: folioIo as typeof FolioIoModule,
    mm: mm as typeof MmModule, wasm: wasm as typeof WasmModule,
  };
}

// ─── Options and results ────────────────────────────────────────────────────────────────

export interface EngineMicroOptions {
  /** tinybench time per task and its warmup, ms. */
  taskTimeMs: number;
  warmupTimeMs: number;
  /** Minimum iterations per task (and per warmup). */
  iterationsMin: number;
  /** Extents of the mapBlocks file (one per other block). */
  fragExtents: number;
  /** ES tree sizes, records. */
  esRecordCounts: readonly number[];
  /** Page cache of the benchmark mount, and its device. */
  cacheBytes: number;
  deviceBytes: number;
  /** Fresh appends run to this size, then the file is truncated to 0 (untimed); keep it under the cache's background dirty threshold. */
  freshCycleBytes: number;
  /** Progress lines (one per section). */
  log: (line: string) => void;
}

export const ENGINE_MICRO_DEFAULTS: Omit<EngineMicroOptions, 'log'> = {
  taskTimeMs: 250,
  warmupTimeMs: 50,
  iterationsMin: 32,
  fragExtents: 10_000,
  esRecordCounts: [1_000, 100_000],
  cacheBytes: 256 * MIB,
  deviceBytes: 512 * MIB,
  freshCycleBytes: 32 * MIB,
};

/** One timed row: microseconds per call. */
export interface Row {
  label: string;
  usPerCall: number;
}

/** A table of rows measured under several sizes (columns), e.g. ES trees of 1k and 100k records. */
export interface Grid {
  title: string;
  columns: string[];
  rows: { label: string; usPerCall: number[] }[];
}

/**
 * One call by stage. The stages (upper + pathStages) are each timed alone; stageSumUs is
 * their sum, to set beside whole. path is the data path's call timed whole, so that
 * whole − path − upper is the cost of the hops between the layers, and path − pathStages
 * the path's own glue.
 */
export interface Breakdown {
  title: string;
  whole: Row;
  upper: Row[];
  path: Row;
  pathStages: Row[];
  stageSumUs: number;
  /** Rows outside the sum: variants and raw copies. */
  beside: Row[];
}

export interface EngineMicroResult {
  esTree: Grid;
  folio: Grid;
  mapBlocks: Grid;
  breakdowns: Breakdown[];
}

// ─── Timing ─────────────────────────────────────────────────────────────────────────────

/** A task: `run` makes `calls` calls (batched so the timer's ~50 ns do not swamp sub-µs calls). */
interface Timed {
  calls: number;
  run: () => unknown;
  /** Untimed, around every run (tinybench beforeEach / afterEach). */
  before?: () => unknown;
  after?: () => unknown;
}

const BATCH_ASYNC = 64;
const BATCH_SYNC = 512;

function batchSync(calls: number, call: (i: number) => unknown): Timed {
  return { calls, run: () => { for (let i = 0; i < calls; i++) call(i); } };
}

function batchAsync(calls: number, call: (i: number) => Promise<unknown>): Timed {
  return { calls, run: async () => { for (let i = 0; i < calls; i++) await call(i); } };
}

/** Calls of a whole 1 MiB / 4 KiB call per run. */
function wholeCalls(lengthBytes: number): number {
  return lengthBytes >= 256 * KIB ? 1 : 16;
}

class Timer {
  private readonly memo = new Map<string, number>();

  constructor(private readonly options: EngineMicroOptions) {}

  /**
   * µs per call of one task: the median run over its calls. The median, not the mean: on
   * shared cores a preempted run costs a time slice (ms), which would swamp a mean of
   * 50 µs calls; costs that land in few runs (the mtime handle) are modeled apart.
   */
  async usPerCall(name: string, timed: Timed): Promise<number> {
    (globalThis as { gc?: () => void }).gc?.();
    const { taskTimeMs, warmupTimeMs, iterationsMin } = this.options;
    const bench = new Bench({ time: taskTimeMs, warmupTime: warmupTimeMs, iterations: iterationsMin, warmupIterations: iterationsMin });
    const isAsync = timed.run.constructor.name === 'AsyncFunction';
    bench.add(name, timed.run, {
      async: isAsync,
      beforeEach: timed.before === undefined ? undefined : async () => { await timed.before!(); },
      afterEach: timed.after === undefined ? undefined : async () => { await timed.after!(); },
    });
    await bench.run();
    const result = bench.tasks[0].result;
    if (result.state === 'errored') throw result.error;
    if (result.state !== 'completed') throw new Error(`${name}: ${result.state}`);
    return (result.latency.p50 * 1000) / timed.calls;
  }

  /** usPerCall, measured once per key (stages two tables share). */
  async shared(key: string, timed: () => Timed): Promise<number> {
    const known = this.memo.get(key);
    if (known !== undefined) return known;
    const us = await this.usPerCall(key, timed());
    this.memo.set(key, us);
    return us;
  }
}

let sink = 0; // results land here so the JIT cannot drop the calls

// ─── ES tree ────────────────────────────────────────────────────────────────────────────

/** Records [4i, 4i + 2) WRITTEN at 10^6 + 8i: never mergeable (a 2-block gap between). */
function buildEsTree(core: EngineCore, records: number): EsModule.ExtentStatusTree {
  const tree = new core.es.ExtentStatusTree();
  for (let i = 0; i < records; i++) tree.insert(4 * i, 2, 1_000_000 + 8 * i, core.es.EsStatus.WRITTEN);
  return tree;
}

function randomIndices(core: EngineCore, seed: number, count: number, bound: number): Uint32Array {
  const next = core.index.seededUnitRandom(seed);
  return Uint32Array.from({ length: count }, () => Math.floor(next() * bound));
}

/** [0, count) shuffled (Fisher–Yates): any `count` consecutive entries, read round-robin, are distinct. */
function randomPermutation(core: EngineCore, seed: number, count: number): Uint32Array {
  const next = core.index.seededUnitRandom(seed);
  const values = Uint32Array.from({ length: count }, (_, i) => i);
  for (let i = count - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [values[i], values[j]] = [values[j], values[i]];
  }
  return values;
}

async function esTreeGrid(core: EngineCore, timer: Timer, options: EngineMicroOptions): Promise<Grid> {
  const labels = [
    'lookup, random block (hit)',
    'lookup, the last-found record again',
    'lookup, a gap between records (miss)',
    'insert: extend the last record (merge)',
    'insert: split a record, then merge it back (per insert)',
    'insertDelayed + remove at the end (per pair)',
  ];
  const rows = labels.map((label) => ({ label, usPerCall: [] as number[] }));
  const WRITTEN = core.es.EsStatus.WRITTEN;
  for (const records of options.esRecordCounts) {
    const tree = buildEsTree(core, records);
    const into = core.es.newEsLookup();
    const picks = randomIndices(core, records, 1024, records);
    const n = picks.length;
    let end = 4 * (records - 1) + 2;
    let endPblk = 1_000_000 + 8 * (records - 1) + 2;
    const cases: Timed[] = [
      batchSync(n, (i) => { sink ^= tree.lookup(4 * picks[i] + (i & 1), into).lblk; }),
      batchSync(n, () => { sink ^= tree.lookup(4 * picks[0], into).lblk; }),
      batchSync(n, (i) => { sink ^= tree.lookup(4 * picks[i] + 2 + (i & 1), into).nextLblk; }),
      batchSync(n, () => { sink ^= tree.insert(end++, 1, endPblk++, WRITTEN); }),
      {
        ...batchSync(n, (i) => {
          const r = picks[i];
          tree.insert(4 * r, 1, 2 ** 40 + r, WRITTEN); // [4r, 4r + 2) splits in two ...
          sink ^= tree.insert(4 * r, 1, 1_000_000 + 8 * r, WRITTEN); // ... and merges back
        }),
        calls: 2 * n,
      },
      batchSync(n, () => { tree.insertDelayed(end + 10, 1); sink ^= tree.remove(end + 10, 1); }),
    ];
    for (let c = 0; c < cases.length; c++) rows[c].usPerCall.push(await timer.usPerCall(`es ${labels[c]} ${records}`, cases[c]));
  }
  return { title: 'ES tree (ExtentStatusTree), by records in the tree', columns: options.esRecordCounts.map(formatCount), rows };
}

// ─── Folio lookup ───────────────────────────────────────────────────────────────────────

/**
 * A page cache of its own (over its own wasm core): 8192 order-0 folios on even pages of
 * [0, 16384) (8 chunks, each with gaps), and 32 folios of 1 MiB.
 */
async function folioGrid(core: EngineCore, timer: Timer): Promise<Grid> {
  const wasmCore = core.wasm.loadWasmCore();
  const cache = core.mm.createPageCache(wasmCore, { cacheBytesMax: 96 * MIB });
  const small = cache.createMapping({ blockBytes: BLOCK_BYTES, orderMax: 0 });
  const large = cache.createMapping({ blockBytes: BLOCK_BYTES });
  const spare = cache.createMapping({ blockBytes: BLOCK_BYTES });
  for (let index = 0; index < 16384; index += 2) small.tryGetOrCreate(index, 0)!.put();
  for (let index = 0; index < 8192; index += 256) large.tryGetOrCreate(index, 8)!.put();
  const picks = randomIndices(core, 5, 1024, 8192);
  const n = picks.length;
  const createDelete = (mapping: AddressSpace, index: number, order: number): void => {
    const folio = mapping.tryGetOrCreate(index, order)!;
    folio.tryLock();
    mapping.deleteFolio(folio);
    folio.unlock();
    folio.put();
  };
  const cases: [string, Timed][] = [
    ['lookup hit, 8192 order-0 folios', batchSync(n, (i) => { sink ^= small.lookup(2 * picks[i])!.index; })],
    ['lookup hit, 32 folios of 1 MiB', batchSync(n, (i) => { sink ^= large.lookup(picks[i])!.index; })],
    ['lookup miss, a gap in a populated chunk', batchSync(n, (i) => { sink ^= small.lookup(2 * picks[i] + 1) === null ? 1 : 0; })],
    ['tryGetOrCreate + put, hit', batchSync(n, (i) => { small.tryGetOrCreate(2 * picks[i], 0)!.put(); })],
    ['getOrCreate + put, hit (awaited)', batchAsync(BATCH_ASYNC, async (i) => { (await small.getOrCreate(2 * picks[i], 0)).put(); })],
    ['create + delete, order 0 (in a gap)', batchSync(BATCH_ASYNC, (i) => createDelete(small, 2 * picks[i] + 1, 0))],
    ['create + delete, 1 MiB (order 8)', batchSync(BATCH_ASYNC, (i) => createDelete(spare, 256 * (i & 15), 8))],
  ];
  const rows: Grid['rows'] = [];
  for (const [label, timed] of cases) rows.push({ label, usPerCall: [await timer.usPerCall(`folio ${label}`, timed)] });
  for (const mapping of [small, large, spare]) cache.releaseMapping(mapping);
  cache.close();
  wasmCore.close();
  return { title: 'Folio lookup (AddressSpace in a page cache of its own)', columns: ['per call'], rows };
}

// ─── The benchmark mount ────────────────────────────────────────────────────────────────

interface FileUnderTest {
  ino: number;
  handle: FileHandle;
  state: Ext4InodeState;
  /** The iomap inode as iomap_path.ts builds it: the path's state and page cache mapping. */
  inode: Ext4IomapInode;
}

interface Env {
  core: EngineCore;
  options: EngineMicroOptions;
  timer: Timer;
  device: MemoryDevice;
  fs: Ext4Filesystem;
  /** 16 MiB, written in 1 MiB calls and synced: WRITTEN extents, clean 1 MiB folios. */
  data: FileUnderTest;
  /** A second handle on data, for sequential reads (its own readahead). */
  dataSequential: FileHandle;
  /** Appended to by the fresh-write rows; truncated to 0 every freshCycleBytes. */
  fresh: FileUnderTest;
  freshPosBytes: number;
  /** Never written through fs: its ES tree and reservations take the isolated begin() of fresh writes. */
  scratch: FileUnderTest;
  /** A mapping of the mount's cache outside any file, for folio creation alone. */
  scratchMapping: AddressSpace;
  /** The mapBlocks file: every other block written (fragExtents of them), then synced. */
  frag: FileUnderTest;
  /** Engine buffers (fs.allocBuffer) of 1 MiB, and a JS Buffer. */
  ioBuffer: Buffer;
  ioBufferOther: Buffer;
  jsBuffer: Buffer;
  /** A FileHandle over stub Ext4Files, and an Ext4Files over a stub data path. */
  handleOverStub: FileHandle;
  filesOverStub: Ext4Files;
}

const DATA_FILE_BYTES = 16 * MIB;

async function openFile(env: Pick<Env, 'core' | 'fs'>, name: string, flags: string): Promise<FileUnderTest> {
  const { core, fs } = env;
  const handle = await fs.open(name, flags);
  const ino = Number((await handle.stat()).ino);
  const state = await core.mapBlocks.inodeState(fs.mount, ino);
  const inode = new core.iomapOps.Ext4IomapInode(state, fs.files.path.mappingOf(state));
  return { ino, handle, state, inode };
}

/** Ext4Filesystem.exclusive's serialiser (private there): the same three lines. */
function serialiser(): FileHandleHost['exclusive'] {
  let chain: Promise<unknown> = Promise.resolve();
  return <T>(body: () => Promise<T>): Promise<T> => {
    const run = chain.then(body, body);
    chain = run.catch(() => undefined);
    return run;
  };
}

/** The mount's Ext4Files with read/write answering at once (the FileHandle layer's stub). */
function stubFiles(fs: Ext4Filesystem): Ext4Files {
  const files = Object.create(fs.files) as Ext4Files;
  return Object.assign(files, {
    read: async (_ino: number, _pos: number, target: Uint8Array) => target.length,
    write: async (_ino: number, _pos: number, source: Uint8Array) => source.length,
  });
}

/** The mount's Ext4Files over a data path whose read/write answer at once (the Ext4Files layer alone). */
function filesOverStubPath(fs: Ext4Filesystem): Ext4Files {
  const path = Object.assign(Object.create(fs.files.path) as Ext4DataPath, {
    read: async (_state: unknown, _pos: number, target: Uint8Array) => target.length,
    write: async (_state: unknown, _pos: number, source: Uint8Array) => source.length,
  });
  const files = Object.create(fs.files) as Ext4Files;
  files.path = path;
  return files;
}

function handleOverStubFiles(core: EngineCore, fs: Ext4Filesystem, ino: number): FileHandle {
  const host: FileHandleHost = {
    ext4: fs.internals,
    statContext: { dev: 0, blockSizeBytes: BLOCK_BYTES },
    writer: { setAttr: async () => { throw new Error('setAttr is not benchmarked'); } },
    files: stubFiles(fs),
    exclusive: serialiser(),
    unlocked: (body) => body(),
    release: async () => undefined,
  };
  return new core.index.FileHandle(-1, host, ino, '/data', { read: true, write: true, append: false });
}

async function openEnv(core: EngineCore, options: EngineMicroOptions, timer: Timer): Promise<Env> {
  const { MemoryDevice, mkfs, Ext4 } = core.index;
  const device = MemoryDevice.create({ sizeBytes: options.deviceBytes });
  await mkfs(device, { assumeZeroed: true });
  const fs = await Ext4.mount(device, { readOnly: false, cacheBytes: options.cacheBytes, writebackThreads: 0, commitIntervalMs: 0 });
  const { arena } = fs.files.cache;
  fs.files.core.bytes().fill(0x5a, arena.basePtr, arena.basePtr + arena.sizeBytes); // touch it: no folio exists yet
  const ioBuffer = fs.allocBuffer(MIB);
  const ioBufferOther = fs.allocBuffer(MIB);
  const jsBuffer = Buffer.alloc(MIB, 0xa5);
  ioBuffer.fill(0xa5);
  const base = { core, fs };
  const data = await openFile(base, '/data', 'w+');
  for (let pos = 0; pos < DATA_FILE_BYTES; pos += MIB) await data.handle.write(ioBuffer, 0, MIB, pos);
  const frag = await openFile(base, '/frag', 'w+');
  for (let i = 0; i < options.fragExtents; i++) await frag.handle.write(ioBuffer, 0, BLOCK_BYTES, 2 * i * BLOCK_BYTES);
  await fs.sync();
  const env: Env = {
    core, options, timer, device, fs, data, frag, ioBuffer, ioBufferOther, jsBuffer,
    dataSequential: await fs.open('/data', 'r'),
    fresh: await openFile(base, '/fresh', 'w+'),
    freshPosBytes: 0,
    scratch: await openFile(base, '/scratch', 'w+'),
    scratchMapping: fs.files.cache.createMapping({ blockBytes: BLOCK_BYTES }),
    handleOverStub: handleOverStubFiles(core, fs, data.ino),
    filesOverStub: filesOverStubPath(fs),
  };
  return env;
}

async function closeEnv(env: Env): Promise<void> {
  env.fs.files.cache.releaseMapping(env.scratchMapping);
  for (const handle of [env.data.handle, env.dataSequential, env.fresh.handle, env.scratch.handle, env.frag.handle]) await handle.close();
  env.fs.freeBuffer(env.ioBuffer);
  env.fs.freeBuffer(env.ioBufferOther);
  await env.fs.unmount();
  await env.device.close();
}

// ─── mapBlocks ──────────────────────────────────────────────────────────────────────────

async function mapBlocksGrid(env: Env): Promise<Grid> {
  const { core, fs, timer, frag } = env;
  const { mapBlocks, Ext4InodeState } = core.mapBlocks;
  const mount = fs.mount;
  const extents = env.options.fragExtents;
  const picks = randomIndices(core, 11, 1024, extents);
  const order = randomPermutation(core, 13, extents);
  const missCalls = Math.min(128, extents);
  const shrinker = new core.es.EsShrinker({ recordBudget: 1 << 22 });
  // A miss needs a tree that has not seen the block: a fresh state per run, disposed after it.
  let fresh: Ext4InodeState | undefined;
  let offset = 0;
  const missRun = (hole: number): Timed => ({
    calls: missCalls,
    before: () => { fresh = new Ext4InodeState(mount, frag.ino, frag.state.sizeBytes, shrinker); },
    run: async () => {
      for (let i = 0; i < missCalls; i++) sink ^= (await mapBlocks(mount, fresh!, 2 * order[(offset + i) % extents] + hole, 1, 0)).len;
    },
    after: () => { fresh!.es.dispose(); offset = (offset + missCalls) % extents; },
  });
  const inode = await mount.inode(frag.ino);
  const cases: [string, Timed][] = [
    ['ES hit, random block', batchAsync(BATCH_ASYNC, (i) => mapBlocks(mount, frag.state, 2 * picks[i], 1, 0))],
    ['ES hit, the last-found block again', batchAsync(BATCH_ASYNC, () => mapBlocks(mount, frag.state, 2 * picks[0], 1, 0))],
    ['ES miss: on-disk walk + cacheExtent (written)', missRun(0)],
    ['ES miss: on-disk walk + cacheExtent (hole)', missRun(1)],
    ['the on-disk walk alone (extents.mapBlock)', batchAsync(BATCH_ASYNC, (i) => core.extents.mapBlock(mount.ext4, inode, 2 * picks[i]))],
  ];
  const rows: Grid['rows'] = [];
  for (const [label, timed] of cases) rows.push({ label, usPerCall: [await timer.usPerCall(`mapBlocks ${label}`, timed)] });
  // eh_depth: u16 at byte 6 of the extent header at the start of i_block.
  const depth = new DataView(inode.block.buffer, inode.block.byteOffset, inode.block.length).getUint16(6, true);
  return { title: `mapBlocks(mount, state, lblk, 1, 0) on a file of ${formatCount(extents)} extents (on-disk tree depth ${depth})`, columns: ['per call'], rows };
}

// ─── One call, by stage ─────────────────────────────────────────────────────────────────

/** A row of a breakdown: its label and how to time it (µs per call). */
type StageSpec = [label: string, time: () => Promise<number>];

interface BreakdownSpec {
  title: string;
  /** The FileHandle call. */
  whole: StageSpec;
  /** The layers above the data path, each over a stub of the layer below. */
  upper: StageSpec[];
  /** A write's mtime stamp: the cost of one inode handle, spread over TIME_UPDATE_MS. */
  stampHandleUs?: number;
  /** The data path's call (path.read / path.write), and its steps timed alone. */
  path: StageSpec;
  pathStages: StageSpec[];
  beside: StageSpec[];
}

async function timeRows(specs: StageSpec[]): Promise<Row[]> {
  const rows: Row[] = [];
  for (const [label, time] of specs) rows.push({ label, usPerCall: await time() });
  return rows;
}

async function measureBreakdown(env: Env, spec: BreakdownSpec): Promise<Breakdown> {
  const whole = (await timeRows([spec.whole]))[0];
  const upper = await timeRows(spec.upper);
  if (spec.stampHandleUs !== undefined) {
    // One handle per TIME_UPDATE_MS: spread over the calls that fit in that period.
    const periodUs = env.core.file.TIME_UPDATE_MS * 1000;
    upper.push({ label: 'Ext4Files.write: mtime stamp, 1 handle per 4 ms (modeled)', usPerCall: spec.stampHandleUs * Math.min(1, whole.usPerCall / periodUs) });
  }
  const path = (await timeRows([spec.path]))[0];
  const pathStages = await timeRows(spec.pathStages);
  const beside = await timeRows(spec.beside);
  const stageSumUs = [...upper, ...pathStages].reduce((sum, row) => sum + row.usPerCall, 0);
  return { title: spec.title, whole, upper, path, pathStages, stageSumUs, beside };
}

/** A stub begin (an iomap made earlier, already resolved) and a stub actor: iomapIter's own cost. */
function iterAlone(env: Env, file: FileUnderTest, iomap: Iomap, posBytes: number, lengthBytes: number, op: number): Timed {
  const resolved = Promise.resolve(iomap);
  const ops: IomapOps = { begin: () => resolved, valid: () => true };
  const actor = async (_iomap: Iomap, _pos: number, length: number): Promise<number> => length;
  return batchAsync(BATCH_ASYNC, () => env.core.iomap.iomapIter(file.inode, ops, { posBytes, lengthBytes, op }, actor));
}

/** `call` on a folio pinned and (optionally) locked around every run, as the iomap actor holds it. */
function onHeldFolio(folio: Folio, locked: boolean, calls: number, call: () => unknown): Timed {
  return {
    calls,
    before: () => { folio.get(); if (locked) folio.tryLock(); },
    run: async () => { for (let i = 0; i < calls; i++) await call(); },
    after: () => { if (locked) folio.unlock(); folio.put(); },
  };
}

function copyBatch(lengthBytes: number): number {
  return lengthBytes >= 256 * KIB ? 1 : BATCH_ASYNC;
}

/** Raw copies of lengthBytes for reference: memory.copy inside wasm memory, and TypedArray.set out of it. */
function rawCopyRows(env: Env, lengthBytes: number): StageSpec[] {
  const { timer, fs, ioBuffer, ioBufferOther, jsBuffer } = env;
  const kernels = fs.files.core.kernels;
  const calls = copyBatch(lengthBytes);
  const size = formatBytes(lengthBytes);
  return [
    [`raw memory.copy of ${size} (wasm bytesCopy)`, () => timer.shared(`raw memory.copy ${lengthBytes}`,
      () => batchSync(calls, () => kernels.bytesCopy(ioBufferOther.byteOffset, ioBuffer.byteOffset, lengthBytes)))],
    [`raw TypedArray.set of ${size} (wasm memory → JS Buffer)`, () => timer.shared(`raw set ${lengthBytes}`,
      () => batchSync(calls, () => jsBuffer.set(ioBuffer.subarray(0, lengthBytes))))],
  ];
}

async function readBreakdown(env: Env, lengthBytes: number): Promise<Breakdown> {
  const { core, fs, timer, data } = env;
  const { IomapOp } = core.iomap;
  const ops = core.iomapOps.ext4IomapReadOps;
  // The last bytes of the file: readahead has nothing past EOF to add, so the call is one mapping, one folio.
  const pos = DATA_FILE_BYTES - lengthBytes;
  const target = env.ioBuffer.subarray(0, lengthBytes);
  const mapping = data.inode.mapping;
  const iomap = await ops.begin(data.inode, pos, lengthBytes, IomapOp.READ);
  const folio = mapping.lookup(pos / PAGE_BYTES)!;
  const indexLimit = Math.ceil(data.state.sizeBytes / PAGE_BYTES);
  const order = core.folioIo.orderForPages(lengthBytes / PAGE_BYTES);
  const readahead = core.iomap.createReadaheadState();
  const device = fs.mount.ext4.device;
  const size = formatBytes(lengthBytes);
  const whole = wholeCalls(lengthBytes);
  const t = (key: string, timed: () => Timed) => () => timer.usPerCall(`read ${size}: ${key}`, timed());
  let seqPos = 0;
  return measureBreakdown(env, {
    title: `${size} cached read: FileHandle.read of the last ${size} of a 16 MiB file (1 MiB folios, clean)`,
    whole: ['FileHandle.read, the whole call', t('whole', () => batchAsync(whole, () => data.handle.read(target, 0, lengthBytes, pos)))],
    upper: [
      ['FileHandle.read: arguments, inode, live size', t('handle', () => batchAsync(BATCH_ASYNC, () => env.handleOverStub.read(target, 0, lengthBytes, pos)))],
      ['Ext4Files.read: checks, state, invalidate lock', t('files', () => batchAsync(BATCH_ASYNC, () => env.filesOverStub.read(data.ino, pos, target, readahead)))],
    ],
    path: ['the iomap path: path.read → iomapRead', t('path', () => batchAsync(whole, () => fs.files.path.read(data.state, pos, target, readahead)))],
    // A cached read never reaches the filesystem: iomapRead copies straight out of the
    // uptodate folios it finds (copyCached), as filemap_read does.
    pathStages: [
      ['page cache check: lookup, unlocked, uptodate bits', t('cached', () => batchSync(BATCH_ASYNC, () => {
        const found = mapping.lookup(pos / PAGE_BYTES)!;
        const first = (pos - found.positionBytes) / BLOCK_BYTES;
        sink ^= !found.isLocked() && found.isRangeUptodate(first, first + lengthBytes / BLOCK_BYTES) ? 1 : 0;
      }))],
      [`copy: folio.copyOut ${size} (memory.copy)`, t('copy', () => batchSync(copyBatch(lengthBytes), () => folio.copyOut(pos - folio.positionBytes, target)))],
    ],
    beside: [
      // The steps of a read that misses (the slow path), each timed alone on the same folio.
      ['on a miss: iomapIter loop, one mapping', t('iter', () => iterAlone(env, data, iomap, pos, lengthBytes, IomapOp.READ))],
      ['on a miss: ops.begin: mapBlocks (ES hit) → iomap', t('begin', () => batchAsync(BATCH_ASYNC, () => ops.begin(data.inode, pos, lengthBytes, IomapOp.READ)))],
      ['on a miss: folio getOrCreate + put', t('get', () => batchAsync(BATCH_ASYNC, async () => { (await mapping.getOrCreate(pos / PAGE_BYTES, order, { indexLimit })).put(); }))],
      ['on a miss: folio lock, cookie check, unlock', t('lock', () => onHeldFolio(folio, false, BATCH_ASYNC, async () => {
        await folio.lock();
        sink ^= ops.valid!(data.inode, iomap) ? 1 : 0;
        folio.unlock();
      }))],
      ['on a miss: fillFolioBlocks (all uptodate: a bitmap scan)', t('fill', () => onHeldFolio(folio, true, BATCH_ASYNC,
        () => core.folioIo.fillFolioBlocks(data.inode, folio, iomap, { startBytes: pos, endBytes: pos + lengthBytes, device })))],
      ['whole call into a JS Buffer (TypedArray.set)', t('js', () => batchAsync(whole, () => data.handle.read(env.jsBuffer, 0, lengthBytes, pos)))],
      ['whole call, sequential through the file (readahead)', t('seq', () => batchAsync(whole, async () => {
        await env.dataSequential.read(target, 0, lengthBytes, seqPos);
        seqPos = (seqPos + lengthBytes) % DATA_FILE_BYTES;
      }))],
      ...rawCopyRows(env, lengthBytes),
    ],
  });
}

/** The layers above the data path for a write (the stubs ignore the position: overwrite and append share them). */
function upperWriteStages(env: Env, lengthBytes: number, file: FileUnderTest): StageSpec[] {
  const { timer } = env;
  const source = env.ioBuffer.subarray(0, lengthBytes);
  const size = formatBytes(lengthBytes);
  return [
    ['FileHandle.write: arguments, exclusive lock', () => timer.shared(`write ${size}: handle`,
      () => batchAsync(BATCH_ASYNC, () => env.handleOverStub.write(source, 0, lengthBytes, 0)))],
    ['Ext4Files.write: checks, inode, state', () => timer.shared(`write ${size}: files`,
      () => batchAsync(BATCH_ASYNC, () => env.filesOverStub.write(file.ino, 0, source)))],
  ];
}

/** The cost of Ext4Files' mtime stamp: one inode handle (a twin of its private stampTimes). */
function stampHandleUs(env: Env): Promise<number> {
  const { core, fs, timer, data } = env;
  const mount = fs.mount;
  return timer.shared('mtime stamp handle', () => batchAsync(16, () => mount.transact(1, (h) => mount.writeInode(h, data.ino, (raw) => {
    const now = core.truncate.nowTimestamp();
    core.truncate.setRawTime(raw, 'mtime', now);
    core.truncate.setRawTime(raw, 'ctime', now);
  }), 'write')));
}

/** Where the overwrite rows write: 4 MiB into the data file (+ 8 KiB for a small write: inside a 1 MiB folio, not at its start). */
function overwritePos(lengthBytes: number): number {
  return 4 * MIB + (lengthBytes < MIB ? 8 * KIB : 0);
}

/**
 * Steps every write takes whatever the mapping, timed on the data file's folio at
 * overwritePos: IomapPath's choice of ops, the iomapIter loop, throttle, and lock +
 * cookie check + unlock.
 */
async function writeCommonStages(env: Env, lengthBytes: number): Promise<StageSpec[]> {
  const { core, timer, data } = env;
  const { IomapOp } = core.iomap;
  const pos = overwritePos(lengthBytes);
  const folio = data.inode.mapping.lookup(pos / PAGE_BYTES)!;
  const ops = core.iomapOps.chooseWriteOps(data.inode);
  const iomap = await ops.begin(data.inode, pos, lengthBytes, IomapOp.WRITE);
  const size = formatBytes(lengthBytes);
  return [
    ['chooseWriteOps (nondaSwitch: free vs reserved blocks)', () => timer.shared('chooseWriteOps',
      () => batchSync(BATCH_SYNC, () => { sink ^= core.iomapOps.chooseWriteOps(data.inode) === ops ? 1 : 0; }))],
    ['iomapIter loop, one mapping', () => timer.shared(`write ${size}: iter`, () => iterAlone(env, data, iomap, pos, lengthBytes, IomapOp.WRITE))],
    ['throttle (below the dirty limit)', () => timer.shared('throttle', () => batchAsync(BATCH_ASYNC, () => data.inode.mapping.cache.throttle()))],
    ['folio: lock, cookie check, unlock', () => timer.shared(`write ${size}: lock`, () => onHeldFolio(folio, false, BATCH_ASYNC, async () => {
      await folio.lock();
      sink ^= ops.valid!(data.inode, iomap) ? 1 : 0;
      folio.unlock();
    }))],
  ];
}

function blockSpan(folio: Folio, pos: number, lengthBytes: number): [number, number] {
  const start = pos - folio.positionBytes;
  return [Math.floor(start / BLOCK_BYTES), Math.ceil((start + lengthBytes) / BLOCK_BYTES)];
}

async function overwriteBreakdown(env: Env, lengthBytes: number): Promise<Breakdown> {
  const { core, fs, timer, data } = env;
  const { IomapOp } = core.iomap;
  const pos = overwritePos(lengthBytes);
  const source = env.ioBuffer.subarray(0, lengthBytes);
  await data.handle.write(source, 0, lengthBytes, pos); // dirty already: the steady state of repeated overwrites
  const ops = core.iomapOps.chooseWriteOps(data.inode);
  const mapping = data.inode.mapping;
  const folio = mapping.lookup(pos / PAGE_BYTES)!;
  const order = core.folioIo.orderForPages(Math.ceil((pos + lengthBytes) / PAGE_BYTES) - pos / PAGE_BYTES);
  const [blockStart, blockEnd] = blockSpan(folio, pos, lengthBytes);
  const size = formatBytes(lengthBytes);
  const whole = wholeCalls(lengthBytes);
  const t = (key: string, timed: () => Timed) => () => timer.usPerCall(`overwrite ${size}: ${key}`, timed());
  return measureBreakdown(env, {
    title: `${size} overwrite of cached data: FileHandle.write at 4 MiB${lengthBytes < MIB ? ' + 8 KiB' : ''} of the 16 MiB file (dirty already)`,
    whole: ['FileHandle.write, the whole call', t('whole', () => batchAsync(whole, () => data.handle.write(source, 0, lengthBytes, pos)))],
    upper: upperWriteStages(env, lengthBytes, data),
    stampHandleUs: await stampHandleUs(env),
    path: ['the iomap path: path.write → iomapWrite', t('path', () => batchAsync(whole, () => fs.files.path.write(data.state, pos, source)))],
    pathStages: [
      ...await writeCommonStages(env, lengthBytes),
      ['ops.begin + end: write lock, ES hit (delalloc ops)', t('begin', () => batchAsync(BATCH_ASYNC, async () => {
        const m = await ops.begin(data.inode, pos, lengthBytes, IomapOp.WRITE);
        await ops.end?.(data.inode, pos, lengthBytes, lengthBytes, IomapOp.WRITE, m);
      }))],
      ['folio: getOrCreate + put (cached)', t('get', () => batchAsync(BATCH_ASYNC, async () => { (await mapping.getOrCreate(pos / PAGE_BYTES, order)).put(); }))],
      [`copy: folio.copyIn ${size} (memory.copy, the same folio)`, t('copy',
        () => batchSync(copyBatch(lengthBytes), () => folio.copyIn(pos - folio.positionBytes, source)))],
      ['markUptodate + markDirty (already dirty)', t('mark', () => onHeldFolio(folio, true, BATCH_ASYNC, () => {
        folio.markUptodate(blockStart, blockEnd);
        folio.markDirty(blockStart, blockEnd);
      }))],
    ],
    beside: [
      ['whole call from a JS Buffer (TypedArray.set)', t('js', () => batchAsync(whole, () => data.handle.write(env.jsBuffer, 0, lengthBytes, pos)))],
      ...rawCopyRows(env, lengthBytes),
    ],
  });
}

/** Appends to the fresh file; truncated back to 0 (untimed) every freshCycleBytes. */
function freshAppend(env: Env, lengthBytes: number, write: (pos: number) => Promise<unknown>): Timed {
  const calls = wholeCalls(lengthBytes);
  return {
    calls,
    run: async () => {
      for (let i = 0; i < calls; i++) {
        await write(env.freshPosBytes);
        env.freshPosBytes += lengthBytes;
      }
    },
    after: async () => {
      if (env.freshPosBytes + calls * lengthBytes <= env.options.freshCycleBytes) return;
      await env.fresh.handle.truncate(0);
      env.freshPosBytes = 0;
    },
  };
}

/** begin + end on holes of the scratch file: a new delayed range each call; the reservation is dropped after each run. */
function freshBeginTimed(env: Env, lengthBytes: number): Timed {
  const { core, fs, scratch } = env;
  const { IomapOp } = core.iomap;
  const ops = core.iomapOps.ext4IomapDaWriteOps;
  const calls = lengthBytes >= MIB ? 16 : BATCH_ASYNC;
  return {
    calls,
    run: async () => {
      for (let i = 0; i < calls; i++) {
        const pos = i * lengthBytes;
        const m = await ops.begin(scratch.inode, pos, lengthBytes, IomapOp.WRITE);
        await ops.end?.(scratch.inode, pos, lengthBytes, lengthBytes, IomapOp.WRITE, m);
      }
    },
    after: async () => {
      await core.mapBlocks.truncateInodeState(scratch.state, 0);
      await core.mapBlocks.mapBlocks(fs.mount, scratch.state, 0, 1, 0); // the HOLE to EOF is cached again, as in a running append
    },
  };
}

/** New folios in the scratch mapping, `call`ed once each; the folios are dropped after each run. */
function freshFolioTimed(env: Env, lengthBytes: number, mark: boolean): Timed {
  const mapping = env.scratchMapping;
  const order = env.core.folioIo.orderForPages(lengthBytes / PAGE_BYTES);
  const pages = 1 << order;
  const calls = lengthBytes >= MIB ? 16 : BATCH_ASYNC;
  const held: Folio[] = [];
  const blocks = (PAGE_BYTES << order) / BLOCK_BYTES;
  if (!mark) {
    return {
      calls,
      run: async () => { for (let i = 0; i < calls; i++) (await mapping.getOrCreate(i * pages, order)).put(); },
      after: () => { mapping.invalidateRange(0, calls * pages); },
    };
  }
  return {
    calls,
    before: () => {
      for (let i = 0; i < calls; i++) {
        const folio = mapping.tryGetOrCreate(i * pages, order)!;
        folio.tryLock();
        held.push(folio);
      }
    },
    run: () => { for (const folio of held) { folio.markUptodate(0, blocks); folio.markDirty(0, blocks); } },
    after: () => {
      for (const folio of held) { mapping.deleteFolio(folio); folio.unlock(); folio.put(); }
      held.length = 0;
    },
  };
}

/**
 * copyIn into new folios, as an append does: a different folio each call, round-robin over
 * freshCycleBytes of scratch folios — the destination is not in the CPU caches the way
 * an overwrite's same folio is.
 */
async function freshCopyUs(env: Env, lengthBytes: number): Promise<number> {
  const mapping = env.scratchMapping;
  const order = env.core.folioIo.orderForPages(lengthBytes / PAGE_BYTES);
  const folios: Folio[] = [];
  for (let pos = 0; pos < env.options.freshCycleBytes; pos += lengthBytes) folios.push((await mapping.getOrCreate(pos / PAGE_BYTES, order)));
  const source = env.ioBuffer.subarray(0, lengthBytes);
  let next = 0;
  try {
    return await env.timer.usPerCall(`fresh ${formatBytes(lengthBytes)}: copy`, batchSync(copyBatch(lengthBytes), () => {
      folios[next].copyIn(0, source);
      next = (next + 1) % folios.length;
    }));
  } finally {
    for (const folio of folios) folio.put();
    mapping.invalidateRange(0, env.options.freshCycleBytes / PAGE_BYTES);
  }
}

async function freshBreakdown(env: Env, lengthBytes: number): Promise<Breakdown> {
  const { core, fs, timer, fresh } = env;
  const size = formatBytes(lengthBytes);
  const source = env.ioBuffer.subarray(0, lengthBytes);
  await fresh.handle.truncate(0);
  env.freshPosBytes = 0;
  await core.mapBlocks.mapBlocks(fs.mount, env.scratch.state, 0, 1, 0);
  const t = (key: string, timed: () => Timed) => () => timer.usPerCall(`fresh ${size}: ${key}`, timed());
  const result = await measureBreakdown(env, {
    title: `${size} fresh delalloc append: FileHandle.write at EOF (up to ${formatBytes(env.options.freshCycleBytes)}, then truncated untimed)`,
    whole: ['FileHandle.write, the whole call', t('whole', () => freshAppend(env, lengthBytes, (pos) => fresh.handle.write(source, 0, lengthBytes, pos)))],
    upper: upperWriteStages(env, lengthBytes, fresh),
    stampHandleUs: await stampHandleUs(env),
    path: ['the iomap path: path.write → iomapWrite', t('path', () => freshAppend(env, lengthBytes, (pos) => fs.files.path.write(fresh.state, pos, source)))],
    pathStages: [
      ...await writeCommonStages(env, lengthBytes),
      ['ops.begin + end: reserve, ES insertDelayed (a hole)', t('begin', () => freshBeginTimed(env, lengthBytes))],
      ['folio: getOrCreate, a new folio (arena alloc) + put', t('create', () => freshFolioTimed(env, lengthBytes, false))],
      [`copy: folio.copyIn ${size} (memory.copy, a new folio each call)`, () => freshCopyUs(env, lengthBytes)],
      ['markUptodate + markDirty (clean → dirty accounting)', t('mark', () => freshFolioTimed(env, lengthBytes, true))],
    ],
    beside: [
      ['whole call from a JS Buffer (TypedArray.set)', t('js', () => freshAppend(env, lengthBytes, (pos) => fresh.handle.write(env.jsBuffer, 0, lengthBytes, pos)))],
    ],
  });
  await fresh.handle.truncate(0);
  env.freshPosBytes = 0;
  return result;
}

// ─── Run and print ──────────────────────────────────────────────────────────────────────

export async function runEngineMicro(core: EngineCore, options: EngineMicroOptions): Promise<EngineMicroResult> {
  const timer = new Timer(options);
  options.log('ES tree …');
  const esTree = await esTreeGrid(core, timer, options);
  options.log('folio lookup …');
  const folio = await folioGrid(core, timer);
  options.log(`mount: mkfs, a 16 MiB file, a file of ${formatCount(options.fragExtents)} extents, sync …`);
  const env = await openEnv(core, options, timer);
  try {
    options.log('mapBlocks …');
    const mapBlocks = await mapBlocksGrid(env);
    const breakdowns: Breakdown[] = [];
    for (const lengthBytes of [MIB, 4 * KIB]) {
      options.log(`one ${formatBytes(lengthBytes)} call by stage: read, overwrite, fresh append …`);
      await env.fs.sync(); // nothing dirty left over from a previous table (the flusher stays idle)
      breakdowns.push(await readBreakdown(env, lengthBytes));
      breakdowns.push(await overwriteBreakdown(env, lengthBytes));
      breakdowns.push(await freshBreakdown(env, lengthBytes));
    }
    return { esTree, folio, mapBlocks, breakdowns };
  } finally {
    await closeEnv(env);
  }
}

function formatCount(count: number): string {
  return count >= 1000 && count % 1000 === 0 ? `${count / 1000}k` : String(count);
}

function formatBytes(bytes: number): string {
  return bytes >= MIB ? `${bytes / MIB} MiB` : `${bytes / KIB} KiB`;
}

function formatUs(us: number): string {
  return us >= 100 ? us.toFixed(1) : us >= 1 ? us.toFixed(2) : us.toFixed(3);
}

function formatNs(us: number): string {
  const ns = us * 1000;
  return ns >= 100 ? ns.toFixed(0) : ns.toFixed(1);
}

/** Columns aligned: labels left, figures right. */
function formatTable(rows: string[][]): string {
  const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => (row[column] ?? '').length)));
  const line = (row: string[]) => row.map((cell, column) => (column === 0 ? cell.padEnd(widths[column]) : cell.padStart(widths[column])));
  return rows.map((row) => line(row).join('  ').trimEnd()).join('\n');
}

/** A grid with ns per call per column, the ratio of the last column to the first, and the ratio to the first row. */
export function formatGrid(grid: Grid): string {
  const ratioColumns = grid.columns.length > 1;
  const header = ['', ...grid.columns.map((column) => `${column} ns`), ...(ratioColumns ? [`${grid.columns.at(-1)}/${grid.columns[0]}`] : ['vs first row'])];
  const first = grid.rows[0].usPerCall[0];
  const rows = grid.rows.map((row) => [
    row.label,
    ...row.usPerCall.map(formatNs),
    ratioColumns ? `${(row.usPerCall.at(-1)! / row.usPerCall[0]).toFixed(2)}x` : `${(row.usPerCall[0] / first).toFixed(2)}x`,
  ]);
  return `${grid.title}\n${formatTable([header, ...rows])}`;
}

/**
 * stage | µs per call | share of the whole call: the layers above the path, the path
 * (measured whole) with its stages and its own glue, the hops between layers, the sum of
 * the stages timed alone; then rows beside, as ratios to the whole call.
 */
export function formatBreakdown(b: Breakdown): string {
  const share = (us: number) => `${((100 * us) / b.whole.usPerCall).toFixed(1)}%`;
  const row = (indent: number, label: string, us: number) => [`${' '.repeat(indent)}${label}`, formatUs(us), share(us)];
  const sum = (rows: Row[]) => rows.reduce((total, r) => total + r.usPerCall, 0);
  const rows: string[][] = [['stage', 'µs/call', 'share'], row(0, b.whole.label, b.whole.usPerCall)];
  for (const stage of b.upper) rows.push(row(2, stage.label, stage.usPerCall));
  rows.push(row(2, `${b.path.label} (timed whole)`, b.path.usPerCall));
  for (const stage of b.pathStages) rows.push(row(4, stage.label, stage.usPerCall));
  rows.push(row(4, '(the path\'s own glue: path − its stages)', b.path.usPerCall - sum(b.pathStages)));
  rows.push(row(2, '(hops between layers: whole − path − above)', b.whole.usPerCall - b.path.usPerCall - sum(b.upper)));
  rows.push(row(0, '= sum of the stages timed alone', b.stageSumUs));
  rows.push(['beside (not in the sum)', '', '× whole']);
  for (const r of b.beside) rows.push([`  ${r.label}`, formatUs(r.usPerCall), `${(r.usPerCall / b.whole.usPerCall).toFixed(2)}x`]);
  return `${b.title}\n${formatTable(rows)}`;
}

export function formatEngineMicro(result: EngineMicroResult): string {
  return [
    formatGrid(result.esTree), formatGrid(result.mapBlocks), formatGrid(result.folio),
    ...result.breakdowns.map(formatBreakdown),
  ].join('\n\n');
}

/** The default run (what `pnpm run bench:micro` prints after the kernels). */
export async function engineMicroMain(): Promise<void> {
  const core = await loadEngineCore(distCoreRoot());
  const result = await runEngineMicro(core, { ...ENGINE_MICRO_DEFAULTS, log: (line) => console.error(line) });
  console.log(formatEngineMicro(result));
  console.log(`(ns or µs per call: the median tinybench run, divided by the calls it makes; sink ${sink & 1})`);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) await engineMicroMain();
