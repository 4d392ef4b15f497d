/**
 * MemoryDevice: a ramdisk whose bytes live in SharedArrayBuffer chunks, so worker
 * threads reach the same bytes without copies. Sizes from a few MiB to 64 GiB and more.
 *
 * Layout: the device is cut into chunks of `chunkSizeBytes` (64 MiB by default; the
 * last one may be shorter). Chunk i holds bytes [i * chunkSizeBytes, (i+1) *
 * chunkSizeBytes). A 64 GiB device has 1024 chunks.
 *
 *   offset:  0        64 MiB     128 MiB    ...      64 GiB
 *            | chunk 0 | chunk 1  | chunk 2  | ...    |
 *   state:     DATA      FRESH      DROPPED
 *
 * Memory: before a handle is taken (private mode) a chunk's SharedArrayBuffer is
 * created on its first write, so a 64 GiB device holding a fresh filesystem costs only
 * the chunks written. Even a created chunk costs only the pages written: the OS backs
 * a large SharedArrayBuffer with untouched zero pages, and a write to a FRESH segment
 * touches only its own pages. Touching fresh memory is slow (~0.5 GiB/s here), so a
 * chunk, once created, is kept and reused: discard marks its segments DROPPED (reads as
 * zeros) and the next write to a dropped segment zeroes what it does not cover itself.
 * Discard therefore never returns memory to the OS; closing the device does.
 *
 * Segments: what is "allocated" is tracked per segment of SEGMENT_BYTES_MAX (256 KiB, or
 * the chunk if smaller), not per chunk. Re-zeroing a dropped 64 MiB chunk whole cost
 * 17-28 ms here (a zero fill runs at ~2.5-4 GB/s on this VM, not at copy speed), and
 * after mkfs's discard every metadata write met one: 9 fills, 150-250 ms per mkfs + mount
 * + 256 MiB write. Per segment, a small write into a dropped segment fills < 256 KiB,
 * and a write covering a whole segment fills nothing.
 *
 * Sharing with workers: a SharedArrayBuffer created later cannot reach a worker that
 * is already running except by a message, which a synchronous reader cannot wait for.
 * So `handle()` switches the device to shared mode: it creates every missing chunk at
 * once (virtual memory only: measured 1024 x 64 MiB in ~5 ms and ~4 MiB of RSS) and
 * from then on no chunk is ever created again, so every side holds the same complete
 * chunk table. A segment's state is a word in a shared Int32Array, changed only with
 * Atomics:
 *
 *   FRESH   (0) memory is all zeros and never written; reads answer zeros.
 *   ZEROING (1) one thread is zeroing stale memory (and writing its data); others
 *               Atomics.wait on the word.
 *   DATA    (2) memory holds the device bytes.
 *   DROPPED (3) reads answer zeros; memory holds stale bytes until re-zeroed.
 *
 * Transitions: FRESH -> DATA (CAS; no fill needed), DROPPED -> ZEROING (CAS; the winner
 * zeroes the part of the segment its write does not cover, then copies its data) -> DATA
 * (store + notify), DATA -> DROPPED (CAS, whole-segment discard).
 * Ordering: the filler's zero fill and copy happen before its Atomics.store(DATA), and a
 * reader that Atomics.loads DATA therefore sees at least the zeros, never stale bytes. The
 * data bytes themselves are plain memory: as on any device, a reader sees another
 * thread's write once that write's completion has been signalled to it.
 *
 * Cost: read/write = one TypedArray copy per chunk touched (~11-14 GiB/s from a
 * non-shared buffer); `view()` gives a zero-copy subarray for fast paths.
 */
import { open as openFile, stat } from 'node:fs/promises';
import { Buffer } from 'node:buffer';
import { assert } from '../assert.js';
import { FsError } from '../vfs/errors.js';
import { allocAligned } from './aligned-buffer.js';
import type { MemoryDeviceHandle, SyncBlockDevice, WriteOptions } from './block-device.js';
import { checkGeometry, checkRange, closedError, ioError, openError, readOnlyError } from './device-checks.js';

