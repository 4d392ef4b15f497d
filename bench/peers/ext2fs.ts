/**
 * Peer: balena's `ext2fs` npm package (v4: e2fsprogs' libext2fs compiled to WASM with
 * emscripten, a node:fs-shaped API) on the same kind of ext4 image, in this process.
 * The image is made by ext4ts's mkfs (byte-for-byte what mkfs.ext4 -b 4096 writes) on a
 * memory device each repetition; ext2fs reaches it through a small disk object (read,
 * write, flush, discard), so both engines sit on the same memory.
 *
 * What it lacks, and what the report says about it:
 * - no fsync (its FileHandle.sync throws "unimplemented"): fsync and end_fsync do nothing,
 *   so its write+fsync cells measure writes only (marked in the tables);
 * - no ftruncate: a sparse file is made by writing its last byte (one block at the end;
 *   the rest is a hole);
 * - no page cache: every read goes through libext2fs to the disk object, so invalidate
 *   has nothing to drop.
 * It is an optional devDependency of bench: when it is not installed the peer is skipped.
 *
 * Cost per call: a copy into emscripten's heap, libext2fs's block mapping per block, one
 * async disk call per block run (Asyncify unwinds and rewinds the wasm stack each time).
 */
import { MemoryDevice, mkfs } from '@ext4ts/core';
import type { BenchFile, BenchFs, ExecuteOptions, JobRun } from '../src/executor.js';
import { runGroups, type SuitePlan, type Target } from '../src/target.js';

/** The part of ext2fs's API used here (the package ships no types). */
interface Ext2FileHandle {
  write(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesWritten: number }>;
  read(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  close(): void;
}
interface Ext2Promises {
  open(path: string, flags: number, mode?: number): Promise<Ext2FileHandle>;
  stat(path: string): Promise<{ size: number }>;
}
interface Ext2Fs { promises: Ext2Promises; constants: Record<string, number> }
interface Ext2Module {
  mount(disk: Ext2Disk, offset?: number): Promise<Ext2Fs>;
  umount(fs: Ext2Fs): Promise<void>;
}
interface Ext2Disk {
  read(buffer: Buffer, bufferOffset: number, length: number, fileOffset: number): Promise<{ bytesRead: number; buffer: Buffer }>;
  write(buffer: Buffer, bufferOffset: number, length: number, fileOffset: number): Promise<{ bytesWritten: number; buffer: Buffer }>;
  flush(): Promise<void>;
  discard(offset: number, length: number): Promise<void>;
}

const MODULE_NAME = 'ext2fs';
const TOUCH_PIECE_BYTES = 8 * 1024 * 1024;

async function loadExt2fs(): Promise<Ext2Module | string> {
  try {
    const specifier = MODULE_NAME; // a variable: the package is optional and untyped
    const loaded = (await import(specifier)) as { default?: Ext2Module } & Ext2Module;
    return loaded.default ?? loaded;
  } catch (error) {
    return `the ext2fs package is not installed (${(error as Error).message.split('\n')[0]}); it is a devDependency of bench`;
  }
}

function memoryDisk(device: MemoryDevice): Ext2Disk {
  return {
    async read(buffer, bufferOffset, length, fileOffset) {
      device.readSync(fileOffset, buffer.subarray(bufferOffset, bufferOffset + length));
      return { bytesRead: length, buffer };
    },
    async write(buffer, bufferOffset, length, fileOffset) {
      device.writeSync(fileOffset, buffer.subarray(bufferOffset, bufferOffset + length));
      return { bytesWritten: length, buffer };
    },
    async flush() {},
    async discard() {},
  };
}

class Ext2File implements BenchFile {
  constructor(private readonly handle: Ext2FileHandle) {}
  async pwrite(source: Uint8Array, positionBytes: number): Promise<void> {
    const buffer = Buffer.from(source.buffer, source.byteOffset, source.length);
    const { bytesWritten } = await this.handle.write(buffer, 0, buffer.length, positionBytes);
    if (bytesWritten !== source.length) throw new Error(`ext2fs short write: ${bytesWritten} of ${source.length}`);
  }
  async pread(target: Uint8Array, positionBytes: number): Promise<number> {
    const buffer = Buffer.from(target.buffer, target.byteOffset, target.length);
    return (await this.handle.read(buffer, 0, buffer.length, positionBytes)).bytesRead;
  }
  async fsync(): Promise<void> {} // ext2fs has no fsync (see the header)
  async fdatasync(): Promise<void> {}
  async close(): Promise<void> { this.handle.close(); }
}

class Ext2BenchFs implements BenchFs {
  constructor(private readonly fs: Ext2Fs) {}
  private flags(): number {
    return this.fs.constants.O_RDWR | this.fs.constants.O_CREAT;
  }
  async sizeOf(name: string): Promise<number | undefined> {
    return (await this.fs.promises.stat(`/${name}`).catch(() => undefined))?.size;
  }
  async open(name: string): Promise<BenchFile> {
    return new Ext2File(await this.fs.promises.open(`/${name}`, this.flags(), 0o644));
  }
  async makeSparse(name: string, sizeBytes: number): Promise<void> {
    const handle = await this.fs.promises.open(`/${name}`, this.flags(), 0o644);
    try {
      await handle.write(Buffer.alloc(1), 0, 1, sizeBytes - 1);
    } finally {
      handle.close();
    }
  }
  async dropCaches(): Promise<void> {}
}

export class Ext2fsPeer implements Target {
  readonly id = 'ext2fs';
  readonly label = 'ext2fs (npm)';
  readonly kind = 'peer' as const;
  readonly notes = [
    'ext2fs: balena\'s libext2fs-in-WASM npm package on an ext4 image in memory; it has no fsync (its write+fsync cells are writes only)',
  ];
  readonly noFsync = true;
  private module: Ext2Module | undefined;
  private device: MemoryDevice | undefined;

  async probe(): Promise<string | undefined> {
    const loaded = await loadExt2fs();
    if (typeof loaded === 'string') return loaded;
    this.module = loaded;
    return undefined;
  }

  async setUp(plan: SuitePlan): Promise<void> {
    const device = MemoryDevice.create({ sizeBytes: plan.deviceBytes });
    const zeros = new Uint8Array(TOUCH_PIECE_BYTES);
    for (let at = 0; at < plan.deviceBytes; at += TOUCH_PIECE_BYTES) {
      device.writeSync(at, zeros.subarray(0, Math.min(TOUCH_PIECE_BYTES, plan.deviceBytes - at)));
    }
    this.device = device;
  }

  async runSuite(plan: SuitePlan, options: ExecuteOptions): Promise<JobRun[]> {
    const device = this.device!;
    await mkfs(device, { discard: true });
    const fs = await this.module!.mount(memoryDisk(device));
    try {
      return await runGroups(new Ext2BenchFs(fs), plan.groups, options);
    } finally {
      await this.module!.umount(fs);
    }
  }

  async tearDown(): Promise<void> {
    await this.device?.close();
    this.device = undefined;
  }
}
