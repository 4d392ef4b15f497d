/**
 * FileHandle: what `fs.open()` returns, shaped like node:fs/promises' FileHandle:
 * read / readv / write / writev (positional or at the handle's position; O_APPEND writes
 * at EOF), readFile, writeFile, appendFile, truncate, chmod, chown, utimes, sync,
 * datasync, stat, close — plus what node has no promise API for: fallocate (allocate,
 * KEEP_SIZE, PUNCH_HOLE, ZERO_RANGE), seek (SEEK_SET/CUR/END/DATA/HOLE), fiemap, and
 * mmap (a FileMapping whose loads and stores fault through the page cache, with msync).
 * Data moves through the mount's buffered path (ext4/file.ts: iomap or buffer_head).
 * The handle names an inode, not a snapshot: every call sees the file as it is now, and
 * an open handle keeps an unlinked inode alive until it is closed. Every call after
 * close() fails with EBADF.
 */
import { Buffer } from 'node:buffer';
import { FsError } from './errors.js';
import { isDir, isRegular, readInode, type Ext4Inode } from '../ext4/inode.js';
import {
  SEEK_CUR, SEEK_DATA, SEEK_END, SEEK_HOLE, SEEK_SET, type Ext4Files, type FiemapExtent,
} from '../ext4/file.js';
import { PAGE_BYTES } from '../mm/constants.js';
import { bigintStatsOf, statsOf, type BigIntStats, type StatContext, type Stats } from './stats.js';
import type { Ext4Super } from '../ext4/super.js';

/** The buffer node's read() allocates when called without one. */
const DEFAULT_READ_BYTES = 16384;
/** Largest buffer readFile will build (node's kMaxLength is 2^32 − 1 on 64-bit; stay under 2 GiB). */
export const READ_FILE_BYTES_MAX = 2 ** 31 - 1;

export interface ReadResult<T extends Uint8Array> { bytesRead: number; buffer: T }
export interface ReadOptions<T extends Uint8Array> { buffer?: T; offset?: number; length?: number; position?: number | bigint | null }
export type ReadFileOptions = BufferEncoding | { encoding?: BufferEncoding | null; flag?: string } | null | undefined;

function encodingOf(options: ReadFileOptions): BufferEncoding | null {
  if (typeof options === 'string') return options;
  return options?.encoding ?? null;
}

/** Read the whole of an inode's data through the cache (EISDIR for directories, EFBIG past 2 GiB). */
export async function readWholeInode(files: Ext4Files, inode: Ext4Inode, syscall: string, path?: string): Promise<Buffer> {
  if (isDir(inode)) throw new FsError('EISDIR', { syscall, path });
  const sizeBytes = files.liveState(inode.ino)?.sizeBytes ?? inode.size;
  if (sizeBytes > READ_FILE_BYTES_MAX) throw new FsError('EFBIG', { syscall, path, detail: `file of ${sizeBytes} bytes is too large for one buffer` });
  const out = Buffer.allocUnsafe(sizeBytes);
  const bytesRead = await files.read(inode.ino, 0, out);
  return bytesRead === out.length ? out : out.subarray(0, bytesRead);
}

/** The inode as a caller should see it: i_size from memory while writes have raised it past the disk's. */
export function liveInode(files: Ext4Files, inode: Ext4Inode): Ext4Inode {
  const state = files.liveState(inode.ino);
  if (state === undefined || (state.sizeBytes === inode.size && state.reservedDataBlocks === 0)) return inode;
  // st_blocks counts delayed blocks too (as ext4_getattr adds i_reserved_data_blocks).
  const sectors512 = inode.sectors512 + state.reservedDataBlocks * (state.blockSizeBytes / 512);
  return { ...inode, size: state.sizeBytes, sectors512 };
}

export function decodeBytes(bytes: Buffer, options: ReadFileOptions): Buffer | string {
  const encoding = encodingOf(options);
  return encoding === null ? bytes : bytes.toString(encoding);
}

