/**
 * The writeback pool: an IoendSubmit (iomap/writeback.ts) that writes large batches of
 * ioends from piscina worker threads, straight from folio memory in the shared wasm
 * memory, and small ones inline on the engine thread.
 *
 *   iomapWriteback (engine thread)              createWritebackPool
 *   ──────────────────────────────              ───────────────────
 *   startWriteback() on each folio
 *   submit(ioends) ───────────────────────────▶ batch < inlineBytesMax ─▶ inlineSubmit (device.write here)
 *                                               else: pieces cut into ≤ threads tasks
 *                                                 { ptr, len, addr, ioend }* ─▶ worker ─▶ device.writeSync
 *                                               failures ─▶ ioend.error = FsError EIO (cause kept)
 *   ◀──────────────────────────────────── resolves (never rejects)
 *   ioendsCompleted (convert unwritten, raise i_disksize), endWriteback() on each folio
 *
 * What the workers do not do: folio state. The writeback bit of each folio is an Atomics
 * word in shared memory (mm/folio.ts, bits in wasm/layout.ts); the engine thread sets it
 * in startWriteback before submit and clears it in endWriteback after the completion work,
 * so a thread waiting on a folio under writeback waits across the worker's I/O without the
 * worker knowing about folios. The workers only move bytes: their answer is the
 * happens-before edge (worker.ts) that lets the engine run completion afterwards.
 *
 * Errors are never dropped: a failing device write, a worker whose device cannot be opened,
 * a crashed or destroyed worker each set `error` on the ioends they touched to an FsError
 * EIO whose `cause` is the original error (rebuilt from plain fields: see protocol.ts).
 * iomapWriteback records it on the mapping, so fsync reports EIO (writebackErrorCheck) and
 * the filesystem can abort the journal. submit itself never throws.
 *
 * Devices cross to the workers as their `handle()` (device/block-device.ts): a MemoryDevice
 * shares its SharedArrayBuffer chunks (taking the handle switches it to shared mode:
 * every chunk is created at once, as address space only); a FileDevice is reopened by
 * path in each worker, so the image must stay at that path while the pool is open (a
 * file renamed over it would receive the writes); fdatasync on the engine's fd covers
 * the workers' writes, since Linux syncs the file, not the fd. A device without a handle
 * (FaultDevice, RecordingDevice: their handle() refuses, or any BlockDevice without one)
 * makes the pool inline-only: every batch goes through inlineSubmit, and stats() says why.
 *
 * The worker entry is the compiled dist/writeback/worker.js (piscina needs a JS file). From
 * the compiled package that is ./worker.js beside this module; from the sources (vitest
 * runs .ts files) it is the same file in the package's dist/, so a test first calls
 * ensureWritebackWorkerBuilt() (testing.ts: an incremental `tsc -b packages/core`). If the
 * file is missing, the pool is inline-only and stats().fallbackReason says so.
 *
 * Ordering: batches in flight at the same time are written in no particular order, and
 * the pieces of one batch may be written in parallel. The caller must not have two
 * writes to the same device bytes in flight at once; iomapWriteback never does (a folio
 * is in one batch at a time, and no two folios map the same block).
 *
 * Cost (measured on these 2-core machines under other load, batches of 1 MiB pieces):
 * a task round trip is ~25–40 µs (piscina wakes an idle worker through Atomics), the time
 * an inline write takes to copy ~0.5–1 MiB; above that, one worker writes a MemoryDevice
 * at 15–21 GiB/s against inline's 17–24 GiB/s, but the engine thread's event loop is busy
 * 4–13% of the time instead of 100%. Two workers pay off for batches of many small
 * pieces (64 MiB of 16 KiB pieces: 3.1 ms against 5.6 ms with one), not for large folios.
 * Per submit on the engine thread: one pass over the pieces (32 bytes of message each),
 * no data copy.
 */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import { assert } from '../assert.js';
import type { BlockDevice, DeviceHandle } from '../device/block-device.js';
import { type IoendSubmit, inlineSubmit } from '../iomap/writeback.js';
import type { Ioend } from '../iomap/types.js';
import { FsError } from '../vfs/errors.js';
import type { WasmCore } from '../wasm/core.js';
import {
  PIECE_ADDR_BYTES, PIECE_FIELD_COUNT, PIECE_IOEND_INDEX, PIECE_LENGTH_BYTES, PIECE_PTR,
  type WorkerError, type WritebackTask, type WritebackTaskResult, type WritebackWorkerData,
} from './protocol.js';

