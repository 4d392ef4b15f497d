import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync, ftruncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { mkdirSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import ts from 'typescript';
import { FsError } from '../vfs/errors.js';
import { MemoryDevice } from './memory-device.js';
import { randomBelow, seededRandom } from '../random.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

let directory = '';

beforeAll(() => {
  directory = mkdtempSync(join(tmpdir(), 'ext4ts-memory-device-'));
});

afterAll(() => {
  rmSync(directory, { recursive: true, force: true });
});

function filled(lengthBytes: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(lengthBytes);
  for (let index = 0; index < lengthBytes; index++) bytes[index] = (index * 31 + seed * 7 + 1) % 251 + 1;
  return bytes;
}

function codeOf(action: () => unknown): string | undefined {
  try {
    action();
  } catch (error) {
    return FsError.is(error) ? error.code : `not an FsError: ${String(error)}`;
  }
  return undefined;
}

describe('MemoryDevice sparseness', () => {
  it('a 64 GiB device with a few writes allocates only the chunks written', () => {
    const before = process.memoryUsage();
    const device = MemoryDevice.create({ sizeBytes: 64 * GiB });
    const page = filled(4096, 1);
    const offsets = [0, 32 * GiB, 64 * GiB - 4096, GiB - 4096];
    for (const offsetBytes of offsets) device.writeSync(offsetBytes, offsets.indexOf(offsetBytes) === 3 ? filled(8192, 2) : page);
    // Chunks 0, 512, 1023, and 15 + 16 for the write that crosses the 1 GiB boundary.
    expect(device.dataChunkCount).toBe(5);
    const after = process.memoryUsage();
    // The chunks, the 1 MiB of segment state words (4 bytes per 256 KiB) and the small buffers here.
    expect(after.arrayBuffers - before.arrayBuffers).toBeLessThanOrEqual(5 * 64 * MiB + 2 * MiB);
    // Only the pages written are resident, not even the 320 MiB of chunks.
    expect(after.rss - before.rss).toBeLessThan(64 * MiB);
    const target = new Uint8Array(8192);
    device.readSync(GiB - 4096, target);
    expect(Buffer.compare(target, filled(8192, 2))).toBe(0);
    // Reading never-written space answers zeros without allocating.
    const far = new Uint8Array(MiB).fill(1);
    device.readSync(48 * GiB, far);
    expect(far.every((byte) => byte === 0)).toBe(true);
    expect(device.dataChunkCount).toBe(5);
    device.closeSync();
  });

  it('handle() on a 64 GiB device creates every chunk without making it resident', () => {
    const device = MemoryDevice.create({ sizeBytes: 64 * GiB });
    device.writeSync(4096, filled(4096, 3));
    const rssBefore = process.memoryUsage().rss;
    const handle = device.handle();
    expect(handle.chunks.length).toBe(1024);
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(64 * MiB);
    expect(device.dataChunkCount).toBe(1);
    device.closeSync();
  });

  it('discard of a whole chunk drops it, and a later write does not resurrect stale bytes', () => {
    const chunkSizeBytes = 64 * KiB;
    const device = MemoryDevice.create({ sizeBytes: 4 * chunkSizeBytes, chunkSizeBytes });
    device.writeSync(chunkSizeBytes, new Uint8Array(chunkSizeBytes).fill(0xff));
    expect(device.dataChunkCount).toBe(1);
    device.discardSync(chunkSizeBytes, chunkSizeBytes);
    expect(device.dataChunkCount).toBe(0);
    device.writeSync(chunkSizeBytes + 512, new Uint8Array(512).fill(7));
    const chunk = new Uint8Array(chunkSizeBytes);
    device.readSync(chunkSizeBytes, chunk);
    const expected = new Uint8Array(chunkSizeBytes).fill(7, 512, 1024);
    expect(Buffer.compare(chunk, expected)).toBe(0);
    device.closeSync();
  });

  it('segments: a write into a dropped chunk zeroes only its own 256 KiB segments, and random writes, discards and zeroOuts match a byte model', () => {
    // 1 MiB chunks of four 256 KiB segments, and a last chunk cut short mid-segment.
    const sizeBytes = 3 * MiB + 192 * KiB;
    const device = MemoryDevice.create({ sizeBytes, chunkSizeBytes: MiB });
    const model = new Uint8Array(sizeBytes);
    const apply = (offsetBytes: number, bytes: Uint8Array) => {
      device.writeSync(offsetBytes, bytes);
      model.set(bytes, offsetBytes);
    };
    apply(0, filled(sizeBytes, 1)); // every segment DATA, every byte non-zero
    device.discardSync(0, sizeBytes);
    model.fill(0);
    expect(device.dataChunkCount).toBe(0);
    // A small write in segment 1 and a write across segments 2-3 of chunk 0.
    apply(300 * KiB, filled(512, 2));
    apply(600 * KiB + 512, filled(300 * KiB, 3));
    const check = () => {
      const whole = new Uint8Array(sizeBytes);
      device.readSync(0, whole);
      expect(Buffer.compare(whole, model)).toBe(0);
    };
    check();
    expect(device.dataChunkCount).toBe(1);
    const random = seededRandom(5);
    for (let step = 0; step < 400; step++) {
      const offsetBytes = randomBelow(random, sizeBytes / 512) * 512;
      const lengthBytes = Math.min(sizeBytes - offsetBytes, (1 + randomBelow(random, 1200)) * 512);
      const kind = randomBelow(random, 4);
      if (kind <= 1) apply(offsetBytes, filled(lengthBytes, step + 4));
      else {
        if (kind === 2) device.discardSync(offsetBytes, lengthBytes);
        else device.zeroOutSync(offsetBytes, lengthBytes);
        model.fill(0, offsetBytes, offsetBytes + lengthBytes);
      }
      const piece = new Uint8Array(lengthBytes);
      device.readSync(offsetBytes, piece);
      expect(Buffer.compare(piece, model.subarray(offsetBytes, offsetBytes + lengthBytes))).toBe(0);
      if (step % 50 === 0) check();
    }
    check();
    // A view materializes its segments: never stale bytes, even of dropped ones.
    device.discardSync(MiB, MiB);
    model.fill(0, MiB, 2 * MiB);
    expect(Buffer.compare(device.view(MiB + 100 * KiB, 300 * KiB)!, model.subarray(MiB + 100 * KiB, MiB + 400 * KiB))).toBe(0);
    check();
    device.closeSync();
  });

  it('zeroOut of part of a chunk zeroes only that part and keeps the chunk', () => {
    const chunkSizeBytes = 64 * KiB;
    const device = MemoryDevice.create({ sizeBytes: 2 * chunkSizeBytes, chunkSizeBytes });
    device.writeSync(0, new Uint8Array(chunkSizeBytes).fill(5));
    device.zeroOutSync(4096, 4096);
    const chunk = new Uint8Array(chunkSizeBytes);
    device.readSync(0, chunk);
    expect(Buffer.compare(chunk, new Uint8Array(chunkSizeBytes).fill(5).fill(0, 4096, 8192))).toBe(0);
    expect(device.dataChunkCount).toBe(1);
    device.closeSync();
  });

  it('bad chunk sizes throw EINVAL', () => {
    expect(codeOf(() => MemoryDevice.create({ sizeBytes: MiB, chunkSizeBytes: 3 * 4096 }))).toBe('EINVAL');
    expect(codeOf(() => MemoryDevice.create({ sizeBytes: MiB, chunkSizeBytes: 2048 }))).toBe('EINVAL');
    expect(codeOf(() => MemoryDevice.create({ sizeBytes: 0 }))).toBe('EINVAL');
  });
});

describe('MemoryDevice.view', () => {
  it('view returns a zero-copy window inside one chunk and undefined across chunks', () => {
    const chunkSizeBytes = 64 * KiB;
    const device = MemoryDevice.create({ sizeBytes: 2 * chunkSizeBytes, chunkSizeBytes });
    const window = device.view(4096, 8192)!;
    expect(window.length).toBe(8192);
    window.fill(9);
    const target = new Uint8Array(8192);
    device.readSync(4096, target);
    expect(target.every((byte) => byte === 9)).toBe(true);
    device.writeSync(4096, new Uint8Array(512).fill(3));
    expect(window[0]).toBe(3);
    expect(device.view(chunkSizeBytes - 512, 1024)).toBeUndefined();
    expect(codeOf(() => device.view(100, 512))).toBe('EINVAL');
    device.closeSync();
  });
});

describe('MemoryDevice images', () => {
  /** A sparse host image with data at a few places; returns its path. */
  function makeImage(name: string, sizeBytes: number, pieces: [number, Uint8Array][]): string {
    const path = join(directory, name);
    const fd = openSync(path, 'w');
    ftruncateSync(fd, sizeBytes);
    for (const [offsetBytes, bytes] of pieces) writeSync(fd, bytes, 0, bytes.length, offsetBytes);
    closeSync(fd);
    return path;
  }

  function nonZeroChunkCount(bytes: Uint8Array, chunkSizeBytes: number): number {
    const zeros = Buffer.alloc(chunkSizeBytes);
    let count = 0;
    for (let offsetBytes = 0; offsetBytes < bytes.length; offsetBytes += chunkSizeBytes) {
      if (!zeros.equals(bytes.subarray(offsetBytes, offsetBytes + chunkSizeBytes))) count++;
    }
    return count;
  }

  it('loadImage then saveImage reproduces the host file byte for byte and sparsely', async () => {
    const sizeBytes = 24 * MiB;
    const chunkSizeBytes = MiB;
    const source = makeImage('source.img', sizeBytes, [
      [0, filled(4096, 1)],
      [5 * MiB, filled(100 * KiB, 2)],
      [20 * MiB - 4096, filled(8192, 3)],
    ]);
    const hostBytes = readFileSync(source);
    const device = await MemoryDevice.loadImage(source, { chunkSizeBytes });
    expect(device.sizeBytes).toBe(sizeBytes);
    expect(device.dataChunkCount).toBe(nonZeroChunkCount(hostBytes, chunkSizeBytes));
    const whole = new Uint8Array(sizeBytes);
    device.readSync(0, whole);
    expect(Buffer.compare(whole, hostBytes)).toBe(0);

    const saved = join(directory, 'saved.img');
    writeFileSync(saved, new Uint8Array(32 * MiB).fill(1)); // saveImage must replace, not overlay
    await device.saveImage(saved);
    expect(Buffer.compare(readFileSync(saved), hostBytes)).toBe(0);
    const stats = statSync(saved);
    expect(stats.size).toBe(sizeBytes);
    // ~112 KiB of data, written in 64 KiB pieces: far below the 24 MiB size.
    expect(stats.blocks * 512).toBeLessThan(MiB);
    device.closeSync();
  });

  it('loadImage of an all-zero image allocates no chunk', async () => {
    const path = makeImage('zeros.img', 16 * MiB, []);
    const device = await MemoryDevice.loadImage(path, { chunkSizeBytes: MiB });
    expect(device.dataChunkCount).toBe(0);
    device.closeSync();
  });

  it('loadImage reports ENOENT, EINVAL for odd sizes, and honours readOnly', async () => {
    await expect(MemoryDevice.loadImage(join(directory, 'missing.img'))).rejects.toMatchObject({ code: 'ENOENT' });
    const odd = join(directory, 'odd.img');
    writeFileSync(odd, new Uint8Array(1000));
    await expect(MemoryDevice.loadImage(odd)).rejects.toMatchObject({ code: 'EINVAL' });
    const path = makeImage('ro.img', MiB, [[0, filled(512, 4)]]);
    const device = await MemoryDevice.loadImage(path, { readOnly: true });
    expect(codeOf(() => device.writeSync(0, new Uint8Array(512)))).toBe('EROFS');
    const target = new Uint8Array(512);
    device.readSync(0, target);
    expect(Buffer.compare(target, filled(512, 4))).toBe(0);
    device.closeSync();
  });
});

/**
 * Worker threads cannot import .ts sources, so the test transpiles the device module
 * and its imports (types stripped, nothing else changed) into a temporary directory.
 */
function transpileForWorker(): string {
  const sourceRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
  const targetRoot = join(directory, 'worker-src');
  const files = ['device/memory-device.ts', 'device/aligned-buffer.ts', 'device/device-checks.ts', 'device/block-device.ts', 'vfs/errors.ts', 'assert.ts'];
  for (const file of files) {
    const compilerOptions = { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 };
    const output = ts.transpileModule(readFileSync(join(sourceRoot, file), 'utf8'), { compilerOptions }).outputText;
    mkdirSync(dirname(join(targetRoot, file)), { recursive: true });
    writeFileSync(join(targetRoot, file.replace(/\.ts$/, '.js')), output);
  }
  writeFileSync(join(targetRoot, 'package.json'), '{"type":"module"}');
  return pathToFileURL(join(targetRoot, 'device/memory-device.js')).href;
}

const workerBody = `
const { workerData, parentPort } = require('node:worker_threads');
import(workerData.moduleUrl).then(({ MemoryDevice }) => {
  const device = MemoryDevice.fromHandle(workerData.handle);
  const seen = new Uint8Array(workerData.readLengthBytes);
  device.readSync(workerData.readOffsetBytes, seen);
  device.writeSync(workerData.writeOffsetBytes, workerData.writeBytes);
  device.discardSync(workerData.discardOffsetBytes, workerData.discardLengthBytes);
  // Race the main thread, round after round: odd sectors of every chunk of the race
  // range, which the main thread filled with 0xff and dropped before the round.
  const sync = new Int32Array(workerData.sync);
  const sector = new Uint8Array(512).fill(0xbb);
  for (let round = 1; round <= workerData.roundCount; round++) {
    while (Atomics.load(sync, 0) < round) Atomics.wait(sync, 0, round - 1);
    for (let offset = workerData.raceOffsetBytes + 512; offset < workerData.raceEndBytes; offset += 1024) device.writeSync(offset, sector);
    Atomics.store(sync, 1, round);
    Atomics.notify(sync, 1);
  }
  parentPort.postMessage({ seen });
}).catch((error) => parentPort.postMessage({ error: String(error && error.stack || error) }));
`;

describe('MemoryDevice.fromHandle in a worker thread', () => {
  it('a worker sees and writes the same bytes, including chunks first written after the handle', async () => {
    const chunkSizeBytes = 64 * KiB;
    const device = MemoryDevice.create({ sizeBytes: 64 * chunkSizeBytes, chunkSizeBytes });
    const early = filled(8192, 5);
    device.writeSync(chunkSizeBytes - 4096, early);
    // The race range: 32 chunks that hold data and are dropped before each round, so
    // both sides race to re-zero them; a lost race wipes the other side's sectors.
    const raceOffsetBytes = 32 * chunkSizeBytes;
    const raceEndBytes = 64 * chunkSizeBytes;
    const roundCount = 20;
    const handle = device.handle();
    device.writeSync(5 * chunkSizeBytes, filled(4096, 6)); // first written after the handle
    /** sync[0]: round the main thread started; sync[1]: round the worker finished. */
    const sync = new Int32Array(new SharedArrayBuffer(8));
    const workerData = {
      moduleUrl: transpileForWorker(),
      handle,
      sync: sync.buffer,
      roundCount,
      readOffsetBytes: 5 * chunkSizeBytes,
      readLengthBytes: 4096,
      writeOffsetBytes: 9 * chunkSizeBytes - 512,
      writeBytes: filled(1024, 7),
      discardOffsetBytes: chunkSizeBytes,
      discardLengthBytes: chunkSizeBytes,
      raceOffsetBytes,
      raceEndBytes,
    };
    const worker = new Worker(workerBody, { eval: true, workerData });
    const reply = new Promise<{ seen?: Uint8Array; error?: string }>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    const sector = new Uint8Array(512).fill(0xaa);
    const expected = new Uint8Array(raceEndBytes - raceOffsetBytes);
    for (let offsetBytes = 0; offsetBytes < expected.length; offsetBytes += 1024) expected.fill(0xaa, offsetBytes, offsetBytes + 512).fill(0xbb, offsetBytes + 512, offsetBytes + 1024);
    const race = new Uint8Array(expected.length);
    let roundsWrong = 0;
    for (let round = 1; round <= roundCount; round++) {
      device.writeSync(raceOffsetBytes, race.fill(0xff));
      device.discardSync(raceOffsetBytes, race.length);
      Atomics.store(sync, 0, round);
      Atomics.notify(sync, 0);
      for (let offsetBytes = raceOffsetBytes; offsetBytes < raceEndBytes; offsetBytes += 1024) device.writeSync(offsetBytes, sector);
      const deadlineMs = Date.now() + 10_000;
      while (Atomics.load(sync, 1) < round) {
        if (Date.now() > deadlineMs) throw new Error(`worker did not finish round ${round}`);
        Atomics.wait(sync, 1, round - 1, 100);
      }
      device.readSync(raceOffsetBytes, race);
      if (Buffer.compare(race, expected) !== 0) roundsWrong++;
    }
    const { seen, error } = await reply;
    await worker.terminate();
    expect(error).toBeUndefined();

    expect(Buffer.compare(seen!, filled(4096, 6))).toBe(0);
    const written = new Uint8Array(1024);
    device.readSync(9 * chunkSizeBytes - 512, written);
    expect(Buffer.compare(written, filled(1024, 7))).toBe(0);
    const discarded = new Uint8Array(8192);
    device.readSync(chunkSizeBytes - 4096, discarded);
    expect(Buffer.compare(discarded, early.slice().fill(0, 4096))).toBe(0);
    // Neither side's zeroing of a dropped chunk wiped the other's sectors, and no stale 0xff survived.
    expect(roundsWrong).toBe(0);
    device.closeSync();
  });
});
