/**
 * The BlockDevice contract, run over every device kind: random round trips against a
 * model Uint8Array (the oracle), chunk-boundary crossings, and every error case.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FsError, type FsErrorCode } from '../vfs/errors.js';
import type { SyncBlockDevice } from './block-device.js';
import { FileDevice, IO_BYTES_MAX } from './file-device.js';
import { MemoryDevice } from './memory-device.js';
import { openDevice } from './index.js';
import { seededRandom } from '../wasm/testing.js';

const MiB = 1024 * 1024;
/** Small chunks so random requests cross chunk boundaries often. */
const CHUNK_SIZE_BYTES = 256 * 1024;

interface Geometry {
  sizeBytes: number;
  sectorSizeBytes: number;
}

interface DeviceKind {
  name: string;
  open(geometry: Geometry): Promise<SyncBlockDevice>;
  /** A read-only device over storage already holding `content`. */
  openReadOnly(content: Uint8Array, sectorSizeBytes: number): Promise<SyncBlockDevice>;
}

let directory = '';
let fileSequence = 0;
const nextPath = (): string => join(directory, `contract-${fileSequence++}.img`);

const kinds: DeviceKind[] = [
  {
    name: 'MemoryDevice',
    open: async (geometry) => MemoryDevice.create({ ...geometry, chunkSizeBytes: CHUNK_SIZE_BYTES }),
    openReadOnly: async (content, sectorSizeBytes) => {
      const writable = MemoryDevice.create({ sizeBytes: content.length, sectorSizeBytes, chunkSizeBytes: CHUNK_SIZE_BYTES });
      writable.writeSync(0, content);
      return MemoryDevice.fromHandle(writable.handle(), { readOnly: true });
    },
  },
  {
    name: 'FileDevice',
    open: (geometry) => openDevice({ kind: 'file', path: nextPath(), create: true, ...geometry }),
    openReadOnly: async (content, sectorSizeBytes) => {
      const path = nextPath();
      writeFileSync(path, content);
      return FileDevice.open(path, { readOnly: true, sectorSizeBytes });
    },
  },
];

/** A seeded PRNG in [0, 1), so a failure reproduces from its seed. */
function random(seed: number): () => number {
  const next = seededRandom(seed);
  return () => next() / 4294967296;
}

function randomBytes(next: () => number, lengthBytes: number): Uint8Array {
  const bytes = new Uint8Array(lengthBytes);
  for (let index = 0; index < lengthBytes; index++) bytes[index] = (next() * 256) | 0;
  return bytes;
}

async function expectCode(action: () => unknown, code: FsErrorCode): Promise<FsError> {
  let caught: unknown;
  try {
    await action();
  } catch (error) {
    caught = error;
  }
  expect(FsError.is(caught), `expected FsError ${code}, got ${String(caught)}`).toBe(true);
  expect((caught as FsError).code).toBe(code);
  return caught as FsError;
}

beforeAll(() => {
  directory = mkdtempSync(join(tmpdir(), 'ext4ts-device-contract-'));
});

afterAll(() => {
  rmSync(directory, { recursive: true, force: true });
});

