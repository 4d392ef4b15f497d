// The fsx crash workload: fsx's own exerciser (runFsx, its seeded op generator and model,
// packages/cli/src/fsx) drives one file of a small ext4ts image on a RecordingDevice, through
// a target that marks every change in the log with the file version it leads to; and the
// checker that says which recovered file contents a crash state may show (checkFsxFile).
//
// The image (makeFsxCrashBase, 16 MiB, 1024-block journal): a neighbour file whose bytes
// must never change, and ~9 MiB of "junk" files written and then deleted, so almost every
// free block the fsx file can be given still holds junk. A crash image that shows junk, the
// neighbour's bytes or any other bytes the file never held in a block of the file is a
// stale-data bug: the window that unwritten-then-convert (iomap) and data=ordered
// (buffer_head) exist to close.
//
// Markers (RecordingDevice.mark) — `version` is the fsx model's file content after the op:
// - 'op'  before each change starts (write, mapwrite, truncate, fallocate, punch, zero,
//         fsync, unmount): the op may land whole, in part, or not at all;
// - 'ack' after fsync (FileHandle.sync) resolved, and after unmount: the file as the model
//         had it is durable. The base image is acknowledged first ('base', empty file);
// - 'op' named 'clock' where the workload moved time (below): same version, for the reports.
//
// The versions of a crash state at point p: V_A, the version of the last ack before p, and
// the version of every op marked between that ack and p (later ops cannot have written
// anything). What may a recovered file show (checkFsxFile)?
// - Size: one of those versions' sizes, or — for a pwrite that extends the file — a block
//   boundary strictly inside the range it extends over: i_disksize rises as writeback
//   completes, min(ioend end, i_size) (buffer_head: as each batch is allocated), and a
//   commit may fall between two of them (the timer, under a small cache; the long run saw
//   62 such states in 9,600). truncate, fallocate, zero range and mapwrite (which ftruncates
//   up first) set the size in one handle: no intermediate sizes.
// - Bytes: every 4 KiB block of the file equals that block in one of the versions (past a
//   version's EOF its bytes count as zeros: growing a file shows zeros there, and a block
//   whose unwritten extent was not yet converted, or whose delayed data was not yet
//   written, reads as a hole). Where the state tore writes, each 512-byte sector instead.
//   A block untouched since V_A has one candidate, V_A's: acknowledged data is checked
//   exactly. Blocks of earlier versions, this file's data from another offset, other
//   files' data, junk, or zeros where no version had zeros are all failures.
// - The neighbour file reads back exactly as in the base image.
//
// Time. The recorded mount has the default commit interval (5 s) and a 1 MiB page cache; the
// caller freezes Date, performance.now and the timers while recording, and the workload moves
// them in seeded 5 s steps (FsxCrashClock: after ~20 % of the ops, during ~10 % — the commit
// then runs beside the op). A step fires the journal's commit timer and the flusher's interval
// and ages dirty data, so metadata commits while data is dirty, under writeback or half
// converted, not only at fsync — without that, every commit would follow a full writeback of
// the file and a broken data=ordered or convert-at-completion could not show. Between steps
// the flusher runs when the dirty thresholds wake it (through setImmediate; the target yields
// once after every op) and throttled writers wait for it in the middle of their op. And
// writes take time (LatencyDevice, above the RecordingDevice: the log is in completion
// order), so a commit can overtake data writes still in flight — the case data=ordered and
// convert-at-completion exist for; with instant writes it almost never arises.
//
// Determinism. With the clocks in the workload's hands, the same seed records the same
// requests with the same data (test: the log fingerprint), so a failure reproduces from
// (config, seed, op count, crash spec). The log up to a crash point does not depend on the
// ops after it, so the op count can be cut to the last op before the point.
//
// Cost of recording: the fsx op itself (page cache, a commit per fsync or clock step) plus one compare of
// the model against the previous version per op (maxFileLen bytes) and a 4 KiB copy of
// each block that changed; versions share unchanged blocks, so memory is ~the bytes the ops
// changed, not ops × file size.
import { Buffer } from 'node:buffer';
import { Ext4, FsError, MemoryDevice, mkfs, type BlockDevice, type Ext4Filesystem, type FileHandle, type WriteOptions } from '@ext4ts/core';
import type { RecordedMark } from '../../packages/core/src/device/recording-device.js';
import { FsxModel } from '../../packages/cli/src/fsx/model.js';
import { formatOpLine } from '../../packages/cli/src/fsx/log.js';
import { FsxRandom, makeOriginalBuffer, suspectOpMod256, type FsxOp } from '../../packages/cli/src/fsx/ops.js';
import { runFsx, type FsxRunOptions } from '../../packages/cli/src/fsx/run.js';
import type { FsxCapabilities, FsxTarget } from '../../packages/cli/src/fsx/target.js';