/** What a FileHandle needs from its filesystem (filesystem.ts provides it). */
export interface FileHandleHost {
  readonly ext4: Ext4Super;
  readonly statContext: StatContext;
  /** The mount's file data layer (buffered path, page cache). */
  readonly files: Ext4Files;
  /** Run a change alone (the filesystem's write lock). */
  exclusive<T>(body: () => Promise<T>): Promise<T>;
  /**
   * Run a data sync outside the change lock (unmount waits for it): fsync writes back and
   * waits like the flusher, which never held that lock either, so other files' writes go on
   * meanwhile (Linux's ext4_sync_file does not hold i_rwsem across the commit either).
   */
  unlocked<T>(body: () => Promise<T>): Promise<T>;
  /** Attribute changes (only on read-write mounts). */
  readonly writer?: FileWriter;
  /** The handle is closed: drop it (and free its inode if it was its last open and last name). */
  release(fd: number, ino: number): Promise<void>;
}

/** The metadata operations a writable handle uses (bound to one mount by the filesystem). */
export interface FileWriter {
  setAttr(ino: number, attr: { mode?: number; uid?: number; gid?: number; atime?: TimeLike; mtime?: TimeLike }): Promise<void>;
}

/**
 * A shared mapping of [offset, offset + length) of a file (mmap(MAP_SHARED)). Loads and
 * stores take offsets inside the mapping. A store faults its page in through page_mkwrite
 * (blocks reserved or allocated, the folio dirtied) and never changes the file size;
 * touching a page past the one holding EOF fails with EFAULT (the SIGBUS). msync writes
 * the mapping's dirty data back and waits.
 */
export class FileMapping {
  private unmapped = false;

  constructor(private readonly handle: FileHandle, readonly offset: number, readonly length: number) {}

  private range(syscall: string, at: number, length: number): number {
    if (this.unmapped) throw new FsError('EINVAL', { syscall, detail: 'mapping was unmapped' });
    if (!Number.isSafeInteger(at) || !Number.isSafeInteger(length) || at < 0 || length < 0 || at + length > this.length) {
      throw new FsError('EFAULT', { syscall, detail: `[${at}, +${length}) is outside the ${this.length}-byte mapping` });
    }
    return this.offset + at;
  }

  async read(at: number, length: number): Promise<Uint8Array> {
    const pos = this.range('mmap read', at, length);
    return this.handle.mapAccess('mmap read', (files, ino) => files.mapRead(ino, pos, length));
  }

  async write(at: number, data: Uint8Array): Promise<void> {
    const pos = this.range('mmap write', at, data.length);
    if (data.length === 0) return;
    await this.handle.mapAccess('mmap write', (files, ino) => files.mapWrite(ino, pos, data), true);
  }

  /** msync(MS_SYNC) of [at, at + length) of the mapping (default: all of it). */
  async msync(at = 0, length = this.length - at): Promise<void> {
    const pos = this.range('msync', at, length);
    await this.handle.mapAccess('msync', (files, ino) => files.writeAndWait(ino, pos, pos + length, 'msync'));
  }

  async unmap(): Promise<void> {
    this.unmapped = true;
  }
}

/** Times as node accepts them: seconds (number or decimal string, exact to the ns), or a Date. */
export type TimeLike = number | string | Date;

export interface OpenMode { read: boolean; write: boolean; append: boolean }

export interface WriteResult<T> { bytesWritten: number; buffer: T }

export class FileHandle {
  private closed = false;
  private positionBytes = 0;
  /** This open file's readahead state (the path's; opaque here). */
  private readonly readahead: unknown;
  /** Whether the inode is a directory, once read() has looked. */
  private directory: boolean | undefined;

  constructor(
    readonly fd: number,
    private readonly host: FileHandleHost,
    private readonly ino: number,
    private readonly path: string,
    private readonly openMode: OpenMode = { read: true, write: false, append: false },
  ) {
    this.readahead = host.files.path.newReadahead();
  }

  private check(syscall: string): void {
    if (this.closed) throw new FsError('EBADF', { syscall, path: this.path });
  }