export const CHUNK_SIZE_BYTES_DEFAULT = 64 * 1024 * 1024;
export const CHUNK_SIZE_BYTES_MIN = 4096;
export const CHUNK_SIZE_BYTES_MAX = 1024 * 1024 * 1024;

/** Segment state words (see the header for the protocol). */
export const CHUNK_FRESH = 0;
export const CHUNK_ZEROING = 1;
export const CHUNK_DATA = 2;
export const CHUNK_DROPPED = 3;
/** The unit of allocation state: a power of two, so segments tile every chunk. */
export const SEGMENT_BYTES_MAX = 256 * 1024;

/** Zero runs shorter than this are copied, not skipped, by loadImage and saveImage. */
const SCAN_PIECE_BYTES = 64 * 1024;
/** Bound on one image read or write syscall. */
const IMAGE_IO_BYTES_MAX = 8 * 1024 * 1024;

export interface MemoryDeviceOptions {
  sizeBytes: number;
  /** 512 (default) or 4096. */
  sectorSizeBytes?: number;
  /** A power of two in [4 KiB, 1 GiB]; default 64 MiB. */
  chunkSizeBytes?: number;
  readOnly?: boolean;
}

export type LoadImageOptions = Omit<MemoryDeviceOptions, 'sizeBytes'>;

export class MemoryDevice implements SyncBlockDevice {
  readonly sizeBytes: number;
  readonly sectorSizeBytes: number;
  readonly chunkSizeBytes: number;
  readonly readOnly: boolean;
  /** Chunk memory; undefined only in private mode for a chunk never written. */
  private chunks: (Uint8Array | undefined)[];
  /** One state word per segment of segmentBytes. */
  private states: Int32Array;
  private readonly segmentBytes: number;
  /** True once every chunk exists (a handle was taken, or this came from one). */
  private shared: boolean;
  private closed = false;

  private constructor(options: Required<MemoryDeviceOptions>, chunks: (Uint8Array | undefined)[], states: Int32Array, shared: boolean) {
    this.sizeBytes = options.sizeBytes;
    this.sectorSizeBytes = options.sectorSizeBytes;
    this.chunkSizeBytes = options.chunkSizeBytes;
    this.readOnly = options.readOnly;
    this.segmentBytes = Math.min(SEGMENT_BYTES_MAX, options.chunkSizeBytes);
    this.chunks = chunks;
    this.states = states;
    this.shared = shared;
    assert(chunks.length === this.chunkCount, 'one chunk slot per chunk');
    assert(states.length === Math.ceil(this.sizeBytes / this.segmentBytes), 'one state word per segment');
  }

  /** A new all-zero device; no chunk memory is created until written. */
  static create(options: MemoryDeviceOptions): MemoryDevice {
    const full = withDefaults(options);
    checkMemoryGeometry(full, 'create');
    const chunkCount = Math.ceil(full.sizeBytes / full.chunkSizeBytes);
    const segmentCount = Math.ceil(full.sizeBytes / Math.min(SEGMENT_BYTES_MAX, full.chunkSizeBytes));
    const states = new Int32Array(new SharedArrayBuffer(segmentCount * Int32Array.BYTES_PER_ELEMENT));
    return new MemoryDevice(full, new Array<Uint8Array | undefined>(chunkCount).fill(undefined), states, false);
  }

  /** The device a worker builds from `handle()`: same bytes, no copy. */
  static fromHandle(handle: MemoryDeviceHandle, options: { readOnly?: boolean } = {}): MemoryDevice {
    assert(handle.kind === 'memory', 'fromHandle takes a memory handle');
    const full = { ...handle, readOnly: handle.readOnly || options.readOnly === true };
    const chunks = handle.chunks.map((chunk) => new Uint8Array(chunk));
    const device = new MemoryDevice(full, chunks, new Int32Array(handle.segmentStates), true);
    chunks.forEach((chunk, chunkIndex) => assert(chunk.length === device.chunkLengthBytes(chunkIndex), 'handle chunk length'));
    return device;
  }

