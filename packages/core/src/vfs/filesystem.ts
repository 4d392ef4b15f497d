/**
 * The public API: `Ext4.mount(device, { readOnly })` gives an `Ext4Filesystem` whose
 * methods mirror node:fs/promises over an ext4 image: open, readFile, readdir, stat,
 * lstat, readlink, realpath, access, and on a read-write mount (`readOnly: false`)
 * writeFile, appendFile, mkdir({ recursive }), rm({ recursive, force }), rmdir, unlink,
 * rename, link, symlink, chmod, chown, lchown, utimes, lutimes, truncate, sync.
 * `fs.promises` is the object itself, so code written against `fs.promises` runs
 * unchanged.
 *
 * Changes run one at a time (a write lock); each is one or a few journal handles
 * (ext4/namei-write.ts). An unlinked file stays readable through its open handles and is
 * freed at the last close (it waits on the orphan list meanwhile).
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
import type { Ext4Super } from '../ext4/super.js';
import { Ext4Mount } from '../ext4/mount.js';
import {
  createNode, freeInode, linkNode, renameNode, rmdirNode, setAttr, unlinkNode, type Dropped, type NodeKind,
} from '../ext4/namei-write.js';
import { Ext4Files } from '../ext4/file.js';
import { createBufferHeadPath } from '../ext4/bh_path.js';
import type { BufferedPathName } from '../ext4/data-path.js';
import { isRegular } from '../ext4/inode.js';
import { ROOT_INO, type Timestamp } from '../format/inode.js';
import { processWasmCore } from '../wasm/process-core.js';
import { isDir, readInode, type Ext4Inode } from '../ext4/inode.js';
import { iterateDir } from '../ext4/dir.js';
import { readSymlink, resolvePath } from '../ext4/namei.js';
import { isSymlink } from '../ext4/inode.js';
import { Dirent, modeTypeOfDirFileType } from './dirent.js';
import {
  FileHandle, decodeBytes, liveInode, readWholeInode, type FileHandleHost, type FileWriter, type OpenMode, type ReadFileOptions, type TimeLike,
} from './file-handle.js';
import { bigintStatsOf, statsOf, type BigIntStats, type StatContext, type Stats } from './stats.js';

export interface MountOptions {
  /** Default true. false: replay the journal, finish the orphan list, allow changes. */
  readOnly?: boolean;
  /** Journal commit interval on read-write mounts (default 5000 ms; 0 = only on sync/unmount). */
  commitIntervalMs?: number;
  /** Owner of new inodes (default the process's uid/gid, 0 where there is none). */
  uid?: number;
  gid?: number;
  /** Bits cleared from the mode of new files and directories (default 0o022). */
  umask?: number;
  /** Mount although the journal needs recovery (its transactions are not applied). */
  ignoreJournal?: boolean;
  /** Bound on cached metadata blocks (default 4096). */
  cacheBlocksMax?: number;
  /**
   * The buffered I/O path for regular files: 'iomap' (default; large folios, delalloc
   * for whole writes, unwritten-then-convert writeback) or 'buffer_head' (the legacy
   * per-block path, order-0 folios, data=ordered).
   */
  buffered?: BufferedPathName;
  /** iomap path: folios larger than one page (default true); false separates their effect. */
  largeFolios?: boolean;
  /** Page cache size for file data, bytes (default 64 MiB; a multiple of 4 KiB, 1 MiB – 3 GiB). */
  cacheBytes?: number;
  /** Writeback worker threads (default 1; 0 = write back on the calling thread). */
  writebackThreads?: number;
  /**
   * When the writeback workers start: 'demand' (default: when a write leaves a megabyte
   * dirty; batches go inline during their ~30-50 ms boot) or 'mount' (mount resolves once
   * they run: for a service that wants no boot in its first large write, and for
   * benchmarks, where the kernel's flusher threads also exist before the job).
   */
  writebackStart?: 'demand' | 'mount';
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
  /** Open an ext4 filesystem on a device (read-only unless `readOnly: false`). */
  static async mount(device: BlockDevice, options: MountOptions = {}): Promise<Ext4Filesystem> {
    processWasmCore(); // metadata crc32c through the WASM kernel when it is built
    if (options.writebackStart !== undefined && options.writebackStart !== 'demand' && options.writebackStart !== 'mount') {
      throw new FsError('EINVAL', { syscall: 'mount', detail: `writebackStart ${String(options.writebackStart)}: 'demand' or 'mount'` });
    }
    const mount = await Ext4Mount.open(device, {
      readOnly: options.readOnly !== false, ignoreJournal: options.ignoreJournal, cacheBlocksMax: options.cacheBlocksMax,
      commitIntervalMs: options.commitIntervalMs,
    });
    let files: Ext4Files;
    try {
      files = Ext4Files.open(mount, {
        buffered: options.buffered, largeFolios: options.largeFolios, cacheBytes: options.cacheBytes, writebackThreads: options.writebackThreads,
        bufferHeadPath: (m, cache, submit) => createBufferHeadPath(m, { cache, submit }),
      });
    } catch (error) {
      await mount.close();
      throw error;
    }
    if (options.writebackStart === 'mount' && !mount.readOnly) await files.startWriteback();
    return new Ext4Filesystem(mount, options, files);
  }
}