export const FSX_CRASH_IMAGE_BYTES = 16 * 1024 * 1024;
export const FSX_CRASH_JOURNAL_BLOCKS = 1024;
export const FSX_CRASH_FILE_PATH = '/fsxfile';
export const FSX_CRASH_NEIGHBOUR_PATH = '/neighbour';
const NEIGHBOUR_BYTES = 256 * 1024;
/** Junk written then deleted: with the journal (4 MiB) and metadata, most of the free space. */
const JUNK_FILE_COUNT = 9;
const JUNK_FILE_BYTES = 1024 * 1024;
const BLOCK_BYTES = 4096;
/** The checker's unit where a state tore writes (the device's sector). */
const SECTOR_BYTES_DEFAULT = 512;
/** Cache of the recovery and read-back mounts: the minimum, nothing is cached for long. */
export const RECOVERY_CACHE_BYTES = 1024 * 1024;

const FALLOC_FL_KEEP_SIZE = 0x01;
const FALLOC_FL_PUNCH_HOLE = 0x02;
const FALLOC_FL_ZERO_RANGE = 0x10;

export interface FsxCrashConfig {
  /** Names the config in reports and reproducers: 'iomap', 'iomap-small-folios', 'buffer_head'. */
  name: string;
  buffered: 'iomap' | 'buffer_head';
  largeFolios: boolean;
}

export const FSX_CRASH_CONFIGS: readonly FsxCrashConfig[] = [
  { name: 'iomap', buffered: 'iomap', largeFolios: true },
  { name: 'iomap-small-folios', buffered: 'iomap', largeFolios: false },
  { name: 'buffer_head', buffered: 'buffer_head', largeFolios: false },
];

// ---- base image ----------------------------------------------------------------------

/** A recognisable 4 KiB pattern: `tag` and the block number, repeated (never zero, never fsx data). */
export function taggedBlock(tag: string, blockIndex: number): Buffer {
  const unit = Buffer.from(`${tag} block ${String(blockIndex).padStart(6, '0')} | `, 'latin1');
  const block = Buffer.alloc(BLOCK_BYTES);
  for (let at = 0; at < BLOCK_BYTES; at += unit.length) unit.copy(block, at);
  return block;
}

function taggedBytes(tag: string, lengthBytes: number): Buffer {
  const blocks: Buffer[] = [];
  for (let index = 0; index * BLOCK_BYTES < lengthBytes; index++) blocks.push(taggedBlock(tag, index));
  return Buffer.concat(blocks).subarray(0, lengthBytes);
}

export const NEIGHBOUR_TAG = 'neighbour-file';
export const JUNK_TAG = 'stale-junk';
export const neighbourBytes = (): Buffer => taggedBytes(NEIGHBOUR_TAG, NEIGHBOUR_BYTES);

function mountOptions(config: FsxCrashConfig | undefined, cacheBytes: number, commitIntervalMs = 0) {
  return {
    readOnly: false, commitIntervalMs, uid: 0, gid: 0, umask: 0o022,
    buffered: config?.buffered ?? 'iomap', largeFolios: config?.largeFolios ?? true, cacheBytes,
    // The pool needs a device it can share with workers; a RecordingDevice (and a crash
    // image's UndoDevice) refuses, so writeback runs on the engine thread.
    writebackThreads: 0,
  } as const;
}