  /**
   * A device holding the bytes of the image file at `path` (its size must be a
   * multiple of the sector size). Runs of zeros are skipped, so a sparse image stays
   * sparse in memory.
   */
  static async loadImage(path: string, options: LoadImageOptions = {}): Promise<MemoryDevice> {
    let sizeBytes: number;
    try {
      sizeBytes = (await stat(path)).size;
    } catch (error) {
      throw openError(error, 'loadImage', path);
    }
    const full = withDefaults({ ...options, sizeBytes });
    checkMemoryGeometry(full, 'loadImage', path);
    const device = MemoryDevice.create({ ...full, readOnly: false });
    await copyImageIn(path, device);
    if (!full.readOnly) return device;
    // Rebuild read-only over the same memory; the writable twin is dropped unused.
    return new MemoryDevice(full, device.chunks, device.states, device.shared);
  }

  /** Chunks holding data (a segment in DATA state); the rest cost no page of memory. */
  get dataChunkCount(): number {
    this.checkOpen('dataChunkCount');
    const segmentsPerChunk = this.chunkSizeBytes / this.segmentBytes;
    let count = 0;
    for (let chunkIndex = 0; chunkIndex < this.chunkCount; chunkIndex++) {
      const first = chunkIndex * segmentsPerChunk;
      const end = Math.min(this.states.length, first + segmentsPerChunk);
      for (let segment = first; segment < end; segment++) {
        if (Atomics.load(this.states, segment) === CHUNK_DATA) {
          count++;
          break;
        }
      }
    }
    return count;
  }

  readSync(offsetBytes: number, target: Uint8Array): void {
    this.checkRequest('read', offsetBytes, target.length);
    const endBytes = offsetBytes + target.length;
    let position = offsetBytes;
    while (position < endBytes) {
      const chunkIndex = Math.floor(position / this.chunkSizeBytes);
      const chunkStartBytes = chunkIndex * this.chunkSizeBytes;
      const pieceEndMax = Math.min(endBytes, chunkStartBytes + this.chunkLengthBytes(chunkIndex));
      // One piece: a run of segments in this chunk that all hold data, or all read as zeros.
      const readable = this.segmentReadable(Math.floor(position / this.segmentBytes));
      let pieceEnd = this.segmentEndBytes(position, pieceEndMax);
      while (pieceEnd < pieceEndMax && this.segmentReadable(pieceEnd / this.segmentBytes) === readable) {
        pieceEnd = this.segmentEndBytes(pieceEnd, pieceEndMax);
      }
      const targetStart = position - offsetBytes;
      if (readable) {
        const chunk = this.chunks[chunkIndex]!;
        target.set(chunk.subarray(position - chunkStartBytes, pieceEnd - chunkStartBytes), targetStart);
      } else {
        target.fill(0, targetStart, pieceEnd - offsetBytes);
      }
      position = pieceEnd;
    }
  }

  writeSync(offsetBytes: number, source: Uint8Array, _options?: WriteOptions): void {
    // FUA needs nothing here: memory is as durable as this device ever gets.
    this.checkRequest('write', offsetBytes, source.length);
    this.checkWritable('write');
    this.copyIn(offsetBytes, source);
  }

  flushSync(): void {
    this.checkOpen('flush');
  }

  discardSync(offsetBytes: number, lengthBytes: number): void {
    this.checkRequest('discard', offsetBytes, lengthBytes);
    this.checkWritable('discard');
    this.zeroRange(offsetBytes, lengthBytes);
  }

  zeroOutSync(offsetBytes: number, lengthBytes: number): void {
    this.checkRequest('zeroOut', offsetBytes, lengthBytes);
    this.checkWritable('zeroOut');
    this.zeroRange(offsetBytes, lengthBytes);
  }

  closeSync(): void {
    this.checkOpen('close');
    this.closed = true;
    this.chunks = [];
  }

  async read(offsetBytes: number, target: Uint8Array): Promise<void> {
    this.readSync(offsetBytes, target);
  }

  async write(offsetBytes: number, source: Uint8Array, options?: WriteOptions): Promise<void> {
    this.writeSync(offsetBytes, source, options);
  }