/** What the client channel (channel/server.ts) needs to know of a handle: set by open(). */
export interface OpenFileInfo {
  readonly ino: number;
  readonly mode: OpenMode;
  readonly path: string;
}

const openFiles = new WeakMap<FileHandle, OpenFileInfo>();

/** The inode, open mode and path behind a handle an Ext4Filesystem opened (engine code; not a stable API). */
export function openFileOf(handle: FileHandle): OpenFileInfo | undefined {
  return openFiles.get(handle);
}

export class Ext4Filesystem {
  /** node:fs style: `fs.promises.readFile(...)` works too. */
  readonly promises: Ext4Filesystem = this;
  readonly info: MountInfo;
  private readonly statContext: StatContext;
  private readonly handles = new Map<number, FileHandle>();
  /** Open handles per inode: an unlinked inode is freed when its count drops to 0. */
  private readonly openCounts = new Map<number, number>();
  private nextFd = 3;
  private mounted = true;
  private lock: Promise<unknown> = Promise.resolve();
  private readonly owner: { uid: number; gid: number };
  private readonly umask: number;
  private readonly host: FileHandleHost;

  constructor(readonly mount: Ext4Mount, options: MountOptions = {}, readonly files: Ext4Files = Ext4Files.open(mount, options)) {
    const ext4 = mount.ext4;
    const { sb } = ext4;
    this.owner = { uid: options.uid ?? process.getuid?.() ?? 0, gid: options.gid ?? process.getgid?.() ?? 0 };
    this.umask = options.umask ?? 0o022;
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
    const writer: FileWriter | undefined = mount.readOnly ? undefined : {
      setAttr: (ino, attr) => setAttr(mount, ino, { ...attr, atime: timeOf(attr.atime), mtime: timeOf(attr.mtime) }),
    };
    this.host = {
      ext4, statContext: this.statContext, writer, files: this.files,
      exclusive: (body) => this.exclusive(body),
      unlocked: (body) => this.unlocked(body),
      release: (fd, ino) => this.release(fd, ino),
    };
  }

  private get ext4(): Ext4Super {
    return this.mount.ext4;
  }

  /** Whether the mount takes changes. */
  get readOnly(): boolean {
    return this.mount.readOnly;
  }

  /** Run a change alone: changes are serialised (reads are not). */
  private exclusive<T>(body: () => Promise<T>): Promise<T> {
    const run = this.lock.then(body, body);
    this.lock = run.catch(() => undefined);
    return run;
  }

  /** Data syncs running outside the change lock; unmount waits for them. */
  private readonly unlockedRuns = new Set<Promise<void>>();

  private unlocked<T>(body: () => Promise<T>): Promise<T> {
    const run = body();
    const settled = run.then(() => undefined, () => undefined);
    this.unlockedRuns.add(settled);
    void settled.then(() => this.unlockedRuns.delete(settled));
    return run;
  }