/** Mount read-write (replays the journal, finishes orphans) as the recovery of a crash state. */
export function mountForRecovery(device: BlockDevice): Promise<Ext4Filesystem> {
  return Ext4.mount(device, mountOptions(undefined, RECOVERY_CACHE_BYTES));
}

/** The fsx file and the neighbour as a read-only ext4ts mount of a (recovered) image shows them. */
export async function readBackFsxFiles(device: BlockDevice): Promise<{ file: Buffer; neighbour: Buffer }> {
  const fs = await Ext4.mount(device, { readOnly: true, cacheBytes: RECOVERY_CACHE_BYTES });
  try {
    return { file: (await fs.readFile(FSX_CRASH_FILE_PATH)) as Buffer, neighbour: (await fs.readFile(FSX_CRASH_NEIGHBOUR_PATH)) as Buffer };
  } finally {
    await fs.unmount();
  }
}

/** Why the engine refuses to mount this config (ENOTSUP: e.g. a path not built yet), or null when it mounts. */
export async function fsxConfigUnavailable(config: FsxCrashConfig): Promise<string | null> {
  const device = MemoryDevice.create({ sizeBytes: 8 * 1024 * 1024 });
  try {
    await mkfs(device, { assumeZeroed: true });
    const fs = await Ext4.mount(device, mountOptions(config, RECOVERY_CACHE_BYTES));
    await fs.unmount();
    return null;
  } catch (error) {
    if (FsError.is(error, 'ENOTSUP')) return (error as Error).message;
    throw error;
  } finally {
    device.closeSync();
  }
}

/** The base image: the neighbour, the empty fsx file, and free blocks full of junk. */
export async function makeFsxCrashBase(): Promise<MemoryDevice> {
  const device = MemoryDevice.create({ sizeBytes: FSX_CRASH_IMAGE_BYTES });
  await mkfs(device, {
    assumeZeroed: true, journalBlocks: FSX_CRASH_JOURNAL_BLOCKS, now: new Date('2024-01-01T00:00:00Z'),
    uuid: Buffer.alloc(16, 0x5b), hashSeed: Buffer.alloc(16, 0xb5),
  });
  let fs = await Ext4.mount(device, mountOptions(undefined, 4 * 1024 * 1024));
  for (let index = 0; index < JUNK_FILE_COUNT; index++) await fs.writeFile(`/junk-${index}`, taggedBytes(`${JUNK_TAG} ${index}`, JUNK_FILE_BYTES));
  await fs.writeFile(FSX_CRASH_NEIGHBOUR_PATH, neighbourBytes());
  await fs.writeFile(FSX_CRASH_FILE_PATH, new Uint8Array(0));
  await fs.unmount();
  fs = await Ext4.mount(device, mountOptions(undefined, 4 * 1024 * 1024));
  for (let index = 0; index < JUNK_FILE_COUNT; index++) await fs.unlink(`/junk-${index}`);
  await fs.unmount();
  return device;
}

// ---- versions ------------------------------------------------------------------------

/** The file's content at one point of the model: blocks shared with the previous version where equal. */
export interface FileVersion {
  /** 0 = the base image's (empty) file; then one per op that changed the model. */
  index: number;
  /** The fsx op number that made it (0 for the base). */
  opNumber: number;
  sizeBytes: number;
  /** Block i of the file; null = all zeros (holes, and everything past EOF). */
  blocks: ReadonlyArray<Buffer | null>;
}

class VersionList {
  readonly all: FileVersion[] = [];
  private readonly zeros = Buffer.alloc(BLOCK_BYTES);

  constructor(private readonly blockCount: number) {
    this.all.push({ index: 0, opNumber: 0, sizeBytes: 0, blocks: new Array<Buffer | null>(blockCount).fill(null) });
  }

  get last(): FileVersion { return this.all[this.all.length - 1]; }