  async flush(): Promise<void> {
    this.flushSync();
  }

  async discard(offsetBytes: number, lengthBytes: number): Promise<void> {
    this.discardSync(offsetBytes, lengthBytes);
  }

  async zeroOut(offsetBytes: number, lengthBytes: number): Promise<void> {
    this.zeroOutSync(offsetBytes, lengthBytes);
  }

  async close(): Promise<void> {
    this.closeSync();
  }

  /**
   * A zero-copy view of [offsetBytes, offsetBytes + lengthBytes) when the range lies in
   * one chunk, else undefined (use read/write). Its segments are materialized (count as
   * written for sparseness) because the caller may write through the view; writing
   * through a view of a read-only device is a programmer error.
   */
  view(offsetBytes: number, lengthBytes: number): Uint8Array | undefined {
    this.checkRequest('view', offsetBytes, lengthBytes);
    const chunkIndex = Math.floor(offsetBytes / this.chunkSizeBytes);
    const chunkOffsetBytes = offsetBytes - chunkIndex * this.chunkSizeBytes;
    if (chunkOffsetBytes + lengthBytes > this.chunkLengthBytes(chunkIndex)) return undefined;
    return this.materialize(chunkIndex, chunkOffsetBytes, chunkOffsetBytes + lengthBytes).subarray(chunkOffsetBytes, chunkOffsetBytes + lengthBytes);
  }

  /**
   * The SharedArrayBuffers and geometry for MemoryDevice.fromHandle in a worker. The
   * first call creates every chunk not yet created (virtual memory only; see header).
   */
  handle(): MemoryDeviceHandle {
    this.checkOpen('handle');
    if (!this.shared) {
      for (let chunkIndex = 0; chunkIndex < this.chunkCount; chunkIndex++) this.ensureChunkMemory(chunkIndex);
      this.shared = true;
    }
    const chunks = this.chunks.map((chunk) => chunk!.buffer as SharedArrayBuffer);
    return {
      kind: 'memory',
      sizeBytes: this.sizeBytes,
      sectorSizeBytes: this.sectorSizeBytes,
      chunkSizeBytes: this.chunkSizeBytes,
      chunks,
      segmentStates: this.states.buffer as SharedArrayBuffer,
      readOnly: this.readOnly,
    };
  }

  /** Write the device to an image file: sized to the device, sparse where it holds zeros. */
  async saveImage(path: string): Promise<void> {
    this.checkOpen('saveImage');
    let file;
    try {
      file = await openFile(path, 'w');
    } catch (error) {
      throw openError(error, 'saveImage', path);
    }
    try {
      await file.truncate(this.sizeBytes);
      // Runs of segments holding data, each within one chunk, scanned for non-zero pieces.
      let position = 0;
      while (position < this.sizeBytes) {
        const chunkIndex = Math.floor(position / this.chunkSizeBytes);
        const chunkStartBytes = chunkIndex * this.chunkSizeBytes;
        const chunkEndBytes = chunkStartBytes + this.chunkLengthBytes(chunkIndex);
        let runEnd = this.segmentEndBytes(position, chunkEndBytes);
        if (!this.segmentReadable(position / this.segmentBytes)) {
          position = runEnd;
          continue;
        }
        while (runEnd < chunkEndBytes && this.segmentReadable(runEnd / this.segmentBytes)) runEnd = this.segmentEndBytes(runEnd, chunkEndBytes);
        const bytes = this.chunks[chunkIndex]!.subarray(position - chunkStartBytes, runEnd - chunkStartBytes);
        for (const run of nonZeroRuns(bytes)) {
          await writeFully(file, bytes.subarray(run.offsetBytes, run.offsetBytes + run.lengthBytes), position + run.offsetBytes);
        }
        position = runEnd;
      }
      await file.datasync();
    } catch (error) {
      throw ioError(error, 'saveImage', path);
    } finally {
      await file.close().catch(() => undefined);
    }
  }

