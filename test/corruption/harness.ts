// The corruption harness: a fresh MemoryDevice per case holding a damaged copy of an image,
// seen by the engine through a guard that fails the case on any request outside the
// filesystem or the device, on any write, and on a case running past its deadline; plus the
// checksum re-sealers that let a case damage a structure *and* make its checksum valid
// again, so the structural checks behind the checksum are what is tested.
//
// The deadline is enforced twice: the guard throws a (non-FsError) HangError from the first
// device read after it, which catches loops that keep reading; and a timer races the
// operation, which catches a promise that never settles. A loop that never reaches the
// device nor yields to the event loop cannot be caught in-thread; the engine's own bounds
// (depth ≤ 5, hash-chain hops ≤ dir blocks, rec_len ≥ 12) are what rule those out.
import { Worker } from 'node:worker_threads';
import { Ext4, FsError, MemoryDevice, format, type BlockDevice, type Ext4Filesystem } from '@ext4ts/core';
import type { CorruptionImage } from './images.js';

export const CASE_DEADLINE_MS = 5_000;
const DEVICE_CHUNK_BYTES = 64 * 1024;
const ZERO_PIECE = new Uint8Array(DEVICE_CHUNK_BYTES);

/** A guard violation or a hang: always a test failure, never an FsError. */
export class GuardError extends Error {
  override name = 'GuardError';
}

/** Wraps a device: records reads, refuses writes and reads outside [0, limitBytes). */
export class GuardedDevice implements BlockDevice {
  readonly violations: string[] = [];
  readonly reads: number[] = [];
  private readonly deadline: number;

  constructor(private readonly inner: MemoryDevice, private readonly limitBytes: number, deadlineMs = CASE_DEADLINE_MS) {
    this.deadline = Date.now() + deadlineMs;
  }

  get sizeBytes(): number { return this.inner.sizeBytes; }
  get sectorSizeBytes(): number { return this.inner.sectorSizeBytes; }
  get readOnly(): boolean { return true; }

  private violate(message: string): never {
    this.violations.push(message);
    throw new GuardError(message);
  }

  async read(offsetBytes: number, target: Uint8Array): Promise<void> {
    if (Date.now() > this.deadline) this.violate(`hang: still reading after ${CASE_DEADLINE_MS} ms (read at ${offsetBytes})`);
    const end = offsetBytes + target.length;
    if (!Number.isSafeInteger(offsetBytes) || offsetBytes < 0 || end > this.limitBytes || end > this.inner.sizeBytes) {
      this.violate(`read [${offsetBytes}, ${end}) outside the filesystem/device [0, ${Math.min(this.limitBytes, this.inner.sizeBytes)})`);
    }
    this.reads.push(offsetBytes);
    return this.inner.read(offsetBytes, target);
  }

  async write(offsetBytes: number, _source?: Uint8Array): Promise<void> { this.violate(`write at ${offsetBytes} on a read-only mount`); }
  async flush(): Promise<void> { /* nothing buffered */ }
  async discard(offsetBytes: number): Promise<void> { this.violate(`discard at ${offsetBytes} on a read-only mount`); }
  async zeroOut(offsetBytes: number): Promise<void> { this.violate(`zeroOut at ${offsetBytes} on a read-only mount`); }
  async close(): Promise<void> { await this.inner.close(); }
}

/** A MemoryDevice holding `bytes` (zero 64 KiB pieces are left unallocated). */
export function deviceOf(bytes: Uint8Array): MemoryDevice {
  const device = MemoryDevice.create({ sizeBytes: bytes.length, chunkSizeBytes: DEVICE_CHUNK_BYTES });
  for (let at = 0; at < bytes.length; at += DEVICE_CHUNK_BYTES) {
    const piece = bytes.subarray(at, at + DEVICE_CHUNK_BYTES);
    // Buffer.compare is a native memcmp: ~100x faster than a JS scan for zeros.
    if (Buffer.compare(piece, ZERO_PIECE.subarray(0, piece.length)) !== 0) device.writeSync(at, piece);
  }
  return device;
}

/**
 * Bytes the engine may read: the filesystem as the (possibly damaged) superblock sizes it,
 * never past the device. A superblock too damaged to size anything limits reads to the
 * device (the engine must refuse it before reading further anyway).
 */