  private async release(fd: number, ino: number): Promise<void> {
    this.handles.delete(fd);
    const count = (this.openCounts.get(ino) ?? 1) - 1;
    if (count > 0) { this.openCounts.set(ino, count); return; }
    this.openCounts.delete(ino);
    if (this.mount.readOnly) return;
    await this.exclusive(async () => {
      if ((await readInode(this.ext4, ino)).linksCount === 0 && !this.openCounts.has(ino)) await this.free(ino);
    });
  }

  /** Free an inode that lost its last name, unless a handle still holds it. */
  private async reap(dropped: Dropped | undefined): Promise<void> {
    if (dropped !== undefined && !this.openCounts.has(dropped.ino)) await this.free(dropped.ino);
  }

  /** Delete an inode: its cached data and reservations go first, then its blocks and itself. */
  private async free(ino: number): Promise<void> {
    await this.files.evict(ino);
    await freeInode(this.mount, ino);
  }

  private requireWritable(syscall: string, path: PathLike): void {
    if (this.mount.readOnly) throw new FsError('EROFS', { syscall, path: pathText(path) });
  }

  /** Parent directory inode and last name of a path (trailing slashes dropped). */
  private async parentOf(path: PathLike, syscall: string): Promise<{ dir: Ext4Inode; name: Uint8Array }> {
    const bytes = typeof path === 'string' ? Buffer.from(path, 'utf8') : Buffer.from(path);
    let end = bytes.length;
    while (end > 1 && bytes[end - 1] === 0x2f) end--;
    const trimmed = bytes.subarray(0, end);
    const slash = trimmed.lastIndexOf(0x2f);
    const name = trimmed.subarray(slash + 1);
    if (bytes.length === 0) throw new FsError('ENOENT', { syscall, path: pathText(path) });
    if (name.length === 0) throw new FsError(syscall === 'mkdir' ? 'EEXIST' : 'EBUSY', { syscall, path: pathText(path) });
    const parentPath = slash < 0 ? Buffer.from('/') : slash === 0 ? Buffer.from('/') : trimmed.subarray(0, slash);
    let dir: Ext4Inode;
    try {
      dir = await this.resolve(parentPath, syscall, true);
    } catch (error) {
      // Node names the whole path, not the parent that failed.
      if (FsError.is(error)) throw new FsError(error.code, { syscall, path: pathText(path), detail: error.detail });
      throw error;
    }
    if (!isDir(dir)) throw new FsError('ENOTDIR', { syscall, path: pathText(path) });
    return { dir, name: Uint8Array.from(name) };
  }

  /** A change: writable mount, tagged errors, serialised. */
  private change<T>(syscall: string, path: PathLike, body: () => Promise<T>): Promise<T> {
    return this.call(syscall, path, () => {
      this.requireWritable(syscall, path);
      return this.exclusive(body);
    });
  }

  private modeFor(kind: NodeKind, mode: number | string | undefined): number {
    const fallback = kind === 'dir' ? 0o777 : 0o666;
    const bits = mode === undefined ? fallback : typeof mode === 'string' ? parseInt(mode, 8) : mode;
    if (!Number.isInteger(bits) || bits < 0) throw new FsError('EINVAL', { syscall: 'open', detail: `mode ${String(mode)}` });
    return bits & 0o7777 & ~this.umask;
  }

  private async createAt(path: PathLike, syscall: string, kind: NodeKind, mode: number, target?: Uint8Array): Promise<number> {
    const { dir, name } = await this.parentOf(path, syscall);
    const request = { kind, mode, ...this.owner, target };
    try {
      return await createNode(this.mount, dir.ino, name, request);
    } catch (error) {
      // Blocks freed by uncommitted transactions come back at commit (the kernel's
      // ext4_should_retry_alloc): commit once and retry. createNode undid its handle's work.
      if (!FsError.is(error, 'ENOSPC')) throw error;
      await this.mount.sync();
      return createNode(this.mount, dir.ino, name, request);
    }
  }