  private async inode(): Promise<Ext4Inode> {
    return liveInode(this.host.files, await readInode(this.host.ext4, this.ino));
  }

  private requireWritable(syscall: string): void {
    this.check(syscall);
    if (this.host.writer === undefined) throw new FsError('EROFS', { syscall, path: this.path });
    if (!this.openMode.write) throw new FsError('EBADF', { syscall, path: this.path, detail: 'not open for writing' });
  }

  /** Tag an error with this handle's path. */
  private tagged<T>(syscall: string, body: () => Promise<T>): Promise<T> {
    return body().catch((error: unknown) => {
      if (FsError.is(error) && error.path === undefined) throw new FsError(error.code, { syscall: error.syscall ?? syscall, path: this.path, detail: error.detail, cause: error });
      throw error;
    });
  }

  /** For FileMapping: run an access with this handle's files and inode. */
  mapAccess<T>(syscall: string, body: (files: Ext4Files, ino: number) => Promise<T>, write = false): Promise<T> {
    if (write) this.requireWritable(syscall);
    else this.check(syscall);
    const run = () => this.tagged(syscall, () => body(this.host.files, this.ino));
    return write ? this.host.exclusive(run) : run();
  }

  read<T extends Uint8Array = Buffer>(buffer: T, offset?: number, length?: number, position?: number | bigint | null): Promise<ReadResult<T>>;
  read<T extends Uint8Array = Buffer>(buffer: T, options?: Omit<ReadOptions<T>, 'buffer'>): Promise<ReadResult<T>>;
  read<T extends Uint8Array = Buffer>(options?: ReadOptions<T>): Promise<ReadResult<T>>;
  async read<T extends Uint8Array>(
    bufferOrOptions?: T | ReadOptions<T>,
    offsetOrOptions?: number | Omit<ReadOptions<T>, 'buffer'>,
    length?: number,
    position?: number | bigint | null,
  ): Promise<ReadResult<T>> {
    this.check('read');
    if (!this.openMode.read) throw new FsError('EBADF', { syscall: 'read', path: this.path, detail: 'not open for reading' });
    const args = normaliseReadArgs(bufferOrOptions, offsetOrOptions, length, position);
    // An inode's type never changes while it is open: look once, not per read (a decode + crc32c).
    this.directory ??= isDir(await this.inode());
    if (this.directory) throw new FsError('EISDIR', { syscall: 'read', path: this.path });
    const whole = args.offset === 0 && args.length === args.buffer.length;
    const target = whole ? args.buffer : args.buffer.subarray(args.offset, args.offset + args.length);
    const at = args.position ?? this.positionBytes;
    const bytesRead = await this.tagged('read', () => this.host.files.read(this.ino, at, target, this.readahead));
    if (args.position === null) this.positionBytes += bytesRead;
    return { bytesRead, buffer: args.buffer };
  }

  /** readv: fills the buffers in order from one position (the handle's when position is null). */
  async readv<T extends readonly Uint8Array[]>(buffers: T, position?: number | null): Promise<{ bytesRead: number; buffers: T }> {
    let bytesRead = 0;
    for (const buffer of buffers) {
      const at = position === undefined || position === null ? null : position + bytesRead;
      const { bytesRead: n } = await this.read(buffer, 0, buffer.length, at);
      bytesRead += n;
      if (n < buffer.length) break;
    }
    return { bytesRead, buffers };
  }

  /** The rest of the file from the handle's position (node reads from the current position). */
  async readFile(options?: ReadFileOptions): Promise<Buffer | string> {
    this.check('read');
    const whole = await readWholeInode(this.host.files, await this.inode(), 'read', this.path);
    const rest = whole.subarray(Math.min(this.positionBytes, whole.length));
    this.positionBytes += rest.length;
    return decodeBytes(rest, options);
  }