export function readLimitBytes(bytes: Uint8Array): number {
  const v = new DataView(bytes.buffer, bytes.byteOffset + 1024, 1024);
  const log = v.getUint32(0x18, true);
  const is64 = (v.getUint32(0x60, true) & 0x80) !== 0;
  const blocks = v.getUint32(0x04, true) + (is64 ? v.getUint32(0x150, true) * 2 ** 32 : 0);
  if (log > 6) return bytes.length;
  return Math.max(2048, Math.min(bytes.length, blocks * 1024 * 2 ** log));
}

// ---------------------------------------------------------------------------------
// The watchdog: a thread that kills this process if a case outlives its deadline by far

// A loop that awaits only already-settled promises never lets a timer fire, so no in-thread
// timeout can stop it. The watchdog thread polls a shared word holding the running case's
// start time; past CASE_DEADLINE_MS + WATCHDOG_GRACE_MS it prints the case's label (and
// with it the fuzz seed) to stderr and SIGKILLs the process, which fails the test file.
const WATCHDOG_GRACE_MS = 5_000;
const WATCHDOG_LABEL_BYTES = 1024;
const watchdogState = new Int32Array(new SharedArrayBuffer(8 + WATCHDOG_LABEL_BYTES));
let watchdog: Worker | undefined;

const WATCHDOG_SOURCE = `
const { workerData } = require('node:worker_threads');
const { writeSync } = require('node:fs');
const state = new Int32Array(workerData.buffer);
const limitS = workerData.limitMs / 1000;
setInterval(() => {
  const started = Atomics.load(state, 0);
  if (started === 0) return;
  if (Date.now() / 1000 - started > limitS) {
    const bytes = new Uint8Array(workerData.buffer, 8, Atomics.load(state, 1));
    writeSync(2, 'corruption watchdog: case hung, killing the test process: ' + Buffer.from(bytes).toString('utf8') + '\\n');
    process.kill(process.pid, 'SIGKILL');
  }
}, 250);
`;

function watchdogStart(label: string): void {
  if (watchdog === undefined) {
    watchdog = new Worker(WATCHDOG_SOURCE, { eval: true, workerData: { buffer: watchdogState.buffer, limitMs: CASE_DEADLINE_MS + WATCHDOG_GRACE_MS } });
    watchdog.unref();
  }
  const bytes = new TextEncoder().encode(label).subarray(0, WATCHDOG_LABEL_BYTES);
  new Uint8Array(watchdogState.buffer, 8, WATCHDOG_LABEL_BYTES).set(bytes);
  Atomics.store(watchdogState, 1, bytes.length);
  Atomics.store(watchdogState, 0, Math.max(1, Math.floor(Date.now() / 1000)));
}

function watchdogStop(): void {
  Atomics.store(watchdogState, 0, 0);
}

// ---------------------------------------------------------------------------------
// Locating structures inside an image's bytes

export function le(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
}

export function blockOf(bytes: Uint8Array, image: CorruptionImage, pblk: number): Uint8Array {
  const bs = image.blockSizeBytes;
  return bytes.subarray(pblk * bs, (pblk + 1) * bs);
}

export function superblockOf(bytes: Uint8Array): Uint8Array {
  return bytes.subarray(1024, 2048);
}

export function gdtOf(bytes: Uint8Array, image: CorruptionImage): Uint8Array {
  const bs = image.blockSizeBytes;
  return bytes.subarray(image.gdtBlock * bs, (image.gdtBlock + image.gdtBlocks) * bs);
}

export function inodeSlotOf(bytes: Uint8Array, image: CorruptionImage, ino: number): Uint8Array {
  const group = Math.floor((ino - 1) / image.inodesPerGroup);
  const index = (ino - 1) % image.inodesPerGroup;
  const at = image.inodeTables[group] * image.blockSizeBytes + index * image.inodeSizeBytes;
  return bytes.subarray(at, at + image.inodeSizeBytes);
}

/** The i_block area (60 bytes) of an inode slot. */
export function iBlockOf(slot: Uint8Array): Uint8Array {
  return slot.subarray(format.I_BLOCK_OFFSET, format.I_BLOCK_OFFSET + format.I_BLOCK_BYTES);
}

