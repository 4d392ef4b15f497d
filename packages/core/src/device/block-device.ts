/**
 * The block device contract. Everything above it (journal, page cache, ext4) talks to
 * storage only through this interface; MemoryDevice and FileDevice implement it.
 *
 * Units: every offset and length is in bytes, and must be a multiple of
 * `sectorSizeBytes` (a *sector* is the device unit; fs *blocks* and cache *folios* are
 * larger and are never mixed with it unnamed). Ranges are half-open [offset, offset+len).
 * Out-of-range or misaligned requests reject with FsError EINVAL; device failures with EIO.
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
