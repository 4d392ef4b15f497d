/**
 * The client channel with real worker threads (client-worker.mjs over the built
 * package): four clients each run a seeded workload on their own file and on their own
 * stripes of one shared file at the same time, checked against models in each thread and
 * then against the engine's view, the saved image (e2fsck -fn) and a remount; engine
 * errors arrive as FsErrors; a client that dies holding a write lease, or is terminated
 * with requests in flight, leaves an engine that goes on serving; a client that exits
 * right after a write returned keeps that write; an engine in a worker of its own serves
 * the main thread and another worker.
 *
 * Cost: ~1,000 ops over 4 threads on a 256 MiB memory image with a 32 MiB cache (the
 * writeback pool on), one image save + e2fsck; a few seconds on 2 shared cores.
 */
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Ext4, FsError, MemoryDevice, connectFilesystem, mkfs, serveFilesystem, type Ext4Filesystem, type FilesystemHandle, type FilesystemServer,
} from '@ext4ts/core';
import { seededRandom } from '../../packages/core/src/random.js';
import { ensureWritebackWorkerBuilt } from '../../packages/core/src/writeback/testing.js';
import { e2fsck } from '../helpers/e2fs.js';
import { makeTempDir, type TempDir } from '../helpers/tmp.js';

const MiB = 1024 * 1024;
const WORKER_URL = new URL('./client-worker.mjs', import.meta.url);

let tmp: TempDir;
beforeAll(() => {
  ensureWritebackWorkerBuilt(); // builds packages/core/dist, which the client worker imports
  tmp = makeTempDir('ext4ts-channel-');
});
afterAll(() => tmp.cleanup());

interface WorkerOutcome { ok: boolean; result?: unknown; error?: string; exitCode: number }

/** Start a client thread on its own connection. */
function startClient(handle: FilesystemHandle, task: object): { worker: Worker; outcome: Promise<WorkerOutcome>; messages: unknown[] } {
  const worker = new Worker(WORKER_URL, { workerData: { handle, task }, transferList: [handle.port] });
  const messages: unknown[] = [];
  let final: { ok: boolean; result?: unknown; error?: string } = { ok: false, error: 'no answer' };
  worker.on('message', (message: { ok?: boolean }) => {
    messages.push(message);
    if (typeof message.ok === 'boolean') final = message as typeof final;
  });
  const outcome = new Promise<WorkerOutcome>((resolve) => {
    worker.on('error', (error) => { final = { ok: false, error: String(error.stack ?? error) }; });
    worker.on('exit', (exitCode) => resolve({ ...final, exitCode }));
  });
  return { worker, outcome, messages };
}

async function freshFs(cacheBytes: number): Promise<{ fs: Ext4Filesystem; device: MemoryDevice }> {
  const device = MemoryDevice.create({ sizeBytes: 256 * MiB });
  await mkfs(device, {});
  const fs = await Ext4.mount(device, { readOnly: false, commitIntervalMs: 0, cacheBytes, writebackThreads: 1 });
  return { fs, device };
}