  /** The model's content as a version: the last one when nothing changed, else a new one. */
  capture(model: FsxModel, opNumber: number): FileVersion {
    const previous = this.last;
    const blocks: Array<Buffer | null> = [];
    let changed = model.sizeBytes !== previous.sizeBytes;
    for (let index = 0; index < this.blockCount; index++) {
      const start = index * BLOCK_BYTES;
      const now = Buffer.from(model.good.buffer, model.good.byteOffset + start, Math.min(BLOCK_BYTES, model.maxFileLen - start));
      const old = previous.blocks[index];
      if (old === null ? now.equals(this.zeros.subarray(0, now.length)) : old.equals(now)) {
        blocks.push(old);
        continue;
      }
      changed = true;
      const copy = Buffer.alloc(BLOCK_BYTES);
      now.copy(copy);
      blocks.push(copy);
    }
    if (!changed) return previous;
    const version: FileVersion = { index: this.all.length, opNumber, sizeBytes: model.sizeBytes, blocks };
    this.all.push(version);
    return version;
  }
}

// ---- marks ---------------------------------------------------------------------------

export interface FsxOpMark {
  /** fsx op number (1-based; unmount is numOps + 1; a clock step carries the op it follows or overlaps). */
  opNumber: number;
  /** e.g. "write 0x1000 0x2000 0x0" (fsx's replay line; size column = size before). */
  text: string;
  /** 'clock': time moved on (commit timer, flusher); the file version does not change. */
  name: FsxOp['name'] | 'unmount' | 'clock';
  sizeBeforeBytes: number;
  /** The model after the op. */
  version: FileVersion;
}

export interface FsxAckMark {
  via: 'base' | 'fsync' | 'unmount';
  opNumber: number;
  version: FileVersion;
}

// ---- the target ----------------------------------------------------------------------

const CAPABILITIES: FsxCapabilities = { fallocate: true, punch: true, zero: true, mmap: true, eofPage: false };

/** Yield to the event loop once: a flusher woken by the dirty thresholds runs here. */
const yieldToFlusher = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * Time for the recorded mount, moved by the workload: the caller's clocks are frozen, and
 * advance(ms) moves Date, performance.now and the timers (the journal's commit timer, the
 * page cache's flusher interval) on by `ms`, firing what falls due — synchronously, like
 * vitest's advanceTimersByTime. Each op draws (its own seeded stream, not fsx's): nothing,
 * a step after the op, or a step just after the op started (the commit then runs beside it).
 */
export interface FsxCrashClock {
  advance(ms: number): void;
  /** The step: the commit interval of the recorded mount, so every step may commit. */
  stepMs: number;
  /** Chance per op of a step after it, and of a step during it. */
  afterProbability: number;
  duringProbability: number;
}

/**
 * An FsxTarget over an open FileHandle that marks every change before it starts (with the
 * version the change leads to, from a mirror FsxModel fed the same calls runFsx makes) and
 * every fsync after it resolved. Reads and size() pass through unmarked.
 */
class MarkingFsxTarget implements FsxTarget {
  readonly capabilities = CAPABILITIES;
  /** The op runFsx is running (onProgress tells us when one is done). */
  opNumber = 1;

  /** Clock steps taken (after, during an op). */
  clockSteps = 0;
  private readonly clockRandom: FsxRandom;

  constructor(
    private readonly fh: FileHandle,
    private readonly mark: (label: string, data: FsxOpMark | FsxAckMark) => void,
    readonly model: FsxModel,
    readonly versions: VersionList,
    private readonly clock: FsxCrashClock | undefined,
    seed: number,
  ) {
    if (model.maxFileLen % BLOCK_BYTES !== 0) throw new Error(`maxFileLen ${model.maxFileLen} is not a whole number of blocks`);
    this.clockRandom = new FsxRandom((seed ^ 0xc10c4) >>> 0);
  }

  /** Move the clock one step, marked (same version: time changes no data). */
  private step(when: 'after' | 'during'): void {
    const clock = this.clock!;
    this.clockSteps++;
    this.mark('op', {
      opNumber: this.opNumber, text: `clock +${clock.stepMs} ms ${when} op ${this.opNumber}`, name: 'clock',
      sizeBeforeBytes: this.model.sizeBytes, version: this.versions.last,
    });
    clock.advance(clock.stepMs);
  }

  async size(): Promise<number> { return (await this.fh.stat()).size; }

