// Crash images: from a base image and a recorded run (RecordingDevice log), the device
// contents a real disk may hold after a power cut at some point of the run.
//
// The crash model. A crash *point* p means events [0, p) of the log happened and nothing
// after. Let F be the last successful flush before p (F = -1 when there is none):
//
//   log:   w w F w w(fua) w mark w | w w ...
//          \_durable_/ \__ window ___/ ^ p
//
// - every write before F is durable: applied, whole, in log order;
// - the *window* is the writes after F and before p. Each may or may not have reached the
//   medium: a subset is applied, in log order (so where two applied writes overlap the
//   later one wins, and where only the earlier one is applied its bytes show);
// - a FUA write in the window completed before p, so it is durable: always applied, whole;
// - an applied non-FUA window write may be *torn*: only some of its sectors applied
//   (sector = the device's sectorSizeBytes, the unit a disk writes atomically);
// - markers before p are the acknowledged operations: what a checker requires to survive.
// Writes after p never appear. A discard or zeroOut is a write of zeros (a real disk may
// also leave old bytes there; that case is not generated).
//
// A state is a small replayable CrashSpec {kind, seed, point, applied bitmap, torn}: the
// bitmap and tears are stored outright, so replay needs no PRNG, and a random spec can
// also be regenerated from its seed alone. `formatCrashSpec` gives a one-line reproducer.
//
// Cost: one working MemoryDevice holds "base + writes before the current flush cursor".
// States are visited in point order; moving to a state applies the writes between the
// old and new flush once (no undo), then applies the window subset through an UndoDevice
// that saves the pre-image of every range it changes, the checker's own writes included.
// release() puts the pre-images back. So a state costs ~2x its window bytes plus whatever
// the checker writes, never a copy of the image (a replay of an earlier point re-copies
// the base once).
import { Buffer } from 'node:buffer';
import { FsError, MemoryDevice, type DeviceHandle, type SyncBlockDevice, type WriteOptions } from '@ext4ts/core';
import { seededRandom } from '../../packages/core/src/wasm/testing.js';
import type { RecordedEvent, RecordedLog, RecordedMark, RecordedWrite } from '../../packages/core/src/device/recording-device.js';

/** A write longer than this many sectors is never torn (keeps specs short). */
export const TORN_SECTORS_MAX = 2048;
const COPY_PIECE_BYTES = 1024 * 1024;

export interface TornWrite {
  /** Index of the write in the state's window. */
  window: number;
  /** Hex bitmap over the write's sectors: bit i set = sector i applied. */
  sectors: string;
}

export interface CrashSpec {
  kind: 'flush' | 'random';
  /** For a random spec, regenerates it from the log (randomCrashSpec); 0 for flush specs. */
  seed: number;
  /** The crash happens after events [0, point). */
  point: number;
  /** Hex bitmap over the window's writes: bit i set = i-th write after the last flush applied. */
  applied: string;
  /** Applied window writes of which only some sectors reached the medium. */
  torn: TornWrite[];
}

export interface RandomSpecOptions {
  /** Probability that a state tears one or two of its applied writes; default 0.3. */
  tornProbability?: number;
}

// ---- bitmaps and the one-line form --------------------------------------------------

/** Bit i of the result is bits[i] (nibble-wise little endian, trailing zeros trimmed). */
export function bitsToHex(bits: ArrayLike<number>): string {
  let hex = '';
  for (let nibbleStart = 0; nibbleStart < bits.length; nibbleStart += 4) {
    let nibble = 0;
    for (let bit = 0; bit < 4 && nibbleStart + bit < bits.length; bit++) nibble |= (bits[nibbleStart + bit] ? 1 : 0) << bit;
    hex += nibble.toString(16);
  }
  return hex.replace(/0+$/, '');
}

