/**
 * The writeback worker: piscina's entry module, one instance per pool thread. It writes
 * the pieces of one task to the device straight from folio memory and answers which
 * ioends failed. It never touches metadata, folio state words or the journal: the engine
 * thread set the folios' writeback bits before submitting and clears them after the task's
 * answer (see pool.ts).
 *
 *   engine thread                         this worker
 *   ─────────────                         ───────────
 *   run({ pieces }) ──── message ───────▶ for each piece:
 *                                           device.writeSync(addr, memory[ptr, ptr + len))
 *   ioend.error = EIO(cause) ◀── result ── { writtenBytes, failures }
 *
 * The device is rebuilt once per worker from its handle (workerData), at module load:
 * a MemoryDevice shares the engine's SharedArrayBuffer chunks; a FileDevice opens its own
 * fd on the same path (fsync is per file, not per fd, so the engine's flush covers these
 * writes). If that open fails, each task tries again and reports the failure for every
 * ioend it carries. The wasm module is not instantiated here: only the memory's bytes are
 * needed, and an instance would claim one of the memory's scratch slots for nothing.
 *
 * Ordering (wasm/layout.ts's rule): piscina hands a task over with a MessagePort message
 * and an Atomics store on its shared state, which orders the engine's folio writes before
 * this worker's reads; the answer travels the same way back, which orders our device
 * writes (MemoryDevice bytes) before the engine's completion work.
 *
 * Cost: no copy into or out of a message; per piece one device write (MemoryDevice: one
 * TypedArray.set per 64 MiB chunk touched; FileDevice: one pwrite per 8 MiB). Measured per
 * 4 KiB piece into a MemoryDevice, copy included: ~0.7 µs (the loop allocates nothing but
 * the subarray, so keep per-piece work free of string building).
 *
 * Compiled to dist/writeback/worker.js, which is what piscina loads (also under vitest,
 * which runs the sources: see workerFilename in pool.ts).
 */
import { workerData } from 'piscina';
import { assert } from '../assert.js';
import type { SyncBlockDevice } from '../device/block-device.js';
import { deviceFromHandle } from '../device/index.js';
import {
  PIECE_ADDR_BYTES, PIECE_FIELD_COUNT, PIECE_IOEND_INDEX, PIECE_LENGTH_BYTES, PIECE_PTR,
  type WritebackTask, type WritebackTaskFailure, type WritebackTaskResult, type WritebackWorkerData, workerErrorOf,
} from './protocol.js';

const data = workerData as WritebackWorkerData;
assert(data !== undefined && data.memory !== undefined && data.device !== undefined, 'writeback worker started with its workerData');

let device: SyncBlockDevice | undefined;
let deviceOpenError: unknown;
let memoryView = new Uint8Array(data.memory.buffer);

openDevice();
Atomics.add(data.started, 0, 1);

function openDevice(): void {
  try {
    device = deviceFromHandle(data.device);
    deviceOpenError = undefined;
  } catch (error) {
    deviceOpenError = error;
  }
}

/** The memory as it is now: the engine may have grown it since the last task. */
function memoryBytes(): Uint8Array {
  const buffer = data.memory.buffer;
  if (memoryView.buffer !== buffer) memoryView = new Uint8Array(buffer);
  return memoryView;
}

/** Write one task's pieces; a failing piece fails its ioend, whose later pieces are skipped. */
export default function writebackTask(task: WritebackTask): WritebackTaskResult {
  const { pieces } = task;
  assert(pieces.length % PIECE_FIELD_COUNT === 0, 'task pieces are whole records');
  if (device === undefined) openDevice();
  const failures: WritebackTaskFailure[] = [];
  let writtenBytes = 0;
  let failedIoendIndex = -1;
  const bytes = memoryBytes();
  for (let at = 0; at < pieces.length; at += PIECE_FIELD_COUNT) {
    const ioendIndex = pieces[at + PIECE_IOEND_INDEX];
    if (ioendIndex === failedIoendIndex) continue;
    const ptr = pieces[at + PIECE_PTR];
    const lengthBytes = pieces[at + PIECE_LENGTH_BYTES];
    const addrBytes = pieces[at + PIECE_ADDR_BYTES];
    // A piece outside the memory is a bug in the caller: it crashes the task (the pool turns that into EIO).
    if (!(ptr >= 0 && lengthBytes >= 0 && ptr + lengthBytes <= bytes.length)) {
      assert(false, `piece [${ptr}, +${lengthBytes}) lies inside the wasm memory of ${bytes.length} bytes`);
    }
    try {
      if (device === undefined) throw deviceOpenError;
      device.writeSync(addrBytes, bytes.subarray(ptr, ptr + lengthBytes));
      writtenBytes += lengthBytes;
    } catch (error) {
      failedIoendIndex = ioendIndex;
      failures.push({ ioendIndex, addrBytes, lengthBytes, error: workerErrorOf(error) });
    }
  }
  return { writtenBytes, failures };
}
