/**
 * The block device contract. Everything above it (journal, page cache, ext4) talks to
 * storage only through this interface; MemoryDevice and FileDevice implement it.
 *
 * Units: every offset and length is in bytes, and must be a multiple of
 * `sectorSizeBytes` (a *sector* is the device unit; fs *blocks* and cache *folios* are
 * larger and are never mixed with it unnamed). Ranges are half-open [offset, offset+len).
 * Out-of-range or misaligned requests reject with FsError EINVAL; device failures with EIO.
 *
 * Additions beyond the original contract (all compatible; BlockDevice is unchanged):
 * - `SyncBlockDevice`: synchronous twins of every call (`readSync`, `writeSync`,
 *   `flushSync`, `discardSync`, `zeroOutSync`, `closeSync`) for engine-thread callers
 *   that cannot afford a promise per block, and `handle()` for worker threads. The
 *   synchronous calls throw the same FsErrors the async ones reject with.
 * - `DeviceHandle`: plain structured-clonable data (SharedArrayBuffers, numbers,
 *   strings) that a worker turns back into a device over the *same* storage:
 *   `deviceFromHandle(handle)` in ./index.ts. A memory handle shares bytes (no copy); a
 *   file handle makes the worker open its own fd on the same path.
 */
export interface WriteOptions {
  /** Force unit access: the write is durable when the promise resolves. */
  fua?: boolean;
}

export interface BlockDevice {
  /** Total size in bytes (a multiple of sectorSizeBytes). */
  readonly sizeBytes: number;
  /** The device unit, 512 or 4096. */
  readonly sectorSizeBytes: number;
  /** A read-only device rejects write/flush-with-data/discard with EROFS. */
  readonly readOnly: boolean;
  /** Fill `target` with the bytes at [offsetBytes, offsetBytes + target.length). */
  read(offsetBytes: number, target: Uint8Array): Promise<void>;
  /** Store `source` at [offsetBytes, offsetBytes + source.length). */
  write(offsetBytes: number, source: Uint8Array, options?: WriteOptions): Promise<void>;
  /** Make every completed write durable (FileDevice: fdatasync). */
  flush(): Promise<void>;
  /** Drop the contents of a range; it reads back as zeros afterwards. */
  discard(offsetBytes: number, lengthBytes: number): Promise<void>;
  /** Write zeros over a range (may be implemented like discard). */
  zeroOut(offsetBytes: number, lengthBytes: number): Promise<void>;
  /** Release the device; later calls reject with EBADF. */
  close(): Promise<void>;
}

/** What a worker needs to reach a MemoryDevice's bytes: every chunk, pre-created. */
export interface MemoryDeviceHandle {
  readonly kind: 'memory';
  readonly sizeBytes: number;
  readonly sectorSizeBytes: number;
  readonly chunkSizeBytes: number;
  /** One SharedArrayBuffer per chunk, index = floor(offsetBytes / chunkSizeBytes). */
  readonly chunks: readonly SharedArrayBuffer[];
  /** Int32 state word per segment of min(256 KiB, chunk) (see memory-device.ts for the protocol). */
  readonly segmentStates: SharedArrayBuffer;
  readonly readOnly: boolean;
}

/** What a worker needs to open its own fd on a FileDevice's image. */
export interface FileDeviceHandle {
  readonly kind: 'file';
  /** Absolute path of the image. */
  readonly path: string;
  readonly sizeBytes: number;
  readonly sectorSizeBytes: number;
  readonly readOnly: boolean;
}

export type DeviceHandle = MemoryDeviceHandle | FileDeviceHandle;

/** A device with synchronous calls and a handle for workers (both of ours are). */
export interface SyncBlockDevice extends BlockDevice {
  readSync(offsetBytes: number, target: Uint8Array): void;
  writeSync(offsetBytes: number, source: Uint8Array, options?: WriteOptions): void;
  flushSync(): void;
  discardSync(offsetBytes: number, lengthBytes: number): void;
  zeroOutSync(offsetBytes: number, lengthBytes: number): void;
  /** Release the device now; throws EBUSY if async calls are still in flight. */
  closeSync(): void;
  /** Data a worker passes to deviceFromHandle to reach the same storage. */
  handle(): DeviceHandle;
}