  private get chunkCount(): number {
    return Math.ceil(this.sizeBytes / this.chunkSizeBytes);
  }

  private chunkLengthBytes(chunkIndex: number): number {
    return Math.min(this.chunkSizeBytes, this.sizeBytes - chunkIndex * this.chunkSizeBytes);
  }

  private checkOpen(syscall: string): void {
    if (this.closed) throw closedError(syscall);
  }

  private checkRequest(syscall: string, offsetBytes: number, lengthBytes: number): void {
    this.checkOpen(syscall);
    checkRange(this, syscall, offsetBytes, lengthBytes);
  }

  private checkWritable(syscall: string): void {
    if (this.readOnly) throw readOnlyError(syscall);
  }

  /** The end of position's segment, at most limitBytes. */
  private segmentEndBytes(position: number, limitBytes: number): number {
    return Math.min(limitBytes, (Math.floor(position / this.segmentBytes) + 1) * this.segmentBytes);
  }

  /** Copy `source` in at offsetBytes; range already checked. */
  private copyIn(offsetBytes: number, source: Uint8Array): void {
    const endBytes = offsetBytes + source.length;
    let position = offsetBytes;
    while (position < endBytes) {
      const chunkIndex = Math.floor(position / this.chunkSizeBytes);
      const chunkStartBytes = chunkIndex * this.chunkSizeBytes;
      const chunk = this.ensureChunkMemory(chunkIndex);
      const pieceEndMax = Math.min(endBytes, chunkStartBytes + this.chunkLengthBytes(chunkIndex));
      const segment = Math.floor(position / this.segmentBytes);
      let pieceEnd = this.segmentEndBytes(position, pieceEndMax);
      const claimed = this.claimForWrite(segment, chunk, position - chunkStartBytes, pieceEnd - chunkStartBytes);
      if (!claimed) {
        // A run of segments already holding data takes one copy.
        while (pieceEnd < pieceEndMax && Atomics.load(this.states, pieceEnd / this.segmentBytes) === CHUNK_DATA) {
          pieceEnd = this.segmentEndBytes(pieceEnd, pieceEndMax);
        }
      }
      chunk.set(source.subarray(position - offsetBytes, pieceEnd - offsetBytes), position - chunkStartBytes);
      if (claimed) this.publish(segment);
      position = pieceEnd;
    }
  }

  /** Make the range read as zeros: whole segments are dropped, partial ones filled. */
  private zeroRange(offsetBytes: number, lengthBytes: number): void {
    const endBytes = offsetBytes + lengthBytes;
    let position = offsetBytes;
    while (position < endBytes) {
      const segment = Math.floor(position / this.segmentBytes);
      const segmentStartBytes = segment * this.segmentBytes;
      const segmentEndBytes = Math.min(this.sizeBytes, segmentStartBytes + this.segmentBytes);
      const pieceEnd = Math.min(endBytes, segmentEndBytes);
      if (position === segmentStartBytes && pieceEnd === segmentEndBytes) {
        this.dropSegment(segment);
      } else if (this.segmentReadable(segment)) {
        const chunkIndex = Math.floor(position / this.chunkSizeBytes);
        const chunkStartBytes = chunkIndex * this.chunkSizeBytes;
        this.chunks[chunkIndex]!.fill(0, position - chunkStartBytes, pieceEnd - chunkStartBytes);
      }
      position = pieceEnd;
    }
  }

  /** True if the segment holds data, false if it reads as zeros (waits out a re-zeroing). */
  private segmentReadable(segment: number): boolean {
    let state = Atomics.load(this.states, segment);
    while (state === CHUNK_ZEROING) {
      Atomics.wait(this.states, segment, CHUNK_ZEROING);
      state = Atomics.load(this.states, segment);
    }
    return state === CHUNK_DATA;
  }

