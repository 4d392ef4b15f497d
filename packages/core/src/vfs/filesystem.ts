/**
 * The public API: `Ext4.mount(device, { readOnly: true })` gives an `Ext4Filesystem`
 * whose methods mirror node:fs/promises (open, readFile, readdir, stat, lstat,
 * readlink, realpath, access) over an ext4 image. `fs.promises` is the object itself,
 * so code written against `fs.promises` runs unchanged.
 *
 * Paths are resolved from the filesystem root ("a/b" = "/a/b"). Names are UTF-8; pass
 * `{ encoding: 'buffer' }` to readdir/readlink/realpath for the raw bytes, and Buffers
 * as paths to name files whose names are not valid UTF-8. Errors are FsErrors carrying
 * the syscall and path, like node's.
 *
 * The device stays the caller's: unmount() does not close it.
 */
import { Buffer } from 'node:buffer';
import type { BlockDevice } from '../device/block-device.js';
import { featureNames } from '../format/superblock.js';
import { FsError } from './errors.js';
import { openSuper, type Ext4Super } from '../ext4/super.js';
import { processWasmCore } from '../wasm/process-core.js';
import { isDir, readInode, type Ext4Inode } from '../ext4/inode.js';
import { iterateDir } from '../ext4/dir.js';
import { readSymlink, resolvePath } from '../ext4/namei.js';
import { isSymlink } from '../ext4/inode.js';
import { Dirent, modeTypeOfDirFileType } from './dirent.js';
import { FileHandle, decodeBytes, readWholeInode, type ReadFileOptions } from './file-handle.js';
import { bigintStatsOf, statsOf, type BigIntStats, type StatContext, type Stats } from './stats.js';

export interface MountOptions {
  /** Must be true (or absent): ext4ts mounts read-only until the write path lands. */
  readOnly?: boolean;
  /** Mount although the journal needs recovery (its transactions are not applied). */
  ignoreJournal?: boolean;
  /** Bound on cached metadata blocks (default 4096). */
  cacheBlocksMax?: number;
}

export type PathLike = string | Uint8Array;
type EncodingOption = BufferEncoding | 'buffer' | { encoding?: BufferEncoding | 'buffer' | null } | null | undefined;

/** What mount found, for callers and tools. */
export interface MountInfo {
  blockSizeBytes: number;
  blocksCount: number;
  inodesCount: number;
  groupCount: number;
  freeBlocksCount: number;
  freeInodesCount: number;
  uuid: string;
  volumeName: string;
  features: string[];
  /** Why the image cannot be mounted read-write (empty if it could). */
  readOnlyReasons: string[];
  /** Head of the orphan list: nonzero means inodes await deletion or truncation. */
  lastOrphan: number;
  /** The journal holds unreplayed transactions (only possible with ignoreJournal). */
  journalNeedsRecovery: boolean;
}

function encodingOf(options: EncodingOption): BufferEncoding | 'buffer' {
  if (typeof options === 'string') return options;
  return options?.encoding ?? 'utf8';
}

function pathText(path: PathLike): string {
  return typeof path === 'string' ? path : Buffer.from(path).toString('utf8');
}