/** Upper bound on the threads option. */
export const WRITEBACK_THREADS_MAX = 16;
/** The default thread count never exceeds this (one worker per spare core, at most two). */
export const WRITEBACK_THREADS_DEFAULT_MAX = 2;
/**
 * Batches smaller than this are written inline. Measured (MemoryDevice, 2 cores): below
 * 1 MiB the hand-off (~25–40 µs) is most of the pool's time and the engine thread stays
 * half busy anyway (256 KiB: 0.04–0.06 ms pooled against 0.017 ms inline, event loop
 * ~50% busy); at 1 MiB the pool takes 1.2–1.6x inline's time and frees ~75% of it.
 */
export const WRITEBACK_INLINE_BYTES_MAX_DEFAULT = 1024 * 1024;
/**
 * A batch is split into one task per thread only when each task gets at least this much
 * (a split pays for a second hand-off; 2 MiB copies in ~0.1 ms).
 */
export const WRITEBACK_TASK_BYTES_MIN = 2 * 1024 * 1024;
/** Split points inside a piece are multiples of this from its start (every sector size divides it). */
export const WRITEBACK_SPLIT_ALIGN_BYTES = 4096;
/** Tasks queued behind busy workers before new batches are written inline instead (backpressure). */
export const WRITEBACK_QUEUE_TASKS_MAX = 64;

// The default must be a valid explicit value.
assert(WRITEBACK_THREADS_DEFAULT_MAX >= 1 && WRITEBACK_THREADS_DEFAULT_MAX <= WRITEBACK_THREADS_MAX, 'default thread cap is a valid thread count');
// Each split task must be able to hold at least one aligned cut.
assert(WRITEBACK_TASK_BYTES_MIN >= WRITEBACK_SPLIT_ALIGN_BYTES, 'split tasks hold at least one aligned unit');

export interface WritebackPoolOptions {
  /** The engine's wasm core: folio data lives in core.memory. */
  core: WasmCore;
  /** The device the ioends' addresses refer to (the engine's own, used for inline writes). */
  device: BlockDevice;
  /** Worker threads, 1..WRITEBACK_THREADS_MAX; default min(2, max(1, availableParallelism() − 1)). */
  threads?: number;
  /**
   * Batches of fewer bytes are written inline; default WRITEBACK_INLINE_BYTES_MAX_DEFAULT.
   * Above 0, batches submitted while the workers are still starting are written inline too
   * (a worker takes ~30 ms to boot here: a writer must not wait for it). 0 = always the
   * pool, waiting for the workers to start.
   */
  inlineBytesMax?: number;
  /** The worker entry; default writebackWorkerFilename() (tests point it at broken ones). */
  workerFilename?: string;
}

export interface WritebackPoolStats {
  /** 'inline' when the device cannot be shared or the worker entry is missing. */
  mode: 'pool' | 'inline';
  /** Why the pool is inline-only (mode 'inline'). */
  fallbackReason?: string;
  /** Worker threads (0 in inline mode). */
  threads: number;
  /** submit() calls. */
  batches: number;
  /** Bytes handed to submit(). */
  bytes: number;
  /** Worker tasks run (settled). */
  tasks: number;
  /** Bytes the workers wrote. */
  poolBytes: number;
  /** Batches and bytes written inline (small, inline-only mode, queue full, workers still starting, or after close). */
  inlineBatches: number;
  inlineBytes: number;
  /** Ioends that ended with an error. */
  failedIoends: number;
  /** The last error piscina reported outside any task (a worker that died while idle). */
  lastWorkerError?: string;
}

export interface WritebackPool {
  /** Write the ioends' pieces; sets ioend.error (FsError EIO) on failure; never throws. */
  readonly submit: IoendSubmit;
  /** Resolves once the workers have started (at once for an inline-only pool). Never rejects. */
  ready(): Promise<void>;
  /** Wait for the batches in flight, then stop the workers. Later submits are written inline. */
  close(): Promise<void>;
  stats(): WritebackPoolStats;
}

/**
 * The default thread count: one worker per core beyond the engine's, at least 1, at most 2.
 * On these 2-core machines that is 1: a second worker competes with the engine thread for
 * the cores (its event loop went from ~5% to ~35% busy) and gains nothing for large folios.
 */
export function writebackThreadsDefault(): number {
  return Math.min(WRITEBACK_THREADS_DEFAULT_MAX, Math.max(1, availableParallelism() - 1));
}

/** Where the compiled worker entry is (see the header: dist/ also when running the sources). */
export function writebackWorkerFilename(): string {
  const fromSources = import.meta.url.endsWith('.ts');
  return fileURLToPath(fromSources ? new URL('../../dist/writeback/worker.js', import.meta.url) : new URL('./worker.js', import.meta.url));
}