  async read(pos: number, len: number): Promise<Uint8Array> {
    const buffer = new Uint8Array(len);
    let done = 0;
    while (done < len) {
      const { bytesRead } = await this.fh.read(buffer, done, len - done, pos + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return buffer.subarray(0, done);
  }

  async mapRead(pos: number, len: number): Promise<Uint8Array> {
    const pageStart = pos - (pos % BLOCK_BYTES);
    const mapping = await this.fh.mmap(pageStart, pos + len - pageStart);
    try { return await mapping.read(pos - pageStart, len); } finally { await mapping.unmap(); }
  }

  /** Mark, run, yield: `apply` updates the mirror model exactly as runFsx's model will be. */
  private async change(name: FsxOp['name'], line: string, apply: (model: FsxModel) => void, run: () => Promise<void>): Promise<void> {
    const sizeBeforeBytes = this.model.sizeBytes;
    apply(this.model);
    const version = this.versions.capture(this.model, this.opNumber);
    this.mark('op', { opNumber: this.opNumber, text: `${name} ${line} 0x${sizeBeforeBytes.toString(16)}`, name, sizeBeforeBytes, version });
    const draw = this.clock === undefined ? 1 : this.clockRandom.nextU32() / 2 ** 32;
    const during = this.clock !== undefined && draw < this.clock.duringProbability;
    const after = this.clock !== undefined && !during && draw < this.clock.duringProbability + this.clock.afterProbability;
    const running = run();
    if (during) this.step('during');
    await running;
    await yieldToFlusher();
    if (after) {
      this.step('after');
      await yieldToFlusher();
    }
  }

  write(pos: number, data: Uint8Array): Promise<void> {
    return this.change('write', hexRange(pos, data.length), (m) => m.write(pos, data), async () => {
      const { bytesWritten } = await this.fh.write(data, 0, data.length, pos);
      if (bytesWritten !== data.length) throw new Error(`short write: ${bytesWritten} of ${data.length}`);
    });
  }

  mapWrite(pos: number, data: Uint8Array): Promise<void> {
    return this.change('mapwrite', hexRange(pos, data.length), (m) => m.mapWrite(pos, data), async () => {
      // fsx's domapwrite: a store through a mapping never extends the file, so grow it first.
      if (pos + data.length > (await this.size())) await this.fh.truncate(pos + data.length);
      const pageStart = pos - (pos % BLOCK_BYTES);
      const mapping = await this.fh.mmap(pageStart, pos + data.length - pageStart);
      try {
        await mapping.write(pos - pageStart, data);
        await mapping.msync();
      } finally {
        await mapping.unmap();
      }
    });
  }

  truncate(size: number): Promise<void> {
    return this.change('truncate', hexRange(0, size), (m) => m.truncate(size), () => this.fh.truncate(size));
  }

  fallocate(pos: number, len: number, options: { keepSize: boolean }): Promise<void> {
    return this.change('fallocate', hexRange(pos, len) + (options.keepSize ? ' keep_size' : ''), (m) => m.fallocate(pos, len, options.keepSize),
      () => this.fh.fallocate(options.keepSize ? FALLOC_FL_KEEP_SIZE : 0, pos, len));
  }

  punchHole(pos: number, len: number): Promise<void> {
    return this.change('punch_hole', hexRange(pos, len), (m) => m.punchHole(pos, len),
      () => this.fh.fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, pos, len));
  }

  zeroRange(pos: number, len: number, options: { keepSize: boolean }): Promise<void> {
    return this.change('zero_range', hexRange(pos, len) + (options.keepSize ? ' keep_size' : ''), (m) => m.zeroRange(pos, len, options.keepSize),
      () => this.fh.fallocate(FALLOC_FL_ZERO_RANGE | (options.keepSize ? FALLOC_FL_KEEP_SIZE : 0), pos, len));
  }

  async fsync(): Promise<void> {
    await this.change('fsync', '0x0 0x0', () => undefined, () => this.fh.sync());
    this.mark('ack', { via: 'fsync', opNumber: this.opNumber, version: this.versions.last });
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

const hexRange = (pos: number, len: number): string => `0x${pos.toString(16)} 0x${len.toString(16)}`;

// ---- device latency ------------------------------------------------------------------

export interface FsxCrashLatency {
  /** Chance that a write (zero-out, discard) is held back at all. */
  delayedProbability: number;
  /** A held-back write completes after 1..turnsMax event-loop turns (setImmediate). */
  turnsMax: number;
}

/**
 * Writes that take time: each write, zero-out or discard reaches the device below after a
 * seeded number of event-loop turns, and its promise resolves then; reads and flushes pass
 * at once. Put above the RecordingDevice, the log then holds writes in completion order,
 * with the writes still in flight when a flush was issued after it (not covered by it), as
 * a disk's queue would — so a commit that does not wait for the data it must order (data=
 * ordered, convert at completion) leaves crash states where the commit is durable and the
 * data is not. The bytes are taken from the caller's buffer when the write lands (a DMA
 * reads memory then), so a page changed under writeback shows too. Deterministic: the turns
 * come from a seeded stream and setImmediate runs callbacks in order.
 */
export class LatencyDevice implements BlockDevice {
  /** Writes held back so far. */
  delayedWrites = 0;
  private readonly random: FsxRandom;

  constructor(private readonly inner: BlockDevice, private readonly latency: FsxCrashLatency, seed: number) {
    this.random = new FsxRandom((seed ^ 0x1a7e0c) >>> 0);
  }

  get sizeBytes(): number { return this.inner.sizeBytes; }
  get sectorSizeBytes(): number { return this.inner.sectorSizeBytes; }
  get readOnly(): boolean { return this.inner.readOnly; }

  read(offsetBytes: number, target: Uint8Array): Promise<void> { return this.inner.read(offsetBytes, target); }
  flush(): Promise<void> { return this.inner.flush(); }
  close(): Promise<void> { return this.inner.close(); }

  async write(offsetBytes: number, source: Uint8Array, options?: WriteOptions): Promise<void> {
    await this.wait();
    await this.inner.write(offsetBytes, source, options);
  }

  async discard(offsetBytes: number, lengthBytes: number): Promise<void> {
    await this.wait();
    await this.inner.discard(offsetBytes, lengthBytes);
  }

  async zeroOut(offsetBytes: number, lengthBytes: number): Promise<void> {
    await this.wait();
    await this.inner.zeroOut(offsetBytes, lengthBytes);
  }

  private async wait(): Promise<void> {
    if (this.random.nextU32() / 2 ** 32 >= this.latency.delayedProbability) return;
    this.delayedWrites++;
    const turns = 1 + (this.random.nextU32() % this.latency.turnsMax);
    for (let turn = 0; turn < turns; turn++) await yieldToFlusher();
  }
}

// ---- the workload --------------------------------------------------------------------

export interface FsxCrashWorkloadOptions {
  config: FsxCrashConfig;
  seed: number;
  numOps: number;
  maxFileLen: number;
  maxOpLen: number;
  /** Page cache of the recorded mount (small: the flusher and eviction write back between fsyncs). */
  cacheBytes: number;
  /** Moves time for the recorded mount; absent = no commit timer (commits at fsync and unmount only). */
  clock?: FsxCrashClock;
  /** Writes in flight for a while (LatencyDevice); absent = every write completes at once. */
  latency?: FsxCrashLatency;
}

export interface FsxCrashRun {
  options: FsxCrashWorkloadOptions;
  /** fsx's op list (op n = ops[n - 1]). */
  ops: readonly FsxOp[];
  versions: readonly FileVersion[];
  /** fsx's seeded "original" buffer: decodes which op wrote a byte (suspectOpMod256). */
  original: Uint8Array;
  fsyncs: number;
  clockSteps: number;
  /** Writes the LatencyDevice held back. */
  delayedWrites: number;
  /** Page-cache counters of the recorded mount: proof that writeback happened between fsyncs. */
  evictedFolios: number;
  flusherPasses: number;
  journalCommits: number;
}

interface CacheStatsView { files?: { cache?: { stats?(): { evictedFolioCount: number; flushPassCount: number } } } }

/**
 * runFsx (fsx's generator, model and per-op checks) on FSX_CRASH_FILE_PATH of the base image
 * on `device`, marking as described in the header; then unmount, acknowledged.
 */
export async function fsxCrashWorkload(
  device: BlockDevice,
  mark: (label: string, data?: unknown) => void,
  options: FsxCrashWorkloadOptions,
): Promise<FsxCrashRun> {
  const versions = new VersionList(Math.ceil(options.maxFileLen / BLOCK_BYTES));
  // Before the mount's first write: every crash state has an acknowledgement to check.
  mark('ack', { via: 'base', opNumber: 0, version: versions.last } satisfies FsxAckMark);
  const slow = options.latency === undefined ? undefined : new LatencyDevice(device, options.latency, options.seed);
  const fs = await Ext4.mount(slow ?? device, mountOptions(options.config, options.cacheBytes, options.clock?.stepMs ?? 0));
  const fh = await fs.open(FSX_CRASH_FILE_PATH, 'r+');
  const target = new MarkingFsxTarget(fh, mark, new FsxModel(options.maxFileLen), versions, options.clock, options.seed);
  const fsxOptions: Partial<FsxRunOptions> = {
    seed: options.seed, numOps: options.numOps, maxFileLen: options.maxFileLen, maxOpLen: options.maxOpLen,
    progressEveryOps: 1, onProgress: (opNumber) => { target.opNumber = opNumber + 1; },
  };
  const result = await runFsx(target, fsxOptions);
  const stats = (fs as unknown as CacheStatsView).files?.cache?.stats?.();
  const journalCommits = fs.mount.journal?.stats.commits ?? 0;
  mark('op', { opNumber: options.numOps + 1, text: 'close + unmount', name: 'unmount', sizeBeforeBytes: target.model.sizeBytes, version: target.versions.last } satisfies FsxOpMark);
  await target.close();
  await fs.unmount();
  mark('ack', { via: 'unmount', opNumber: options.numOps + 1, version: target.versions.last } satisfies FsxAckMark);
  return {
    options, ops: result.ops, versions: target.versions.all, original: makeOriginalBuffer(options.seed, options.maxFileLen),
    fsyncs: result.opCounts.fsync, clockSteps: target.clockSteps, delayedWrites: slow?.delayedWrites ?? 0, evictedFolios: stats?.evictedFolioCount ?? 0, flusherPasses: stats?.flushPassCount ?? 0, journalCommits,
  };
}

// ---- the check -----------------------------------------------------------------------

export interface FsxCrashCandidates {
  ack: FsxAckMark;
  /** Ops marked after the ack and before the crash point. */
  later: FsxOpMark[];
  versions: FileVersion[];
}

/** The last ack before the crash point and the ops begun since. */
export function candidatesOf(acknowledged: readonly RecordedMark[]): FsxCrashCandidates {
  let ackIndex = -1;
  acknowledged.forEach((m, index) => { if (m.label === 'ack') ackIndex = index; });
  if (ackIndex < 0) throw new Error('no acknowledgement before the crash point (the base one is missing)');
  const ack = acknowledged[ackIndex].data as FsxAckMark;
  const later = acknowledged.slice(ackIndex + 1).filter((m) => m.label === 'op').map((m) => m.data as FsxOpMark);
  const versions = [ack.version];
  for (const op of later) if (!versions.includes(op.version)) versions.push(op.version);
  return { ack, later, versions };
}

/** Sizes the recovered file may have (header): versions' sizes, and block boundaries inside extending pwrites. */
export function sizeAllowed(sizeBytes: number, candidates: FsxCrashCandidates): boolean {
  if (candidates.versions.some((v) => v.sizeBytes === sizeBytes)) return true;
  if (sizeBytes % BLOCK_BYTES !== 0) return false;
  return candidates.later.some((op) => op.name === 'write' && op.sizeBeforeBytes < sizeBytes && sizeBytes < op.version.sizeBytes);
}

export interface FsxCheckOptions {
  /** Compare per sector where a block matches no version (the state tore writes). */
  sectorMix: boolean;
  sectorBytes?: number;
  /** For diagnostics: every version of the run and fsx's original buffer. */
  run?: FsxCrashRun;
}

/** Every problem with the recovered file (empty = allowed by the header's rules). */
export function checkFsxFile(actual: Uint8Array, acknowledged: readonly RecordedMark[], options: FsxCheckOptions): string[] {
  const candidates = candidatesOf(acknowledged);
  const problems: string[] = [];
  if (!sizeAllowed(actual.length, candidates)) {
    const sizes = [...new Set(candidates.versions.map((v) => v.sizeBytes))].map((s) => `0x${s.toString(16)}`).join(', ');
    problems.push(`size 0x${actual.length.toString(16)} is none of the versions' sizes (${sizes}) nor a block boundary inside an extending write`);
  }
  const sectorBytes = options.sectorBytes ?? SECTOR_BYTES_DEFAULT;
  const zeros = Buffer.alloc(BLOCK_BYTES);
  const bytes = Buffer.from(actual.buffer, actual.byteOffset, actual.length);
  for (let index = 0; index * BLOCK_BYTES < bytes.length && problems.length < 4; index++) {
    const start = index * BLOCK_BYTES;
    const block = bytes.subarray(start, Math.min(bytes.length, start + BLOCK_BYTES));
    const sources = [...new Set(candidates.versions.map((v) => v.blocks[index] ?? zeros))].map((s) => s.subarray(0, block.length));
    if (sources.some((s) => s.equals(block))) continue;
    if (options.sectorMix && sectorsComposed(block, sources, sectorBytes)) continue;
    problems.push(`block ${index} (bytes 0x${start.toString(16)}..0x${(start + block.length).toString(16)}) is in no version: ${describeBlock(block, index, options.run)}`);
  }
  return problems;
}

function sectorsComposed(block: Buffer, sources: readonly Buffer[], sectorBytes: number): boolean {
  for (let at = 0; at < block.length; at += sectorBytes) {
    const sector = block.subarray(at, at + sectorBytes);
    if (!sources.some((s) => s.subarray(at, at + sectorBytes).equals(sector))) return false;
  }
  return true;
}

/** What the bad block looks like: junk, the neighbour, zeros, an older version, or fsx data of some op. */
export function describeBlock(block: Buffer, blockIndex: number, run: FsxCrashRun | undefined): string {
  const text = block.toString('latin1');
  for (const tag of [JUNK_TAG, NEIGHBOUR_TAG]) {
    const at = text.indexOf(tag);
    if (at >= 0) {
      const label = text.slice(at, text.indexOf('|', at) + 1 || at + 40);
      return `${tag === JUNK_TAG ? 'STALE junk from a freed block of the base image' : "ANOTHER FILE's data"} ("${label}")`;
    }
  }
  if (block.every((b) => b === 0)) return 'all zeros, where every candidate version has data';
  if (run === undefined) return 'unknown bytes';
  const older = run.versions.filter((v) => v.blocks[blockIndex]?.subarray(0, block.length).equals(block));
  if (older.length > 0) return `the block as versions made by op(s) ${older.map((v) => v.opNumber).join(', ')} had it (older than the acknowledged one: a stale block of this file)`;
  for (const version of run.versions) {
    const elsewhere = version.blocks.findIndex((b) => b?.subarray(0, block.length).equals(block));
    if (elsewhere >= 0) return `STALE data of this file: block ${elsewhere} as the version made by op ${version.opNumber} had it (a freed block reused before its new data landed)`;
  }
  const start = blockIndex * BLOCK_BYTES;
  const firstNonZero = block.findIndex((b) => b !== 0);
  const even = (start + firstNonZero) % 2 === 0 ? firstNonZero : firstNonZero + 1;
  if (even < block.length && start + even < run.original.length) {
    return `unknown bytes; the first non-zero even byte reads as data of op ${suspectOpMod256(block[even], start + even, run.original)} (mod 256)`;
  }
  return 'unknown bytes';
}

/** The op log up to op `lastOp` (fsx replay lines), the last `count` of them, numbered. */
export function opLogTail(run: FsxCrashRun, lastOp: number, count = 12): string {
  const from = Math.max(0, Math.min(lastOp, run.ops.length) - count);
  return run.ops.slice(from, Math.min(lastOp, run.ops.length)).map((op, i) => `    ${from + i + 1}: ${formatOpLine(op)}`).join('\n');
}
