/**
 * The client channel's wire format, in one file so server.ts (engine thread) and
 * client.ts (any other thread) agree on every message, limit and shared word.
 *
 * A connection is one MessagePort pair plus two SharedArrayBuffers: a control page of
 * Atomics words and the staging slots. Requests and answers are small structured-clone
 * messages; file data never rides in them. It moves through shared memory:
 *
 *   client thread                                  engine thread
 *   ─────────────                                  ─────────────
 *   metadata   { id, op, … } ────────────────────▶ fs.* / FileHandle.*
 *              ◀──────────────── { id, ok, value | error }
 *
 *   read       { read fd pos len slot } ─────────▶ readPinned: cached uptodate folios, pinned
 *              ◀─── { lease, pieces [ptr len]*, bytes, eof }    (publish: ENGINE word)
 *     copy wasm memory[ptr, +len) → caller's buffer (here, in parallel with other clients)
 *              { release lease } ────────────────▶ put() each folio  (no answer; riding
 *                                                   on the client's next request)
 *
 *   write      { writeBegin fd pos len slot } ────▶ writeBegin: folios locked + pinned,
 *              ◀─── { lease, pos, pieces, bytes }   delalloc reserved, i_size raised
 *     copy caller's buffer → wasm memory[ptr, +len)
 *     Atomics.store(COMMIT word of the slot, lease)                  (the publish)
 *              { commit lease } ─────────────────▶ uptodate + dirty, unlock, put (no answer)
 *
 *   staged     small reads and writes (≤ stagedBytesMax), reads of what is not cached yet,
 *              and every write on the buffer_head path: the bytes go through the request's
 *              staging slot and the engine copies (files.read / files.write on the slot).
 *
 * Leases. Pieces point into folios the engine keeps pinned (reads) or locked and pinned
 * (writes) until release / commit, so eviction, writeback and truncate never free or
 * reuse memory a client is copying. Releases travel with the client's next request (a
 * sequential reader then wakes the engine thread once per call, not twice), or alone one
 * client event-loop turn later when no request follows; commits go at once (client.ts
 * says why). A write
 * lease belongs to the slot its request held: the engine zeroes the slot's COMMIT word
 * at begin, the client stores the lease id there after its copy — before its write()
 * returns. That word outlives the client's thread, so a connection whose port closes
 * (the client exited, crashed, or was terminated) has each write lease committed if its
 * word says so and aborted otherwise (zeroed, then committed: iomapWriteAbort); read pins
 * are put. No lease ever times out while its client lives: a live client may still be
 * copying.
 *
 * Ordering (wasm/layout.ts's publish rule). Bytes handed across threads are published by
 * an Atomics RMW on a control word after the last write and read with Atomics.load by the
 * receiver before its first read: the engine bumps CONTROL_ENGINE_PUBLISH before an
 * answer whose pieces or slot it filled; the client bumps CONTROL_CLIENT_PUBLISH after
 * copying into a slot and before the staged write that hands it over, and stores the
 * COMMIT word after copying into folios (the engine loads it before committing). The
 * message itself also orders them in practice; the words make the rule explicit and cost
 * ~10 ns.
 *
 * Errors cross as plain fields (WireError): structured cloning keeps an Error's message
 * but drops `code`, `syscall`, `path` and the FsError brand, so the engine copies them out
 * and the client rebuilds an FsError (FsError.is and `code` work as on the engine).
 *
 * Cost per request: one message each way (~17 µs round trip here, measured; a
 * SharedArrayBuffer ring woken by Atomics.waitAsync was no faster, 19–28 µs, and a
 * blocking Atomics.wait ring saved ~4 µs at the price of blocking the client's event
 * loop), plus for a folio write a one-way commit (a pinned read's release rides on the
 * next request). Bytes copied: pinned read and folio write once, on the client thread; staged
 * twice (client ⇄ slot ⇄ folio), one of them on the engine thread.
 */
import { Buffer } from 'node:buffer';
import type { MessagePort } from 'node:worker_threads';
import { assert } from '../assert.js';
import { FsError, type FsErrorCode } from '../vfs/errors.js';
import { BigIntStats, Stats } from '../vfs/stats.js';
import { Dirent } from '../vfs/dirent.js';
import type { WasmMemory } from '../wasm/webassembly.js';

/** Bumped on any change to the messages below; client and engine must match. */
export const CHANNEL_PROTOCOL_VERSION = 1;

// ─── Limits ─────────────────────────────────────────────────────────────────────────────

/** Staging slots per connection (default): also the client's data requests in flight. */
export const CHANNEL_SLOT_COUNT_DEFAULT = 4;
export const CHANNEL_SLOT_COUNT_MAX = 16;
/** Bytes per staging slot (default): the largest staged read or write. */
export const CHANNEL_SLOT_BYTES_DEFAULT = 1024 * 1024;
export const CHANNEL_SLOT_BYTES_MIN = 64 * 1024;
export const CHANNEL_SLOT_BYTES_MAX = 16 * 1024 * 1024;
/**
 * Reads and writes of at most this many bytes go through a slot (one round trip, two
 * small copies) instead of leases (one round trip plus a release/commit message).
 */