export function createWritebackPool(options: WritebackPoolOptions): WritebackPool {
  const { core, device } = options;
  const threads = options.threads ?? writebackThreadsDefault();
  const inlineBytesMax = options.inlineBytesMax ?? WRITEBACK_INLINE_BYTES_MAX_DEFAULT;
  if (!Number.isInteger(threads) || threads < 1 || threads > WRITEBACK_THREADS_MAX) {
    throw invalidOption(`threads ${threads} not in [1, ${WRITEBACK_THREADS_MAX}]`);
  }
  if (!Number.isSafeInteger(inlineBytesMax) || inlineBytesMax < 0) throw invalidOption(`inlineBytesMax ${inlineBytesMax} is not a non-negative integer`);
  assert(WRITEBACK_SPLIT_ALIGN_BYTES % device.sectorSizeBytes === 0, 'split alignment is a multiple of the device sector');
  const inline = inlineEioSubmit(inlineSubmit(device, () => core.bytes()));
  const share = shareOf(device);
  const filename = options.workerFilename ?? writebackWorkerFilename();
  const fallbackReason = share.handle === undefined ? share.reason : existsSync(filename) ? undefined : `worker entry ${filename} not built`;
  if (fallbackReason !== undefined) return inlineOnlyPool(inline, fallbackReason);
  return new PiscinaWritebackPool(inline, share.handle!, core, threads, inlineBytesMax, filename);
}

function invalidOption(detail: string): FsError {
  return new FsError('EINVAL', { syscall: 'createWritebackPool', detail });
}

/** The device's handle, or why there is none. */
function shareOf(device: BlockDevice): { handle?: DeviceHandle; reason: string } {
  const handleOf = (device as { handle?: unknown }).handle;
  if (typeof handleOf !== 'function') return { reason: 'device has no handle() to share with workers' };
  try {
    return { handle: (handleOf as () => DeviceHandle).call(device), reason: '' };
  } catch (error) {
    return { reason: `device cannot be shared with workers: ${error instanceof Error ? error.message : String(error)}` };
  }
}

function emptyStats(mode: 'pool' | 'inline', threads: number): WritebackPoolStats {
  return { mode, threads, batches: 0, bytes: 0, tasks: 0, poolBytes: 0, inlineBatches: 0, inlineBytes: 0, failedIoends: 0 };
}

function batchBytesOf(ioends: readonly Ioend[]): number {
  let bytes = 0;
  for (const ioend of ioends) for (const piece of ioend.pieces) bytes += piece.lengthBytes;
  return bytes;
}

function inlineOnlyPool(inline: IoendSubmit, fallbackReason: string): WritebackPool {
  const counters = { ...emptyStats('inline', 0), fallbackReason };
  return {
    submit: async (ioends) => {
      const bytes = batchBytesOf(ioends);
      counters.batches++;
      counters.bytes += bytes;
      counters.inlineBatches++;
      counters.inlineBytes += bytes;
      await inline(ioends);
      counters.failedIoends += ioends.filter((ioend) => ioend.error !== undefined).length;
    },
    ready: async () => undefined,
    close: async () => undefined,
    stats: () => ({ ...counters }),
  };
}

class PiscinaWritebackPool implements WritebackPool {
  readonly submit: IoendSubmit = (ioends) => this.submitBatch(ioends);
  private readonly piscina: Piscina<WritebackTask, WritebackTaskResult>;
  private readonly counters: WritebackPoolStats;
  private closing: Promise<void> | undefined;
  private inFlightCount = 0;
  private idleWaiters: (() => void)[] = [];
  /** Word 0: workers booted (each adds 1 when loaded, see protocol.ts). */
  private readonly startedWord = new Int32Array(new SharedArrayBuffer(4));
  private readonly startup: Promise<void>;
  /** Why no worker could start (set by piscina's error event before any booted): the pool then writes inline. */
  private startupFailure: string | undefined;

