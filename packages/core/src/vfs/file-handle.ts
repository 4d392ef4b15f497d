/**
 * FileHandle: what `fs.open()` returns, shaped like node:fs/promises' FileHandle for
 * reading: read (positional or at the handle's position), readFile, stat, close.
 * Every call after close() fails with EBADF.
 */
import { Buffer } from 'node:buffer';
import { FsError } from './errors.js';
import { isDir, type Ext4Inode } from '../ext4/inode.js';
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

export class FileHandle {
  private closed = false;
  private positionBytes = 0;

  constructor(
    readonly fd: number,
    private readonly ext4: Ext4Super,
    private readonly inode: Ext4Inode,
    private readonly statContext: StatContext,
    private readonly path: string,
    private readonly onClose: (fd: number) => void,
  ) {}

  private check(syscall: string): void {
    if (this.closed) throw new FsError('EBADF', { syscall, path: this.path });
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
    const args = normaliseReadArgs(bufferOrOptions, offsetOrOptions, length, position);
    if (isDir(this.inode)) throw new FsError('EISDIR', { syscall: 'read', path: this.path });
    const target = args.buffer.subarray(args.offset, args.offset + args.length);
    const at = args.position ?? this.positionBytes;
    const bytesRead = await readInodeData(this.ext4, this.inode, target, at);
    if (args.position === null) this.positionBytes += bytesRead;
    return { bytesRead, buffer: args.buffer };
  }

  /** The rest of the file from the handle's position (node reads from the current position). */
  async readFile(options?: ReadFileOptions): Promise<Buffer | string> {
    this.check('read');
    const whole = await readWholeInode(this.ext4, this.inode, 'read', this.path);
    const rest = whole.subarray(Math.min(this.positionBytes, whole.length));
    this.positionBytes += rest.length;
    return decodeBytes(rest, options);
  }

  async stat(options?: { bigint?: false }): Promise<Stats>;
  async stat(options: { bigint: true }): Promise<BigIntStats>;
  async stat(options?: { bigint?: boolean }): Promise<Stats | BigIntStats> {
    this.check('fstat');
    return options?.bigint === true ? bigintStatsOf(this.inode, this.statContext) : statsOf(this.inode, this.statContext);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.onClose(this.fd);
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
