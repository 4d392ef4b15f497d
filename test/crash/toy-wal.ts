// A toy write-ahead log that proves the crash harness: small enough to be obviously right
// (or, in its broken variants, obviously wrong), real enough to need the flush/FUA rules.
//
// Layout (512-byte sectors):
//
//   sector 0        super: magic, checkpointTx, checksum (written FUA)
//   sectors 8..328  32 journal slots of 10 sectors: header, payload (1..8), ..., commit at +9
//   sectors 512..   64 home locations of 8 sectors each
//
// Transaction t (1-based) goes to slot (t - 1) % 32 and writes home location `home`:
//   correct:          record; flush; commit (FUA); ack; home
//   ack-before-flush: record; commit (FUA); ack; flush; home       <- acked tx may be lost
//   unchecked-record: record; commit (FUA); flush; ack; home, and recovery trusts the
//                     commit without checking the payload checksum <- torn record accepted
// Every 16 transactions: flush (home writes durable), then super.checkpointTx = t (FUA),
// so slot reuse (t + 32 overwrites t) never destroys a record recovery may still need.
//
// Recovery: from checkpointTx + 1 upwards, replay each transaction whose commit (magic, tx)
// and header (magic, tx, length) are present and whose checksum matches; stop at the first
// that is not. The checker then requires: every acked transaction replayed, and every home
// location holding the payload of the last transaction <= the last replayed one.
import type { SyncBlockDevice } from '@ext4ts/core';
import { MemoryDevice } from '@ext4ts/core';
import { seededRandom } from '../../packages/core/src/wasm/testing.js';
import type { RecordedMark, RecordingDevice } from '../../packages/core/src/device/recording-device.js';

export const SECTOR_BYTES = 512;
const SLOT_COUNT = 32;
const SLOT_SECTORS = 10;
const JOURNAL_SECTOR = 8;
const HOME_SECTOR = 512;
const HOME_COUNT = 64;
const HOME_SECTORS = 8;
const PAYLOAD_SECTORS_MAX = 8;
const CHECKPOINT_EVERY = 16;
export const TOY_DEVICE_BYTES = 1024 * 1024;

const MAGIC_SUPER = 0x4c415754; // 'TWAL'
const MAGIC_RECORD = 0x43455254; // 'TREC'
const MAGIC_COMMIT = 0x544d4354; // 'TCMT'

// Relationships the layout depends on.
if (CHECKPOINT_EVERY * 2 > SLOT_COUNT) throw new Error('a slot must be checkpointed before it is reused');
if (JOURNAL_SECTOR + SLOT_COUNT * SLOT_SECTORS > HOME_SECTOR) throw new Error('journal overlaps the home area');
if ((HOME_SECTOR + HOME_COUNT * HOME_SECTORS) * SECTOR_BYTES > TOY_DEVICE_BYTES) throw new Error('home area past the device');
if (PAYLOAD_SECTORS_MAX + 2 > SLOT_SECTORS || PAYLOAD_SECTORS_MAX > HOME_SECTORS) throw new Error('payload does not fit');

export type ToyVariant = 'correct' | 'ack-before-flush' | 'unchecked-record';

export interface ToyTransaction {
  tx: number;
  home: number;
  /** payloadSectors * SECTOR_BYTES random bytes. */
  payload: Uint8Array;
}

/** FNV-1a 32: enough to tell a torn record from a whole one. */
function checksum(bytes: Uint8Array): number {
  let hash = 0x811c9dc5;
  for (let index = 0; index < bytes.length; index++) hash = Math.imul(hash ^ bytes[index], 0x01000193);
  return hash >>> 0;
}

/** The transactions a seed makes: deterministic, so the checker knows every payload. */
export function toyPlan(seed: number, txCount: number): ToyTransaction[] {
  const next = seededRandom(seed);
  const plan: ToyTransaction[] = [];
  for (let tx = 1; tx <= txCount; tx++) {
    const payload = new Uint8Array((1 + (next() % PAYLOAD_SECTORS_MAX)) * SECTOR_BYTES);
    const words = new Uint32Array(payload.buffer);
    for (let index = 0; index < words.length; index++) words[index] = next();
    plan.push({ tx, home: next() % HOME_COUNT, payload });
  }
  return plan;
}

function sectorOf(values: number[]): Uint8Array {
  const sector = new Uint8Array(SECTOR_BYTES);
  const view = new DataView(sector.buffer);
  values.forEach((value, index) => view.setUint32(index * 4, value >>> 0, true));
  return sector;
}

function superSector(checkpointTx: number): Uint8Array {
  return sectorOf([MAGIC_SUPER, checkpointTx, (MAGIC_SUPER ^ checkpointTx) >>> 0]);
}

function recordBytes(transaction: ToyTransaction): Uint8Array {
  const header = sectorOf([MAGIC_RECORD, transaction.tx, transaction.home, transaction.payload.length / SECTOR_BYTES]);
  const record = new Uint8Array(SECTOR_BYTES + transaction.payload.length);
  record.set(header);
  record.set(transaction.payload, SECTOR_BYTES);
  return record;
}

function slotOffsetBytes(tx: number): number {
  return (JOURNAL_SECTOR + ((tx - 1) % SLOT_COUNT) * SLOT_SECTORS) * SECTOR_BYTES;
}