/** The first `count` bits of a hex bitmap; throws if a set bit lies beyond them. */
export function hexToBits(hex: string, count: number): Uint8Array {
  if (!/^[0-9a-f]*$/.test(hex)) throw new Error(`bitmap '${hex}' is not lowercase hex`);
  const bits = new Uint8Array(count);
  for (let nibbleIndex = 0; nibbleIndex < hex.length; nibbleIndex++) {
    const nibble = parseInt(hex[nibbleIndex], 16);
    for (let bit = 0; bit < 4; bit++) {
      if ((nibble & (1 << bit)) === 0) continue;
      const index = nibbleIndex * 4 + bit;
      if (index >= count) throw new Error(`bitmap '${hex}' sets bit ${index}, beyond its ${count} bits`);
      bits[index] = 1;
    }
  }
  return bits;
}

/** `v1 kind=random seed=7 point=120 applied=5f torn=3:0f,4:1` */
export function formatCrashSpec(spec: CrashSpec): string {
  const torn = spec.torn.map((tear) => `${tear.window}:${tear.sectors || '0'}`).join(',');
  return `v1 kind=${spec.kind} seed=${spec.seed} point=${spec.point} applied=${spec.applied || '0'} torn=${torn || '-'}`;
}

export function parseCrashSpec(text: string): CrashSpec {
  const fields = new Map(text.trim().split(/\s+/).slice(1).map((field) => field.split('=') as [string, string]));
  if (!text.trim().startsWith('v1 ')) throw new Error(`crash spec '${text}' is not v1`);
  const kind = fields.get('kind');
  if (kind !== 'flush' && kind !== 'random') throw new Error(`crash spec '${text}': bad kind`);
  const torn = fields.get('torn') ?? '-';
  return {
    kind,
    seed: Number(fields.get('seed')),
    point: Number(fields.get('point')),
    applied: (fields.get('applied') ?? '').replace(/^0$/, ''),
    torn: torn === '-' ? [] : torn.split(',').map((item) => {
      const [window, sectors] = item.split(':');
      return { window: Number(window), sectors: sectors.replace(/^0$/, '') };
    }),
  };
}

// ---- the log, indexed ---------------------------------------------------------------

/** Binary search: the number of items with key(item) < bound (items sorted by key). */
function countBelow<T>(items: readonly T[], bound: number, key: (item: T) => number): number {
  let low = 0;
  let high = items.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (key(items[middle]) < bound) low = middle + 1;
    else high = middle;
  }
  return low;
}

/** Where a crash point's window lies in the write list. */
export interface CrashWindow {
  /** Seq of the last successful flush before the point, or -1. */
  flushSeq: number;
  /** writes[first, end) is the window. */
  first: number;
  end: number;
}

export class CrashLog {
  readonly sizeBytes: number;
  readonly sectorSizeBytes: number;
  readonly events: readonly RecordedEvent[];
  readonly writes: readonly RecordedWrite[];
  /** Successful flushes only: a failed flush guarantees nothing. */
  readonly flushSeqs: readonly number[];
  readonly marks: readonly RecordedMark[];

  constructor(log: RecordedLog) {
    this.sizeBytes = log.sizeBytes;
    this.sectorSizeBytes = log.sectorSizeBytes;
    this.events = log.events;
    this.writes = log.events.filter((event): event is RecordedWrite => event.kind === 'write');
    this.flushSeqs = log.events.filter((event) => event.kind === 'flush' && !event.failed).map((event) => event.seq);
    this.marks = log.events.filter((event): event is RecordedMark => event.kind === 'mark');
    log.events.forEach((event, index) => {
      if (event.seq !== index) throw new Error(`log event ${index} has seq ${event.seq}`);
    });
  }

  window(point: number): CrashWindow {
    const flushCount = countBelow(this.flushSeqs, point, (seq) => seq);
    const flushSeq = flushCount === 0 ? -1 : this.flushSeqs[flushCount - 1];
    const first = countBelow(this.writes, flushSeq + 1, (write) => write.seq);
    const end = countBelow(this.writes, point, (write) => write.seq);
    return { flushSeq, first, end };
  }

  /** Markers before the point: the operations acknowledged before the crash. */
  acknowledged(point: number): readonly RecordedMark[] {
    return this.marks.slice(0, countBelow(this.marks, point, (mark) => mark.seq));
  }

