// Crash states: flush states equal what the device held at each flush; random states hold
// only what the flush/FUA rules allow (checked sector by sector from tagged writes, not
// from the spec generator); the same seed gives the same states; specs replay from text.
import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { MemoryDevice } from '@ext4ts/core';
import { seededRandom, randomBelow } from '../../packages/core/src/wasm/testing.js';
import { RecordingDevice, type RecordedWrite } from '../../packages/core/src/device/recording-device.js';
import {
  CrashImages,
  CrashLog,
  flushCrashSpecs,
  formatCrashSpec,
  hexToBits,
  bitsToHex,
  parseCrashSpec,
  randomCrashSpec,
  stateSeed,
  validateCrashSpec,
  type CrashSpec,
} from './crash-images.js';

const SECTOR_BYTES = 512;
const DEVICE_BYTES = 128 * 1024;
const SECTOR_COUNT = DEVICE_BYTES / SECTOR_BYTES;
/** Tag of a base sector (no write made it). */
const BASE_TAG = 0xffffffff;

/** A sector tagged with (writeIndex + 1, sector index within the write); zeros stay zeros. */
function tagSector(target: Uint8Array, tag: number, sectorInWrite: number): void {
  const view = new DataView(target.buffer, target.byteOffset, SECTOR_BYTES);
  for (let word = 0; word < SECTOR_BYTES / 4; word += 2) {
    view.setUint32(word * 4, tag, true);
    view.setUint32(word * 4 + 4, sectorInWrite, true);
  }
}

function baseImage(): Uint8Array {
  const image = new Uint8Array(DEVICE_BYTES);
  for (let sector = 0; sector < SECTOR_COUNT; sector++) tagSector(image.subarray(sector * SECTOR_BYTES), BASE_TAG, sector);
  return image;
}

interface RecordedRun {
  base: Uint8Array;
  recording: RecordingDevice;
  /** Device contents right after each flush, by the flush's seq. */
  atFlush: Map<number, Uint8Array>;
}

/** A random run over the tagged base: overlapping writes, FUA, zero-outs, flushes, marks. */
async function recordRun(seed: number, steps: number): Promise<RecordedRun> {
  const next = seededRandom(seed);
  const base = baseImage();
  const inner = MemoryDevice.create({ sizeBytes: DEVICE_BYTES, sectorSizeBytes: SECTOR_BYTES });
  inner.writeSync(0, base);
  const recording = new RecordingDevice(inner);
  const atFlush = new Map<number, Uint8Array>();
  let writeCount = 0;
  for (let step = 0; step < steps; step++) {
    const choice = randomBelow(next, 100);
    const sectorCount = 1 + randomBelow(next, 12);
    const offsetBytes = randomBelow(next, SECTOR_COUNT - sectorCount + 1) * SECTOR_BYTES;
    if (choice < 75) {
      const bytes = new Uint8Array(sectorCount * SECTOR_BYTES);
      for (let sector = 0; sector < sectorCount; sector++) tagSector(bytes.subarray(sector * SECTOR_BYTES), writeCount + 1, sector);
      await recording.write(offsetBytes, bytes, { fua: randomBelow(next, 10) === 0 });
      writeCount++;
    } else if (choice < 80) {
      await recording.zeroOut(offsetBytes, sectorCount * SECTOR_BYTES);
      writeCount++;
    } else if (choice < 92) {
      await recording.flush();
      const contents = new Uint8Array(DEVICE_BYTES);
      inner.readSync(0, contents);
      atFlush.set(recording.events.length - 1, contents);
    } else {
      recording.mark(`step ${step}`);
    }
  }
  return { base, recording, atFlush };
}

/**
 * The crash model checked on contents: each sector of the state must come from the last
 * durable write covering it (or the base), or from a window write covering it at least as
 * new as the newest FUA window write covering it; and sit at its place within that write.
 */
function checkStateContents(log: CrashLog, spec: CrashSpec, contents: Uint8Array): void {
  const { flushSeq } = log.window(spec.point);
  const durable = new Int32Array(SECTOR_COUNT).fill(-1); // writeIndex, -1 = base
  const fuaFloor = new Int32Array(SECTOR_COUNT).fill(-1);
  const allowed: Set<number>[] = Array.from({ length: SECTOR_COUNT }, () => new Set<number>());
  const writes = log.writes;
  const cover = (write: RecordedWrite, visit: (sector: number) => void): void => {
    for (let sector = write.offsetBytes / SECTOR_BYTES; sector < (write.offsetBytes + write.lengthBytes) / SECTOR_BYTES; sector++) visit(sector);
  };
  for (const write of writes) {
    if (write.seq >= spec.point) break;
    if (write.seq < flushSeq) cover(write, (sector) => { durable[sector] = write.writeIndex; });
    else cover(write, (sector) => {
      allowed[sector].add(write.writeIndex);
      if (write.fua) fuaFloor[sector] = write.writeIndex;
    });
  }
  const view = new DataView(contents.buffer, contents.byteOffset, contents.length);
  for (let sector = 0; sector < SECTOR_COUNT; sector++) {
    const tag = view.getUint32(sector * SECTOR_BYTES, true);
    const place = view.getUint32(sector * SECTOR_BYTES + 4, true);
    const candidates = [...allowed[sector]].filter((writeIndex) => writeIndex >= fuaFloor[sector]);
    if (fuaFloor[sector] < 0) candidates.push(durable[sector]);
    const matches = candidates.some((writeIndex) => {
      if (writeIndex < 0) return tag === BASE_TAG && place === sector;
      const write = writes[writeIndex];
      if (write.bytes === null) return tag === 0 && place === 0;
      return tag === writeIndex + 1 && place === sector - write.offsetBytes / SECTOR_BYTES;
    });
    if (!matches) {
      throw new Error(`${formatCrashSpec(spec)}: sector ${sector} holds tag ${tag}/${place}, allowed ${candidates.join(',')} (fua floor ${fuaFloor[sector]})`);
    }
  }
}

