/**
 * RecordingDevice: a pass-through (checked against a model Uint8Array) whose log holds
 * exactly the writes, flushes and markers made, in order, with stable copies of the bytes.
 */
import { describe, expect, it } from 'vitest';
import { FsError } from '../vfs/errors.js';
import { AssertionError } from '../assert.js';
import { seededRandom, randomBelow } from '../wasm/testing.js';
import type { BlockDevice } from './block-device.js';
import { FaultDevice } from './fault-device.js';
import { MemoryDevice } from './memory-device.js';
import { EVENT_OVERHEAD_BYTES, RecordingDevice, RecordingLimitError, type RecordedWrite } from './recording-device.js';

const SECTOR_BYTES = 512;
const DEVICE_BYTES = 256 * 1024;

function randomBytes(next: () => number, lengthBytes: number): Uint8Array {
  const bytes = new Uint8Array(lengthBytes);
  for (let index = 0; index < lengthBytes; index++) bytes[index] = next() & 0xff;
  return bytes;
}

/** Replay the log's writes over zeros: what the device should hold. */
function replay(writes: readonly RecordedWrite[]): Uint8Array {
  const image = new Uint8Array(DEVICE_BYTES);
  for (const write of writes) {
    if (write.bytes === null) image.fill(0, write.offsetBytes, write.offsetBytes + write.lengthBytes);
    else image.set(write.bytes, write.offsetBytes);
  }
  return image;
}

/** An async-only device (no sync calls), to check the wrapper does not pretend to have them. */
function asyncOnly(inner: MemoryDevice): BlockDevice {
  return {
    sizeBytes: inner.sizeBytes,
    sectorSizeBytes: inner.sectorSizeBytes,
    readOnly: false,
    read: (offsetBytes, target) => inner.read(offsetBytes, target),
    write: (offsetBytes, source, options) => inner.write(offsetBytes, source, options),
    flush: () => inner.flush(),
    discard: (offsetBytes, lengthBytes) => inner.discard(offsetBytes, lengthBytes),
    zeroOut: (offsetBytes, lengthBytes) => inner.zeroOut(offsetBytes, lengthBytes),
    close: () => inner.close(),
  };
}

