/**
 * FileHandle: what `fs.open()` returns, shaped like node:fs/promises' FileHandle:
 * read / write (positional or at the handle's position; O_APPEND writes at EOF),
 * readFile, writeFile, appendFile, truncate, chmod, chown, utimes, sync, stat, close.
 * The handle names an inode, not a snapshot: every call sees the file as it is now, and
 * an open handle keeps an unlinked inode alive until it is closed. Every call after
 * close() fails with EBADF.
 */
import { Buffer } from 'node:buffer';
import { FsError } from './errors.js';
import { isDir, readInode, type Ext4Inode } from '../ext4/inode.js';
import { readInodeData } from './file-read.js';
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

/** Read the whole of an inode's data (EISDIR for directories, EFBIG past 2 GiB). */
export async function readWholeInode(ext4: Ext4Super, inode: Ext4Inode, syscall: string, path?: string): Promise<Buffer> {
  if (isDir(inode)) throw new FsError('EISDIR', { syscall, path });
  if (inode.size > READ_FILE_BYTES_MAX) throw new FsError('EFBIG', { syscall, path, detail: `file of ${inode.size} bytes is too large for one buffer` });
  const out = Buffer.allocUnsafe(inode.size);
  const bytesRead = await readInodeData(ext4, inode, out, 0);
  return bytesRead === out.length ? out : out.subarray(0, bytesRead);
}

export function decodeBytes(bytes: Buffer, options: ReadFileOptions): Buffer | string {
  const encoding = encodingOf(options);
  return encoding === null ? bytes : bytes.toString(encoding);
}

/** What a FileHandle needs from its filesystem (filesystem.ts provides it). */
export interface FileHandleHost {
  readonly ext4: Ext4Super;
  readonly statContext: StatContext;
  /** Run a change alone (the filesystem's write lock). */
  exclusive<T>(body: () => Promise<T>): Promise<T>;
  /** Write path operations (only on read-write mounts). */
  readonly writer?: FileWriter;
  /** The handle is closed: drop it (and free its inode if it was its last open and last name). */
  release(fd: number, ino: number): Promise<void>;
}

/** The data operations a writable handle uses (bound to one mount by the filesystem). */
export interface FileWriter {
  write(ino: number, data: Uint8Array, positionBytes: number): Promise<void>;
  truncate(ino: number, sizeBytes: number): Promise<void>;
  setAttr(ino: number, attr: { mode?: number; uid?: number; gid?: number; atime?: TimeLike; mtime?: TimeLike }): Promise<void>;
  sync(): Promise<void>;
}

/** Times as node accepts them: seconds (number or decimal string, exact to the ns), or a Date. */
export type TimeLike = number | string | Date;

export interface OpenMode { read: boolean; write: boolean; append: boolean }

export interface WriteResult<T> { bytesWritten: number; buffer: T }

export class FileHandle {
  private closed = false;
  private positionBytes = 0;

  constructor(
    readonly fd: number,
    private readonly host: FileHandleHost,
    private readonly ino: number,
    private readonly path: string,
    private readonly openMode: OpenMode = { read: true, write: false, append: false },
  ) {}

  private check(syscall: string): void {
    if (this.closed) throw new FsError('EBADF', { syscall, path: this.path });
  }

  private async inode(): Promise<Ext4Inode> {
    return readInode(this.host.ext4, this.ino);
  }

  private writer(syscall: string): FileWriter {
    this.check(syscall);
    if (!this.openMode.write || this.host.writer === undefined) throw new FsError('EBADF', { syscall, path: this.path, detail: 'not open for writing' });
    return this.host.writer;
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
    const inode = await this.inode();
    if (isDir(inode)) throw new FsError('EISDIR', { syscall: 'read', path: this.path });
    const target = args.buffer.subarray(args.offset, args.offset + args.length);
    const at = args.position ?? this.positionBytes;
    const bytesRead = await readInodeData(this.host.ext4, inode, target, at);
    if (args.position === null) this.positionBytes += bytesRead;
    return { bytesRead, buffer: args.buffer };
  }