  sectorCount(write: RecordedWrite): number {
    return write.lengthBytes / this.sectorSizeBytes;
  }
}

/** Throw an Error naming the first rule `spec` breaks for this log (the crash model above). */
export function validateCrashSpec(log: CrashLog, spec: CrashSpec): void {
  const fail = (why: string): never => {
    throw new Error(`crash spec '${formatCrashSpec(spec)}' is invalid: ${why}`);
  };
  if (!Number.isSafeInteger(spec.point) || spec.point < 0 || spec.point > log.events.length) fail('point outside the log');
  const { first, end } = log.window(spec.point);
  const applied = hexToBits(spec.applied, end - first);
  for (let window = 0; window < end - first; window++) {
    if (log.writes[first + window].fua && applied[window] !== 1) fail(`FUA write ${window} of the window is not applied`);
  }
  let previous = -1;
  for (const tear of spec.torn) {
    if (!Number.isSafeInteger(tear.window) || tear.window <= previous || tear.window >= end - first) fail(`torn entry ${tear.window} out of order or range`);
    previous = tear.window;
    const write = log.writes[first + tear.window];
    if (applied[tear.window] !== 1) fail(`torn write ${tear.window} is not applied`);
    if (write.fua) fail(`FUA write ${tear.window} is torn`);
    if (log.sectorCount(write) > TORN_SECTORS_MAX) fail(`write ${tear.window} is too long to tear`);
    hexToBits(tear.sectors, log.sectorCount(write));
  }
}

// ---- generating specs ---------------------------------------------------------------

/** The seed of the i-th random state of a campaign seed (splitmix-style mixing). */
export function stateSeed(seed: number, stateIndex: number): number {
  let mixed = (Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(stateIndex + 1, 0x85ebca6b)) >>> 0;
  mixed = Math.imul(mixed ^ (mixed >>> 16), 0x7feb352d) >>> 0;
  return (mixed ^ (mixed >>> 15)) >>> 0;
}

/** One state per successful flush: the crash right after it, nothing later applied. */
export function flushCrashSpecs(log: CrashLog): CrashSpec[] {
  return log.flushSeqs.map((seq) => ({ kind: 'flush', seed: 0, point: seq + 1, applied: '', torn: [] }));
}

/** The random state `seed` picks: a point, a subset of its window, maybe some tears. */
export function randomCrashSpec(log: CrashLog, seed: number, options: RandomSpecOptions = {}): CrashSpec {
  const next = seededRandom(seed);
  const uniform = (): number => next() / 2 ** 32;
  const below = (bound: number): number => Math.floor(uniform() * bound);
  const point = log.events.length === 0 ? 0 : 1 + below(log.events.length);
  const { first, end } = log.window(point);
  const count = end - first;
  const applied = new Uint8Array(count);
  // Three shapes of loss: a random subset (density varies per state), an in-order
  // prefix (a disk that destages in order), or everything but one to three writes.
  const shape = uniform();
  if (shape < 0.4) {
    const density = uniform();
    for (let window = 0; window < count; window++) applied[window] = uniform() < density ? 1 : 0;
  } else if (shape < 0.7) {
    applied.fill(1, 0, below(count + 1));
  } else {
    applied.fill(1);
    const dropCount = 1 + below(3);
    for (let drop = 0; drop < dropCount && count > 0; drop++) applied[below(count)] = 0;
  }
  for (let window = 0; window < count; window++) if (log.writes[first + window].fua) applied[window] = 1;
  const torn = uniform() < (options.tornProbability ?? 0.3) ? chooseTears(log, first, applied, uniform, below) : [];
  return { kind: 'random', seed, point, applied: bitsToHex(applied), torn };
}

