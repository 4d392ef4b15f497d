import { mkdtempSync, readFileSync, readdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { BlockDevice } from '../device/block-device.js';
import { FaultDevice } from '../device/fault-device.js';
import { FileDevice } from '../device/file-device.js';
import { MemoryDevice } from '../device/memory-device.js';
import { RecordingDevice } from '../device/recording-device.js';
import { type Ioend, type IomapInode, IomapType } from '../iomap/types.js';
import { randomBelow, seededRandom } from '../random.js';
import { FsError } from '../vfs/errors.js';
import { loadWasmCore, type WasmCore } from '../wasm/core.js';
import { arenaBaseOf } from '../wasm/layout.js';
import { ensureWasmBuilt } from '../wasm/testing.js';
import {
  WRITEBACK_INLINE_BYTES_MAX_DEFAULT, WRITEBACK_SPLIT_ALIGN_BYTES, type WritebackPool, createWritebackPool, planTasks,
} from './pool.js';
import { PIECE_ADDR_BYTES, PIECE_FIELD_COUNT, PIECE_IOEND_INDEX, PIECE_LENGTH_BYTES, PIECE_PTR } from './protocol.js';
import { ensureWritebackWorkerBuilt } from './testing.js';

const KIB = 1024;
const MIB = 1024 * KIB;
/** Folio-data region in wasm memory the ioends point into (filled with seeded bytes). */
const REGION_BYTES = 16 * MIB;
const DEVICE_BYTES = 64 * MIB;
const SECTOR_BYTES = 512;
const INODE = {} as IomapInode;

beforeAll(() => {
  ensureWasmBuilt();
  ensureWritebackWorkerBuilt();
});

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const tempDir = mkdtempSync(join(tmpdir(), 'ext4ts-writeback-'));
afterAll(() => rmSync(tempDir, { recursive: true, force: true }));

interface Fixture {
  core: WasmCore;
  regionPtr: number;
}

/** A core whose region [regionPtr, +REGION_BYTES) holds seeded random bytes. */
function fixture(seed: number): Fixture {
  const core = loadWasmCore({ maximumPages: 1024 });
  const regionPtr = arenaBaseOf(core.heapBase);
  core.ensureMemoryBytes(regionPtr + REGION_BYTES);
  const random = seededRandom(seed);
  const words = new Uint32Array(core.memory.buffer, regionPtr, REGION_BYTES / 4);
  for (let i = 0; i < words.length; i++) words[i] = random();
  cleanups.push(() => core.close());
  return { core, regionPtr };
}

function usePool(pool: WritebackPool): WritebackPool {
  cleanups.push(() => pool.close());
  return pool;
}

/**
 * Random ioends over distinct device slots of slotBytes in [slotFirst, slotEnd): 1..4 pieces
 * each, every length a multiple of the sector, pointers anywhere in the region (byte granular).
 */
function randomIoends(random: () => number, fx: Fixture, count: number, slotBytes: number, slotFirst = 0, slotEnd = DEVICE_BYTES / slotBytes): Ioend[] {
  const slots = Array.from({ length: slotEnd - slotFirst }, (_, index) => slotFirst + index);
  for (let i = slots.length - 1; i > 0; i--) {
    const j = randomBelow(random, i + 1);
    [slots[i], slots[j]] = [slots[j], slots[i]];
  }
  return slots.slice(0, count).map((slot) => {
    const pieceCount = 1 + randomBelow(random, 4);
    const pieces = Array.from({ length: pieceCount }, () => {
      const lengthBytes = SECTOR_BYTES * (1 + randomBelow(random, slotBytes / SECTOR_BYTES / pieceCount));
      return { ptr: fx.regionPtr + randomBelow(random, REGION_BYTES - lengthBytes), lengthBytes };
    });
    const lengthBytes = pieces.reduce((sum, piece) => sum + piece.lengthBytes, 0);
    return { inode: INODE, offsetBytes: slot * slotBytes, lengthBytes, addrBytes: slot * slotBytes, type: IomapType.MAPPED, pieces };
  });
}

/** Apply the ioends to a model of the device, as the device should end up. */
function applyToModel(model: Uint8Array, fx: Fixture, ioends: readonly Ioend[]): void {
  const memory = fx.core.bytes();
  for (const ioend of ioends) {
    let addrBytes = ioend.addrBytes;
    for (const piece of ioend.pieces) {
      model.set(memory.subarray(piece.ptr, piece.ptr + piece.lengthBytes), addrBytes);
      addrBytes += piece.lengthBytes;
    }
  }
}

async function deviceBytes(device: BlockDevice): Promise<Uint8Array> {
  const bytes = new Uint8Array(device.sizeBytes);
  await device.read(0, bytes);
  return bytes;
}

function expectSameBytes(actual: Uint8Array, expected: Uint8Array): void {
  expect(actual.length).toBe(expected.length);
  const differsAt = Buffer.compare(actual, expected) === 0 ? -1 : actual.findIndex((byte, index) => byte !== expected[index]);
  expect(differsAt).toBe(-1);
}

function openFdCount(): number {
  return readdirSync('/proc/self/fd').length;
}

describe('createWritebackPool with a MemoryDevice', () => {
  it('createWritebackPool writes random ioends byte for byte from wasm memory through the workers', async () => {
    const fx = fixture(0x3b00_0001);
    const device = MemoryDevice.create({ sizeBytes: DEVICE_BYTES, chunkSizeBytes: 8 * MIB });
    const pool = usePool(createWritebackPool({ core: fx.core, device, threads: 2, inlineBytesMax: 0 }));
    expect(pool.stats()).toMatchObject({ mode: 'pool', threads: 2 });
    const random = seededRandom(0x3b00_0002);
    const model = new Uint8Array(DEVICE_BYTES);
    for (let batch = 0; batch < 6; batch++) {
      // Slots may repeat across batches: later batches overwrite, like rewritten folios.
      const ioends = randomIoends(random, fx, 1 + randomBelow(random, 24), MIB);
      await pool.submit(ioends);
      expect(ioends.map((ioend) => ioend.error)).toEqual(ioends.map(() => undefined));
      applyToModel(model, fx, ioends);
    }
    expectSameBytes(await deviceBytes(device), model);
    const stats = pool.stats();
    expect(stats.inlineBatches).toBe(0);
    expect(stats.poolBytes).toBe(stats.bytes);
    expect(stats.tasks).toBeGreaterThanOrEqual(6);
    expect(stats.failedIoends).toBe(0);
  });

  it('createWritebackPool splits a large batch across the workers and runs concurrent submits', async () => {
    const fx = fixture(0x3b00_0003);
    const device = MemoryDevice.create({ sizeBytes: DEVICE_BYTES });
    const pool = usePool(createWritebackPool({ core: fx.core, device, threads: 2, inlineBytesMax: 0 }));
    const random = seededRandom(0x3b00_0004);
    const big: Ioend[] = [{ inode: INODE, offsetBytes: 0, lengthBytes: 12 * MIB, addrBytes: 48 * MIB, type: IomapType.MAPPED,
      pieces: [{ ptr: fx.regionPtr + 4096, lengthBytes: 5 * MIB }, { ptr: fx.regionPtr + 8 * MIB, lengthBytes: 7 * MIB }] }];
    await pool.submit(big);
    expect(pool.stats().tasks).toBe(2); // 12 MiB ≥ 2 × WRITEBACK_TASK_BYTES_MIN: one task per worker
    // Three concurrent batches over disjoint thirds of [0, 48 MiB): their order cannot matter.
    const batches = [0, 1, 2].map((third) => randomIoends(random, fx, 8, MIB, third * 16, (third + 1) * 16));
    await Promise.all(batches.map((ioends) => pool.submit(ioends)));
    const model = new Uint8Array(DEVICE_BYTES);
    for (const ioends of [big, ...batches]) {
      for (const ioend of ioends) expect(ioend.error).toBeUndefined();
      applyToModel(model, fx, ioends);
    }
    expectSameBytes(await deviceBytes(device), model);
    expect(pool.stats().poolBytes).toBe(pool.stats().bytes);
  });

  it('createWritebackPool writes batches under inlineBytesMax on the engine thread', async () => {
    const fx = fixture(0x3b00_0005);
    const device = MemoryDevice.create({ sizeBytes: DEVICE_BYTES });
    const pool = usePool(createWritebackPool({ core: fx.core, device, threads: 1 }));
    const ioends = randomIoends(seededRandom(0x3b00_0006), fx, 3, 64 * KIB);
    await pool.submit(ioends);
    const model = new Uint8Array(DEVICE_BYTES);
    applyToModel(model, fx, ioends);
    expectSameBytes(await deviceBytes(device), model);
    expect(pool.stats()).toMatchObject({ mode: 'pool', tasks: 0, inlineBatches: 1, poolBytes: 0 });
    expect(pool.stats().inlineBytes).toBeLessThan(WRITEBACK_INLINE_BYTES_MAX_DEFAULT);
  });

  it('createWritebackPool writes large batches inline while its workers start, then through them', async () => {
    const fx = fixture(0x3b00_0015);
    const device = MemoryDevice.create({ sizeBytes: DEVICE_BYTES });
    const pool = usePool(createWritebackPool({ core: fx.core, device, threads: 1 }));
    const model = new Uint8Array(DEVICE_BYTES);
    // Submitted in the same turn as the pool's creation: no worker can have booted yet.
    const early = randomIoends(seededRandom(0x3b00_0016), fx, 4, 2 * MIB);
    await pool.submit(early);
    applyToModel(model, fx, early);
    expect(pool.stats()).toMatchObject({ tasks: 0, inlineBatches: 1, poolBytes: 0 });
    expect(pool.stats().inlineBytes).toBeGreaterThan(WRITEBACK_INLINE_BYTES_MAX_DEFAULT); // large: inline only for the start-up
    await pool.ready();
    const late = randomIoends(seededRandom(0x3b00_0017), fx, 4, 2 * MIB);
    await pool.submit(late);
    applyToModel(model, fx, late);
    expect(pool.stats().poolBytes).toBeGreaterThan(WRITEBACK_INLINE_BYTES_MAX_DEFAULT);
    expect(pool.stats().inlineBatches).toBe(1);
    expectSameBytes(await deviceBytes(device), model);
  });

  it('createWritebackPool whose workers fail while loading: ready() resolves, stats say why, every batch is written inline, close() returns', async () => {
    const fx = fixture(0x3b00_0025);
    const device = MemoryDevice.create({ sizeBytes: DEVICE_BYTES });
    const broken = join(tempDir, 'broken-worker.mjs');
    writeFileSync(broken, "throw new Error('this worker cannot load');\n");
    for (const inlineBytesMax of [0, WRITEBACK_INLINE_BYTES_MAX_DEFAULT]) {
      const pool = createWritebackPool({ core: fx.core, device, threads: 1, inlineBytesMax, workerFilename: broken });
      await pool.ready();
      expect(pool.stats()).toMatchObject({ mode: 'inline' });
      expect(pool.stats().fallbackReason).toContain('this worker cannot load');
      const model = await deviceBytes(device);
      const ioends = randomIoends(seededRandom(0x3b00_0026 + inlineBytesMax), fx, 4, 2 * MIB);
      await pool.submit(ioends);
      applyToModel(model, fx, ioends);
      expect(ioends.every((ioend) => ioend.error === undefined)).toBe(true);
      expect(pool.stats()).toMatchObject({ inlineBatches: 1, poolBytes: 0, failedIoends: 0 });
      expectSameBytes(await deviceBytes(device), model);
      await pool.close();
    }
  });

  it('createWritebackPool workers see wasm memory grown after they started', async () => {
    const fx = fixture(0x3b00_0007);
    const device = MemoryDevice.create({ sizeBytes: DEVICE_BYTES });
    const pool = usePool(createWritebackPool({ core: fx.core, device, threads: 1, inlineBytesMax: 0 }));
    await pool.submit(randomIoends(seededRandom(1), fx, 1, MIB)); // the worker is up and has its view
    const grownPtr = fx.regionPtr + REGION_BYTES;
    fx.core.ensureMemoryBytes(grownPtr + MIB);
    fx.core.bytes().fill(0xa5, grownPtr, grownPtr + MIB);
    const ioend: Ioend = { inode: INODE, offsetBytes: 0, lengthBytes: MIB, addrBytes: 8 * MIB, type: IomapType.MAPPED, pieces: [{ ptr: grownPtr, lengthBytes: MIB }] };
    await pool.submit([ioend]);
    expect(ioend.error).toBeUndefined();
    const readBack = new Uint8Array(MIB);
    await device.read(8 * MIB, readBack);
    expect(readBack.every((byte) => byte === 0xa5)).toBe(true);
  });
});

describe('createWritebackPool with a FileDevice', () => {
  it('createWritebackPool writes random ioends to an image file, read back with node:fs', async () => {
    const fx = fixture(0x3b00_0011);
    const path = join(tempDir, 'pool.img');
    const device = await FileDevice.open(path, { create: true, sizeBytes: DEVICE_BYTES });
    cleanups.push(() => device.close());
    const pool = usePool(createWritebackPool({ core: fx.core, device, threads: 2, inlineBytesMax: 0 }));
    const random = seededRandom(0x3b00_0012);
    const model = new Uint8Array(DEVICE_BYTES);
    for (let batch = 0; batch < 4; batch++) {
      const ioends = randomIoends(random, fx, 1 + randomBelow(random, 16), 2 * MIB);
      await pool.submit(ioends);
      for (const ioend of ioends) expect(ioend.error).toBeUndefined();
      applyToModel(model, fx, ioends);
    }
    await device.flush();
    expectSameBytes(new Uint8Array(readFileSync(path)), model);
    expect(pool.stats().poolBytes).toBe(pool.stats().bytes);
  });

  it('createWritebackPool close() stops the workers and closes the fds they opened', async () => {
    const fx = fixture(0x3b00_0013);
    const path = join(tempDir, 'close.img');
    const device = await FileDevice.open(path, { create: true, sizeBytes: DEVICE_BYTES });
    cleanups.push(() => device.close());
    const fdsBefore = openFdCount();
    const pool = createWritebackPool({ core: fx.core, device, threads: 2, inlineBytesMax: 0 });
    const ioends = randomIoends(seededRandom(0x3b00_0014), fx, 8, 4 * MIB);
    const submitted = pool.submit(ioends);
    await pool.close(); // waits for the batch in flight
    await submitted;
    for (const ioend of ioends) expect(ioend.error).toBeUndefined();
    expect(openFdCount()).toBe(fdsBefore);
    // After close, batches are still written (inline), never lost.
    const late = randomIoends(seededRandom(0x3b00_0015), fx, 2, 4 * MIB);
    await pool.submit(late);
    expect(pool.stats().inlineBatches).toBe(1);
    const model = new Uint8Array(readFileSync(path));
    const expected = model.slice();
    applyToModel(expected, fx, [...ioends, ...late]);
    expectSameBytes(model, expected);
  });
});

describe('createWritebackPool errors', () => {
  it('createWritebackPool fails an ioend past the device end with EIO and still writes the others', async () => {
    const fx = fixture(0x3b00_0021);
    const device = MemoryDevice.create({ sizeBytes: DEVICE_BYTES });
    const pool = usePool(createWritebackPool({ core: fx.core, device, threads: 2, inlineBytesMax: 0 }));
    const good = randomIoends(seededRandom(0x3b00_0022), fx, 6, MIB, 0);
    const bad: Ioend = { inode: INODE, offsetBytes: 0, lengthBytes: 2 * MIB, addrBytes: DEVICE_BYTES - MIB, type: IomapType.MAPPED,
      pieces: [{ ptr: fx.regionPtr, lengthBytes: MIB }, { ptr: fx.regionPtr + MIB, lengthBytes: MIB }] };
    const ioends = [...good.slice(0, 3), bad, ...good.slice(3)];
    await pool.submit(ioends);
    expect(FsError.is(bad.error, 'EIO')).toBe(true);
    expect((bad.error!.cause as { code?: string }).code).toBe('EINVAL'); // the device's own complaint, kept
    expect(bad.error!.message).toContain(`[${DEVICE_BYTES}, +${MIB})`); // the second piece failed
    for (const ioend of good) expect(ioend.error).toBeUndefined();
    const model = new Uint8Array(DEVICE_BYTES);
    applyToModel(model, fx, good);
    model.set(fx.core.bytes().subarray(fx.regionPtr, fx.regionPtr + MIB), DEVICE_BYTES - MIB); // the first piece fit
    expectSameBytes(await deviceBytes(device), model);
    expect(pool.stats().failedIoends).toBe(1);
  });

  it('createWritebackPool reports EIO for every ioend when the workers cannot open the device', async () => {
    const fx = fixture(0x3b00_0023);
    const path = join(tempDir, 'unlinked.img');
    const device = await FileDevice.open(path, { create: true, sizeBytes: DEVICE_BYTES });
    cleanups.push(() => device.close());
    unlinkSync(path); // the engine's fd still works; a worker reopening by path cannot
    const pool = usePool(createWritebackPool({ core: fx.core, device, threads: 1, inlineBytesMax: 0 }));
    const ioends = randomIoends(seededRandom(0x3b00_0024), fx, 5, MIB);
    await pool.submit(ioends);
    for (const ioend of ioends) {
      expect(FsError.is(ioend.error, 'EIO')).toBe(true);
      expect((ioend.error!.cause as { code?: string }).code).toBe('ENOENT');
    }
    expect(pool.stats().failedIoends).toBe(5);
  });

  it('createWritebackPool turns a task that throws in the worker into EIO for its ioends only', async () => {
    const fx = fixture(0x3b00_0025);
    const device = MemoryDevice.create({ sizeBytes: DEVICE_BYTES });
    const pool = usePool(createWritebackPool({ core: fx.core, device, threads: 2, inlineBytesMax: 0 }));
    // A pointer past the end of wasm memory is a caller bug: the worker's assertion throws.
    const wild: Ioend = { inode: INODE, offsetBytes: 0, lengthBytes: MIB, addrBytes: 0, type: IomapType.MAPPED,
      pieces: [{ ptr: fx.core.memory.buffer.byteLength, lengthBytes: MIB }] };
    const good = randomIoends(seededRandom(0x3b00_0026), fx, 4, MIB, 8);
    await Promise.all([pool.submit([wild]), pool.submit(good)]);
    expect(FsError.is(wild.error, 'EIO')).toBe(true);
    expect(wild.error!.message).toContain('assertion failed');
    for (const ioend of good) expect(ioend.error).toBeUndefined();
    const model = new Uint8Array(DEVICE_BYTES);
    applyToModel(model, fx, good);
    expectSameBytes(await deviceBytes(device), model);
  });

  it('createWritebackPool rejects thread counts outside [1, 16] with EINVAL', () => {
    const fx = fixture(0x3b00_0027);
    const device = MemoryDevice.create({ sizeBytes: DEVICE_BYTES });
    for (const threads of [0, 17, 1.5]) {
      expect(() => createWritebackPool({ core: fx.core, device, threads })).toThrowError(expect.objectContaining({ code: 'EINVAL' }));
    }
    expect(() => createWritebackPool({ core: fx.core, device, inlineBytesMax: -1 })).toThrowError(expect.objectContaining({ code: 'EINVAL' }));
  });
});

describe('createWritebackPool fallback for devices that cannot be shared', () => {
  it('createWritebackPool over a FaultDevice writes inline, and its injected faults become EIO', async () => {
    const fx = fixture(0x3b00_0031);
    const inner = MemoryDevice.create({ sizeBytes: DEVICE_BYTES });
    const device = new FaultDevice(inner, { failOps: [1] });
    const pool = usePool(createWritebackPool({ core: fx.core, device, threads: 2, inlineBytesMax: 0 }));
    expect(pool.stats()).toMatchObject({ mode: 'inline', threads: 0 });
    expect(pool.stats().fallbackReason).toContain('cannot be shared');
    const ioends = randomIoends(seededRandom(0x3b00_0032), fx, 3, MIB).map((ioend) => ({ ...ioend, pieces: ioend.pieces.slice(0, 1) }));
    for (const ioend of ioends) ioend.lengthBytes = ioend.pieces[0].lengthBytes;
    await pool.submit(ioends);
    expect(ioends.map((ioend) => ioend.error === undefined)).toEqual([true, false, true]); // op 1 = the second write
    expect(FsError.is(ioends[1].error, 'EIO')).toBe(true);
    const model = new Uint8Array(DEVICE_BYTES);
    applyToModel(model, fx, [ioends[0], ioends[2]]);
    expectSameBytes(await deviceBytes(inner), model);
    expect(pool.stats()).toMatchObject({ inlineBatches: 1, tasks: 0, failedIoends: 1 });
  });

  it('createWritebackPool over a RecordingDevice writes inline so every write is logged', async () => {
    const fx = fixture(0x3b00_0033);
    const device = new RecordingDevice(MemoryDevice.create({ sizeBytes: DEVICE_BYTES }));
    const pool = usePool(createWritebackPool({ core: fx.core, device, inlineBytesMax: 0 }));
    expect(pool.stats().mode).toBe('inline');
    const ioends = randomIoends(seededRandom(0x3b00_0034), fx, 4, MIB);
    await pool.submit(ioends);
    const model = new Uint8Array(DEVICE_BYTES);
    applyToModel(model, fx, ioends);
    expectSameBytes(await deviceBytes(device), model);
  });

  it('createWritebackPool over a plain BlockDevice without handle() writes inline', async () => {
    const fx = fixture(0x3b00_0035);
    const inner = MemoryDevice.create({ sizeBytes: DEVICE_BYTES });
    const device: BlockDevice = {
      sizeBytes: inner.sizeBytes, sectorSizeBytes: inner.sectorSizeBytes, readOnly: false,
      read: (offset, target) => inner.read(offset, target), write: (offset, source) => inner.write(offset, source),
      flush: () => inner.flush(), discard: (offset, length) => inner.discard(offset, length),
      zeroOut: (offset, length) => inner.zeroOut(offset, length), close: () => inner.close(),
    };
    const pool = usePool(createWritebackPool({ core: fx.core, device, inlineBytesMax: 0 }));
    expect(pool.stats()).toMatchObject({ mode: 'inline', fallbackReason: 'device has no handle() to share with workers' });
    const ioends = randomIoends(seededRandom(0x3b00_0036), fx, 2, MIB);
    await pool.submit(ioends);
    const model = new Uint8Array(DEVICE_BYTES);
    applyToModel(model, fx, ioends);
    expectSameBytes(await deviceBytes(inner), model);
  });
});

describe('planTasks', () => {
  it('planTasks cuts pieces at aligned points into about equal tasks that cover every byte once', () => {
    const random = seededRandom(0x3b00_0041);
    for (let round = 0; round < 200; round++) {
      const ioends: Ioend[] = Array.from({ length: 1 + randomBelow(random, 6) }, (_, index) => {
        const pieces = Array.from({ length: 1 + randomBelow(random, 4) }, () => ({
          ptr: randomBelow(random, 1 << 30), lengthBytes: SECTOR_BYTES * (1 + randomBelow(random, 8192)),
        }));
        const lengthBytes = pieces.reduce((sum, piece) => sum + piece.lengthBytes, 0);
        return { inode: INODE, offsetBytes: 0, lengthBytes, addrBytes: index * 64 * MIB, type: IomapType.MAPPED, pieces };
      });
      const totalBytes = ioends.reduce((sum, ioend) => sum + ioend.lengthBytes, 0);
      const taskCount = 1 + randomBelow(random, 3);
      const tasks = planTasks(ioends, totalBytes, taskCount);
      expect(tasks.length).toBeLessThanOrEqual(taskCount);
      // Re-join the tasks' pieces per ioend: they must rebuild each ioend's byte map exactly.
      const rebuilt = ioends.map(() => [] as number[][]);
      for (const task of tasks) {
        const seen = new Set<number>();
        for (let at = 0; at < task.pieces.length; at += PIECE_FIELD_COUNT) {
          const ioendIndex = task.pieces[at + PIECE_IOEND_INDEX];
          seen.add(ioendIndex);
          rebuilt[ioendIndex].push([task.pieces[at + PIECE_PTR], task.pieces[at + PIECE_LENGTH_BYTES], task.pieces[at + PIECE_ADDR_BYTES]]);
        }
        expect(task.ioendIndexes).toEqual([...seen]);
      }
      ioends.forEach((ioend, ioendIndex) => {
        // The parts, in task order, walk the ioend's pieces front to back: device addresses
        // contiguous, each part a prefix of what is left of its piece, every cut aligned.
        let addrBytes = ioend.addrBytes;
        let pieceIndex = 0;
        let doneBytes = 0; // of pieces[pieceIndex]
        for (const [ptr, lengthBytes, addr] of rebuilt[ioendIndex]) {
          const piece = ioend.pieces[pieceIndex];
          expect([ptr, addr]).toEqual([piece.ptr + doneBytes, addrBytes]);
          expect(lengthBytes).toBeLessThanOrEqual(piece.lengthBytes - doneBytes);
          addrBytes += lengthBytes;
          doneBytes += lengthBytes;
          if (doneBytes < piece.lengthBytes) {
            expect(doneBytes % WRITEBACK_SPLIT_ALIGN_BYTES).toBe(0);
          } else {
            pieceIndex++;
            doneBytes = 0;
          }
        }
        expect([pieceIndex, addrBytes]).toEqual([ioend.pieces.length, ioend.addrBytes + ioend.lengthBytes]);
      });
      // Balanced: every task but the last holds at most its aligned share.
      const share = Math.ceil(totalBytes / taskCount / WRITEBACK_SPLIT_ALIGN_BYTES) * WRITEBACK_SPLIT_ALIGN_BYTES;
      for (const task of tasks.slice(0, -1)) {
        let bytes = 0;
        for (let at = 0; at < task.pieces.length; at += PIECE_FIELD_COUNT) bytes += task.pieces[at + PIECE_LENGTH_BYTES];
        expect(bytes).toBeLessThanOrEqual(share);
      }
    }
  });
});