export const CHANNEL_STAGED_BYTES_MAX_DEFAULT = 16 * 1024;
/** Largest data request: a longer read or write is a loop of these on the client. */
export const CHANNEL_REQUEST_BYTES_MAX = 8 * 1024 * 1024;
/** A data request never pins or locks more than this share of the page cache (1/8). */
export const CHANNEL_REQUEST_CACHE_SHARE_DIVISOR = 8;
/** Folios one prepared write may hold locked (order-0 folios: 1 MiB of them at 4 KiB). */
export const CHANNEL_WRITE_FOLIOS_MAX = 256;
/** Requests one client keeps in flight; more wait on the client. */
export const CHANNEL_REQUESTS_IN_FLIGHT_MAX = 64;

// A staged request must fit one slot.
assert(CHANNEL_STAGED_BYTES_MAX_DEFAULT <= CHANNEL_SLOT_BYTES_MIN, 'the default staged size fits the smallest slot');
// Slot sizes form a range.
assert(CHANNEL_SLOT_BYTES_MIN <= CHANNEL_SLOT_BYTES_DEFAULT && CHANNEL_SLOT_BYTES_DEFAULT <= CHANNEL_SLOT_BYTES_MAX, 'default slot size in range');
// Every data request holds a slot, so in-flight data requests ≤ slots ≤ all requests in flight.
assert(CHANNEL_SLOT_COUNT_MAX <= CHANNEL_REQUESTS_IN_FLIGHT_MAX, 'slots never outnumber requests in flight');

// ─── Control words (Int32Array over handle.control) ─────────────────────────────────────

/** Engine → client publish counter (see the header's ordering rule). */
export const CONTROL_ENGINE_PUBLISH = 0;
/** Client → engine publish counter. */
export const CONTROL_CLIENT_PUBLISH = 1;
/**
 * Word CONTROL_COMMIT_BASE + slot: the write lease of that slot is committed when it holds
 * the lease's id. The engine stores 0 when it makes the lease (no request of the client
 * can be using the slot then); the client stores the id after its copy (publish rule);
 * the engine loads it at the commit notice, or when the connection closes.
 */
export const CONTROL_COMMIT_BASE = 2;

/** i32 words of a connection's control buffer. */
export function controlWordCount(slotCount: number): number {
  return CONTROL_COMMIT_BASE + slotCount;
}

// ─── The handle given to a client thread ────────────────────────────────────────────────

/**
 * What serveFilesystem's connect() returns, for one client thread: post it as workerData
 * (or in a message) with `transferList: [handle.port]`; connectFilesystem(handle) there.
 */
export interface FilesystemHandle {
  readonly version: number;
  readonly port: MessagePort;
  /** The engine's shared wasm memory: folio data lives in it. */
  readonly memory: WasmMemory;
  /** controlWordCount(slotCount) i32 words. */
  readonly control: SharedArrayBuffer;
  /** slotCount × slotBytes bytes. */
  readonly staging: SharedArrayBuffer;
  readonly slotCount: number;
  readonly slotBytes: number;
  readonly stagedBytesMax: number;
  readonly requestBytesMax: number;
  /** 'folios': two-phase writes (iomap path); 'staged': every write through a slot (buffer_head). */
  readonly writeMode: 'folios' | 'staged';
}

// ─── Messages ───────────────────────────────────────────────────────────────────────────

/** Filesystem methods a client may call by name (arguments and results are cloneable). */
export const FS_METHODS = [
  'stat', 'lstat', 'readdir', 'mkdir', 'rmdir', 'rm', 'unlink', 'rename', 'link', 'symlink', 'readlink',
  'realpath', 'access', 'exists', 'truncate', 'chmod', 'chown', 'lchown', 'utimes', 'lutimes', 'sync',
] as const;
export type FsMethod = (typeof FS_METHODS)[number];

/** FileHandle methods a client may call by name. */
export const HANDLE_METHODS = ['stat', 'truncate', 'sync', 'datasync', 'fallocate', 'chmod', 'chown', 'utimes', 'seek', 'fiemap'] as const;
export type HandleMethod = (typeof HANDLE_METHODS)[number];

/**
 * Every request may carry `releases` (read leases the client is done with) and `commits`
 * (write leases whose COMMIT word it stored), ended in that order before the request runs.
 */
export type Request = (
  | { id: number; op: 'fs'; method: FsMethod; args: unknown[] }
  | { id: number; op: 'open'; path: string | Uint8Array; flags: string | number; mode: number | string | undefined }
  | { id: number; op: 'fh'; fd: number; method: HandleMethod; args: unknown[] }
  | { id: number; op: 'close'; fd: number }
  | { id: number; op: 'read'; fd: number; positionBytes: number; lengthBytes: number; slot: number }
  | { id: number; op: 'writeBegin'; fd: number; positionBytes: number; lengthBytes: number; slot: number }
  | { id: number; op: 'writeStaged'; fd: number; positionBytes: number; lengthBytes: number; slot: number }
  | { id: number; op: 'disconnect' }
) & LeaseNotices;