function inodeSeed(bytes: Uint8Array, image: CorruptionImage, ino: number): number {
  const generation = le(inodeSlotOf(bytes, image, ino)).getUint32(0x64, true);
  return format.inodeChecksumSeed(image.fsSeed, ino, generation);
}

// ---------------------------------------------------------------------------------
// Re-sealing checksums after a deliberate change

export function sealSuperblock(bytes: Uint8Array): void {
  const sb = superblockOf(bytes);
  le(sb).setUint32(format.CHECKSUM_OFFSET, format.superblockChecksum(sb), true);
}

export function sealGroupDesc(bytes: Uint8Array, image: CorruptionImage, group: number): void {
  const sb = superblockOf(bytes);
  format.sealGroupDesc(gdtOf(bytes, image), group, {
    metadataCsum: image.metadataCsum,
    gdtCsum: false,
    fsSeed: image.fsSeed,
    uuid: sb.slice(0x68, 0x78),
    descSize: image.descSizeBytes,
  });
}

export function sealInode(bytes: Uint8Array, image: CorruptionImage, ino: number): void {
  format.writeInodeChecksum(inodeSlotOf(bytes, image, ino), inodeSeed(bytes, image, ino));
}

export function sealExtentBlock(bytes: Uint8Array, image: CorruptionImage, pblk: number, ino: number): void {
  format.sealExtentBlock(blockOf(bytes, image, pblk), inodeSeed(bytes, image, ino));
}

export function sealDirLeaf(bytes: Uint8Array, image: CorruptionImage, pblk: number, ino: number): void {
  format.sealDirBlock(blockOf(bytes, image, pblk), inodeSeed(bytes, image, ino));
}

export function sealDxBlock(bytes: Uint8Array, image: CorruptionImage, pblk: number, ino: number, countOffset: number): void {
  const block = blockOf(bytes, image, pblk);
  const limit = le(block).getUint16(countOffset, true);
  // A damaged limit would put the tail outside the block; then there is nothing to seal.
  if (countOffset + limit * format.DX_ENTRY_BYTES + format.DX_TAIL_BYTES > block.length) return;
  format.sealDxBlock(block, countOffset, inodeSeed(bytes, image, ino));
}

// ---------------------------------------------------------------------------------
// Running a case

export type Outcome =
  | { kind: 'ok'; value: unknown }
  | { kind: 'fserror'; code: string; message: string }
  | { kind: 'other'; error: unknown }
  | { kind: 'violation'; violations: string[]; error: unknown };