  constructor(
    private readonly inline: IoendSubmit,
    deviceHandle: DeviceHandle,
    core: WasmCore,
    private readonly threads: number,
    private readonly inlineBytesMax: number,
    filename: string,
  ) {
    const workerData: WritebackWorkerData = { memory: core.memory, device: deviceHandle, started: this.startedWord };
    // Fixed size (min = max): workers open the device once and stay; idle ones cost memory, not CPU.
    // recordTiming off: its wait/run histograms cost ~1.5 ms per 256 MiB of writeback here, for stats we never read.
    this.piscina = new Piscina({ filename, minThreads: threads, maxThreads: threads, idleTimeout: Infinity, workerData, trackUnmanagedFds: true, recordTiming: false });
    this.counters = emptyStats('pool', threads);
    // An 'error' event with no listener would throw; a dead worker's tasks reject and become EIO anyway.
    // A worker that fails while loading never takes a task: piscina stops starting new ones
    // and says so here, and every later batch is written inline instead of waiting for it.
    let failed: () => void = () => undefined;
    const startFailed = new Promise<void>((resolve) => { failed = resolve; });
    const startupError = (error: unknown): void => {
      if (this.started || this.startupFailure !== undefined || this.closing !== undefined) return;
      this.startupFailure = error instanceof Error ? error.message : String(error);
      failed();
    };
    this.piscina.on('error', (error: unknown) => {
      this.counters.lastWorkerError = error instanceof Error ? error.message : String(error);
      startupError(error);
    });
    // An empty task answers once a worker runs; its failure before any worker booted is a failed start.
    const ping = this.piscina.run({ pieces: new Float64Array(0) }).then(() => undefined, startupError);
    this.startup = Promise.race([ping, startFailed]);
  }

  /** A worker has booted (read from shared memory: no message needed). */
  private get started(): boolean {
    return Atomics.load(this.startedWord, 0) > 0;
  }

  ready(): Promise<void> {
    return this.startup;
  }

  stats(): WritebackPoolStats {
    if (this.startupFailure === undefined) return { ...this.counters };
    return { ...this.counters, mode: 'inline', fallbackReason: `writeback workers did not start: ${this.startupFailure}` };
  }

  close(): Promise<void> {
    // (destroy rejects a start-up task still queued behind a worker that never booted)
    this.closing ??= (async () => {
      while (this.inFlightCount > 0) await new Promise<void>((wake) => this.idleWaiters.push(wake));
      await this.piscina.destroy();
    })();
    return this.closing;
  }

  private async submitBatch(ioends: readonly Ioend[]): Promise<void> {
    const bytes = batchBytesOf(ioends);
    this.counters.batches++;
    this.counters.bytes += bytes;
    const taskCount = Math.min(this.threads, Math.max(1, Math.floor(bytes / WRITEBACK_TASK_BYTES_MIN)));
    const queueFull = this.piscina.queueSize + taskCount > WRITEBACK_QUEUE_TASKS_MAX;
    const starting = !this.started && this.inlineBytesMax > 0;
    const noWorkers = this.startupFailure !== undefined;
    if (this.closing !== undefined || bytes === 0 || bytes < this.inlineBytesMax || queueFull || starting || noWorkers) {
      this.counters.inlineBatches++;
      this.counters.inlineBytes += bytes;
      await this.inline(ioends);
    } else {
      this.inFlightCount++;
      try {
        await this.runTasks(ioends, planTasks(ioends, bytes, taskCount));
      } catch (error) {
        // Not expected (runTasks settles every task); if it happens, no ioend may pass as written.
        for (const ioend of ioends) failIoend(ioend, error, ioend.addrBytes, ioend.lengthBytes);
      } finally {
        this.inFlightCount--;
        if (this.inFlightCount === 0) this.idleWaiters.splice(0).forEach((wake) => wake());
      }
    }
    this.counters.failedIoends += ioends.filter((ioend) => ioend.error !== undefined).length;
  }

  private async runTasks(ioends: readonly Ioend[], tasks: PlannedTask[]): Promise<void> {
    const outcomes = await Promise.allSettled(tasks.map(({ pieces }) => this.piscina.run({ pieces }, { transferList: [pieces.buffer] })));
    this.counters.tasks += outcomes.length;
    outcomes.forEach((outcome, taskIndex) => {
      if (outcome.status === 'fulfilled') {
        this.counters.poolBytes += outcome.value.writtenBytes;
        for (const failure of outcome.value.failures) {
          failIoend(ioends[failure.ioendIndex], causeOf(failure.error), failure.addrBytes, failure.lengthBytes);
        }
        return;
      }
      // The task itself failed (worker crashed, pool destroyed, assertion): every ioend it carried failed.
      for (const ioendIndex of tasks[taskIndex].ioendIndexes) {
        const ioend = ioends[ioendIndex];
        failIoend(ioend, outcome.reason, ioend.addrBytes, ioend.lengthBytes);
      }
    });
  }
}

export interface PlannedTask {
  /** Protocol pieces (protocol.ts); transferred to the worker, so unreadable afterwards. */
  pieces: Float64Array<ArrayBuffer>;
  /** The ioends this task carries part of, ascending (kept for a task that fails whole). */
  ioendIndexes: number[];
}