export interface LeaseNotices { releases?: number[]; commits?: number[] }

/** The one-way message (no id, no answer): lease ends that found no request to ride on. */
export type Notice = { op: 'leases' } & LeaseNotices;

export type Answer = { id: number; ok: true; value: unknown } | { id: number; ok: false; error: WireError };

export interface OpenAnswer { fd: number; isDirectory: boolean; append: boolean }

/** A read's answer: `pieces` (lease ≠ 0) or the slot (lease 0) hold `bytes` bytes. */
export interface ReadAnswer {
  bytes: number;
  /** The read reached i_size: a client loop stops here. */
  eof: boolean;
  lease: number;
  /** [ptr, lengthBytes] pairs into the wasm memory, in file order. */
  pieces: number[];
}

/** writeBegin's answer: fill the pieces with `bytes` bytes for [positionBytes, +bytes), then commit. */
export interface WriteBeginAnswer { lease: number; positionBytes: number; bytes: number; pieces: number[] }

export interface WriteStagedAnswer { positionBytes: number; bytes: number }

// ─── Errors ─────────────────────────────────────────────────────────────────────────────

/** An error, flattened for the trip to the client. */
export interface WireError {
  name: string;
  message: string;
  code?: string;
  syscall?: string;
  path?: string;
  dest?: string;
  detail?: string;
}

export function wireErrorOf(thrown: unknown): WireError {
  if (!(thrown instanceof Error) && !FsError.is(thrown)) return { name: 'Error', message: String(thrown) };
  const error = thrown as Error & Partial<Record<'code' | 'syscall' | 'path' | 'dest' | 'detail', unknown>>;
  const text = (value: unknown): string | undefined => (typeof value === 'string' ? value : undefined);
  return {
    name: FsError.is(thrown) ? 'FsError' : error.name,
    message: error.message,
    code: text(error.code),
    syscall: text(error.syscall),
    path: text(error.path),
    dest: text(error.dest),
    detail: text(error.detail),
  };
}

/** The client's copy of an engine error: an FsError with the same code, syscall, path, dest, detail. */
export function errorFromWire(wire: WireError): Error {
  if (wire.name === 'FsError' && wire.code !== undefined) {
    return new FsError(wire.code as FsErrorCode, { syscall: wire.syscall, path: wire.path, dest: wire.dest, detail: wire.detail });
  }
  const error = new Error(wire.message);
  error.name = wire.name;
  return error;
}

// ─── Values ─────────────────────────────────────────────────────────────────────────────

/** A result, tagged so the client can give back the classes structured cloning drops. */
export type WireValue =
  | { kind: 'plain'; value: unknown }
  | { kind: 'stats'; value: object }
  | { kind: 'bigintStats'; value: object }
  | { kind: 'dirents'; value: object[] }
  | { kind: 'buffer'; value: Uint8Array }
  | { kind: 'buffers'; value: Uint8Array[] };

export function wireValueOf(value: unknown): WireValue {
  if (value instanceof Stats) return { kind: 'stats', value: { ...value } };
  if (value instanceof BigIntStats) return { kind: 'bigintStats', value: { ...value } };
  if (Buffer.isBuffer(value)) return { kind: 'buffer', value };
  if (Array.isArray(value) && value.length > 0) {
    if (value[0] instanceof Dirent) return { kind: 'dirents', value: value.map((d: Dirent) => ({ ...d })) };
    if (Buffer.isBuffer(value[0])) return { kind: 'buffers', value: value as Buffer[] };
  }
  return { kind: 'plain', value };
}

function bufferOf(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
}

export function valueFromWire(wire: WireValue): unknown {
  switch (wire.kind) {
    case 'plain': return wire.value;
    case 'stats': return Object.assign(new Stats(), wire.value);
    case 'bigintStats': return Object.assign(new BigIntStats(), wire.value);
    case 'buffer': return bufferOf(wire.value);
    case 'buffers': return wire.value.map(bufferOf);
    case 'dirents': return wire.value.map((fields) => {
      const dirent = Object.assign(Object.create(Dirent.prototype) as object, fields) as Dirent<string | Buffer>;
      const name = dirent.name as unknown;
      if (name instanceof Uint8Array) (dirent as { name: unknown }).name = bufferOf(name);
      return dirent;
    });
  }
}

/** Flat [ptr, length]* pairs of pieces. */
export function flatPieces(pieces: readonly { ptr: number; lengthBytes: number }[]): number[] {
  const out = new Array<number>(pieces.length * 2);
  for (let i = 0; i < pieces.length; i++) {
    out[2 * i] = pieces[i].ptr;
    out[2 * i + 1] = pieces[i].lengthBytes;
  }
  return out;
}