describe('RecordingDevice', () => {
  for (const mode of ['async', 'sync'] as const) {
    it(`passes ${mode} requests through unchanged and logs them in order (model comparison)`, async () => {
      const next = seededRandom(mode === 'async' ? 11 : 12);
      const inner = MemoryDevice.create({ sizeBytes: DEVICE_BYTES, sectorSizeBytes: SECTOR_BYTES, chunkSizeBytes: 64 * 1024 });
      const device = new RecordingDevice(inner, { arenaChunkBytes: 64 * 1024 });
      expect(device.synchronous).toBe(true);
      const model = new Uint8Array(DEVICE_BYTES);
      const expected: string[] = [];
      for (let step = 0; step < 600; step++) {
        const sectorCount = 1 + randomBelow(next, 24);
        const offsetBytes = randomBelow(next, DEVICE_BYTES / SECTOR_BYTES - sectorCount + 1) * SECTOR_BYTES;
        const lengthBytes = sectorCount * SECTOR_BYTES;
        const choice = randomBelow(next, 100);
        if (choice < 45) {
          const bytes = randomBytes(next, lengthBytes);
          const fua = randomBelow(next, 4) === 0;
          if (mode === 'async') await device.write(offsetBytes, bytes, { fua });
          else device.writeSync(offsetBytes, bytes, { fua });
          model.set(bytes, offsetBytes);
          bytes.fill(0xee); // the caller reuses its buffer: the log must not change
          expected.push(`write ${offsetBytes} ${lengthBytes} ${fua}`);
        } else if (choice < 55) {
          if (mode === 'async') await device.discard(offsetBytes, lengthBytes);
          else device.discardSync(offsetBytes, lengthBytes);
          model.fill(0, offsetBytes, offsetBytes + lengthBytes);
          expected.push(`write ${offsetBytes} ${lengthBytes} false`);
        } else if (choice < 62) {
          if (mode === 'async') await device.zeroOut(offsetBytes, lengthBytes);
          else device.zeroOutSync(offsetBytes, lengthBytes);
          model.fill(0, offsetBytes, offsetBytes + lengthBytes);
          expected.push(`write ${offsetBytes} ${lengthBytes} false`);
        } else if (choice < 72) {
          if (mode === 'async') await device.flush();
          else device.flushSync();
          expected.push('flush');
        } else if (choice < 77) {
          device.mark(`step ${step}`, { step });
          expected.push(`mark step ${step}`);
        } else {
          const target = new Uint8Array(lengthBytes);
          if (mode === 'async') await device.read(offsetBytes, target);
          else device.readSync(offsetBytes, target);
          expect(Buffer.compare(target, model.subarray(offsetBytes, offsetBytes + lengthBytes))).toBe(0);
        }
      }
      const described = device.events.map((event) => {
        if (event.kind === 'write') return `write ${event.offsetBytes} ${event.lengthBytes} ${event.fua}`;
        if (event.kind === 'flush') return 'flush';
        return `mark ${event.label}`;
      });
      expect(described).toEqual(expected);
      device.events.forEach((event, index) => expect(event.seq).toBe(index));
      const writes = device.events.filter((event): event is RecordedWrite => event.kind === 'write');
      writes.forEach((write, index) => expect(write.writeIndex).toBe(index));
      expect(writes.some((write) => write.bytes === null && write.source === 'discard')).toBe(true);
      const whole = new Uint8Array(DEVICE_BYTES);
      inner.readSync(0, whole);
      expect(Buffer.compare(whole, model)).toBe(0);
      expect(Buffer.compare(replay(writes), model)).toBe(0);
    });
  }

  it('throws RecordingLimitError past maxLogBytes, before the write reaches the device', async () => {
    const inner = MemoryDevice.create({ sizeBytes: DEVICE_BYTES, sectorSizeBytes: SECTOR_BYTES });
    const device = new RecordingDevice(inner, { maxLogBytes: 4096 + 2 * EVENT_OVERHEAD_BYTES });
    await device.write(0, new Uint8Array(4096).fill(1));
    await device.flush();
    await expect(device.write(8192, new Uint8Array(512).fill(2))).rejects.toBeInstanceOf(RecordingLimitError);
    expect(device.overflowed).toBe(true);
    expect(() => device.mark('after')).toThrow(RecordingLimitError);
    const probe = new Uint8Array(512);
    inner.readSync(8192, probe);
    expect(probe.every((byte) => byte === 0)).toBe(true);
    expect(device.events.length).toBe(2);
  });

  it('wraps an async-only device without inventing sync calls', async () => {
    const inner = MemoryDevice.create({ sizeBytes: DEVICE_BYTES, sectorSizeBytes: SECTOR_BYTES });
    const device = new RecordingDevice(asyncOnly(inner));
    expect(device.synchronous).toBe(false);
    await device.write(512, new Uint8Array(512).fill(7), { fua: true });
    expect(() => device.writeSync(0, new Uint8Array(512))).toThrow(AssertionError);
    expect(device.events).toHaveLength(1);
  });

  it('marks a rejected flush failed and does not log a rejected write', async () => {
    const inner = MemoryDevice.create({ sizeBytes: DEVICE_BYTES, sectorSizeBytes: SECTOR_BYTES });
    // ops: 0 write (ok), 1 flush (fails), 2 write (fails)
    const device = new RecordingDevice(new FaultDevice(inner, { failOps: [1, 2] }));
    await device.write(0, new Uint8Array(512).fill(1));
    await expect(device.flush()).rejects.toSatisfy((error) => FsError.is(error, 'EIO'));
    await expect(device.write(512, new Uint8Array(512).fill(2))).rejects.toSatisfy((error) => FsError.is(error, 'EIO'));
    expect(device.events.map((event) => event.kind)).toEqual(['write', 'flush']);
    expect(device.events[1]).toMatchObject({ kind: 'flush', failed: true });
  });

  it('refuses handle() so worker writes cannot bypass the log', () => {
    const device = new RecordingDevice(MemoryDevice.create({ sizeBytes: DEVICE_BYTES }));
    expect(() => device.handle()).toThrow(expect.objectContaining({ code: 'ENOTSUP' }));
  });

  it('reports the inner device errors unchanged (EINVAL for a misaligned write) and logs nothing', async () => {
    const device = new RecordingDevice(MemoryDevice.create({ sizeBytes: DEVICE_BYTES }));
    await expect(device.write(100, new Uint8Array(512))).rejects.toSatisfy((error) => FsError.is(error, 'EINVAL'));
    expect(() => device.zeroOutSync(DEVICE_BYTES, 512)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    expect(device.events).toHaveLength(0);
  });
});
