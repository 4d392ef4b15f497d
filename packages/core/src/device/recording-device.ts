/**
 * RecordingDevice: a pass-through BlockDevice that keeps an ordered log of everything
 * that changes storage (writes, discards, zero-outs, flushes) plus markers the caller
 * inserts ("fsync of /a returned"). The crash harness (test/crash/) replays the log to
 * build the images a real disk might hold after a power cut at any point.
 *
 * Log order = the order requests *took effect*, which is what durability is about:
 * - a write is logged when it completes (its bytes are copied when it is issued, so a
 *   caller that reuses its buffer after completion cannot change the log);
 * - a flush is logged when it is issued: a flush covers only writes completed before it
 *   was issued, so a write completing while the flush is in flight lands after it in
 *   the log and counts as not yet durable (the conservative reading). A flush that fails
 *   stays in the log with `failed: true` and guarantees nothing;
 * - discard and zeroOut are logged as writes of zeros (`bytes: null`), the only thing a
 *   MemoryDevice does for them (a real disk may also leave the old bytes: see the crash
 *   model in test/crash/crash-images.ts);
 * - a write or zero-out the inner device rejects is not logged.
 *
 * Memory: write payloads are copied into an arena of large ArrayBuffer chunks (no
 * per-write allocation); zeros cost nothing. Every event also counts EVENT_OVERHEAD_BYTES
 * against `maxLogBytes`. Exceeding the bound throws RecordingLimitError (not an FsError,
 * so no engine error path can swallow it as an I/O error) and sets `overflowed`, which
 * the harness checks after the workload. Cost per write: one copy of its bytes.
 *
 * Workers: `handle()` refuses (ENOTSUP). Writes made by a worker through a handle would
 * reach the storage without passing through the log, and the crash images would lie.
 */
import { assert } from '../assert.js';
import { FsError } from '../vfs/errors.js';
import type { BlockDevice, DeviceHandle, SyncBlockDevice, WriteOptions } from './block-device.js';

/** Default bound on the log: payload bytes plus per-event overhead. */
export const RECORDING_LOG_BYTES_MAX_DEFAULT = 1024 * 1024 * 1024;
/** Arena chunk size; a write larger than this gets a chunk of its own. */
export const RECORDING_ARENA_CHUNK_BYTES = 16 * 1024 * 1024;
/** What one event object costs roughly, charged against the bound. */
export const EVENT_OVERHEAD_BYTES = 128;

export interface RecordedWrite {
  readonly kind: 'write';
  /** Position in the log (every event kind shares one sequence). */
  readonly seq: number;
  /** Position among writes only. */
  readonly writeIndex: number;
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  /** A copy of the data; null for a write of zeros (discard, zeroOut). */
  readonly bytes: Uint8Array | null;
  readonly fua: boolean;
  readonly source: 'write' | 'discard' | 'zeroOut';
}

export interface RecordedFlush {
  readonly kind: 'flush';
  readonly seq: number;
  /** Set when the inner flush rejected: such a flush guarantees nothing. */
  failed: boolean;
}

export interface RecordedMark {
  readonly kind: 'mark';
  readonly seq: number;
  readonly label: string;
  readonly data: unknown;
}

export type RecordedEvent = RecordedWrite | RecordedFlush | RecordedMark;

/** Everything a crash-image builder needs from a recorded run. */
export interface RecordedLog {
  readonly sizeBytes: number;
  readonly sectorSizeBytes: number;
  readonly events: readonly RecordedEvent[];
}

export interface RecordingDeviceOptions {
  /** Bound on payload bytes + EVENT_OVERHEAD_BYTES per event; default 1 GiB. */
  maxLogBytes?: number;
  /** Arena chunk size in bytes; default 16 MiB (smaller when maxLogBytes is smaller). */
  arenaChunkBytes?: number;
}

/** The log outgrew `maxLogBytes`. A harness error, never an operating error. */
export class RecordingLimitError extends Error {
  override name = 'RecordingLimitError';
}