/**
 * Cut the batch's pieces into taskCount tasks of about equal bytes, in order. A piece that
 * straddles a task boundary is cut at a multiple of WRITEBACK_SPLIT_ALIGN_BYTES from its
 * start (so both halves stay sector-aligned on the device); the last task takes the rest.
 *
 *   3 pieces, 10 MiB, 2 tasks (target 5 MiB):  [ A 4 MiB ][ B 4 MiB ][ C 2 MiB ]
 *   task 0: A, B[0, 1 MiB)      task 1: B[1 MiB, 4 MiB), C
 */
export function planTasks(ioends: readonly Ioend[], totalBytes: number, taskCount: number): PlannedTask[] {
  assert(taskCount >= 1 && totalBytes > 0, 'a plan has at least one task and one byte');
  const align = WRITEBACK_SPLIT_ALIGN_BYTES;
  const targetBytes = Math.ceil(totalBytes / taskCount / align) * align;
  const tasks: { fields: number[]; ioendIndexes: number[] }[] = [{ fields: [], ioendIndexes: [] }];
  let taskBytes = 0;
  ioends.forEach((ioend, ioendIndex) => {
    let addrBytes = ioend.addrBytes;
    for (const piece of ioend.pieces) {
      let ptr = piece.ptr;
      let leftBytes = piece.lengthBytes;
      while (leftBytes > 0) {
        let takeBytes = leftBytes;
        if (tasks.length < taskCount) {
          const roomBytes = Math.floor((targetBytes - taskBytes) / align) * align;
          if (roomBytes <= 0) {
            tasks.push({ fields: [], ioendIndexes: [] });
            taskBytes = 0;
            continue;
          }
          takeBytes = Math.min(leftBytes, roomBytes);
        }
        const task = tasks.at(-1)!;
        pushPiece(task.fields, ptr, takeBytes, addrBytes, ioendIndex);
        if (task.ioendIndexes.at(-1) !== ioendIndex) task.ioendIndexes.push(ioendIndex);
        ptr += takeBytes;
        addrBytes += takeBytes;
        leftBytes -= takeBytes;
        taskBytes += takeBytes;
      }
    }
  });
  assert(tasks.length <= taskCount, 'no more tasks than planned');
  return tasks.map(({ fields, ioendIndexes }) => ({ pieces: Float64Array.from(fields), ioendIndexes }));
}

function pushPiece(fields: number[], ptr: number, lengthBytes: number, addrBytes: number, ioendIndex: number): void {
  const at = fields.length;
  for (let field = 0; field < PIECE_FIELD_COUNT; field++) fields.push(0);
  fields[at + PIECE_PTR] = ptr;
  fields[at + PIECE_LENGTH_BYTES] = lengthBytes;
  fields[at + PIECE_ADDR_BYTES] = addrBytes;
  fields[at + PIECE_IOEND_INDEX] = ioendIndex;
}

/** inlineSubmit, with each error it records wrapped as EIO like the workers' (the cause kept). */
function inlineEioSubmit(inline: IoendSubmit): IoendSubmit {
  return async (ioends) => {
    const errorsBefore = ioends.map((ioend) => ioend.error);
    await inline(ioends);
    ioends.forEach((ioend, index) => {
      const error = ioend.error;
      if (error === undefined || error === errorsBefore[index]) return;
      ioend.error = undefined;
      failIoend(ioend, error, ioend.addrBytes, ioend.lengthBytes);
    });
  };
}

/** Record the first failure of an ioend as EIO carrying its cause. */
function failIoend(ioend: Ioend, cause: unknown, addrBytes: number, lengthBytes: number): void {
  if (ioend.error !== undefined) return;
  const why = cause instanceof Error ? cause.message : String(cause);
  const path = (cause as { path?: unknown } | null)?.path;
  ioend.error = new FsError('EIO', {
    syscall: 'write',
    path: typeof path === 'string' ? path : undefined,
    detail: `writeback of device bytes [${addrBytes}, +${lengthBytes}) failed: ${why}`,
    cause,
  });
}

/** An Error standing for the worker's, with its code, syscall, detail and path restored as fields. */
function causeOf(error: WorkerError): Error {
  const cause = new Error(error.message) as Error & Omit<WorkerError, 'name' | 'message'>;
  cause.name = error.name;
  if (error.code !== undefined) cause.code = error.code;
  if (error.syscall !== undefined) cause.syscall = error.syscall;
  if (error.detail !== undefined) cause.detail = error.detail;
  if (error.path !== undefined) cause.path = error.path;
  return cause;
}
