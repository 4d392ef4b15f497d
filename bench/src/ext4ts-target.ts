/**
 * ext4ts as a bench target: one buffered path configuration (buffer_head; iomap with or
 * without large folios) on the memory device or an image file, driven through the public
 * node:fs/promises-shaped API — exactly what an embedding service calls.
 *
 * Each repetition makes a new filesystem (mkfs) on the same device and mounts it with the
 * configuration's options. The device is made once per target and, on the memory device,
 * pre-touched once (every byte written, then discarded), because first touch of fresh
 * memory runs at ~0.5 GiB/s here and would otherwise be charged to the first write job.
 * mkfs then discards it (chunks marked dropped, re-zeroed at refill speed on reuse).
 *
 * Clones (numjobs) run either in the engine's thread as concurrent async callers, or each on
 * a worker thread connected through the engine's client channel (serveFilesystem /
 * connectFilesystem: metadata on the engine thread, data copies on the clone's thread).
 *
 * fio invalidate=1 is an unmount and a mount: that drops every cached folio, which is
 * what posix_fadvise(DONTNEED) does for the job's file in the kernel.
 * direct=1 runs buffered: ext4ts has no O_DIRECT path yet.
 *
 * Cost per call: one FileHandle.read/write (positional), i.e. the engine's buffered path;
 * the harness adds ~0.1 µs (executor.ts).
 */
import { constants as fsConstants } from 'node:fs';
import { rm } from 'node:fs/promises';
import {
  Ext4, FileDevice, FsError, MemoryDevice, mkfs, serveFilesystem,
  type Ext4Filesystem, type FilesystemServer, type MountOptions, type SyncBlockDevice,
} from '@ext4ts/core';
import { type BenchFile, type BenchFs, type ClientThreads, type ExecuteOptions, HandleBenchFile, type JobRun } from './executor.js';
import { runGroups, type SuitePlan, type Target } from './target.js';
import { formatBytes } from './units.js';

export type BufferedPath = 'iomap' | 'buffer_head';

export interface Ext4tsConfig {
  buffered: BufferedPath;
  largeFolios: boolean;
}

/** Where the filesystem lives: the in-memory device, or an image file the bench creates and removes. */
export type DeviceChoice = { kind: 'memory' } | { kind: 'file'; path: string };

export const EXT4TS_CONFIGS: readonly Ext4tsConfig[] = [
  { buffered: 'buffer_head', largeFolios: false },
  { buffered: 'iomap', largeFolios: false },
  { buffered: 'iomap', largeFolios: true },
];

export function configId(config: Ext4tsConfig): string {
  if (config.buffered === 'buffer_head') return config.largeFolios ? 'ext4ts:buffer_head+lf' : 'ext4ts:buffer_head';
  return config.largeFolios ? 'ext4ts:iomap+lf' : 'ext4ts:iomap';
}

export function configLabel(config: Ext4tsConfig): string {
  if (config.buffered === 'buffer_head') return config.largeFolios ? 'buffer_head + LF' : 'buffer_head';
  return config.largeFolios ? 'iomap + LF' : 'iomap (no LF)';
}

const MIB = 1024 * 1024;
/** The cache the bench asks for: every file the suite reads (holes too) plus room, within the engine's 3 GiB maximum. */
const CACHE_BYTES_MIN = 256 * MIB;
const CACHE_BYTES_MAX = 3072 * MIB;
const CACHE_SLACK_BYTES = 64 * MIB;
const TOUCH_PIECE_BYTES = 8 * MIB;

export function cacheBytesFor(plan: SuitePlan): number {
  return Math.min(CACHE_BYTES_MAX, Math.max(CACHE_BYTES_MIN, Math.ceil((plan.cachedBytes + CACHE_SLACK_BYTES) / MIB) * MIB));
}

/** Where a job's clones run: in the engine's thread as async callers, or on worker threads over the client channel. */
export type ClientMode = 'engine' | 'threads';

class Ext4tsFs implements BenchFs {
  readonly clientThreads: ClientThreads | undefined;
  private server: FilesystemServer | undefined;

  constructor(private fs: Ext4Filesystem, private readonly remount: () => Promise<Ext4Filesystem>, clients: ClientMode) {
    this.clientThreads = clients === 'engine' ? undefined : {
      connect: () => {
        this.server ??= serveFilesystem(this.fs);
        const handle = this.server.connect();
        return { handle, transferList: [handle.port] };
      },
      close: async () => {
        const server = this.server;
        this.server = undefined;
        await server?.close();
      },
    };
  }

  get filesystem(): Ext4Filesystem { return this.fs; }

  /** Buffers in the engine's shared memory per slot, for this mount (freed at remount: they belong to its memory). */
  private ioBuffers = new Map<number, Uint8Array>();

  ioBuffer(slot: number, lengthBytes: number): Uint8Array | undefined {
    const known = this.ioBuffers.get(slot);
    if (known !== undefined && known.length >= lengthBytes) return known.subarray(0, lengthBytes);
    if (known !== undefined) { this.fs.freeBuffer(known); this.ioBuffers.delete(slot); }
    try {
      const buffer = this.fs.allocBuffer(lengthBytes);
      this.ioBuffers.set(slot, buffer);
      return buffer;
    } catch {
      return undefined; // the engine's region is full: plain buffers for the rest
    }
  }