function isSync(device: BlockDevice): device is SyncBlockDevice {
  return typeof (device as Partial<SyncBlockDevice>).writeSync === 'function';
}

export class RecordingDevice implements SyncBlockDevice {
  readonly inner: BlockDevice;
  /** True when the inner device has the synchronous calls (so this one does too). */
  readonly synchronous: boolean;
  readonly maxLogBytes: number;
  /** Set once the bound was exceeded; the log is then incomplete. */
  overflowed = false;
  private readonly eventList: RecordedEvent[] = [];
  private writeCount = 0;
  private logBytes = 0;
  private readonly arenaChunkBytes: number;
  private arena: Uint8Array = new Uint8Array(0);
  private arenaUsedBytes = 0;

  constructor(inner: BlockDevice, options: RecordingDeviceOptions = {}) {
    this.inner = inner;
    this.synchronous = isSync(inner);
    this.maxLogBytes = options.maxLogBytes ?? RECORDING_LOG_BYTES_MAX_DEFAULT;
    this.arenaChunkBytes = Math.min(options.arenaChunkBytes ?? RECORDING_ARENA_CHUNK_BYTES, this.maxLogBytes);
    assert(Number.isSafeInteger(this.maxLogBytes) && this.maxLogBytes > 0, 'maxLogBytes is a positive integer');
    assert(Number.isSafeInteger(this.arenaChunkBytes) && this.arenaChunkBytes > 0, 'arenaChunkBytes is a positive integer');
  }

  get sizeBytes(): number { return this.inner.sizeBytes; }
  get sectorSizeBytes(): number { return this.inner.sectorSizeBytes; }
  get readOnly(): boolean { return this.inner.readOnly; }

  /** The events so far, in log order (a live view: do not modify). */
  get events(): readonly RecordedEvent[] { return this.eventList; }

  /** Bytes charged against maxLogBytes so far. */
  get logSizeBytes(): number { return this.logBytes; }

  /** The log with the device geometry, for the crash-image builder. */
  log(): RecordedLog {
    return { sizeBytes: this.sizeBytes, sectorSizeBytes: this.sectorSizeBytes, events: this.eventList };
  }

  /**
   * Insert a marker at the current position of the log: everything logged before it
   * happened before the caller's statement (e.g. "fsync of /a returned").
   */
  mark(label: string, data?: unknown): RecordedMark {
    this.charge(EVENT_OVERHEAD_BYTES + label.length);
    const event: RecordedMark = { kind: 'mark', seq: this.eventList.length, label, data };
    this.eventList.push(event);
    return event;
  }

  // ---- async contract -------------------------------------------------------------

  async read(offsetBytes: number, target: Uint8Array): Promise<void> {
    return this.inner.read(offsetBytes, target);
  }

  async write(offsetBytes: number, source: Uint8Array, options?: WriteOptions): Promise<void> {
    const copy = this.copyOf(source);
    await this.inner.write(offsetBytes, source, options);
    this.pushWrite(offsetBytes, source.length, copy, options?.fua === true, 'write');
  }

  async flush(): Promise<void> {
    const event = this.pushFlush();
    try {
      await this.inner.flush();
    } catch (error) {
      event.failed = true;
      throw error;
    }
  }

  async discard(offsetBytes: number, lengthBytes: number): Promise<void> {
    this.charge(EVENT_OVERHEAD_BYTES);
    await this.inner.discard(offsetBytes, lengthBytes);
    this.pushWrite(offsetBytes, lengthBytes, null, false, 'discard');
  }

  async zeroOut(offsetBytes: number, lengthBytes: number): Promise<void> {
    this.charge(EVENT_OVERHEAD_BYTES);
    await this.inner.zeroOut(offsetBytes, lengthBytes);
    this.pushWrite(offsetBytes, lengthBytes, null, false, 'zeroOut');
  }