async function untilConnections(server: FilesystemServer, count: number): Promise<void> {
  for (let waitedMs = 0; server.stats().connections > count; waitedMs += 5) {
    expect(waitedMs).toBeLessThan(10_000);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

async function fsckClean(fs: Ext4Filesystem, device: MemoryDevice, name: string): Promise<string> {
  await fs.unmount();
  const image = join(tmp.dir, name);
  await device.saveImage(image);
  const fsck = await e2fsck(image);
  expect(fsck.clean, fsck.output).toBe(true);
  return image;
}

/** client-worker.mjs's bytesOf(seededRandom(seed), length). */
function seeded(seed: number, length: number): Buffer {
  const rng = seededRandom(seed);
  const out = Buffer.alloc(length);
  let word = 0;
  for (let i = 0; i < length; i++) {
    if ((i & 3) === 0) word = rng();
    out[i] = (word >>> ((i & 3) * 8)) & 0xff;
  }
  return out;
}

async function expectCode(promise: Promise<unknown>, code: string): Promise<void> {
  const error = await promise.then(() => undefined, (e: unknown) => e);
  expect(FsError.is(error, code as never), String(error)).toBe(true);
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

describe('channel with worker threads', () => {
  it('four clients write and read their own files and stripes of a shared file at once; every view agrees with the models; e2fsck -fn clean', async () => {
    const { fs, device } = await freshFs(32 * MiB);
    const server = serveFilesystem(fs);
    const stripeBytes = 256 * 1024;
    const stripeCount = 16;
    const workerCount = 4;
    await fs.writeFile('/shared', Buffer.alloc(stripeBytes * stripeCount));
    const clients = Array.from({ length: workerCount }, (_, index) => startClient(server.connect(), {
      kind: 'workload', seed: 1000 + index, ops: 250, ownPath: `/own-${index}`, sharedPath: '/shared',
      stripeBytes, stripeCount, workerCount, index, fileBytesMax: 8 * MiB,
    }));
    const outcomes = await Promise.all(clients.map((c) => c.outcome));
    for (const outcome of outcomes) expect(outcome.error, outcome.error).toBeUndefined();
    const shared = await fs.readFile('/shared');
    const results = outcomes.map((o) => o.result as { ownLength: number; ownSha256: string; stripes: [number, Uint8Array][] });
    for (const [index, result] of results.entries()) {
      const own = await fs.readFile(`/own-${index}`);
      expect(own.length).toBe(result.ownLength);
      expect(sha256(own)).toBe(result.ownSha256);
      for (const [stripe, bytes] of result.stripes) {
        expect(shared.subarray(stripe * stripeBytes, (stripe + 1) * stripeBytes).equals(Buffer.from(bytes)), `stripe ${stripe}`).toBe(true);
      }
    }
    const stats = server.stats();
    expect(stats.pinnedReadBytes).toBeGreaterThan(0);
    expect(stats.folioWriteBytes).toBeGreaterThan(0);
    expect(stats.leases).toBe(0);
    await server.close();
    fs.files.cache.checkInvariants();
    const image = await fsckClean(fs, device, 'workload.img');
    // The image holds what the models say.
    const reloaded = await MemoryDevice.loadImage(image);
    const again = await Ext4.mount(reloaded);
    for (const [index, result] of results.entries()) expect(sha256(await again.readFile(`/own-${index}`))).toBe(result.ownSha256);
    expect((await again.readFile('/shared')).equals(shared)).toBe(true);
    await again.unmount();
  });

  it('truncates and punches racing client writes on the same file, under cache pressure, never show or leave another file\'s bytes (both paths)', async () => {
    for (const buffered of ['iomap', 'buffer_head'] as const) {
      const device = MemoryDevice.create({ sizeBytes: 128 * MiB });
      await mkfs(device, {});
      const fs = await Ext4.mount(device, { readOnly: false, commitIntervalMs: 0, cacheBytes: 8 * MiB, writebackThreads: 1, buffered });
      const server = serveFilesystem(fs);
      const files = [['/a', 0x41], ['/b', 0x42]] as const;
      for (const [path] of files) await fs.writeFile(path, Buffer.alloc(0));
      const fileBytesMax = 6 * MiB;
      const clients = files.flatMap(([path, byte], k) => [
        startClient(server.connect(), { kind: 'pattern', role: 'writer', path, byte, ops: 60, seed: 10 + k, fileBytesMax }),
        startClient(server.connect(), { kind: 'pattern', role: 'chopper', path, byte, ops: 60, seed: 20 + k, fileBytesMax }),
      ]);
      const outcomes = await Promise.all(clients.map((c) => c.outcome));
      for (const outcome of outcomes) expect(outcome.error, `${buffered}: ${outcome.error}`).toBeUndefined();
      for (const [path, byte] of files) {
        const data = await fs.readFile(path);
        expect(data.every((b) => b === 0 || b === byte), `${buffered} ${path}`).toBe(true);
      }
      expect(server.stats().leases).toBe(0);
      await server.close();
      fs.files.cache.checkInvariants();
      await fsckClean(fs, device, `race-${buffered}.img`);
    }
  });

  it('an engine in a worker thread of its own serves the main thread and another worker', async () => {
    const device = MemoryDevice.create({ sizeBytes: 128 * MiB });
    await mkfs(device, {});
    const engine = new Worker(new URL('./engine-worker.mjs', import.meta.url), { workerData: { device: device.handle(), clients: 2, cacheBytes: 16 * MiB } });
    const { handles } = await new Promise<{ handles: FilesystemHandle[] }>((resolve, reject) => {
      engine.once('message', resolve);
      engine.once('error', reject);
    });
    const client = connectFilesystem(handles[0]);
    await client.writeFile('/shared', Buffer.alloc(128 * 1024));
    const other = startClient(handles[1], {
      kind: 'workload', seed: 5, ops: 80, ownPath: '/other', sharedPath: '/shared', stripeBytes: 64 * 1024, stripeCount: 2,
      workerCount: 2, index: 1, fileBytesMax: 4 * MiB,
    });
    const data = seeded(11, 5 * MiB + 3);
    await client.writeFile('/main', data);
    expect((await client.readFile('/main') as Buffer).equals(data)).toBe(true);
    expect((await client.stat('/main')).size).toBe(data.length);
    await expectCode(client.open('/nope'), 'ENOENT');
    const outcome = await other.outcome;
    expect(outcome.error, outcome.error).toBeUndefined();
    await client.close();
    engine.postMessage('stop');
    await new Promise((resolve) => engine.once('message', resolve));
    await engine.terminate();
    const image = join(tmp.dir, 'engine-worker.img');
    await device.saveImage(image);
    const fsck = await e2fsck(image);
    expect(fsck.clean, fsck.output).toBe(true);
  });

  it('engine errors reach a client thread as FsErrors with code, syscall and path: ENOENT, EBADF, EFBIG, EISDIR', async () => {
    const { fs, device } = await freshFs(16 * MiB);
    const server = serveFilesystem(fs);
    const { outcome } = startClient(server.connect(), { kind: 'errors', dirPath: '/d', filePath: '/f' });
    const { ok, result, error } = await outcome;
    expect(ok, error).toBe(true);
    const seen = result as Record<string, { isFsError: boolean; instance: boolean; code: string; syscall: string; path: string; errno: number } | null>;
    expect(seen.enoent).toMatchObject({ isFsError: true, instance: true, code: 'ENOENT', syscall: 'open', path: '/no/such/file' });
    expect(seen.enoent!.errno).toBeLessThan(0);
    expect(seen.ebadfWrite).toMatchObject({ isFsError: true, code: 'EBADF', syscall: 'write', path: '/f' });
    expect(seen.ebadfClosed).toMatchObject({ isFsError: true, code: 'EBADF' });
    expect(seen.efbig).toMatchObject({ isFsError: true, code: 'EFBIG', syscall: 'write', path: '/f' });
    expect(seen.eisdir).toMatchObject({ isFsError: true, code: 'EISDIR', syscall: 'read', path: '/d' });
    await untilConnections(server, 0);
    await server.close();
    await fsckClean(fs, device, 'errors.img');
  });

  it('a client that exits holding a write lease, and one terminated with requests in flight, do not wedge the engine; one exiting right after a write keeps it', async () => {
    const { fs, device } = await freshFs(16 * MiB);
    const server = serveFilesystem(fs);
    const before = Buffer.alloc(4 * MiB, 0x11);
    await fs.writeFile('/victim', before);
    const dying = startClient(server.connect(), { kind: 'dieHoldingLease', path: '/victim' });
    expect((await dying.outcome).exitCode).toBe(7);
    const hasty = startClient(server.connect(), { kind: 'writeAndExit', path: '/hasty', seed: 3, bytes: 3 * MiB + 5 });
    expect((await hasty.outcome).exitCode).toBe(5);
    const flooding = startClient(server.connect(), { kind: 'flood', path: '/victim', seed: 9 });
    for (let waitedMs = 0; flooding.messages.length === 0; waitedMs += 5) {
      expect(waitedMs).toBeLessThan(20_000);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
    await flooding.worker.terminate();
    await untilConnections(server, 0);
    expect(server.stats().leases).toBe(0);
    expect(server.stats().leasesAborted).toBeGreaterThanOrEqual(1);
    expect((await fs.readFile('/hasty')).equals(seeded(3, 3 * MiB + 5))).toBe(true);
    // The engine serves the same file as before: a new client writes and reads it back.
    await fs.writeFile('/shared-2', Buffer.alloc(64 * 1024));
    const { outcome } = startClient(server.connect(), {
      kind: 'workload', seed: 77, ops: 40, ownPath: '/victim', sharedPath: '/shared-2', stripeBytes: 64 * 1024, stripeCount: 1,
      workerCount: 1, index: 0, fileBytesMax: 4 * MiB,
    });
    const after = await outcome;
    expect(after.error, after.error).toBeUndefined();
    await server.close();
    fs.files.cache.checkInvariants();
    await fsckClean(fs, device, 'dead-clients.img');
  });
});