describe.each(kinds)('$name contract', (kind) => {
  it('random writes, reads, discards and zeroOuts match a model byte for byte', async () => {
    const sectorSizeBytes = 512;
    const sizeBytes = 4 * MiB;
    const device = await kind.open({ sizeBytes, sectorSizeBytes });
    const model = new Uint8Array(sizeBytes);
    const next = random(0x5eed);
    for (let step = 0; step < 300; step++) {
      // Mostly small requests, some spanning whole chunks (cubed skews towards small).
      const lengthBytes = (1 + Math.floor(next() ** 3 * 2048)) * sectorSizeBytes;
      const offsetBytes = Math.floor(next() * ((sizeBytes - lengthBytes) / sectorSizeBytes + 1)) * sectorSizeBytes;
      const action = next();
      const sync = next() < 0.5;
      if (action < 0.4) {
        const source = randomBytes(next, lengthBytes);
        if (sync) device.writeSync(offsetBytes, source);
        else await device.write(offsetBytes, source, { fua: next() < 0.1 });
        model.set(source, offsetBytes);
      } else if (action < 0.5) {
        if (sync) device.discardSync(offsetBytes, lengthBytes);
        else await device.discard(offsetBytes, lengthBytes);
        model.fill(0, offsetBytes, offsetBytes + lengthBytes);
      } else if (action < 0.6) {
        if (sync) device.zeroOutSync(offsetBytes, lengthBytes);
        else await device.zeroOut(offsetBytes, lengthBytes);
        model.fill(0, offsetBytes, offsetBytes + lengthBytes);
      } else {
        const target = new Uint8Array(lengthBytes).fill(0xee);
        if (sync) device.readSync(offsetBytes, target);
        else await device.read(offsetBytes, target);
        expect(Buffer.compare(target, model.subarray(offsetBytes, offsetBytes + lengthBytes)), `step ${step}`).toBe(0);
      }
    }
    const whole = new Uint8Array(sizeBytes);
    await device.read(0, whole);
    expect(Buffer.compare(whole, model)).toBe(0);
    await device.close();
  });

  it('write and read across chunk boundaries and whole chunks round trip', async () => {
    const sizeBytes = 2 * MiB;
    const device = await kind.open({ sizeBytes, sectorSizeBytes: 4096 });
    const next = random(7);
    // Starts 4 KiB before the first boundary and ends 4 KiB after the third.
    const offsetBytes = CHUNK_SIZE_BYTES - 4096;
    const source = randomBytes(next, 2 * CHUNK_SIZE_BYTES + 8192);
    device.writeSync(offsetBytes, source);
    const target = new Uint8Array(source.length + 8192);
    await device.read(offsetBytes - 4096, target);
    expect(target.subarray(0, 4096).every((byte) => byte === 0)).toBe(true);
    expect(Buffer.compare(target.subarray(4096, 4096 + source.length), source)).toBe(0);
    expect(target.subarray(4096 + source.length).every((byte) => byte === 0)).toBe(true);
    // Discard exactly the middle chunk: neighbours keep their bytes.
    await device.discard(CHUNK_SIZE_BYTES, CHUNK_SIZE_BYTES);
    const after = new Uint8Array(source.length);
    device.readSync(offsetBytes, after);
    const expected = source.slice();
    expected.fill(0, 4096, 4096 + CHUNK_SIZE_BYTES);
    expect(Buffer.compare(after, expected)).toBe(0);
    await device.close();
  });

  it('read and write larger than one I/O bound round trip', async () => {
    const sizeBytes = IO_BYTES_MAX + 2 * MiB;
    const device = await kind.open({ sizeBytes, sectorSizeBytes: 512 });
    const source = randomBytes(random(11), IO_BYTES_MAX + MiB);
    await device.write(512, source);
    const target = new Uint8Array(source.length);
    device.readSync(512, target);
    expect(Buffer.compare(target, source)).toBe(0);
    await device.zeroOut(0, sizeBytes);
    await device.read(512, target);
    expect(target.every((byte) => byte === 0)).toBe(true);
    await device.close();
  });

  it('geometry reports what was asked and fresh devices read as zeros', async () => {
    const device = await kind.open({ sizeBytes: MiB, sectorSizeBytes: 4096 });
    expect(device.sizeBytes).toBe(MiB);
    expect(device.sectorSizeBytes).toBe(4096);
    expect(device.readOnly).toBe(false);
    const target = new Uint8Array(MiB).fill(1);
    await device.read(0, target);
    expect(target.every((byte) => byte === 0)).toBe(true);
    await device.flush();
    device.flushSync();
    await device.close();
  });

  it('misaligned or out-of-range requests throw EINVAL naming the request', async () => {
    const device = await kind.open({ sizeBytes: MiB, sectorSizeBytes: 4096 });
    const page = new Uint8Array(4096);
    const error = await expectCode(() => device.read(512, page), 'EINVAL');
    expect(error.message).toContain('read of [512, +4096)');
    await expectCode(() => device.read(0, new Uint8Array(512)), 'EINVAL');
    await expectCode(() => device.write(MiB, page), 'EINVAL');
    await expectCode(() => device.write(MiB - 4096, new Uint8Array(8192)), 'EINVAL');
    await expectCode(() => device.writeSync(-4096, page), 'EINVAL');
    await expectCode(() => device.readSync(0.5, page), 'EINVAL');
    await expectCode(() => device.discard(0, 100), 'EINVAL');
    await expectCode(() => device.zeroOutSync(4096, MiB), 'EINVAL');
    await expectCode(() => device.discardSync(Number.MAX_SAFE_INTEGER, 0), 'EINVAL');
    // Zero-length requests at the end are in range.
    await device.read(MiB, new Uint8Array(0));
    await device.close();
  });

  it('bad geometry at open throws EINVAL', async () => {
    await expectCode(() => kind.open({ sizeBytes: 1000, sectorSizeBytes: 512 }), 'EINVAL');
    await expectCode(() => kind.open({ sizeBytes: MiB, sectorSizeBytes: 1024 }), 'EINVAL');
  });

  it('a read-only device reads its content and refuses writes with EROFS', async () => {
    const content = randomBytes(random(3), 64 * 1024);
    const device = await kind.openReadOnly(content, 512);
    expect(device.readOnly).toBe(true);
    const page = new Uint8Array(4096).fill(9);
    await expectCode(() => device.write(0, page), 'EROFS');
    await expectCode(() => device.writeSync(0, page), 'EROFS');
    await expectCode(() => device.discard(0, 4096), 'EROFS');
    await expectCode(() => device.discardSync(0, 4096), 'EROFS');
    await expectCode(() => device.zeroOut(0, 4096), 'EROFS');
    await expectCode(() => device.zeroOutSync(0, 4096), 'EROFS');
    await device.flush();
    const target = new Uint8Array(content.length);
    await device.read(0, target);
    expect(Buffer.compare(target, content)).toBe(0);
    await device.close();
  });

  it('every call after close throws EBADF', async () => {
    const device = await kind.open({ sizeBytes: MiB, sectorSizeBytes: 512 });
    await device.close();
    const page = new Uint8Array(4096);
    await expectCode(() => device.read(0, page), 'EBADF');
    await expectCode(() => device.readSync(0, page), 'EBADF');
    await expectCode(() => device.write(0, page), 'EBADF');
    await expectCode(() => device.writeSync(0, page), 'EBADF');
    await expectCode(() => device.flush(), 'EBADF');
    await expectCode(() => device.flushSync(), 'EBADF');
    await expectCode(() => device.discard(0, 4096), 'EBADF');
    await expectCode(() => device.discardSync(0, 4096), 'EBADF');
    await expectCode(() => device.zeroOut(0, 4096), 'EBADF');
    await expectCode(() => device.zeroOutSync(0, 4096), 'EBADF');
    await expectCode(() => device.handle(), 'EBADF');
    await expectCode(() => device.close(), 'EBADF');
    await expectCode(() => device.closeSync(), 'EBADF');
  });

  it('a device rebuilt from handle() reaches the same bytes', async () => {
    const device = await kind.open({ sizeBytes: MiB, sectorSizeBytes: 512 });
    const source = randomBytes(random(5), 8192);
    device.writeSync(CHUNK_SIZE_BYTES - 4096, source);
    const handle = structuredClone(device.handle());
    const twin = handle.kind === 'memory' ? MemoryDevice.fromHandle(handle) : FileDevice.fromHandle(handle);
    const target = new Uint8Array(8192);
    twin.readSync(CHUNK_SIZE_BYTES - 4096, target);
    expect(Buffer.compare(target, source)).toBe(0);
    // A write through the twin, into a region neither side wrote before, shows up in the original.
    twin.writeSync(3 * CHUNK_SIZE_BYTES, source);
    device.readSync(3 * CHUNK_SIZE_BYTES, target);
    expect(Buffer.compare(target, source)).toBe(0);
    twin.closeSync();
    device.closeSync();
  });
});