  async close(): Promise<void> {
    return this.inner.close();
  }

  // ---- sync contract (only when the inner device has it) ----------------------------

  readSync(offsetBytes: number, target: Uint8Array): void {
    this.syncInner().readSync(offsetBytes, target);
  }

  writeSync(offsetBytes: number, source: Uint8Array, options?: WriteOptions): void {
    const inner = this.syncInner();
    const copy = this.copyOf(source);
    inner.writeSync(offsetBytes, source, options);
    this.pushWrite(offsetBytes, source.length, copy, options?.fua === true, 'write');
  }

  flushSync(): void {
    const inner = this.syncInner();
    const event = this.pushFlush();
    try {
      inner.flushSync();
    } catch (error) {
      event.failed = true;
      throw error;
    }
  }

  discardSync(offsetBytes: number, lengthBytes: number): void {
    const inner = this.syncInner();
    this.charge(EVENT_OVERHEAD_BYTES);
    inner.discardSync(offsetBytes, lengthBytes);
    this.pushWrite(offsetBytes, lengthBytes, null, false, 'discard');
  }

  zeroOutSync(offsetBytes: number, lengthBytes: number): void {
    const inner = this.syncInner();
    this.charge(EVENT_OVERHEAD_BYTES);
    inner.zeroOutSync(offsetBytes, lengthBytes);
    this.pushWrite(offsetBytes, lengthBytes, null, false, 'zeroOut');
  }

  closeSync(): void {
    this.syncInner().closeSync();
  }

  handle(): DeviceHandle {
    throw new FsError('ENOTSUP', {
      syscall: 'handle',
      detail: 'a recording device cannot be shared with workers: their writes would bypass the log',
    });
  }

  // ---- internals ------------------------------------------------------------------

  private syncInner(): SyncBlockDevice {
    assert(this.synchronous, 'synchronous calls need an inner device that has them');
    return this.inner as SyncBlockDevice;
  }

  /** Charge `bytes` against the bound; throw (and remember) when it is exceeded. */
  private charge(bytes: number): void {
    if (this.logBytes + bytes > this.maxLogBytes) {
      this.overflowed = true;
      throw new RecordingLimitError(
        `recording log would grow to ${this.logBytes + bytes} bytes, over its bound of ${this.maxLogBytes} (event ${this.eventList.length})`,
      );
    }
    this.logBytes += bytes;
  }

  /** A copy of `source` in the arena (charged before the request is passed on). */
  private copyOf(source: Uint8Array): Uint8Array {
    this.charge(EVENT_OVERHEAD_BYTES + source.length);
    if (source.length > this.arenaChunkBytes) return source.slice();
    if (this.arenaUsedBytes + source.length > this.arena.length) {
      // The tail of the old chunk is wasted; at most one write's worth per chunk.
      this.arena = new Uint8Array(this.arenaChunkBytes);
      this.arenaUsedBytes = 0;
    }
    const copy = this.arena.subarray(this.arenaUsedBytes, this.arenaUsedBytes + source.length);
    copy.set(source);
    this.arenaUsedBytes += source.length;
    return copy;
  }

  private pushWrite(
    offsetBytes: number,
    lengthBytes: number,
    bytes: Uint8Array | null,
    fua: boolean,
    source: RecordedWrite['source'],
  ): void {
    assert(bytes === null || bytes.length === lengthBytes, 'a logged write holds exactly its bytes');
    const event: RecordedWrite = {
      kind: 'write',
      seq: this.eventList.length,
      writeIndex: this.writeCount++,
      offsetBytes,
      lengthBytes,
      bytes,
      fua,
      source,
    };
    this.eventList.push(event);
  }

  private pushFlush(): RecordedFlush {
    this.charge(EVENT_OVERHEAD_BYTES);
    const event: RecordedFlush = { kind: 'flush', seq: this.eventList.length, failed: false };
    this.eventList.push(event);
    return event;
  }
}