  write<T extends Uint8Array>(buffer: T, offset?: number | null, length?: number | null, position?: number | null): Promise<WriteResult<T>>;
  write(data: string, position?: number | null, encoding?: BufferEncoding | null): Promise<WriteResult<string>>;
  async write<T extends Uint8Array>(
    data: T | string, offsetOrPosition?: number | null, lengthOrEncoding?: number | BufferEncoding | null, position?: number | null,
  ): Promise<WriteResult<T | string>> {
    this.requireWritable('write');
    const { bytes, at } = normaliseWriteArgs(data, offsetOrPosition, lengthOrEncoding, position, this.path);
    const positional = at !== null;
    const bytesWritten = await this.host.exclusive(async () => {
      // O_APPEND writes at EOF whatever the position (Linux ignores pwrite's offset too).
      const start = this.openMode.append ? (await this.inode()).size : at ?? this.positionBytes;
      const n = await this.tagged('write', () => this.host.files.write(this.ino, start, bytes));
      if (!positional || this.openMode.append) this.positionBytes = start + n;
      return n;
    });
    return { bytesWritten, buffer: data };
  }

  /** writev: the buffers in order, as one write from one position (the handle's when null). */
  async writev<T extends readonly Uint8Array[]>(buffers: T, position?: number | null): Promise<{ bytesWritten: number; buffers: T }> {
    const total = buffers.reduce((sum, b) => sum + b.length, 0);
    const joined = buffers.length === 1 ? buffers[0] : Buffer.concat(buffers, total);
    const { bytesWritten } = await this.write(joined, 0, joined.length, position ?? null);
    return { bytesWritten, buffers };
  }

  /** Replace the contents from the handle's position (node: writeFile on a handle writes at its position). */
  async writeFile(data: Uint8Array | string, options?: BufferEncoding | { encoding?: BufferEncoding | null } | null): Promise<void> {
    const encoding = typeof options === 'string' ? options : options?.encoding ?? 'utf8';
    const bytes = typeof data === 'string' ? Buffer.from(data, encoding) : data;
    await this.write(bytes, 0, bytes.length, null);
  }

  async appendFile(data: Uint8Array | string, options?: BufferEncoding | { encoding?: BufferEncoding | null } | null): Promise<void> {
    this.requireWritable('write');
    const encoding = typeof options === 'string' ? options : options?.encoding ?? 'utf8';
    const bytes = typeof data === 'string' ? Buffer.from(data, encoding) : data;
    await this.host.exclusive(async () => this.tagged('write', async () => {
      await this.host.files.write(this.ino, (await this.inode()).size, bytes);
    }));
  }

  async truncate(len = 0): Promise<void> {
    this.requireWritable('ftruncate');
    if (!Number.isSafeInteger(len) || len < 0) throw new FsError('EINVAL', { syscall: 'ftruncate', path: this.path, detail: `length ${len}` });
    await this.host.exclusive(() => this.tagged('ftruncate', () => this.host.files.truncate(this.ino, len)));
  }

  /**
   * fallocate(2): mode 0 allocates [offset, offset + length) (unwritten: reads as zeros)
   * and grows the size; FALLOC_FL_KEEP_SIZE leaves the size; FALLOC_FL_PUNCH_HOLE |
   * KEEP_SIZE frees the range (reads as zeros); FALLOC_FL_ZERO_RANGE zeroes it, keeping
   * it allocated. Constants: `constants.FALLOC_FL_*` from the package.
   */
  async fallocate(mode: number, offset: number, length: number): Promise<void> {
    this.requireWritable('fallocate');
    const inode = await this.inode();
    if (isDir(inode)) throw new FsError('EISDIR', { syscall: 'fallocate', path: this.path });
    if (!isRegular(inode)) throw new FsError('EINVAL', { syscall: 'fallocate', path: this.path, detail: 'not a regular file' });
    await this.host.exclusive(() => this.tagged('fallocate', () => this.host.files.fallocate(this.ino, mode, offset, length)));
  }