function uuidText(bytes: Uint8Array): string {
  const hex = Buffer.from(bytes).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function nameOf(bytes: Uint8Array, encoding: BufferEncoding | 'buffer'): string | Buffer {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  return encoding === 'buffer' ? Buffer.from(buf) : buf.toString(encoding);
}

export class Ext4 {
  /** Open an ext4 filesystem on a device, read-only. */
  static async mount(device: BlockDevice, options: MountOptions = {}): Promise<Ext4Filesystem> {
    if (options.readOnly === false) {
      throw new FsError('EROFS', { syscall: 'mount', detail: 'ext4ts mounts read-only for now (pass readOnly: true)' });
    }
    processWasmCore(); // metadata crc32c through the WASM kernel when it is built
    const ext4 = await openSuper(device, { readOnly: true, ignoreJournal: options.ignoreJournal, cacheBlocksMax: options.cacheBlocksMax });
    return new Ext4Filesystem(ext4);
  }
}

export class Ext4Filesystem {
  /** node:fs style: `fs.promises.readFile(...)` works too. */
  readonly promises: Ext4Filesystem = this;
  readonly info: MountInfo;
  private readonly statContext: StatContext;
  private readonly handles = new Map<number, FileHandle>();
  private nextFd = 3;
  private mounted = true;

  constructor(private readonly ext4: Ext4Super) {
    const { sb } = ext4;
    this.statContext = { dev: new DataView(sb.uuid.buffer, sb.uuid.byteOffset).getUint32(0, true), blockSizeBytes: ext4.blockSizeBytes };
    this.info = {
      blockSizeBytes: ext4.blockSizeBytes,
      blocksCount: ext4.blocksCount,
      inodesCount: ext4.inodesCount,
      groupCount: ext4.groupCount,
      freeBlocksCount: sb.freeBlocksCount,
      freeInodesCount: sb.freeInodesCount,
      uuid: uuidText(sb.uuid),
      volumeName: Buffer.from(sb.volumeName).toString('utf8').replace(/\0.*$/s, ''),
      features: featureNames(sb),
      readOnlyReasons: ext4.verdict.reasons,
      lastOrphan: ext4.lastOrphan,
      journalNeedsRecovery: ext4.journalNeedsRecovery,
    };
  }

  /** The open filesystem's internals, for engine code and tests (not a stable API). */
  get internals(): Ext4Super {
    return this.ext4;
  }

  /** Run `body`, tagging FsErrors with syscall and path; refuse after unmount. */
  private async call<T>(syscall: string, path: PathLike | undefined, body: () => Promise<T>): Promise<T> {
    const shown = path === undefined ? undefined : pathText(path);
    if (!this.mounted) throw new FsError('EIO', { syscall, path: shown, detail: 'filesystem is unmounted' });
    try {
      return await body();
    } catch (error) {
      if (FsError.is(error)) throw error.withContext({ syscall, path: shown });
      throw error;
    }
  }

  private async resolve(path: PathLike, syscall: string, followLast: boolean): Promise<Ext4Inode> {
    return (await resolvePath(this.ext4, path, { syscall, followLast })).inode;
  }

  /** Open a file for reading. Flags other than 'r' are refused with EROFS. */
  async open(path: PathLike, flags: string | number = 'r'): Promise<FileHandle> {
    return this.call('open', path, async () => {
      if (flags !== 'r' && flags !== 'rs' && flags !== 'sr' && flags !== 0) {
        throw new FsError('EROFS', { syscall: 'open', path: pathText(path), detail: `flags ${String(flags)} need a writable mount` });
      }
      const inode = await this.resolve(path, 'open', true);
      const fd = this.nextFd++;
      const handle = new FileHandle(fd, this.ext4, inode, this.statContext, pathText(path), (closed) => this.handles.delete(closed));
      this.handles.set(fd, handle);
      return handle;
    });
  }

  readFile(path: PathLike | FileHandle, options?: null | { encoding?: null; flag?: string }): Promise<Buffer>;
  readFile(path: PathLike | FileHandle, options: BufferEncoding | { encoding: BufferEncoding; flag?: string }): Promise<string>;
  readFile(path: PathLike | FileHandle, options?: ReadFileOptions): Promise<Buffer | string>;
  async readFile(path: PathLike | FileHandle, options?: ReadFileOptions): Promise<Buffer | string> {
    if (path instanceof FileHandle) return path.readFile(options);
    return this.call('open', path, async () => {
      const inode = await this.resolve(path, 'open', true);
      return decodeBytes(await readWholeInode(this.ext4, inode, 'read', pathText(path)), options);
    });
  }

  readdir(path: PathLike, options: { withFileTypes: true; encoding: 'buffer' }): Promise<Dirent<Buffer>[]>;
  readdir(path: PathLike, options: { withFileTypes: true; encoding?: BufferEncoding | null }): Promise<Dirent[]>;
  readdir(path: PathLike, options: 'buffer' | { encoding: 'buffer'; withFileTypes?: false }): Promise<Buffer[]>;
  readdir(path: PathLike, options?: BufferEncoding | { encoding?: BufferEncoding | null; withFileTypes?: false } | null): Promise<string[]>;
  async readdir(
    path: PathLike,
    options?: EncodingOption | { encoding?: BufferEncoding | 'buffer' | null; withFileTypes?: boolean },
  ): Promise<(string | Buffer | Dirent<string | Buffer>)[]> {
    return this.call('scandir', path, async () => {
      const dir = await this.resolve(path, 'scandir', true);
      if (!isDir(dir)) throw new FsError('ENOTDIR', { syscall: 'scandir', path: pathText(path) });
      const encoding = encodingOf(options as EncodingOption);
      const withTypes = typeof options === 'object' && options !== null && 'withFileTypes' in options && options.withFileTypes === true;
      const out: (string | Buffer | Dirent<string | Buffer>)[] = [];
      for await (const e of iterateDir(this.ext4, dir)) {
        if (isDotOrDotDot(e.name)) continue;
        const name = nameOf(e.name, encoding);
        if (!withTypes) { out.push(name); continue; }
        let modeType = this.ext4.fileType ? modeTypeOfDirFileType(e.fileType) : 0;
        if (modeType === 0) modeType = (await readInode(this.ext4, e.ino)).mode;
        out.push(new Dirent(name, pathText(path), e.ino, modeType));
      }
      return out;
    });
  }

  stat(path: PathLike, options?: { bigint?: false }): Promise<Stats>;
  stat(path: PathLike, options: { bigint: true }): Promise<BigIntStats>;
  async stat(path: PathLike, options?: { bigint?: boolean }): Promise<Stats | BigIntStats> {
    return this.call('stat', path, async () => this.statsFor(await this.resolve(path, 'stat', true), options));
  }

  lstat(path: PathLike, options?: { bigint?: false }): Promise<Stats>;
  lstat(path: PathLike, options: { bigint: true }): Promise<BigIntStats>;
  async lstat(path: PathLike, options?: { bigint?: boolean }): Promise<Stats | BigIntStats> {
    return this.call('lstat', path, async () => this.statsFor(await this.resolve(path, 'lstat', false), options));
  }

  private statsFor(inode: Ext4Inode, options?: { bigint?: boolean }): Stats | BigIntStats {
    return options?.bigint === true ? bigintStatsOf(inode, this.statContext) : statsOf(inode, this.statContext);
  }

  readlink(path: PathLike, options: 'buffer' | { encoding: 'buffer' }): Promise<Buffer>;
  readlink(path: PathLike, options?: BufferEncoding | { encoding?: BufferEncoding | null } | null): Promise<string>;
  async readlink(path: PathLike, options?: EncodingOption): Promise<string | Buffer> {
    return this.call('readlink', path, async () => {
      const inode = await this.resolve(path, 'readlink', false);
      if (!isSymlink(inode)) throw new FsError('EINVAL', { syscall: 'readlink', path: pathText(path), detail: 'not a symbolic link' });
      return nameOf(await readSymlink(this.ext4, inode), encodingOf(options));
    });
  }

  realpath(path: PathLike, options: 'buffer' | { encoding: 'buffer' }): Promise<Buffer>;
  realpath(path: PathLike, options?: BufferEncoding | { encoding?: BufferEncoding | null } | null): Promise<string>;
  async realpath(path: PathLike, options?: EncodingOption): Promise<string | Buffer> {
    return this.call('realpath', path, async () => {
      const { canonical } = await resolvePath(this.ext4, path, { syscall: 'realpath', followLast: true });
      const parts = canonical.map((c) => Buffer.from(c));
      const joined = Buffer.concat([Buffer.from('/'), ...parts.flatMap((p, i) => (i === 0 ? [p] : [Buffer.from('/'), p]))]);
      return nameOf(joined, encodingOf(options));
    });
  }

  /** Like fs.access: resolves if the path exists; W_OK is refused with EROFS (read-only mount). */
  async access(path: PathLike, mode = 0): Promise<void> {
    return this.call('access', path, async () => {
      await this.resolve(path, 'access', true);
      if ((mode & 2) !== 0) throw new FsError('EROFS', { syscall: 'access', path: pathText(path) });
    });
  }

  /** Whether the path resolves (following symlinks); other errors (corruption, EIO) still throw. */
  async exists(path: PathLike): Promise<boolean> {
    try {
      await this.access(path);
      return true;
    } catch (error) {
      if (FsError.is(error, 'ENOENT') || FsError.is(error, 'ENOTDIR')) return false;
      throw error;
    }
  }

  /** Close every open handle and detach; the device is left open for its owner. */
  async unmount(): Promise<void> {
    if (!this.mounted) return;
    for (const handle of [...this.handles.values()]) await handle.close();
    this.mounted = false;
    this.ext4.cache.clear();
    this.ext4.inodeCache.clear();
  }
}

function isDotOrDotDot(name: Uint8Array): boolean {
  return (name.length === 1 && name[0] === 0x2e) || (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e);
}