function homeOffsetBytes(home: number): number {
  return (HOME_SECTOR + home * HOME_SECTORS) * SECTOR_BYTES;
}

function homeImage(payload: Uint8Array): Uint8Array {
  const image = new Uint8Array(HOME_SECTORS * SECTOR_BYTES);
  image.set(payload);
  return image;
}

/** A fresh toy device: zeros and a super with checkpointTx 0. */
export function toyBase(): MemoryDevice {
  const device = MemoryDevice.create({ sizeBytes: TOY_DEVICE_BYTES, sectorSizeBytes: SECTOR_BYTES });
  device.writeSync(0, superSector(0));
  return device;
}

/** Run the plan on `device` the way `variant` does it. */
export async function toyWorkload(device: RecordingDevice, mark: (label: string, data?: unknown) => void, plan: readonly ToyTransaction[], variant: ToyVariant): Promise<void> {
  for (const transaction of plan) {
    const { tx } = transaction;
    const record = recordBytes(transaction);
    const commit = sectorOf([MAGIC_COMMIT, tx, checksum(record)]);
    await device.write(slotOffsetBytes(tx), record);
    if (variant === 'correct') await device.flush();
    await device.write(slotOffsetBytes(tx) + (SLOT_SECTORS - 1) * SECTOR_BYTES, commit, { fua: true });
    if (variant === 'ack-before-flush') mark('commit', { tx });
    if (variant === 'unchecked-record') await device.flush();
    if (variant !== 'ack-before-flush') mark('commit', { tx });
    if (variant === 'ack-before-flush') await device.flush();
    await device.write(homeOffsetBytes(transaction.home), homeImage(transaction.payload));
    if (tx % CHECKPOINT_EVERY === 0) {
      await device.flush();
      await device.write(0, superSector(tx), { fua: true });
      mark('checkpoint', { tx });
    }
  }
}

export interface ToyRecovery {
  checkpointTx: number;
  /** The last transaction replayed (checkpointTx when none). */
  lastTx: number;
}

function readSector(device: SyncBlockDevice, offsetBytes: number, sectorCount = 1): Uint8Array {
  const bytes = new Uint8Array(sectorCount * SECTOR_BYTES);
  device.readSync(offsetBytes, bytes);
  return bytes;
}

/** Replay committed transactions to their homes; `checkPayload: false` is the broken recovery. */
export function toyRecover(device: SyncBlockDevice, checkPayload: boolean): ToyRecovery {
  const superView = new DataView(readSector(device, 0).buffer);
  const superValid = superView.getUint32(0, true) === MAGIC_SUPER
    && superView.getUint32(8, true) === ((MAGIC_SUPER ^ superView.getUint32(4, true)) >>> 0);
  if (!superValid) throw new Error('toy super is corrupt');
  const checkpointTx = superView.getUint32(4, true);
  let tx = checkpointTx + 1;
  for (;; tx++) {
    const slotBytes = slotOffsetBytes(tx);
    const commit = new DataView(readSector(device, slotBytes + (SLOT_SECTORS - 1) * SECTOR_BYTES).buffer);
    if (commit.getUint32(0, true) !== MAGIC_COMMIT || commit.getUint32(4, true) !== tx) break;
    const header = new DataView(readSector(device, slotBytes).buffer);
    const payloadSectors = header.getUint32(12, true);
    if (header.getUint32(0, true) !== MAGIC_RECORD || header.getUint32(4, true) !== tx) break;
    if (payloadSectors < 1 || payloadSectors > PAYLOAD_SECTORS_MAX) break;
    const record = readSector(device, slotBytes, 1 + payloadSectors);
    if (checkPayload && checksum(record) !== commit.getUint32(8, true)) break;
    const home = header.getUint32(8, true) % HOME_COUNT;
    device.writeSync(homeOffsetBytes(home), homeImage(record.subarray(SECTOR_BYTES)));
  }
  device.flushSync();
  return { checkpointTx, lastTx: tx - 1 };
}

/** The checker for a plan: recover, then require acked transactions and exact home contents. */
export function toyCheck(plan: readonly ToyTransaction[], variant: ToyVariant) {
  return (device: SyncBlockDevice, acknowledged: readonly RecordedMark[]): void => {
    const { lastTx } = toyRecover(device, variant !== 'unchecked-record');
    const ackedTx = Math.max(0, ...acknowledged.filter((m) => m.label === 'commit').map((m) => (m.data as { tx: number }).tx));
    if (lastTx < ackedTx) throw new Error(`acknowledged transaction ${ackedTx} lost: recovery stopped at ${lastTx}`);
    if (lastTx > plan.length) throw new Error(`recovery replayed transaction ${lastTx}, never written`);
    const expected = new Map<number, Uint8Array>();
    for (const transaction of plan.slice(0, lastTx)) expected.set(transaction.home, transaction.payload);
    for (let home = 0; home < HOME_COUNT; home++) {
      const actual = readSector(device, homeOffsetBytes(home), HOME_SECTORS);
      const want = homeImage(expected.get(home) ?? new Uint8Array(0));
      if (Buffer.compare(actual, want) !== 0) throw new Error(`home ${home} after recovery to tx ${lastTx} does not hold its last payload`);
    }
  };
}