  async sizeOf(name: string): Promise<number | undefined> {
    try {
      return (await this.fs.stat(`/${name}`)).size as number;
    } catch (error) {
      if (FsError.is(error, 'ENOENT')) return undefined;
      throw error;
    }
  }
  async open(name: string): Promise<BenchFile> {
    return new HandleBenchFile(await this.fs.open(`/${name}`, fsConstants.O_RDWR | fsConstants.O_CREAT));
  }
  async makeSparse(name: string, sizeBytes: number): Promise<void> {
    const handle = await this.fs.open(`/${name}`, fsConstants.O_RDWR | fsConstants.O_CREAT);
    try {
      await handle.truncate(sizeBytes);
    } finally {
      await handle.close();
    }
  }
  async dropCaches(): Promise<void> {
    this.ioBuffers.clear();
    await this.fs.unmount();
    this.fs = await this.remount();
  }
}

const PROBE_DEVICE_BYTES = 32 * MIB;

/**
 * Whether this build of the engine offers a configuration: mount a small scratch
 * filesystem with it. ENOTSUP (a path not built yet) makes the target a skip with that
 * reason, not a failure; anything else is a real error and is thrown.
 */
async function probeConfig(config: Ext4tsConfig): Promise<string | undefined> {
  const device = MemoryDevice.create({ sizeBytes: PROBE_DEVICE_BYTES });
  try {
    await mkfs(device, { assumeZeroed: true });
    const options: MountOptions = { readOnly: false, buffered: config.buffered, largeFolios: config.largeFolios };
    const fs = await Ext4.mount(device, options);
    await fs.unmount();
    return undefined;
  } catch (error) {
    if (FsError.is(error, 'ENOTSUP')) return `this build of the engine does not offer it (${(error as Error).message})`;
    throw error;
  } finally {
    await device.close();
  }
}

export interface Ext4tsTargetOptions {
  config: Ext4tsConfig;
  device: DeviceChoice;
  /** Page cache size; default cacheBytesFor(plan). */
  cacheBytes?: number;
  /** Writeback worker threads (the engine's default when undefined; 0 = inline). */
  writebackThreads?: number;
  /** Where clones run (default 'engine'). */
  clients?: ClientMode;
}

export class Ext4tsTarget implements Target {
  readonly id: string;
  readonly label: string;
  readonly kind = 'ext4ts' as const;
  readonly notes: string[] = [];
  private device: SyncBlockDevice | undefined;
  private cacheBytes = 0;

  settings(): Record<string, string | number | boolean> {
    const device = this.options.device.kind === 'memory' ? 'memory' : this.options.device.path;
    const settings: Record<string, string | number | boolean> = {
      buffered: this.options.config.buffered, largeFolios: this.options.config.largeFolios, cacheBytes: this.cacheBytes, device,
    };
    if (this.options.writebackThreads !== undefined) settings.writebackThreads = this.options.writebackThreads;
    settings.clients = this.options.clients ?? 'engine';
    return settings;
  }

  constructor(private readonly options: Ext4tsTargetOptions) {
    this.id = configId(options.config);
    this.label = configLabel(options.config);
  }

  async probe(): Promise<string | undefined> {
    return probeConfig(this.options.config);
  }

  async setUp(plan: SuitePlan): Promise<void> {
    this.cacheBytes = this.options.cacheBytes ?? cacheBytesFor(plan);
    const choice = this.options.device;
    if (choice.kind === 'memory') {
      const device = MemoryDevice.create({ sizeBytes: plan.deviceBytes });
      const zeros = new Uint8Array(TOUCH_PIECE_BYTES);
      for (let at = 0; at < plan.deviceBytes; at += TOUCH_PIECE_BYTES) {
        device.writeSync(at, zeros.subarray(0, Math.min(TOUCH_PIECE_BYTES, plan.deviceBytes - at)));
      }
      this.device = device;
    } else {
      this.device = await FileDevice.open(choice.path, { create: true, sizeBytes: plan.deviceBytes });
    }
    this.notes.length = 0;
    this.notes.push(this.options.cacheBytes === undefined
      ? 'ext4ts: page cache (cacheBytes) = every file a suite reads, holes included, + 64 MiB, at least 256 MiB (the JSON has each suite\'s)'
      : `ext4ts: page cache (cacheBytes) ${formatBytes(this.cacheBytes)}`);
    this.notes.push('ext4ts: mounted with writebackStart \'mount\': the writeback workers boot (~30-50 ms) before the jobs, as the kernel\'s flusher threads exist before fio\'s');
    if (plan.cachedBytes > this.cacheBytes) {
      this.notes.push(`ext4ts: its page cache (${formatBytes(this.cacheBytes)}) cannot hold the ${formatBytes(plan.cachedBytes)} of files a suite reads, so some of its reads miss the cache (the kernel's would not)`);
    }
  }

  async runSuite(plan: SuitePlan, options: ExecuteOptions): Promise<JobRun[]> {
    const device = this.device!;
    await mkfs(device, this.options.device.kind === 'memory' ? { discard: true } : {});
    const mountOptions: MountOptions = {
      readOnly: false,
      buffered: this.options.config.buffered,
      largeFolios: this.options.config.largeFolios,
      cacheBytes: this.cacheBytes,
      writebackThreads: this.options.writebackThreads,
      // The workers start with the mount, before the jobs, as the kernel's flusher threads exist before fio's.
      writebackStart: 'mount',
    };
    const mountIt = () => Ext4.mount(device, mountOptions);
    const fs = new Ext4tsFs(await mountIt(), mountIt, this.options.clients ?? 'engine');
    try {
      return await runGroups(fs, plan.groups, options);
    } finally {
      await fs.filesystem.unmount();
    }
  }

  async tearDown(): Promise<void> {
    await this.device?.close();
    this.device = undefined;
    if (this.options.device.kind === 'file') await rm(this.options.device.path, { force: true });
  }
}
