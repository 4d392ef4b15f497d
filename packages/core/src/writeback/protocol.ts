/**
 * The writeback pool's wire format, in one file so pool.ts (engine thread) and worker.ts
 * (each writeback worker) agree on every field: what a worker is given at start, what one
 * task carries, and what it answers.
 *
 * A task is one flat Float64Array of pieces, PIECE_FIELD_COUNT numbers each (transferred,
 * not copied). Pieces of one ioend are consecutive and in device order; a task may hold
 * only part of an ioend when the pool split a large batch across workers.
 *
 *   pieces: [ ptr₀ len₀ addr₀ ioend₀ │ ptr₁ len₁ addr₁ ioend₁ │ … ]
 *             ptr  = byte pointer into the shared wasm memory (folio data)
 *             len  = bytes to write (a multiple of the device sector)
 *             addr = device byte address
 *             ioend = index of the ioend in the batch handed to submit()
 *
 * Float64 holds every device address exactly (< 2^53) and costs 32 bytes per piece: a
 * 64 MiB batch of 2 MiB folios is 32 pieces, 1 KiB of message.
 *
 * Errors cross the thread boundary as plain data (WorkerError): structured cloning keeps an
 * Error's message but drops `code`, `syscall` and the FsError brand, so the worker copies
 * those fields out and the pool rebuilds the FsError on the engine thread.
 */
import type { WasmMemory } from '../wasm/webassembly.js';
import type { DeviceHandle } from '../device/block-device.js';

/** Field offsets inside one piece of WritebackTask.pieces. */
export const PIECE_PTR = 0;
export const PIECE_LENGTH_BYTES = 1;
export const PIECE_ADDR_BYTES = 2;
export const PIECE_IOEND_INDEX = 3;
export const PIECE_FIELD_COUNT = 4;

/** Given to every worker once, as piscina's workerData (structured-cloned: memory and device bytes are shared, not copied). */
export interface WritebackWorkerData {
  /** The engine's shared wasm memory: the worker reads folio data from it. */
  memory: WasmMemory;
  /** The device, as its handle() described it (deviceFromHandle rebuilds it in the worker). */
  device: DeviceHandle;
  /**
   * Int32 word 0 counts the workers that have loaded and opened the device (Atomics.add):
   * the engine reads it synchronously, without waiting for a message its busy event loop
   * would take in late.
   */
  started: Int32Array<SharedArrayBuffer>;
}

/** One task: pieces to write, in the layout above. */
export interface WritebackTask {
  pieces: Float64Array;
}

/** An error, flattened for the trip back to the engine thread. */
export interface WorkerError {
  name: string;
  message: string;
  /** FsError / node:fs code, when the error had one. */
  code?: string;
  syscall?: string;
  detail?: string;
  path?: string;
}

export interface WritebackTaskFailure {
  ioendIndex: number;
  /** Device range of the piece that failed (later pieces of that ioend were skipped). */
  addrBytes: number;
  lengthBytes: number;
  error: WorkerError;
}

export interface WritebackTaskResult {
  /** Bytes written to the device by this task. */
  writtenBytes: number;
  /** At most one entry per ioend: its first failing piece. */
  failures: WritebackTaskFailure[];
}

/** Flatten any thrown value for postMessage. */
export function workerErrorOf(thrown: unknown): WorkerError {
  if (!(thrown instanceof Error)) return { name: 'Error', message: String(thrown) };
  const fields = thrown as Error & { code?: unknown; syscall?: unknown; detail?: unknown; path?: unknown };
  const text = (value: unknown): string | undefined => (typeof value === 'string' ? value : undefined);
  return {
    name: thrown.name,
    message: thrown.message,
    code: text(fields.code),
    syscall: text(fields.syscall),
    detail: text(fields.detail),
    path: text(fields.path),
  };
}