function chooseTears(
  log: CrashLog,
  first: number,
  applied: Uint8Array,
  uniform: () => number,
  below: (bound: number) => number,
): TornWrite[] {
  const candidates: number[] = [];
  for (let window = 0; window < applied.length; window++) {
    const write = log.writes[first + window];
    const sectorCount = log.sectorCount(write);
    if (applied[window] === 1 && !write.fua && sectorCount > 1 && sectorCount <= TORN_SECTORS_MAX) candidates.push(window);
  }
  if (candidates.length === 0) return [];
  // The last candidate is the write most likely in flight at the cut: favour it.
  const chosen = new Set<number>([uniform() < 0.5 ? candidates[candidates.length - 1] : candidates[below(candidates.length)]]);
  if (uniform() < 0.3) chosen.add(candidates[below(candidates.length)]);
  return [...chosen].sort((a, b) => a - b).map((window) => {
    const sectorCount = log.sectorCount(log.writes[first + window]);
    const sectors = new Uint8Array(sectorCount);
    if (uniform() < 0.5) sectors.fill(1, 0, 1 + below(sectorCount - 1));
    else for (let sector = 0; sector < sectorCount; sector++) sectors[sector] = uniform() < 0.5 ? 1 : 0;
    return { window, sectors: bitsToHex(sectors) };
  });
}

// ---- materialising ------------------------------------------------------------------

function isZero(bytes: Uint8Array, zeros: Uint8Array): boolean {
  return Buffer.compare(bytes, zeros.subarray(0, bytes.length)) === 0;
}

/** Copy a device (or image bytes) into a new MemoryDevice, skipping all-zero pieces. */
export function copyToMemoryDevice(source: Uint8Array | SyncBlockDevice, sectorSizeBytes: number, sizeBytes = source instanceof Uint8Array ? source.length : source.sizeBytes): MemoryDevice {
  const target = MemoryDevice.create({ sizeBytes, sectorSizeBytes });
  const piece = new Uint8Array(COPY_PIECE_BYTES);
  const zeros = new Uint8Array(COPY_PIECE_BYTES);
  for (let offsetBytes = 0; offsetBytes < sizeBytes; offsetBytes += COPY_PIECE_BYTES) {
    const lengthBytes = Math.min(COPY_PIECE_BYTES, sizeBytes - offsetBytes);
    const view = piece.subarray(0, lengthBytes);
    if (source instanceof Uint8Array) view.set(source.subarray(offsetBytes, offsetBytes + lengthBytes));
    else source.readSync(offsetBytes, view);
    if (!isZero(view, zeros)) target.writeSync(offsetBytes, view);
  }
  return target;
}

/** Apply one logged write (or the chosen sectors of it) to a device. */
function applyWrite(device: SyncBlockDevice, write: RecordedWrite, sectorSizeBytes: number, sectors?: Uint8Array): void {
  const put = (startBytes: number, endBytes: number): void => {
    if (write.bytes === null) device.zeroOutSync(write.offsetBytes + startBytes, endBytes - startBytes);
    else device.writeSync(write.offsetBytes + startBytes, write.bytes.subarray(startBytes, endBytes));
  };
  if (sectors === undefined) return put(0, write.lengthBytes);
  // Runs of kept sectors, each one request.
  let runStart = -1;
  for (let sector = 0; sector <= sectors.length; sector++) {
    const kept = sector < sectors.length && sectors[sector] === 1;
    if (kept && runStart < 0) runStart = sector;
    if (!kept && runStart >= 0) {
      put(runStart * sectorSizeBytes, sector * sectorSizeBytes);
      runStart = -1;
    }
  }
}

/** One materialised crash state. Only one is live per CrashImages at a time. */
export interface CrashImage {
  readonly spec: CrashSpec;
  /** The crash state; writes to it (recovery) are undone by release(). */
  readonly device: UndoDevice;
  /** Markers logged before the crash point. */
  readonly acknowledged: readonly RecordedMark[];
  /** The window writes that were applied (whole or torn), for diagnostics. */
  readonly appliedWrites: readonly RecordedWrite[];
  /** Put the working device back to the flush cursor; the image is dead afterwards. */
  release(): void;
}

