import { describe, expect, it } from 'vitest';
import { deviceFromHandle, MemoryDevice, openDevice } from './index.js';

describe('openDevice', () => {
  it('openDevice with kind memory builds a MemoryDevice of the asked geometry', async () => {
    const device = await openDevice({ kind: 'memory', sizeBytes: 8 * 1024 * 1024, sectorSizeBytes: 4096 });
    expect(device).toBeInstanceOf(MemoryDevice);
    expect(device.sizeBytes).toBe(8 * 1024 * 1024);
    expect(device.sectorSizeBytes).toBe(4096);
    device.writeSync(4096, new Uint8Array(4096).fill(3));
    const twin = deviceFromHandle(device.handle());
    const target = new Uint8Array(4096);
    twin.readSync(4096, target);
    expect(target.every((byte) => byte === 3)).toBe(true);
    await device.close();
  });

  it('openDevice with kind file reports ENOENT for a missing image', async () => {
    await expect(openDevice({ kind: 'file', path: 'no-such-dir/no-such.img' })).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