  /**
   * Ready `segment` for a write of chunk bytes [startInChunk, endInChunk) (within the
   * segment). Returns false when the segment is DATA (the caller copies); true when this
   * thread won a dropped segment: the rest of it is zeroed, it is in ZEROING, and the
   * caller copies and then publishes it.
   */
  private claimForWrite(segment: number, chunk: Uint8Array, startInChunk: number, endInChunk: number): boolean {
    for (;;) {
      const state = Atomics.load(this.states, segment);
      if (state === CHUNK_DATA) return false;
      if (state === CHUNK_ZEROING) {
        Atomics.wait(this.states, segment, CHUNK_ZEROING);
        continue;
      }
      if (state === CHUNK_FRESH) {
        if (Atomics.compareExchange(this.states, segment, CHUNK_FRESH, CHUNK_DATA) === CHUNK_FRESH) return false;
        continue;
      }
      assert(state === CHUNK_DROPPED, 'segment state word holds a known state');
      if (Atomics.compareExchange(this.states, segment, CHUNK_DROPPED, CHUNK_ZEROING) !== CHUNK_DROPPED) continue;
      // The fill must complete before DATA is published: a reader that sees DATA must
      // never see the stale bytes of the dropped contents.
      const chunkStartBytes = Math.floor((segment * this.segmentBytes) / this.chunkSizeBytes) * this.chunkSizeBytes;
      const segmentStart = segment * this.segmentBytes - chunkStartBytes;
      const segmentEnd = Math.min(this.sizeBytes - chunkStartBytes, segmentStart + this.segmentBytes);
      if (startInChunk > segmentStart) chunk.fill(0, segmentStart, startInChunk);
      if (endInChunk < segmentEnd) chunk.fill(0, endInChunk, segmentEnd);
      return true;
    }
  }

  private publish(segment: number): void {
    Atomics.store(this.states, segment, CHUNK_DATA);
    Atomics.notify(this.states, segment);
  }

  /** Every segment of chunk bytes [startInChunk, endInChunk) in DATA state (view's promise). */
  private materialize(chunkIndex: number, startInChunk: number, endInChunk: number): Uint8Array {
    const chunk = this.ensureChunkMemory(chunkIndex);
    const chunkStartBytes = chunkIndex * this.chunkSizeBytes;
    const first = Math.floor((chunkStartBytes + startInChunk) / this.segmentBytes);
    const last = Math.floor((chunkStartBytes + Math.max(startInChunk, endInChunk - 1)) / this.segmentBytes);
    for (let segment = first; segment <= last; segment++) {
      // An empty write range: a won dropped segment is zeroed whole.
      const segmentStart = segment * this.segmentBytes - chunkStartBytes;
      if (this.claimForWrite(segment, chunk, segmentStart, segmentStart)) this.publish(segment);
    }
    return chunk;
  }

  private dropSegment(segment: number): void {
    // Wait out a concurrent re-zeroing, then drop what it produced.
    if (!this.segmentReadable(segment)) return;
    Atomics.compareExchange(this.states, segment, CHUNK_DATA, CHUNK_DROPPED);
  }

  private ensureChunkMemory(chunkIndex: number): Uint8Array {
    const existing = this.chunks[chunkIndex];
    if (existing !== undefined) return existing;
    // Only private mode reaches here: no other thread holds this device's chunk table.
    assert(!this.shared, 'shared devices have every chunk');
    const chunk = new Uint8Array(new SharedArrayBuffer(this.chunkLengthBytes(chunkIndex)));
    this.chunks[chunkIndex] = chunk;
    return chunk;
  }
}

function withDefaults(options: MemoryDeviceOptions): Required<MemoryDeviceOptions> {
  return {
    sizeBytes: options.sizeBytes,
    sectorSizeBytes: options.sectorSizeBytes ?? 512,
    chunkSizeBytes: options.chunkSizeBytes ?? CHUNK_SIZE_BYTES_DEFAULT,
    readOnly: options.readOnly ?? false,
  };
}