function readAll(device: { readSync(offsetBytes: number, target: Uint8Array): void }): Uint8Array {
  const contents = new Uint8Array(DEVICE_BYTES);
  device.readSync(0, contents);
  return contents;
}

const digest = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

describe('crash images', () => {
  it('a flush state equals the device contents observed right after that flush', async () => {
    const run = await recordRun(1, 1500);
    const images = new CrashImages(run.base, run.recording.log());
    const specs = flushCrashSpecs(images.log);
    expect(specs.length).toBe(run.atFlush.size);
    expect(specs.length).toBeGreaterThan(100);
    for (const spec of specs) {
      const image = images.materialize(spec);
      expect(Buffer.compare(readAll(image.device), run.atFlush.get(spec.point - 1)!)).toBe(0);
      expect(image.acknowledged.every((mark) => mark.seq < spec.point)).toBe(true);
      image.release();
    }
    expect(images.baseCopyCount).toBe(1);
  });

  it('random states contain only writes the flush/FUA rules allow, whatever the checker wrote before', async () => {
    const run = await recordRun(2, 1500);
    const images = new CrashImages(run.base, run.recording.log());
    const next = seededRandom(99);
    const specs = Array.from({ length: 1500 }, (_, index) => randomCrashSpec(images.log, stateSeed(7, index), { tornProbability: 0.5 }));
    specs.sort((a, b) => a.point - b.point);
    let tornCount = 0;
    let fuaForced = 0;
    for (const spec of specs) {
      validateCrashSpec(images.log, spec);
      const image = images.materialize(spec);
      checkStateContents(images.log, spec, readAll(image.device));
      expect(image.acknowledged).toEqual(images.log.marks.filter((mark) => mark.seq < spec.point));
      tornCount += spec.torn.length;
      fuaForced += image.appliedWrites.filter((write) => write.fua).length;
      // A checker (recovery) scribbles over the state: release() must undo it.
      const offsetBytes = randomBelow(next, SECTOR_COUNT - 8) * SECTOR_BYTES;
      image.device.writeSync(offsetBytes, new Uint8Array(8 * SECTOR_BYTES).fill(0xab));
      image.device.zeroOutSync(randomBelow(next, SECTOR_COUNT) * SECTOR_BYTES, SECTOR_BYTES);
      image.release();
    }
    expect(tornCount).toBeGreaterThan(200);
    expect(fuaForced).toBeGreaterThan(50);
  });

  it('the same seed gives the same states; specs survive their one-line form', async () => {
    const first = await recordRun(3, 600);
    const second = await recordRun(3, 600);
    const logA = new CrashLog(first.recording.log());
    const logB = new CrashLog(second.recording.log());
    const imagesA = new CrashImages(first.base, first.recording.log());
    const imagesB = new CrashImages(second.base, second.recording.log());
    for (let index = 0; index < 200; index++) {
      const specA = randomCrashSpec(logA, stateSeed(11, index));
      const specB = randomCrashSpec(logB, stateSeed(11, index));
      expect(specB).toEqual(specA);
      expect(parseCrashSpec(formatCrashSpec(specA))).toEqual(specA);
      const imageA = imagesA.materialize(specA);
      const imageB = imagesB.materialize(parseCrashSpec(formatCrashSpec(specB)));
      expect(digest(readAll(imageB.device))).toBe(digest(readAll(imageA.device)));
      imageA.release();
      imageB.release();
    }
    expect(stateSeed(11, 0)).not.toBe(stateSeed(12, 0));
    expect(randomCrashSpec(logA, 1)).not.toEqual(randomCrashSpec(logA, 2));
  });

  it('materialises states out of point order by re-copying the base', async () => {
    const run = await recordRun(4, 400);
    const images = new CrashImages(run.base, run.recording.log());
    const specs = Array.from({ length: 40 }, (_, index) => randomCrashSpec(images.log, stateSeed(5, index)));
    const inOrder = new Map<CrashSpec, string>();
    const sorted = [...specs].sort((a, b) => a.point - b.point);
    for (const spec of sorted) {
      const image = images.materialize(spec);
      inOrder.set(spec, digest(readAll(image.device)));
      image.release();
    }
    const shuffled = new CrashImages(run.base, run.recording.log());
    for (const spec of specs) {
      const image = shuffled.materialize(spec);
      expect(digest(readAll(image.device))).toBe(inOrder.get(spec));
      image.release();
    }
    expect(shuffled.baseCopyCount).toBeGreaterThan(1);
    const kept = images.snapshot(specs[0]);
    expect(digest(readAll(kept))).toBe(inOrder.get(specs[0]));
  });

  it('rejects specs that break the rules', async () => {
    const run = await recordRun(5, 400);
    const log = new CrashLog(run.recording.log());
    // A point whose window holds a FUA write, and one whose window holds a multi-sector non-FUA write.
    const fuaWrite = log.writes.find((write) => write.fua && log.window(write.seq + 1).end > log.window(write.seq + 1).first)!;
    const fuaWindow = log.window(fuaWrite.seq + 1);
    const fuaIndex = fuaWrite.writeIndex - fuaWindow.first;
    const count = fuaWindow.end - fuaWindow.first;
    const allBut = (index: number): string => bitsToHex(Array.from({ length: count }, (_, bit) => (bit === index ? 0 : 1)));
    const all = bitsToHex(new Array<number>(count).fill(1));
    expect(() => validateCrashSpec(log, { kind: 'random', seed: 0, point: fuaWrite.seq + 1, applied: allBut(fuaIndex), torn: [] })).toThrow(/FUA write .* not applied/);
    expect(() => validateCrashSpec(log, { kind: 'random', seed: 0, point: fuaWrite.seq + 1, applied: all, torn: [{ window: fuaIndex, sectors: '1' }] })).toThrow(/FUA write .* torn/);
    expect(() => validateCrashSpec(log, { kind: 'random', seed: 0, point: fuaWrite.seq + 1, applied: bitsToHex(new Array<number>(count + 4).fill(1)), torn: [] })).toThrow(/beyond/);
    expect(() => validateCrashSpec(log, { kind: 'flush', seed: 0, point: log.events.length + 1, applied: '', torn: [] })).toThrow(/outside/);
    expect(hexToBits(bitsToHex([1, 0, 0, 1, 1]), 5)).toEqual(new Uint8Array([1, 0, 0, 1, 1]));
  });

  it('builds 64 MiB-image states fast (measured, printed)', async () => {
    const next = seededRandom(64);
    const sizeBytes = 64 * 1024 * 1024;
    const base = MemoryDevice.create({ sizeBytes, sectorSizeBytes: 4096 });
    const filler = new Uint8Array(1024 * 1024);
    for (let index = 0; index < filler.length; index += 4096) filler[index] = index / 4096 + 1;
    for (let offsetBytes = 0; offsetBytes < 16 * 1024 * 1024; offsetBytes += filler.length) base.writeSync(offsetBytes, filler);
    const recording = new RecordingDevice(MemoryDevice.create({ sizeBytes, sectorSizeBytes: 4096 }));
    const payload = new Uint8Array(64 * 1024).fill(0x5a);
    const writeCount = 4000;
    for (let index = 0; index < writeCount; index++) {
      const lengthBytes = (1 + randomBelow(next, 16)) * 4096;
      await recording.write(randomBelow(next, (sizeBytes - lengthBytes) / 4096) * 4096, payload.subarray(0, lengthBytes), { fua: randomBelow(next, 50) === 0 });
      if (randomBelow(next, 40) === 0) await recording.flush();
      if (randomBelow(next, 80) === 0) recording.mark('fsync', { index });
    }
    const setupStarted = performance.now();
    const images = new CrashImages(base, recording.log());
    const setupMs = performance.now() - setupStarted;
    const specs = [...flushCrashSpecs(images.log), ...Array.from({ length: 1500 }, (_, index) => randomCrashSpec(images.log, stateSeed(64, index)))];
    specs.sort((a, b) => a.point - b.point);
    const probe = new Uint8Array(4096);
    const started = performance.now();
    for (const spec of specs) {
      const image = images.materialize(spec);
      image.device.readSync(0, probe);
      image.device.writeSync(0, probe); // a checker's write, undone on release
      image.release();
    }
    const elapsedMs = performance.now() - started;
    const statesPerSecond = specs.length / (elapsedMs / 1000);
    console.log(`crash images: 64 MiB image, ${writeCount} writes (${(recording.logSizeBytes / 2 ** 20).toFixed(1)} MiB log), ` +
      `${specs.length} states in ${elapsedMs.toFixed(0)} ms = ${statesPerSecond.toFixed(0)} states/s (setup ${setupMs.toFixed(0)} ms)`);
    expect(statesPerSecond).toBeGreaterThan(200);
  });
});
