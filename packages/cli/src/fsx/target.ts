/**
 * The file an fsx run exercises, as a small ops table (the lwext4 block-device habit): the
 * exerciser knows nothing about where the bytes live. `ext4ts fsx` runs it over one regular
 * file inside an ext4ts image (ext4-target.ts); the tests also run it over the host file
 * system, an in-memory page-cache model and the generic iomap layer on a fake file system
 * (test/fsx/node-target.ts, memory-target.ts, iomap-target.ts).
 *
 * Conventions for every method (half-open byte ranges [pos, pos + len), sizes in bytes):
 * - All offsets and lengths are non-negative safe integers; `len` may be 0 only where noted.
 * - "size" is what fstat()/lseek(SEEK_END) would say; the exerciser checks size() after
 *   every operation, so a method must leave the size exactly as documented.
 * - Bytes in [0, size) that no operation wrote read as zero (holes, unwritten extents,
 *   truncate-up and write-past-EOF gaps all read as zero).
 * - A method throws on an operating error (EIO, ENOSPC, ...); the run stops there.
 *
 * Cost: one call per fsx operation; nothing is batched or cached by the exerciser.
 */

/** What the target can do; an op whose capability is false is never generated (fsx probes and auto-disables the same way). */
export interface FsxCapabilities {
  /** fallocate(mode 0) and fallocate(FALLOC_FL_KEEP_SIZE). */
  fallocate: boolean;
  /** fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE). */
  punch: boolean;
  /** fallocate(FALLOC_FL_ZERO_RANGE [| FALLOC_FL_KEEP_SIZE]). */
  zero: boolean;
  /**
   * mapRead/mapWrite go through a real shared mapping. When false they must still work
   * (emulated with pread/pwrite), so the op mix and the model stay the same.
   */
  mmap: boolean;
  /**
   * pollutePastEof and readPastEof exist: the target can touch the bytes of the EOF page
   * beyond EOF the way an mmap store can (needed for fsx -e and the EOF-page check).
   */
  eofPage: boolean;
}

export interface FsxTarget {
  readonly capabilities: FsxCapabilities;

  /** The file size in bytes (fstat st_size). */
  size(): Promise<number>;

  /**
   * pread: returns exactly min(len, max(0, size - pos)) bytes from pos; never reads past
   * EOF, never changes the size. len may be 0.
   */
  read(pos: number, len: number): Promise<Uint8Array>;

  /**
   * pwrite of all of `data` at pos. If pos + data.length > size the size becomes
   * pos + data.length, and a gap [oldSize, pos) reads as zero. data.length > 0.
   */
  write(pos: number, data: Uint8Array): Promise<void>;

  /**
   * ftruncate: the size becomes `size`. Growing: [oldSize, size) reads as zero, including
   * the part of the old EOF page/block past oldSize (whatever was there before).
   * Shrinking: bytes past `size` are gone; growing again later must read them as zero.
   */
  truncate(size: number): Promise<void>;

  /**
   * fallocate(mode 0 or KEEP_SIZE) over [pos, pos + len), len > 0. Never changes data:
   * existing bytes stay, new space reads as zero. Without keepSize the size becomes
   * max(size, pos + len); with keepSize the size never changes (blocks past EOF are
   * preallocated but invisible).
   */
  fallocate(pos: number, len: number, options: { keepSize: boolean }): Promise<void>;

  /**
   * fallocate(PUNCH_HOLE | KEEP_SIZE) over [pos, pos + len), len > 0: those bytes read as
   * zero afterwards (partial blocks at either end are zeroed in place); the size never
   * changes, and a range past EOF is allowed (nothing visible happens there).
   */
  punchHole(pos: number, len: number): Promise<void>;

  /**
   * fallocate(ZERO_RANGE [| KEEP_SIZE]) over [pos, pos + len), len > 0: those bytes read
   * as zero afterwards. Without keepSize the size becomes max(size, pos + len); with
   * keepSize it never changes.
   */
  zeroRange(pos: number, len: number, options: { keepSize: boolean }): Promise<void>;

  /**
   * Read through a MAP_SHARED mapping of the file: same result as read(); the caller
   * keeps pos + len <= size (a mapping cannot read past EOF without SIGBUS), len > 0.
   */
  mapRead(pos: number, len: number): Promise<Uint8Array>;

  /**
   * fsx's domapwrite: if pos + data.length > size, first ftruncate the file up to
   * pos + data.length (so the gap reads as zero); then store `data` through a MAP_SHARED
   * mapping and msync(MS_SYNC) it. Afterwards the size is max(oldSize, pos + data.length).
   * data.length > 0.
   */
  mapWrite(pos: number, data: Uint8Array): Promise<void>;

  /** fsync: all data and metadata of the file are durable. Never changes content or size. */
  fsync(): Promise<void>;

  /** Closes the file; no other method is called afterwards except reopen(). */
  close(): Promise<void>;

  /**
   * Closes and reopens the same file (fsx -c). Content and size must be unchanged. Absent
   * when the target cannot reopen; then -c is refused.
   */
  reopen?(): Promise<void>;

  /**
   * Present when capabilities.eofPage: stores `data` into the EOF page beyond EOF through
   * a shared mapping, as a buggy application may (POSIX leaves such stores undefined, but
   * Linux keeps them in the page cache until the page is written back or truncated). The
   * size does not change. Writes at most up to the end of the page holding byte `size`;
   * returns how many bytes it stored (0 when size is page aligned: there is no EOF page).
   */
  pollutePastEof?(data: Uint8Array): Promise<number>;

  /**
   * Present when capabilities.eofPage: returns the bytes of the EOF page beyond EOF as a
   * mapping would show them, [size, roundUp(size, pageSize)). Unpolluted, they must be zero.
   */
  readPastEof?(): Promise<Uint8Array>;
}