function checkMemoryGeometry(options: Required<MemoryDeviceOptions>, syscall: string, path?: string): void {
  checkGeometry(options, syscall, path);
  const { chunkSizeBytes } = options;
  const powerOfTwo = Number.isSafeInteger(chunkSizeBytes) && chunkSizeBytes > 0 && (chunkSizeBytes & (chunkSizeBytes - 1)) === 0;
  if (powerOfTwo && chunkSizeBytes >= CHUNK_SIZE_BYTES_MIN && chunkSizeBytes <= CHUNK_SIZE_BYTES_MAX) return;
  const detail = `chunk size ${chunkSizeBytes} is not a power of two in [${CHUNK_SIZE_BYTES_MIN}, ${CHUNK_SIZE_BYTES_MAX}]`;
  throw new FsError('EINVAL', { syscall, path, detail });
}

interface ByteRun {
  offsetBytes: number;
  lengthBytes: number;
}

const scanZeros = new Uint8Array(SCAN_PIECE_BYTES);

function isZero(bytes: Uint8Array): boolean {
  // Buffer.compare is a memcmp: ~10x faster than a JS loop over the bytes.
  return Buffer.compare(bytes, scanZeros.subarray(0, bytes.length)) === 0;
}

/** Runs of non-zero SCAN_PIECE_BYTES pieces in `bytes`, each at most IMAGE_IO_BYTES_MAX long. */
export function* nonZeroRuns(bytes: Uint8Array): Generator<ByteRun> {
  let runStartBytes = -1;
  for (let offsetBytes = 0; offsetBytes < bytes.length; offsetBytes += SCAN_PIECE_BYTES) {
    const pieceEndBytes = Math.min(bytes.length, offsetBytes + SCAN_PIECE_BYTES);
    const zero = isZero(bytes.subarray(offsetBytes, pieceEndBytes));
    if (runStartBytes >= 0 && (zero || offsetBytes - runStartBytes >= IMAGE_IO_BYTES_MAX)) {
      yield { offsetBytes: runStartBytes, lengthBytes: offsetBytes - runStartBytes };
      runStartBytes = -1;
    }
    if (!zero && runStartBytes < 0) runStartBytes = offsetBytes;
  }
  if (runStartBytes >= 0) yield { offsetBytes: runStartBytes, lengthBytes: bytes.length - runStartBytes };
}

type ImageFile = Awaited<ReturnType<typeof openFile>>;

async function writeFully(file: ImageFile, source: Uint8Array, positionBytes: number): Promise<void> {
  let doneBytes = 0;
  while (doneBytes < source.length) {
    const { bytesWritten } = await file.write(source, doneBytes, source.length - doneBytes, positionBytes + doneBytes);
    if (bytesWritten === 0) throw new FsError('EIO', { syscall: 'write', detail: 'image write made no progress' });
    doneBytes += bytesWritten;
  }
}

/** Read the image into `device` piece by piece, copying only the non-zero runs. */
async function copyImageIn(path: string, device: MemoryDevice): Promise<void> {
  let file: ImageFile;
  try {
    file = await openFile(path, 'r');
  } catch (error) {
    throw openError(error, 'loadImage', path);
  }
  const bounce = allocAligned(IMAGE_IO_BYTES_MAX);
  try {
    for (let positionBytes = 0; positionBytes < device.sizeBytes; positionBytes += bounce.length) {
      const pieceBytes = Math.min(bounce.length, device.sizeBytes - positionBytes);
      const piece = bounce.subarray(0, pieceBytes);
      await readFully(file, piece, positionBytes);
      for (const run of nonZeroRuns(piece)) {
        device.writeSync(positionBytes + run.offsetBytes, piece.subarray(run.offsetBytes, run.offsetBytes + run.lengthBytes));
      }
    }
  } catch (error) {
    throw ioError(error, 'loadImage', path);
  } finally {
    await file.close().catch(() => undefined);
  }
}

async function readFully(file: ImageFile, target: Uint8Array, positionBytes: number): Promise<void> {
  let doneBytes = 0;
  while (doneBytes < target.length) {
    const { bytesRead } = await file.read(target, doneBytes, target.length - doneBytes, positionBytes + doneBytes);
    if (bytesRead === 0) throw new FsError('EIO', { syscall: 'read', detail: `image ended early at ${positionBytes + doneBytes}` });
    doneBytes += bytesRead;
  }
}