async function withTimer<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new GuardError(`hang: operation did not settle within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Mount a damaged copy and run `op` on it (mount errors count as the outcome). The
 * filesystem is unmounted afterwards whatever happened.
 */
export async function runOn(bytes: Uint8Array, op: (fs: Ext4Filesystem) => Promise<unknown>, label = 'corruption case', deadlineMs = CASE_DEADLINE_MS): Promise<Outcome> {
  watchdogStart(label);
  const device = new GuardedDevice(deviceOf(bytes), readLimitBytes(bytes), deadlineMs);
  let fs: Ext4Filesystem | undefined;
  try {
    const value = await withTimer((async () => {
      fs = await Ext4.mount(device, { readOnly: true });
      return op(fs);
    })(), deadlineMs + 1000);
    if (device.violations.length > 0) return { kind: 'violation', violations: device.violations, error: undefined };
    return { kind: 'ok', value };
  } catch (error) {
    if (device.violations.length > 0 || error instanceof GuardError) {
      return { kind: 'violation', violations: [...device.violations, String(error)], error };
    }
    if (FsError.is(error)) return { kind: 'fserror', code: error.code, message: error.message };
    return { kind: 'other', error };
  } finally {
    try { await fs?.unmount(); } catch { /* the outcome is already decided */ }
    await device.close();
    watchdogStop();
  }
}

/** Copy an image's bytes and apply `corrupt` to the copy. */
export function damaged(image: CorruptionImage, corrupt: (bytes: Uint8Array) => void): Uint8Array {
  const bytes = image.bytes.slice();
  corrupt(bytes);
  return bytes;
}

export function describeOutcome(outcome: Outcome): string {
  switch (outcome.kind) {
    case 'ok': return 'ok';
    case 'fserror': return `${outcome.code}: ${outcome.message}`;
    case 'other': return `non-FsError: ${outcome.error instanceof Error ? outcome.error.stack ?? outcome.error.message : String(outcome.error)}`;
    case 'violation': return `guard: ${outcome.violations.join('; ')}`;
  }
}

// ---------------------------------------------------------------------------------
// Walking a mounted tree

export interface WalkLimits {
  /** Entries visited at most (a damaged dir may name thousands of bogus entries). */
  entriesMax: number;
  depthMax: number;
  /**
   * Files larger than this (only ever a damaged i_size here: the images hold nothing over
   * 300 KiB) are read at both ends through a FileHandle instead of whole, so a 2 GiB sparse
   * "file" costs two small reads, not a 2 GiB buffer.
   */
  wholeFileBytesMax: number;
}

const WALK_LIMITS_DEFAULT: WalkLimits = { entriesMax: 3000, depthMax: 16, wholeFileBytesMax: 16 * 1024 * 1024 };
const END_READ_BYTES = 64 * 1024;

async function readEnds(fs: Ext4Filesystem, p: Buffer, sizeBytes: number): Promise<string> {
  const handle = await fs.open(p);
  try {
    const head = Buffer.alloc(END_READ_BYTES);
    const tail = Buffer.alloc(END_READ_BYTES);
    await handle.read(head, 0, END_READ_BYTES, 0);
    await handle.read(tail, 0, END_READ_BYTES, sizeBytes - END_READ_BYTES);
    return `${hashOf(head)}:${hashOf(tail)}`;
  } finally {
    await handle.close();
  }
}

/**
 * Visit every entry reachable from the root: lstat each, read every regular file, readlink
 * and stat every symlink, recurse into each directory once (by inode number, so a damaged
 * entry naming an ancestor cannot make the walker loop). Returns path → summary.
 */
export async function walkTree(fs: Ext4Filesystem, limits: WalkLimits = WALK_LIMITS_DEFAULT): Promise<Map<string, string>> {
  const seen = new Set<number>();
  const out = new Map<string, string>();
  // Names travel as raw bytes: a damaged name need not be UTF-8, and must be looked up as stored.
  const slash = Buffer.from('/');
  const visit = async (dir: Buffer, depth: number): Promise<void> => {
    const st = await fs.lstat(dir);
    if (seen.has(st.ino) || depth > limits.depthMax) return;
    seen.add(st.ino);
    for (const e of await fs.readdir(dir, { withFileTypes: true, encoding: 'buffer' })) {
      if (out.size >= limits.entriesMax) return;
      const p = Buffer.concat(dir.length === 1 ? [slash, e.name] : [dir, slash, e.name]);
      const shown = p.toString('latin1');
      const lst = await fs.lstat(p);
      if (lst.isSymbolicLink()) {
        const target = await fs.readlink(p);
        out.set(shown, `link:${target}`);
        try { await fs.stat(p); } catch (error) { if (!FsError.is(error, 'ENOENT') && !FsError.is(error, 'ELOOP') && !FsError.is(error, 'ENOTDIR')) throw error; }
      } else if (lst.isDirectory()) {
        out.set(shown, 'dir');
        await visit(p, depth + 1);
      } else if (lst.isFile() && lst.size > limits.wholeFileBytesMax) {
        out.set(shown, `file:${lst.size}:${await readEnds(fs, p, lst.size)}`);
      } else if (lst.isFile()) {
        const data = await fs.readFile(p);
        out.set(shown, `file:${data.length}:${hashOf(data)}`);
      } else {
        out.set(shown, `other:${lst.mode}`);
      }
    }
  };
  await visit(slash, 0);
  return out;
}

/** A cheap content fingerprint (FNV-1a over the bytes). */
export function hashOf(data: Uint8Array): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < data.length; i++) h = Math.imul(h ^ data[i], 0x01000193) >>> 0;
  return h.toString(16);
}

/** What walkTree should return for an undamaged image. */
export function expectedWalk(image: CorruptionImage): Map<string, string> {
  const out = new Map<string, string>();
  for (const d of image.dirs) if (d !== '/') out.set(d, 'dir');
  for (const [p, data] of image.files) out.set(p, `file:${data.length}:${hashOf(data)}`);
  for (const [p, target] of image.symlinks) out.set(p, `link:${target}`);
  // lost+found exists in every mkfs image.
  out.set('/lost+found', 'dir');
  return out;
}