  /** The rest of the file from the handle's position (node reads from the current position). */
  async readFile(options?: ReadFileOptions): Promise<Buffer | string> {
    this.check('read');
    const whole = await readWholeInode(this.host.ext4, await this.inode(), 'read', this.path);
    const rest = whole.subarray(Math.min(this.positionBytes, whole.length));
    this.positionBytes += rest.length;
    return decodeBytes(rest, options);
  }

  write<T extends Uint8Array>(buffer: T, offset?: number | null, length?: number | null, position?: number | null): Promise<WriteResult<T>>;
  write(data: string, position?: number | null, encoding?: BufferEncoding | null): Promise<WriteResult<string>>;
  async write<T extends Uint8Array>(
    data: T | string, offsetOrPosition?: number | null, lengthOrEncoding?: number | BufferEncoding | null, position?: number | null,
  ): Promise<WriteResult<T | string>> {
    const writer = this.writer('write');
    let bytes: Uint8Array;
    let at: number | null | undefined;
    if (typeof data === 'string') {
      bytes = Buffer.from(data, (typeof lengthOrEncoding === 'string' ? lengthOrEncoding : 'utf8'));
      at = offsetOrPosition;
    } else {
      const offset = offsetOrPosition ?? 0;
      const length = typeof lengthOrEncoding === 'number' ? lengthOrEncoding : data.length - offset;
      if (!Number.isInteger(offset) || offset < 0 || offset > data.length) throw new FsError('EINVAL', { syscall: 'write', path: this.path, detail: `offset ${offset}` });
      if (!Number.isInteger(length) || length < 0 || offset + length > data.length) throw new FsError('EINVAL', { syscall: 'write', path: this.path, detail: `length ${length}` });
      bytes = data.subarray(offset, offset + length);
      at = position;
    }
    if (at !== undefined && at !== null && (!Number.isSafeInteger(at) || at < -1)) throw new FsError('EINVAL', { syscall: 'write', path: this.path });
    const positional = at !== undefined && at !== null && at >= 0;
    await this.host.exclusive(async () => {
      // O_APPEND writes at EOF whatever the position (Linux ignores pwrite's offset too).
      const start = this.openMode.append ? (await this.inode()).size : positional ? (at as number) : this.positionBytes;
      await writer.write(this.ino, bytes, start);
      if (!positional || this.openMode.append) this.positionBytes = start + bytes.length;
    });
    return { bytesWritten: bytes.length, buffer: data };
  }

  /** Replace the contents from the handle's position (node: writeFile on a handle writes at its position). */
  async writeFile(data: Uint8Array | string, options?: BufferEncoding | { encoding?: BufferEncoding | null } | null): Promise<void> {
    const encoding = typeof options === 'string' ? options : options?.encoding ?? 'utf8';
    const bytes = typeof data === 'string' ? Buffer.from(data, encoding) : data;
    await this.write(bytes, 0, bytes.length, null);
  }

  async appendFile(data: Uint8Array | string, options?: BufferEncoding | { encoding?: BufferEncoding | null } | null): Promise<void> {
    const writer = this.writer('write');
    const encoding = typeof options === 'string' ? options : options?.encoding ?? 'utf8';
    const bytes = typeof data === 'string' ? Buffer.from(data, encoding) : data;
    await this.host.exclusive(async () => writer.write(this.ino, bytes, (await this.inode()).size));
  }

  async truncate(len = 0): Promise<void> {
    const writer = this.writer('ftruncate');
    if (!Number.isSafeInteger(len) || len < 0) throw new FsError('EINVAL', { syscall: 'ftruncate', path: this.path });
    await this.host.exclusive(() => writer.truncate(this.ino, len));
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

  async sync(): Promise<void> {
    this.check('fsync');
    await this.host.writer?.sync();
  }

  async datasync(): Promise<void> {
    this.check('fdatasync');
    await this.host.writer?.sync();
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

interface ReadArgs<T extends Uint8Array> { buffer: T; offset: number; length: number; position: number | null }

function normaliseReadArgs<T extends Uint8Array>(
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