  /**
   * Run `body` as a change: alone, after the changes queued before it (the lock every
   * change takes). For engine code that changes file data beside a FileHandle (the
   * client channel, channel/server.ts); not a stable API.
   */
  serialised<T>(body: () => Promise<T>): Promise<T> {
    return this.exclusive(body);
  }

  /**
   * A Buffer inside the engine's shared memory: reads into it and writes from it move
   * data with memory.copy inside wasm memory (about twice TypedArray.set across memories
   * here). Up to 16 MiB per mount in all; give it back with freeBuffer().
   */
  allocBuffer(lengthBytes: number): Buffer {
    return this.files.allocBuffer(lengthBytes);
  }

  freeBuffer(buffer: Uint8Array): void {
    this.files.freeBuffer(buffer);
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

  /**
   * Open a file: flags as node's ('r', 'r+', 'w', 'wx', 'w+', 'a', 'ax', 'a+', or O_* numbers).
   * Flags that write need a read-write mount (EROFS otherwise).
   */
  async open(path: PathLike, flags: string | number = 'r', mode?: number | string): Promise<FileHandle> {
    return this.call('open', path, async () => {
      const f = parseOpenFlags(flags);
      if (f.write || f.create || f.truncate) this.requireWritable('open', path);
      const ino = f.create || f.truncate
        ? await this.exclusive(() => this.openForWrite(path, f, mode))
        : (await this.resolve(path, 'open', true)).ino;
      const inode = await readInode(this.ext4, ino);
      if (isDir(inode) && f.write) throw new FsError('EISDIR', { syscall: 'open', path: pathText(path) });
      const fd = this.nextFd++;
      const openMode: OpenMode = { read: f.read, write: f.write, append: f.append };
      const handle = new FileHandle(fd, this.host, ino, pathText(path), openMode);
      openFiles.set(handle, { ino, mode: openMode, path: pathText(path) });
      this.handles.set(fd, handle);
      this.openCounts.set(ino, (this.openCounts.get(ino) ?? 0) + 1);
      return handle;
    });
  }

  private async openForWrite(path: PathLike, f: OpenFlags, mode: number | string | undefined): Promise<number> {
    let existing: Ext4Inode | undefined;
    try {
      existing = await this.resolve(path, 'open', true);
    } catch (error) {
      if (!FsError.is(error, 'ENOENT') || !f.create) throw error;
    }
    if (existing === undefined) return this.createAt(path, 'open', 'file', this.modeFor('file', mode));
    if (f.exclusive) throw new FsError('EEXIST', { syscall: 'open', path: pathText(path) });
    if (isDir(existing)) throw new FsError('EISDIR', { syscall: 'open', path: pathText(path) });
    if (f.truncate && isRegular(existing) && liveInode(this.files, existing).size > 0) await this.files.truncate(existing.ino, 0);
    return existing.ino;
  }

  readFile(path: PathLike | FileHandle, options?: null | { encoding?: null; flag?: string }): Promise<Buffer>;
  readFile(path: PathLike | FileHandle, options: BufferEncoding | { encoding: BufferEncoding; flag?: string }): Promise<string>;
  readFile(path: PathLike | FileHandle, options?: ReadFileOptions): Promise<Buffer | string>;
  async readFile(path: PathLike | FileHandle, options?: ReadFileOptions): Promise<Buffer | string> {
    if (path instanceof FileHandle) return path.readFile(options);
    return this.call('open', path, async () => {
      const inode = await this.resolve(path, 'open', true);
      return decodeBytes(await readWholeInode(this.files, inode, 'read', pathText(path)), options);
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
    const live = liveInode(this.files, inode);
    return options?.bigint === true ? bigintStatsOf(live, this.statContext) : statsOf(live, this.statContext);
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

  /** Like fs.access: resolves if the path exists; W_OK is refused with EROFS on a read-only mount. */
  async access(path: PathLike, mode = 0): Promise<void> {
    return this.call('access', path, async () => {
      await this.resolve(path, 'access', true);
      if ((mode & 2) !== 0 && this.mount.readOnly) throw new FsError('EROFS', { syscall: 'access', path: pathText(path) });
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

  // -------------------------------------------------------------------------------
  // Changes (read-write mounts)

  /** Replace (or create) a file's contents; a FileHandle is written at its position. */
  async writeFile(path: PathLike | FileHandle, data: Uint8Array | string, options?: WriteFileOptions): Promise<void> {
    const { encoding, mode, flag } = writeOptions(options, 'w');
    const bytes = typeof data === 'string' ? Buffer.from(data, encoding) : data;
    if (path instanceof FileHandle) return path.writeFile(bytes);
    const fh = await this.open(path, flag, mode);
    try {
      await fh.write(bytes, 0, bytes.length, null);
    } finally {
      await fh.close();
    }
  }

  /** Append to (or create) a file. */
  async appendFile(path: PathLike | FileHandle, data: Uint8Array | string, options?: WriteFileOptions): Promise<void> {
    const { encoding, mode, flag } = writeOptions(options, 'a');
    const bytes = typeof data === 'string' ? Buffer.from(data, encoding) : data;
    if (path instanceof FileHandle) return path.appendFile(bytes);
    const fh = await this.open(path, flag, mode);
    try {
      await fh.write(bytes, 0, bytes.length, null);
    } finally {
      await fh.close();
    }
  }

  /** mkdir; with `recursive` the missing parents too, returning the first directory created. */
  async mkdir(path: PathLike, options?: number | string | { recursive?: boolean; mode?: number | string }): Promise<string | undefined> {
    const opts = typeof options === 'object' && options !== null ? options : { mode: options };
    const mode = this.modeFor('dir', opts.mode);
    if (opts.recursive !== true) {
      await this.change('mkdir', path, async () => { await this.createAt(path, 'mkdir', 'dir', mode); });
      return undefined;
    }
    return this.change('mkdir', path, async () => {
      const parts = pathText(path).split('/').filter((p) => p !== '' && p !== '.');
      let first: string | undefined;
      let at = '';
      for (const part of parts) {
        at = `${at}/${part}`;
        let found: Ext4Inode | undefined;
        try {
          found = await this.resolve(at, 'mkdir', true);
        } catch (error) {
          if (!FsError.is(error, 'ENOENT')) throw error;
        }
        if (found !== undefined) {
          if (!isDir(found)) throw new FsError(at === `/${parts.join('/')}` ? 'EEXIST' : 'ENOTDIR', { syscall: 'mkdir', path: pathText(path) });
          continue;
        }
        await this.createAt(at, 'mkdir', 'dir', mode);
        first ??= at;
      }
      return first;
    });
  }

  async rmdir(path: PathLike): Promise<void> {
    return this.change('rmdir', path, async () => {
      const { dir, name } = await this.parentOf(path, 'rmdir');
      await this.reap(await rmdirNode(this.mount, dir.ino, name));
    });
  }

  async unlink(path: PathLike): Promise<void> {
    return this.change('unlink', path, async () => {
      const { dir, name } = await this.parentOf(path, 'unlink');
      await this.reap(await unlinkNode(this.mount, dir.ino, name));
    });
  }

  /** rm: files, symlinks, and with `recursive` whole trees; `force` ignores a missing path. */
  async rm(path: PathLike, options: { recursive?: boolean; force?: boolean } = {}): Promise<void> {
    return this.change('rm', path, async () => {
      let st: Ext4Inode;
      try {
        st = await this.resolve(path, 'rm', false);
      } catch (error) {
        if (options.force === true && FsError.is(error, 'ENOENT')) return;
        throw error;
      }
      if (!isDir(st)) {
        const { dir, name } = await this.parentOf(path, 'rm');
        await this.reap(await unlinkNode(this.mount, dir.ino, name));
        return;
      }
      if (options.recursive !== true) throw new FsError('EISDIR', { syscall: 'rm', path: pathText(path), detail: 'use recursive to remove a directory' });
      await this.removeTree(Buffer.from(typeof path === 'string' ? Buffer.from(path) : path));
    });
  }

  private async removeTree(path: Buffer): Promise<void> {
    const dir = await this.resolve(path, 'rm', false);
    const names: Uint8Array[] = [];
    for await (const e of iterateDir(this.ext4, dir)) if (!isDotOrDotDot(e.name)) names.push(e.name.slice());
    for (const name of names) {
      const child = Buffer.concat([path, Buffer.from('/'), Buffer.from(name)]);
      const inode = await this.resolve(child, 'rm', false);
      if (isDir(inode)) await this.removeTree(child);
      else await this.reap(await unlinkNode(this.mount, dir.ino, name));
    }
    const { dir: parent, name } = await this.parentOf(path, 'rm');
    await this.reap(await rmdirNode(this.mount, parent.ino, name));
  }

  async rename(oldPath: PathLike, newPath: PathLike): Promise<void> {
    return this.change('rename', oldPath, async () => {
      try {
        const from = await this.parentOf(oldPath, 'rename');
        const to = await this.parentOf(newPath, 'rename');
        await this.reap(await renameNode(this.mount, from.dir.ino, from.name, to.dir.ino, to.name));
      } catch (error) {
        if (FsError.is(error)) throw error.withContext({ syscall: 'rename', path: pathText(oldPath), dest: pathText(newPath) });
        throw error;
      }
    });
  }

  /** A hard link `newPath` to `existingPath` (not following a final symlink, as Linux). */
  async link(existingPath: PathLike, newPath: PathLike): Promise<void> {
    return this.change('link', existingPath, async () => {
      try {
        const inode = await this.resolve(existingPath, 'link', false);
        const to = await this.parentOf(newPath, 'link');
        await linkNode(this.mount, inode.ino, to.dir.ino, to.name);
      } catch (error) {
        if (FsError.is(error)) throw error.withContext({ syscall: 'link', path: pathText(existingPath), dest: pathText(newPath) });
        throw error;
      }
    });
  }

  /** A symbolic link at `path` holding `target` (fast below 60 bytes, else one block). */
  async symlink(target: PathLike, path: PathLike): Promise<void> {
    return this.change('symlink', path, async () => {
      const bytes = typeof target === 'string' ? Buffer.from(target, 'utf8') : target;
      await this.createAt(path, 'symlink', 'symlink', 0o777, Uint8Array.from(bytes));
    });
  }

  async chmod(path: PathLike, mode: number | string): Promise<void> {
    return this.change('chmod', path, async () => {
      const bits = typeof mode === 'string' ? parseInt(mode, 8) : mode;
      if (!Number.isInteger(bits) || bits < 0) throw new FsError('EINVAL', { syscall: 'chmod', path: pathText(path) });
      await setAttr(this.mount, (await this.resolve(path, 'chmod', true)).ino, { mode: bits });
    });
  }

  async chown(path: PathLike, uid: number, gid: number): Promise<void> {
    return this.change('chown', path, async () => setAttr(this.mount, (await this.resolve(path, 'chown', true)).ino, { uid, gid }));
  }

  async lchown(path: PathLike, uid: number, gid: number): Promise<void> {
    return this.change('lchown', path, async () => setAttr(this.mount, (await this.resolve(path, 'lchown', false)).ino, { uid, gid }));
  }

  /** Set access and modification times (seconds, a decimal string exact to the ns, or a Date). */
  async utimes(path: PathLike, atime: TimeLike, mtime: TimeLike): Promise<void> {
    return this.change('utime', path, async () => setAttr(this.mount, (await this.resolve(path, 'utime', true)).ino, { atime: timeOf(atime), mtime: timeOf(mtime) }));
  }

  async lutimes(path: PathLike, atime: TimeLike, mtime: TimeLike): Promise<void> {
    return this.change('lutime', path, async () => setAttr(this.mount, (await this.resolve(path, 'lutime', false)).ino, { atime: timeOf(atime), mtime: timeOf(mtime) }));
  }

  async truncate(path: PathLike, len = 0): Promise<void> {
    return this.change('truncate', path, async () => {
      if (!Number.isSafeInteger(len) || len < 0) throw new FsError('EINVAL', { syscall: 'truncate', path: pathText(path) });
      const inode = await this.resolve(path, 'truncate', true);
      if (isDir(inode)) throw new FsError('EISDIR', { syscall: 'truncate', path: pathText(path) });
      if (!isRegular(inode)) throw new FsError('EINVAL', { syscall: 'truncate', path: pathText(path) });
      await this.files.truncate(inode.ino, len);
    });
  }

  /** Commit everything changed so far and wait until it is durable (syncfs). */
  async sync(): Promise<void> {
    if (!this.mounted) throw new FsError('EIO', { syscall: 'sync', detail: 'filesystem is unmounted' });
    if (!this.mount.readOnly) await this.exclusive(() => this.files.syncAll());
  }

  /** Close every open handle (freeing unlinked inodes) and detach; the device is left open for its owner. */
  async unmount(): Promise<void> {
    if (!this.mounted) return;
    for (const handle of [...this.handles.values()]) await handle.close();
    await Promise.all([...this.unlockedRuns]);
    await this.lock;
    this.mounted = false;
    try {
      await this.files.close();
    } finally {
      await this.mount.close();
    }
    this.ext4.cache.clear();
    this.ext4.inodeCache.clear();
  }
}

export type WriteFileOptions = BufferEncoding | { encoding?: BufferEncoding | null; mode?: number | string; flag?: string } | null | undefined;

function writeOptions(options: WriteFileOptions, flag: string): { encoding: BufferEncoding; mode: number | string | undefined; flag: string } {
  if (typeof options === 'string') return { encoding: options, mode: undefined, flag };
  return { encoding: options?.encoding ?? 'utf8', mode: options?.mode, flag: options?.flag ?? flag };
}

interface OpenFlags { read: boolean; write: boolean; create: boolean; exclusive: boolean; truncate: boolean; append: boolean }

const O = { WRONLY: 1, RDWR: 2, CREAT: 0o100, EXCL: 0o200, TRUNC: 0o1000, APPEND: 0o2000 } as const;

function parseOpenFlags(flags: string | number): OpenFlags {
  if (typeof flags === 'number') {
    const acc = flags & 3;
    return {
      read: acc !== O.WRONLY, write: acc !== 0, create: (flags & O.CREAT) !== 0, exclusive: (flags & O.EXCL) !== 0,
      truncate: (flags & O.TRUNC) !== 0, append: (flags & O.APPEND) !== 0,
    };
  }
  const f = flags.replace('s', '');
  const plus = f.includes('+');
  const x = f.includes('x');
  switch (f[0]) {
    case 'r': return { read: true, write: plus, create: false, exclusive: false, truncate: false, append: false };
    case 'w': return { read: plus, write: true, create: true, exclusive: x, truncate: true, append: false };
    case 'a': return { read: plus, write: true, create: true, exclusive: x, truncate: false, append: true };
    default: throw new FsError('EINVAL', { syscall: 'open', detail: `flags ${flags}` });
  }
}

/** A TimeLike as an ext4 timestamp; strings are decimal seconds parsed exactly to the ns. */
function timeOf(t: TimeLike | undefined): Timestamp | undefined {
  if (t === undefined) return undefined;
  if (t instanceof Date) {
    const ms = t.getTime();
    const sec = Math.floor(ms / 1000);
    return { sec, nsec: (ms - sec * 1000) * 1_000_000 };
  }
  if (typeof t === 'string') {
    const m = /^(-?)(\d+)(?:\.(\d{0,9})\d*)?$/.exec(t.trim());
    if (m === null) return timeOf(Number(t));
    const whole = Number(m[2]);
    const frac = Number((m[3] ?? '').padEnd(9, '0'));
    if (m[1] !== '-') return { sec: whole, nsec: frac };
    return frac === 0 ? { sec: -whole, nsec: 0 } : { sec: -whole - 1, nsec: 1_000_000_000 - frac };
  }
  if (!Number.isFinite(t)) throw new FsError('EINVAL', { syscall: 'utime', detail: `time ${t}` });
  const sec = Math.floor(t);
  return { sec, nsec: Math.min(999_999_999, Math.round((t - sec) * 1e9)) };
}

function isDotOrDotDot(name: Uint8Array): boolean {
  return (name.length === 1 && name[0] === 0x2e) || (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e);
}
