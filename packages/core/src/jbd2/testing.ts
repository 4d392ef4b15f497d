/**
 * Test support for the journal (used by jbd2/*.test.ts and test/jbd2): a fresh journal
 * superblock as mke2fs writes it, and a RecordingDevice that logs every write and flush
 * so tests can check write ordering and rebuild the durable image at any crash point.
 *
 * Crash model: a write without FUA is volatile until the next flush; a FUA write is
 * durable when it completes; a flush makes every completed write durable. At a crash,
 * the durable state survives plus any subset of the volatile writes (in any order).
 */
import { assert } from '../assert.js';
import type { BlockDevice, WriteOptions } from '../device/block-device.js';
import { BlockType, JBD2_MAGIC, JSB_SIZE_BYTES, decodeJournalSuperblock, encodeJournalSuperblock, type JournalSuperblock } from '../format/jbd2.js';
import type { JournalExtent } from './log-map.js';
import { seededUnitRandom } from '../random.js';

export interface FreshJournalOptions {
  blockSizeBytes: number;
  maxLen: number;
  uuid: Uint8Array;
  /** s_sequence; mke2fs writes 1. */
  sequence?: number;
  featureIncompat?: number;
}

/** A v2 journal superblock as mke2fs makes it: no features, s_first 1, s_start 0, one user. */
export function freshJournalSuperblock(options: FreshJournalOptions): JournalSuperblock {
  const raw = new Uint8Array(JSB_SIZE_BYTES);
  const view = new DataView(raw.buffer);
  view.setUint32(0, JBD2_MAGIC);
  view.setUint32(4, BlockType.SUPERBLOCK_V2);
  const jsb = decodeJournalSuperblock(raw);
  Object.assign(jsb, {
    blockSize: options.blockSizeBytes, maxLen: options.maxLen, first: 1, sequenceFirst: options.sequence ?? 1, start: 0,
    uuid: options.uuid.slice(), nrUsers: 1, featureIncompat: options.featureIncompat ?? 0,
  });
  jsb.raw = encodeJournalSuperblock(jsb);
  return decodeJournalSuperblock(jsb.raw);
}

/** Writes a fresh journal superblock at journal block 0 (the first extent's first block). */
export async function formatJournal(device: BlockDevice, extents: readonly JournalExtent[], options: FreshJournalOptions): Promise<void> {
  const block = new Uint8Array(options.blockSizeBytes);
  block.set(encodeJournalSuperblock(freshJournalSuperblock(options)), 0);
  await device.write(extents[0].physicalStart * options.blockSizeBytes, block);
}

export type DeviceOp =
  | { kind: 'write'; offsetBytes: number; bytes: Uint8Array; fua: boolean }
  | { kind: 'flush' }
  | { kind: 'mark'; label: string };

/** Passes everything to `inner` and records each write (with a copy of its bytes) and flush. */
export class RecordingDevice implements BlockDevice {
  readonly ops: DeviceOp[] = [];
  /** Set to make every later write and flush reject with EIO-like errors (a dead disk). */
  failAfterOps: number | undefined;

  constructor(private readonly inner: BlockDevice) {}

  get sizeBytes(): number { return this.inner.sizeBytes; }
  get sectorSizeBytes(): number { return this.inner.sectorSizeBytes; }
  get readOnly(): boolean { return this.inner.readOnly; }

  read(offsetBytes: number, target: Uint8Array): Promise<void> {
    return this.inner.read(offsetBytes, target);
  }

  async write(offsetBytes: number, source: Uint8Array, options?: WriteOptions): Promise<void> {
    this.checkAlive();
    this.ops.push({ kind: 'write', offsetBytes, bytes: source.slice(), fua: options?.fua === true });
    await this.inner.write(offsetBytes, source, options);
  }

  async flush(): Promise<void> {
    this.checkAlive();
    this.ops.push({ kind: 'flush' });
    await this.inner.flush();
  }

  /** A label in the op log (e.g. "commit 3 done") that tests use to line up crash points. */
  mark(label: string): void {
    this.ops.push({ kind: 'mark', label });
  }

  discard(offsetBytes: number, lengthBytes: number): Promise<void> { return this.inner.discard(offsetBytes, lengthBytes); }
  zeroOut(offsetBytes: number, lengthBytes: number): Promise<void> { return this.inner.zeroOut(offsetBytes, lengthBytes); }
  close(): Promise<void> { return this.inner.close(); }

  private checkAlive(): void {
    if (this.failAfterOps !== undefined && this.ops.length >= this.failAfterOps) throw new Error('RecordingDevice: device failed (injected)');
  }
}

/**
 * The image a crash right after op `cut` (ops[0, cut)) leaves: `base` plus every durable
 * write, plus the volatile writes `keepVolatile` picks (called once per volatile write).
 */
export function crashImage(base: Uint8Array, ops: readonly DeviceOp[], cut: number, keepVolatile: (index: number) => boolean): Uint8Array {
  assert(cut >= 0 && cut <= ops.length, 'cut inside the op log');
  const image = base.slice();
  let volatile: number[] = [];
  const apply = (index: number): void => {
    const op = ops[index];
    assert(op.kind === 'write', 'apply a write');
    image.set(op.bytes, op.offsetBytes);
  };
  for (let i = 0; i < cut; i++) {
    const op = ops[i];
    if (op.kind === 'flush') {
      for (const index of volatile) apply(index);
      volatile = [];
    } else if (op.kind === 'write') {
      if (op.fua) apply(i);
      else volatile.push(i);
    }
  }
  // Any subset of the volatile writes survives; the kept ones land in issue order (a
  // later write to the same place wins, as it would in the device's cache).
  for (const index of volatile) if (keepVolatile(index)) apply(index);
  return image;
}

/** The project's seeded PRNG in [0, 1) (random.ts), so every failure reproduces from its seed. */
export const prng = seededUnitRandom;
