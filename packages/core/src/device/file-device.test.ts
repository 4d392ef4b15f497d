import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { FsError } from '../vfs/errors.js';
import { FileDevice, IO_BYTES_MAX } from './file-device.js';
import { deviceFromHandle } from './index.js';

const MiB = 1024 * 1024;

let directory = '';
let fileSequence = 0;
const nextPath = (): string => join(directory, `file-${fileSequence++}.img`);

beforeAll(() => {
  directory = mkdtempSync(join(tmpdir(), 'ext4ts-file-device-'));
});

afterAll(() => {
  rmSync(directory, { recursive: true, force: true });
});

function pattern(lengthBytes: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(lengthBytes);
  for (let index = 0; index < lengthBytes; index++) bytes[index] = (index * 13 + seed) % 253 + 1;
  return bytes;
}

describe('FileDevice.open', () => {
  it('open of a missing file without create rejects ENOENT', async () => {
    await expect(FileDevice.open(nextPath())).rejects.toMatchObject({ code: 'ENOENT', syscall: 'open' });
    expect(() => FileDevice.openSync(nextPath())).toThrow(expect.objectContaining({ code: 'ENOENT' }));
  });

  it('create with sizeBytes makes a sparse file of that size', async () => {
    const path = nextPath();
    const device = await FileDevice.open(path, { create: true, sizeBytes: 256 * MiB });
    const stats = statSync(path);
    expect(stats.size).toBe(256 * MiB);
    expect(stats.blocks * 512).toBeLessThan(MiB);
    expect(isAbsolute(device.handle().path)).toBe(true);
    await device.close();
  });

  it('a larger file is used as a prefix of sizeBytes; a smaller read-only one is EINVAL', async () => {
    const path = nextPath();
    writeFileSync(path, pattern(2 * MiB, 1));
    const device = FileDevice.openSync(path, { sizeBytes: MiB, readOnly: true });
    expect(device.sizeBytes).toBe(MiB);
    expect(() => device.readSync(MiB, new Uint8Array(512))).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    device.closeSync();
    await expect(FileDevice.open(path, { sizeBytes: 4 * MiB, readOnly: true })).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(FileDevice.open(path, { readOnly: true, create: true })).rejects.toMatchObject({ code: 'EINVAL' });
  });

  it('a file whose size is not a multiple of the sector size is EINVAL', async () => {
    const path = nextPath();
    writeFileSync(path, new Uint8Array(4096 + 512));
    await expect(FileDevice.open(path, { sectorSizeBytes: 4096 })).rejects.toMatchObject({ code: 'EINVAL' });
  });

  it('opening a directory for writing keeps EISDIR', async () => {
    await expect(FileDevice.open(directory)).rejects.toMatchObject({ code: 'EISDIR' });
  });
});

describe('FileDevice I/O against the host file', () => {
  it('sync, async and FUA writes, zeroOut and discard land in the host file', async () => {
    const path = nextPath();
    const device = await FileDevice.open(path, { create: true, sizeBytes: 4 * MiB });
    const model = new Uint8Array(4 * MiB);
    const first = pattern(64 * 1024, 2);
    device.writeSync(4096, first);
    model.set(first, 4096);
    const second = pattern(MiB, 3);
    await device.write(MiB + 512, second, { fua: true });
    model.set(second, MiB + 512);
    await device.zeroOut(MiB + 4096, 8192);
    model.fill(0, MiB + 4096, MiB + 4096 + 8192);
    device.discardSync(8192, 4096);
    model.fill(0, 8192, 8192 + 4096);
    await device.flush();
    expect(Buffer.compare(readFileSync(path), model)).toBe(0);
    await device.close();
  });

  it('a read-only device refuses writes and leaves the file unchanged', async () => {
    const path = nextPath();
    const content = pattern(MiB, 4);
    writeFileSync(path, content);
    const device = await FileDevice.open(path, { readOnly: true });
    await expect(device.write(0, new Uint8Array(512))).rejects.toMatchObject({ code: 'EROFS', path });
    expect(() => device.zeroOutSync(0, 512)).toThrow(expect.objectContaining({ code: 'EROFS' }));
    await expect(device.discard(0, 512)).rejects.toMatchObject({ code: 'EROFS' });
    expect(Buffer.compare(readFileSync(path), content)).toBe(0);
    await device.close();
  });

  it('a device from handle() has its own fd on the same bytes', async () => {
    const path = nextPath();
    const device = await FileDevice.open(path, { create: true, sizeBytes: MiB });
    const twin = deviceFromHandle(structuredClone(device.handle()));
    twin.writeSync(8192, pattern(4096, 5));
    const target = new Uint8Array(4096);
    await device.read(8192, target);
    expect(Buffer.compare(target, pattern(4096, 5))).toBe(0);
    await twin.close();
    // Closing the twin leaves the original's fd working.
    device.readSync(8192, target);
    await device.close();
  });

  it('close waits for writes in flight; closeSync during them is EBUSY', async () => {
    const path = nextPath();
    // Four syscalls of IO_BYTES_MAX each: a close that did not wait would fail the later ones.
    const device = await FileDevice.open(path, { create: true, sizeBytes: 4 * IO_BYTES_MAX });
    const source = pattern(4 * IO_BYTES_MAX, 6);
    const writing = device.write(0, source);
    expect(() => device.closeSync()).toThrow(expect.objectContaining({ code: 'EBUSY' }));
    const closing = device.close();
    await Promise.all([writing, closing]);
    expect(Buffer.compare(readFileSync(path), source)).toBe(0);
  });
});

describe('FileDevice error mapping', () => {
  it('a node:fs error during I/O becomes EIO carrying the cause', async () => {
    // A directory opens read-only but read() on it fails with EISDIR.
    const inner = join(directory, 'a-directory');
    mkdirSync(inner);
    const device = await FileDevice.open(inner, { readOnly: true, sizeBytes: 4096 });
    let caught: unknown;
    try {
      await device.read(0, new Uint8Array(512));
    } catch (error) {
      caught = error;
    }
    expect(FsError.is(caught, 'EIO')).toBe(true);
    expect((caught as FsError).path).toBe(inner);
    expect(((caught as FsError).cause as { code?: string }).code).toBe('EISDIR');
    expect(() => device.readSync(0, new Uint8Array(512))).toThrow(expect.objectContaining({ code: 'EIO' }));
    await device.close();
  });

  it.skipIf(!existsSync('/dev/full'))('ENOSPC from the host stays ENOSPC', async () => {
    // /dev/full reads as zeros and fails every write with ENOSPC.
    const device = await FileDevice.open('/dev/full', { sizeBytes: MiB });
    await expect(device.write(0, new Uint8Array(4096))).rejects.toMatchObject({ code: 'ENOSPC' });
    expect(() => device.writeSync(0, new Uint8Array(4096))).toThrow(expect.objectContaining({ code: 'ENOSPC' }));
    const target = new Uint8Array(4096).fill(1);
    device.readSync(0, target);
    expect(target.every((byte) => byte === 0)).toBe(true);
    await device.close();
  });
});
