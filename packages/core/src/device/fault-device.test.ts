/**
 * FaultDevice: injected failures surface as FsError EIO naming the op number; the power
 * cut drops writes silently and fails flushes and FUA writes; everything is seeded.
 */
import { describe, expect, it } from 'vitest';
import { FsError } from '../vfs/errors.js';
import { FaultDevice } from './fault-device.js';
import { MemoryDevice } from './memory-device.js';
import { RecordingDevice } from './recording-device.js';

const SECTOR_BYTES = 512;
const DEVICE_BYTES = 64 * 1024;

function memory(): MemoryDevice {
  return MemoryDevice.create({ sizeBytes: DEVICE_BYTES, sectorSizeBytes: SECTOR_BYTES });
}

function sectorOf(device: MemoryDevice, offsetBytes: number, lengthBytes = SECTOR_BYTES): Uint8Array {
  const bytes = new Uint8Array(lengthBytes);
  device.readSync(offsetBytes, bytes);
  return bytes;
}

async function caught(action: () => unknown): Promise<unknown> {
  try {
    await action();
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

describe('FaultDevice', () => {
  it('fails the chosen op numbers with FsError EIO naming the op, whatever their kind', async () => {
    const inner = memory();
    const device = new FaultDevice(inner, { failOps: [1, 3, 4] });
    await device.write(0, new Uint8Array(512).fill(1)); // op 0
    const writeError = await caught(() => device.write(512, new Uint8Array(512).fill(2))); // op 1
    expect(FsError.is(writeError, 'EIO')).toBe(true);
    expect((writeError as FsError).syscall).toBe('write');
    expect((writeError as FsError).message).toContain('op 1');
    await device.read(0, new Uint8Array(512)); // op 2
    const readError = await caught(() => device.read(0, new Uint8Array(512))); // op 3
    expect((readError as FsError).message).toMatch(/EIO.*op 3: read/);
    expect(() => device.flushSync()).toThrow(/op 4: flush/); // op 4
    expect(device.faults.map((fault) => [fault.op, fault.kind, fault.reason])).toEqual([
      [1, 'write', 'failOps'],
      [3, 'read', 'failOps'],
      [4, 'flush', 'failOps'],
    ]);
    expect(sectorOf(inner, 512).every((byte) => byte === 0)).toBe(true); // a failed write leaves nothing
    expect(sectorOf(inner, 0)[0]).toBe(1);
    expect(device.nextOp).toBe(5);
  });

  it('injects probabilistic faults reproducibly from the seed', async () => {
    const run = async (seed: number): Promise<number[]> => {
      const device = new FaultDevice(memory(), { seed, probability: { write: 0.2, read: 0.1 } });
      for (let step = 0; step < 400; step++) {
        const offsetBytes = (step % 64) * SECTOR_BYTES;
        await (step % 2 === 0 ? device.write(offsetBytes, new Uint8Array(512)) : device.read(offsetBytes, new Uint8Array(512))).catch((error) => {
          if (!FsError.is(error, 'EIO')) throw error;
        });
      }
      return device.faults.map((fault) => fault.op);
    };
    const first = await run(5);
    expect(await run(5)).toEqual(first);
    expect(await run(6)).not.toEqual(first);
    // ~0.2 * 200 + 0.1 * 200 = 60 expected.
    expect(first.length).toBeGreaterThan(30);
    expect(first.length).toBeLessThan(100);
  });

  for (const mode of ['async', 'sync'] as const) {
    it(`after a ${mode} power cut drops writes silently, fails flushes and FUA writes, and still reads`, async () => {
      const inner = memory();
      const device = new FaultDevice(inner, { powerCutAfterOp: 1 });
      const write = (offsetBytes: number, fill: number, fua = false): unknown =>
        mode === 'async' ? device.write(offsetBytes, new Uint8Array(512).fill(fill), { fua }) : device.writeSync(offsetBytes, new Uint8Array(512).fill(fill), { fua });
      await write(0, 1); // op 0
      expect(device.powerIsCut).toBe(false);
      await write(512, 2); // op 1: last op before the cut
      expect(device.powerIsCut).toBe(true);
      await write(1024, 3); // op 2: dropped
      if (mode === 'async') await device.zeroOut(0, 512); // op 3: dropped
      else device.zeroOutSync(0, 512);
      const flushError = await caught(() => (mode === 'async' ? device.flush() : device.flushSync())); // op 4
      expect(FsError.is(flushError, 'EIO')).toBe(true);
      expect((flushError as FsError).message).toContain('op 4: flush, powerCut');
      const fuaError = await caught(() => write(1536, 4, true)); // op 5
      expect((fuaError as FsError).message).toContain('op 5: write');
      const target = new Uint8Array(512);
      if (mode === 'async') await device.read(0, target);
      else device.readSync(0, target);
      expect(target[0]).toBe(1);
      expect(sectorOf(inner, 512)[0]).toBe(2);
      expect(sectorOf(inner, 1024)[0]).toBe(0);
      expect(sectorOf(inner, 1536)[0]).toBe(0);
      expect(device.droppedWriteCount).toBe(2);
      expect(device.faults.map((fault) => fault.op)).toEqual([4, 5]);
    });
  }

  it('cutPower() applies the power-cut rules from the next op', async () => {
    const inner = memory();
    const device = new FaultDevice(inner);
    await device.write(0, new Uint8Array(512).fill(9));
    device.cutPower();
    await device.write(0, new Uint8Array(512).fill(8));
    await expect(device.flush()).rejects.toSatisfy((error) => FsError.is(error, 'EIO'));
    expect(sectorOf(inner, 0)[0]).toBe(9);
  });

  it('tears a failed write to a seeded prefix of its sectors when asked', async () => {
    const prefixes: number[] = [];
    for (let seed = 1; seed <= 20; seed++) {
      const inner = memory();
      const device = new FaultDevice(inner, { seed, failOps: [0], failedWrite: 'torn' });
      await expect(device.write(0, new Uint8Array(16 * 512).fill(5))).rejects.toSatisfy((error) => FsError.is(error, 'EIO'));
      const bytes = sectorOf(inner, 0, 16 * 512);
      const kept = bytes.findIndex((byte) => byte === 0);
      const keptSectors = kept < 0 ? 16 : kept / 512;
      expect(Number.isInteger(keptSectors)).toBe(true);
      expect(bytes.subarray(keptSectors * 512).every((byte) => byte === 0)).toBe(true);
      expect(keptSectors).toBeLessThan(16);
      prefixes.push(keptSectors);
    }
    expect(new Set(prefixes).size).toBeGreaterThan(3);
  });

  it('an EIO passes unchanged through a RecordingDevice above it', async () => {
    const device = new RecordingDevice(new FaultDevice(memory(), { failOps: [0] }));
    const error = await caught(() => device.writeSync(0, new Uint8Array(512)));
    expect(FsError.is(error, 'EIO')).toBe(true);
    expect((error as FsError).message).toContain('op 0');
  });

  it('leaves range errors to the inner device (EINVAL), counting the op', async () => {
    const device = new FaultDevice(memory());
    await expect(device.write(3, new Uint8Array(512))).rejects.toSatisfy((error) => FsError.is(error, 'EINVAL'));
    expect(device.nextOp).toBe(1);
  });
});