  /**
   * lseek(2): the new position. SEEK_SET/CUR/END move the handle's position; SEEK_DATA /
   * SEEK_HOLE find the next data or hole at or after offset (ENXIO at or past EOF).
   */
  async seek(offset: number, whence = SEEK_SET): Promise<number> {
    this.check('lseek');
    if (!Number.isSafeInteger(offset)) throw new FsError('EINVAL', { syscall: 'lseek', path: this.path, detail: `offset ${offset}` });
    let next: number;
    switch (whence) {
      case SEEK_SET: next = offset; break;
      case SEEK_CUR: next = this.positionBytes + offset; break;
      case SEEK_END: next = (await this.inode()).size + offset; break;
      case SEEK_DATA: case SEEK_HOLE:
        if (offset < 0) throw new FsError('ENXIO', { syscall: 'lseek', path: this.path, detail: `offset ${offset}` });
        next = await this.tagged('lseek', () => this.host.files.seek(this.ino, offset, whence));
        break;
      default: throw new FsError('EINVAL', { syscall: 'lseek', path: this.path, detail: `whence ${whence}` });
    }
    if (next < 0 || !Number.isSafeInteger(next)) throw new FsError('EINVAL', { syscall: 'lseek', path: this.path, detail: `position ${next}` });
    this.positionBytes = next;
    return next;
  }