export class CrashImages {
  readonly log: CrashLog;
  private readonly base: Uint8Array | SyncBlockDevice;
  private work: MemoryDevice;
  /** Every write with seq < cursorSeq is applied to `work`; cursorSeq is a flush seq + 1 or 0. */
  private cursorSeq = 0;
  private live: CrashImage | undefined;
  private undoArena: Uint8Array = new Uint8Array(4 * 1024 * 1024);
  /** How many times the base had to be copied in (1 when specs come in point order). */
  baseCopyCount = 1;

  /**
   * `base` is the device contents before the recorded run; it must not change while
   * this object lives (it is re-read only when a spec goes back before the cursor).
   */
  constructor(base: Uint8Array | SyncBlockDevice, log: RecordedLog) {
    this.log = new CrashLog(log);
    this.base = base;
    const baseSizeBytes = base instanceof Uint8Array ? base.length : base.sizeBytes;
    if (baseSizeBytes !== log.sizeBytes) throw new Error(`base of ${baseSizeBytes} bytes, log of a ${log.sizeBytes}-byte device`);
    this.work = copyToMemoryDevice(base, log.sectorSizeBytes);
  }

  materialize(spec: CrashSpec): CrashImage {
    if (this.live !== undefined) throw new Error('release the previous crash image first');
    validateCrashSpec(this.log, spec);
    const window = this.log.window(spec.point);
    this.moveCursor(window.flushSeq + 1);
    const device = new UndoDevice(this.work, this.undoArena);
    const applied = hexToBits(spec.applied, window.end - window.first);
    const tears = new Map(spec.torn.map((tear) => [tear.window, tear.sectors]));
    const appliedWrites: RecordedWrite[] = [];
    for (let index = 0; index < applied.length; index++) {
      if (applied[index] !== 1) continue;
      const write = this.log.writes[window.first + index];
      const tear = tears.get(index);
      applyWrite(device, write, this.log.sectorSizeBytes, tear === undefined ? undefined : hexToBits(tear, this.log.sectorCount(write)));
      appliedWrites.push(write);
    }
    const image: CrashImage = {
      spec,
      device,
      acknowledged: this.log.acknowledged(spec.point),
      appliedWrites,
      release: () => {
        device.undoAll();
        this.undoArena = device.arenaBuffer;
        this.live = undefined;
      },
    };
    this.live = image;
    return image;
  }

  /** The contents of a state as a standalone MemoryDevice (a full copy; for keeping). */
  snapshot(spec: CrashSpec): MemoryDevice {
    const image = this.materialize(spec);
    try {
      return copyToMemoryDevice(this.work, this.log.sectorSizeBytes);
    } finally {
      image.release();
    }
  }

  /** Bring `work` to "base + every write before seq `targetSeq`". */
  private moveCursor(targetSeq: number): void {
    if (targetSeq < this.cursorSeq) {
      this.work.closeSync();
      this.work = copyToMemoryDevice(this.base, this.log.sectorSizeBytes);
      this.cursorSeq = 0;
      this.baseCopyCount++;
    }
    const from = countBelow(this.log.writes, this.cursorSeq, (write) => write.seq);
    const to = countBelow(this.log.writes, targetSeq, (write) => write.seq);
    for (let index = from; index < to; index++) applyWrite(this.work, this.log.writes[index], this.log.sectorSizeBytes);
    this.cursorSeq = targetSeq;
  }
}

// ---- the undo device ----------------------------------------------------------------

interface PreImage {
  offsetBytes: number;
  lengthBytes: number;
  /** Where the old bytes sit in the undo arena. */
  arenaOffsetBytes: number;
}

/**
 * A SyncBlockDevice over the working MemoryDevice that saves the old bytes of every
 * range before changing it, so undoAll() restores the device exactly. No handle():
 * a worker's writes would escape the undo log.
 */
export class UndoDevice implements SyncBlockDevice {
  private readonly preImages: PreImage[] = [];
  private arenaUsedBytes = 0;
  private closed = false;
  private undone = false;

  /** `arena` is scratch memory reused across states (fresh memory is slow to touch). */
  constructor(private readonly target: MemoryDevice, private arena: Uint8Array) {}

  /** The undo arena, possibly grown: the next state's device reuses it. */
  get arenaBuffer(): Uint8Array { return this.arena; }

  get sizeBytes(): number { return this.target.sizeBytes; }
  get sectorSizeBytes(): number { return this.target.sectorSizeBytes; }
  get readOnly(): boolean { return false; }

  /** Bytes saved so far (≈ bytes written to this state). */
  get undoBytes(): number { return this.arenaUsedBytes; }

  readSync(offsetBytes: number, target: Uint8Array): void {
    this.checkOpen('read');
    this.target.readSync(offsetBytes, target);
  }

  writeSync(offsetBytes: number, source: Uint8Array, _options?: WriteOptions): void {
    this.save('write', offsetBytes, source.length);
    this.target.writeSync(offsetBytes, source);
  }

  flushSync(): void {
    this.checkOpen('flush');
  }

  discardSync(offsetBytes: number, lengthBytes: number): void {
    this.save('discard', offsetBytes, lengthBytes);
    this.target.discardSync(offsetBytes, lengthBytes);
  }

  zeroOutSync(offsetBytes: number, lengthBytes: number): void {
    this.save('zeroOut', offsetBytes, lengthBytes);
    this.target.zeroOutSync(offsetBytes, lengthBytes);
  }

  closeSync(): void {
    this.checkOpen('close');
    this.closed = true;
  }

  async read(offsetBytes: number, target: Uint8Array): Promise<void> { this.readSync(offsetBytes, target); }
  async write(offsetBytes: number, source: Uint8Array, options?: WriteOptions): Promise<void> { this.writeSync(offsetBytes, source, options); }
  async flush(): Promise<void> { this.flushSync(); }
  async discard(offsetBytes: number, lengthBytes: number): Promise<void> { this.discardSync(offsetBytes, lengthBytes); }
  async zeroOut(offsetBytes: number, lengthBytes: number): Promise<void> { this.zeroOutSync(offsetBytes, lengthBytes); }
  async close(): Promise<void> { this.closeSync(); }

  handle(): DeviceHandle {
    throw new FsError('ENOTSUP', { syscall: 'handle', detail: 'a crash image cannot be shared with workers: their writes would escape the undo log' });
  }

  /** Write the current contents (crash state + what the checker wrote) to an image file. */
  async saveImage(path: string): Promise<void> {
    this.checkOpen('saveImage');
    await this.target.saveImage(path);
  }

  /** Restore every range this device changed, newest first. Called by CrashImage.release. */
  undoAll(): void {
    if (this.undone) throw new Error('crash image released twice');
    for (let index = this.preImages.length - 1; index >= 0; index--) {
      const { offsetBytes, lengthBytes, arenaOffsetBytes } = this.preImages[index];
      this.target.writeSync(offsetBytes, this.arena.subarray(arenaOffsetBytes, arenaOffsetBytes + lengthBytes));
    }
    this.undone = true;
    this.closed = true;
  }

  private checkOpen(syscall: string): void {
    if (this.closed) throw new FsError('EBADF', { syscall, detail: 'crash image is closed or released' });
  }

  private save(syscall: string, offsetBytes: number, lengthBytes: number): void {
    this.checkOpen(syscall);
    // An invalid range throws from readSync below, before anything is saved or written.
    if (this.arenaUsedBytes + lengthBytes > this.arena.length) {
      const grown = new Uint8Array(Math.max(this.arena.length * 2, this.arenaUsedBytes + lengthBytes));
      grown.set(this.arena.subarray(0, this.arenaUsedBytes));
      this.arena = grown;
    }
    this.target.readSync(offsetBytes, this.arena.subarray(this.arenaUsedBytes, this.arenaUsedBytes + lengthBytes));
    this.preImages.push({ offsetBytes, lengthBytes, arenaOffsetBytes: this.arenaUsedBytes });
    this.arenaUsedBytes += lengthBytes;
  }
}