  /** FIEMAP: the file's extents over [offset, offset + length) (default: everything). */
  async fiemap(offset = 0, length = Number.MAX_SAFE_INTEGER - offset): Promise<FiemapExtent[]> {
    this.check('fiemap');
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
      throw new FsError('EINVAL', { syscall: 'fiemap', path: this.path, detail: `range ${offset}, ${length}` });
    }
    return this.tagged('fiemap', () => this.host.files.fiemap(this.ino, offset, length));
  }

  /**
   * mmap(MAP_SHARED) of [offset, offset + length): offset page aligned, length > 0. The
   * range may reach past EOF (as in Linux); touching a page past the one holding EOF
   * fails with EFAULT. Stores need a handle open for writing.
   */
  async mmap(offset: number, length: number): Promise<FileMapping> {
    this.check('mmap');
    if (!Number.isSafeInteger(offset) || offset < 0 || offset % PAGE_BYTES !== 0) throw new FsError('EINVAL', { syscall: 'mmap', path: this.path, detail: `offset ${offset} must be a multiple of ${PAGE_BYTES}` });
    if (!Number.isSafeInteger(length) || length <= 0) throw new FsError('EINVAL', { syscall: 'mmap', path: this.path, detail: `length ${length}` });
    if (offset + length > this.host.files.maxBytes) throw new FsError('EOVERFLOW', { syscall: 'mmap', path: this.path, detail: `offset ${offset} + length ${length}` });
    const inode = await this.inode();
    if (!isRegular(inode)) throw new FsError('EINVAL' , { syscall: 'mmap', path: this.path, detail: 'not a regular file' });
    return new FileMapping(this, offset, length);
  }

  async chmod(mode: number): Promise<void> {
    this.check('fchmod');
    await this.attr('fchmod', { mode });
  }

  async chown(uid: number, gid: number): Promise<void> {
    this.check('fchown');
    await this.attr('fchown', { uid, gid });
  }

  async utimes(atime: TimeLike, mtime: TimeLike): Promise<void> {
    this.check('futime');
    await this.attr('futime', { atime, mtime });
  }

  private async attr(syscall: string, attr: Parameters<FileWriter['setAttr']>[1]): Promise<void> {
    const writer = this.host.writer;
    if (writer === undefined) throw new FsError('EROFS', { syscall, path: this.path });
    await this.host.exclusive(() => writer.setAttr(this.ino, attr));
  }

  /** fsync: this file's data written back and waited for, then the journal committed (with a device flush). */
  async sync(): Promise<void> {
    this.check('fsync');
    if (this.host.writer === undefined) return;
    await this.host.unlocked(() => this.tagged('fsync', () => this.host.files.fsync(this.ino, 'fsync')));
  }

  /** fdatasync: the same here (the commit is what makes a new size and new blocks durable). */
  async datasync(): Promise<void> {
    this.check('fdatasync');
    if (this.host.writer === undefined) return;
    await this.host.unlocked(() => this.tagged('fdatasync', () => this.host.files.fsync(this.ino, 'fdatasync')));
  }

  async stat(options?: { bigint?: false }): Promise<Stats>;
  async stat(options: { bigint: true }): Promise<BigIntStats>;
  async stat(options?: { bigint?: boolean }): Promise<Stats | BigIntStats> {
    this.check('fstat');
    const inode = await this.inode();
    return options?.bigint === true ? bigintStatsOf(inode, this.host.statContext) : statsOf(inode, this.host.statContext);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.host.release(this.fd, this.ino);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/**
 * node's FileHandle.write argument forms, checked: the bytes to write and the position
 * (null: the handle's own; -1 counts as null). Also used by the channel's client handle.
 */
export function normaliseWriteArgs(
  data: Uint8Array | string, offsetOrPosition: number | null | undefined, lengthOrEncoding: number | BufferEncoding | null | undefined,
  position: number | null | undefined, path?: string,
): { bytes: Uint8Array; at: number | null } {
  let bytes: Uint8Array;
  let at: number | null | undefined;
  if (typeof data === 'string') {
    bytes = Buffer.from(data, (typeof lengthOrEncoding === 'string' ? lengthOrEncoding : 'utf8'));
    at = offsetOrPosition;
  } else {
    const offset = offsetOrPosition ?? 0;
    const length = typeof lengthOrEncoding === 'number' ? lengthOrEncoding : data.length - offset;
    if (!Number.isInteger(offset) || offset < 0 || offset > data.length) throw new FsError('EINVAL', { syscall: 'write', path, detail: `offset ${offset}` });
    if (!Number.isInteger(length) || length < 0 || offset + length > data.length) throw new FsError('EINVAL', { syscall: 'write', path, detail: `length ${length}` });
    bytes = data.subarray(offset, offset + length);
    at = position;
  }
  if (at !== undefined && at !== null && (!Number.isSafeInteger(at) || at < -1)) throw new FsError('EINVAL', { syscall: 'write', path, detail: `position ${at}` });
  return { bytes, at: at !== undefined && at !== null && at >= 0 ? at : null };
}

export interface ReadArgs<T extends Uint8Array> { buffer: T; offset: number; length: number; position: number | null }

/** node's FileHandle.read argument forms, checked (also used by the channel's client handle). */
export function normaliseReadArgs<T extends Uint8Array>(
  bufferOrOptions: T | ReadOptions<T> | undefined,
  offsetOrOptions: number | Omit<ReadOptions<T>, 'buffer'> | undefined,
  length: number | undefined,
  position: number | bigint | null | undefined,
): ReadArgs<T> {
  let opts: ReadOptions<T>;
  if (bufferOrOptions instanceof Uint8Array) {
    opts = typeof offsetOrOptions === 'object' && offsetOrOptions !== null
      ? { ...offsetOrOptions, buffer: bufferOrOptions }
      : { buffer: bufferOrOptions, offset: offsetOrOptions, length, position };
  } else {
    opts = bufferOrOptions ?? {};
  }
  const buffer = opts.buffer ?? (Buffer.alloc(DEFAULT_READ_BYTES) as unknown as T);
  const offset = opts.offset ?? 0;
  const len = opts.length ?? buffer.length - offset;
  if (!Number.isInteger(offset) || offset < 0 || offset > buffer.length) throw new FsError('EINVAL', { syscall: 'read', detail: `offset ${offset} outside the ${buffer.length}-byte buffer` });
  if (!Number.isInteger(len) || len < 0 || offset + len > buffer.length) throw new FsError('EINVAL', { syscall: 'read', detail: `length ${len} does not fit the buffer after offset ${offset}` });
  const pos = opts.position;
  let at: number | null = null;
  if (pos !== undefined && pos !== null && !(typeof pos === 'number' && pos === -1) && !(typeof pos === 'bigint' && pos === -1n)) {
    at = Number(pos);
    if (!Number.isSafeInteger(at) || at < 0) throw new FsError('EINVAL', { syscall: 'read', detail: `position ${String(pos)} invalid` });
  }
  return { buffer, offset, length: len, position: at };
}
