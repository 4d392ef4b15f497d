/**
 * The client channel with engine and client in one thread (MessagePorts work within a
 * thread too): every request kind, the three data paths (pinned read, two-phase folio
 * write, staged), errors rebuilt on the client, and the lease rules — a write lease whose
 * client vanishes is zeroed and committed, a truncate waits for a prepared write, read
 * pins never outlive their release. Real worker threads: test/channel/.
 */
import { Buffer } from 'node:buffer';
import { type MessagePort } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { MemoryDevice } from '../device/memory-device.js';
import { mkfs } from '../ext4/mkfs.js';
import { seededRandom } from '../random.js';
import { FsError } from '../vfs/errors.js';
import { Ext4, type Ext4Filesystem } from '../vfs/filesystem.js';
import { connectFilesystem } from './client.js';
import { serveFilesystem, type FilesystemServer } from './server.js';
import { CONTROL_COMMIT_BASE, type Answer, type FilesystemHandle, type WriteBeginAnswer } from './protocol.js';

const MiB = 1024 * 1024;

async function mounted(options: { buffered?: 'iomap' | 'buffer_head'; cacheBytes?: number } = {}): Promise<Ext4Filesystem> {
  const device = MemoryDevice.create({ sizeBytes: 64 * MiB });
  await mkfs(device, {});
  return Ext4.mount(device, { readOnly: false, commitIntervalMs: 0, cacheBytes: options.cacheBytes ?? 16 * MiB, writebackThreads: 0, buffered: options.buffered });
}

function pattern(length: number, seed: number): Buffer {
  const rng = seededRandom(seed);
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) out[i] = rng() & 0xff;
  return out;
}

async function expectFsError(promise: Promise<unknown>, code: string): Promise<FsError> {
  const error = await promise.then(() => undefined, (e: unknown) => e);
  expect(FsError.is(error), `expected FsError ${code}, got ${String(error)}`).toBe(true);
  expect((error as FsError).code).toBe(code);
  return error as FsError;
}

/** Speak the wire protocol by hand (to hold a lease and vanish). */
function rawClient(handle: FilesystemHandle): { request<T>(body: object): Promise<T>; port: MessagePort; control: Int32Array } {
  let nextId = 1;
  const waiters = new Map<number, (answer: Answer) => void>();
  handle.port.on('message', (answer: Answer) => waiters.get(answer.id)?.(answer));
  return {
    port: handle.port,
    control: new Int32Array(handle.control),
    request<T>(body: object): Promise<T> {
      const id = nextId++;
      handle.port.postMessage({ ...body, id });
      return new Promise<T>((resolve, reject) => waiters.set(id, (answer) => (answer.ok ? resolve(answer.value as T) : reject(answer.error))));
    },
  };
}

async function closeAll(server: FilesystemServer, fs: Ext4Filesystem): Promise<void> {
  await server.close();
  fs.files.cache.checkInvariants();
  await fs.unmount();
}

describe('channel (one thread)', () => {
  it('serves metadata calls with the engine method shapes: mkdir, open, stat, readdir, rename, unlink', async () => {
    const fs = await mounted();
    const server = serveFilesystem(fs);
    const client = connectFilesystem(server.connect());
    await client.mkdir('/d/e', { recursive: true });
    await client.writeFile('/d/e/f', 'hello');
    const st = await client.stat('/d/e/f');
    expect(st.isFile()).toBe(true);
    expect(st.size).toBe(5);
    expect(typeof (await client.stat('/d', { bigint: true })).ino).toBe('bigint');
    expect(await client.readdir('/d/e')).toEqual(['f']);
    const dirents = await client.readdir('/d', { withFileTypes: true });
    expect(dirents.map((d) => [d.name, d.isDirectory()])).toEqual([['e', true]]);
    const raw = await client.readdir('/d', { encoding: 'buffer' });
    expect(Buffer.isBuffer(raw[0])).toBe(true);
    await client.rename('/d/e/f', '/d/g');
    expect(await client.readFile('/d/g', 'utf8')).toBe('hello');
    expect(await client.exists('/d/e/f')).toBe(false);
    await client.unlink('/d/g');
    expect(await fs.readdir('/d')).toEqual(['e']);
    await client.close();
    await closeAll(server, fs);
  });

  it('moves data on all three paths: staged (small), two-phase folio writes and pinned reads (large), multi-request loops', async () => {
    const fs = await mounted();
    const server = serveFilesystem(fs);
    const client = connectFilesystem(server.connect());
    const fh = await client.open('/f', 'w+');
    const big = pattern(10 * MiB + 123, 1); // > requestBytesMax (2 MiB for a 16 MiB cache): a loop
    expect((await fh.write(big, 0, big.length, 0)).bytesWritten).toBe(big.length);
    const small = pattern(1000, 2);
    await fh.write(small, 0, small.length, 5000);
    big.set(small, 5000);
    const back = Buffer.alloc(big.length + 10);
    const { bytesRead } = await fh.read(back, 0, back.length, 0);
    expect(bytesRead).toBe(big.length);
    expect(back.subarray(0, bytesRead).equals(big)).toBe(true);
    const tail = await fh.read(Buffer.alloc(100), 0, 100, 3000);
    expect(tail.buffer.equals(big.subarray(3000, 3100))).toBe(true);
    const stats = server.stats();
    expect(stats.folioWriteBytes).toBeGreaterThanOrEqual(10 * MiB);
    expect(stats.stagedWriteBytes).toBe(123 + 1000); // the big write's last 123 bytes, and the small one
    expect(stats.pinnedReadBytes).toBeGreaterThan(0);
    expect(stats.stagedReadBytes).toBeGreaterThan(0);
    // The engine sees what the client wrote, and vice versa.
    expect((await fs.readFile('/f')).equals(big)).toBe(true);
    await fh.sync();
    expect((await fh.stat()).size).toBe(big.length);
    await fh.close();
    expect(server.stats().leases).toBe(0);
    await client.close();
    await closeAll(server, fs);
  });

  it('keeps the position like FileHandle: sequential writes and reads, O_APPEND at EOF, seek', async () => {
    const fs = await mounted();
    const server = serveFilesystem(fs);
    const client = connectFilesystem(server.connect());
    const fh = await client.open('/p', 'w+');
    await fh.write('abc');
    await fh.write(Buffer.from('defgh'));
    expect(await fh.seek(0)).toBe(0);
    const { buffer } = await fh.read(Buffer.alloc(4), 0, 4, null);
    expect(buffer.toString()).toBe('abcd');
    expect((await fh.read(Buffer.alloc(10), 0, 10, null)).bytesRead).toBe(4);
    await fh.close();
    const ap = await client.open('/p', 'a');
    await ap.write(pattern(64 * 1024, 3), 0, 64 * 1024, 0); // position ignored: EOF
    await ap.close();
    const whole = await client.readFile('/p') as Buffer;
    expect(whole.length).toBe(8 + 64 * 1024);
    expect(whole.subarray(8).equals(pattern(64 * 1024, 3))).toBe(true);
    await client.close();
    await closeAll(server, fs);
  });

  it('rebuilds FsErrors on the client: ENOENT, EBADF (closed fd, not open for writing), EFBIG, EISDIR, EEXIST', async () => {
    const fs = await mounted();
    const server = serveFilesystem(fs);
    const client = connectFilesystem(server.connect());
    const enoent = await expectFsError(client.open('/missing/x'), 'ENOENT');
    expect(enoent.syscall).toBe('open');
    expect(enoent.path).toBe('/missing/x');
    expect(enoent.errno).toBeLessThan(0);
    await client.writeFile('/r', 'data');
    const ro = await client.open('/r', 'r');
    const ebadf = await expectFsError(ro.write(Buffer.alloc(100000)), 'EBADF');
    expect(ebadf.path).toBe('/r');
    await ro.close();
    await expectFsError(ro.read(Buffer.alloc(10), 0, 10, 0), 'EBADF');
    const rw = await client.open('/r', 'r+');
    const efbig = await expectFsError(rw.write(Buffer.alloc(100000), 0, 100000, 2 ** 52), 'EFBIG');
    expect(efbig.syscall).toBe('write');
    await expectFsError(rw.write(Buffer.alloc(10), 0, 10, 2 ** 52), 'EFBIG');
    await rw.close();
    await client.mkdir('/dir');
    await expectFsError(client.mkdir('/dir'), 'EEXIST');
    const dir = await client.open('/dir');
    await expectFsError(dir.read(Buffer.alloc(10), 0, 10, 0), 'EISDIR');
    await dir.close();
    await client.close();
    await expectFsError(client.stat('/r'), 'EIO');
    await closeAll(server, fs);
  });

  it('a write lease whose client vanishes is zeroed and committed; the inode is writable again and the image stays consistent', async () => {
    const fs = await mounted();
    const server = serveFilesystem(fs);
    const client = connectFilesystem(server.connect());
    await client.writeFile('/v', pattern(3 * MiB, 4));
    const raw = rawClient(server.connect());
    const { fd } = await raw.request<{ fd: number }>({ op: 'open', path: '/v', flags: 'r+' });
    const lease = await raw.request<WriteBeginAnswer>({ op: 'writeBegin', fd, positionBytes: MiB, lengthBytes: 3 * MiB, slot: 0 });
    expect(lease.bytes).toBeGreaterThan(0);
    expect((await fs.stat('/v')).size).toBe(MiB + lease.bytes); // i_size raised at begin
    // Half the copy, then the client is gone without committing.
    const memory = new Uint8Array(fs.files.core.memory.buffer);
    memory.fill(0xee, lease.pieces[0], lease.pieces[0] + lease.pieces[1] / 2);
    raw.port.close();
    // A writer on the same inode waits for the lease, then goes through.
    await client.writeFile('/w', 'x');
    const fh = await client.open('/v', 'r+');
    await fh.write(Buffer.from('after'), 0, 5, 0);
    await fh.close();
    expect(server.stats().leasesAborted).toBe(1);
    const data = await fs.readFile('/v');
    const expected = pattern(3 * MiB, 4);
    expected.write('after', 0);
    const grown = Buffer.alloc(MiB + lease.bytes);
    expected.copy(grown);
    grown.fill(0, MiB, MiB + lease.bytes);
    expect(data.equals(grown)).toBe(true);
    await client.close();
    await closeAll(server, fs);
  });

  it('a write lease whose client stored its COMMIT word and vanished before saying so is committed, not zeroed', async () => {
    const fs = await mounted();
    const server = serveFilesystem(fs);
    const raw = rawClient(server.connect());
    const { fd } = await raw.request<{ fd: number }>({ op: 'open', path: '/c', flags: 'w+' });
    const lease = await raw.request<WriteBeginAnswer>({ op: 'writeBegin', fd, positionBytes: 0, lengthBytes: 256 * 1024, slot: 1 });
    const memory = new Uint8Array(fs.files.core.memory.buffer);
    const data = pattern(lease.bytes, 8);
    let at = 0;
    for (let i = 0; i < lease.pieces.length; i += 2) {
      memory.set(data.subarray(at, at + lease.pieces[i + 1]), lease.pieces[i]);
      at += lease.pieces[i + 1];
    }
    Atomics.store(raw.control, CONTROL_COMMIT_BASE + 1, lease.lease);
    raw.port.close();
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(server.stats()).toMatchObject({ leases: 0, leasesAborted: 0, connections: 0 });
    expect((await fs.readFile('/c')).equals(data)).toBe(true);
    await closeAll(server, fs);
  });

  it('a truncate waits for a prepared write to commit; the write then lands before it', async () => {
    const fs = await mounted();
    const server = serveFilesystem(fs);
    const raw = rawClient(server.connect());
    const { fd } = await raw.request<{ fd: number }>({ op: 'open', path: '/t', flags: 'w+' });
    const lease = await raw.request<WriteBeginAnswer>({ op: 'writeBegin', fd, positionBytes: 0, lengthBytes: 64 * 1024, slot: 0 });
    let truncated = false;
    const truncating = fs.truncate('/t', 100).then(() => { truncated = true; });
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(truncated).toBe(false);
    const memory = new Uint8Array(fs.files.core.memory.buffer);
    memory.fill(0x5a, lease.pieces[0], lease.pieces[0] + lease.pieces[1]);
    Atomics.store(raw.control, CONTROL_COMMIT_BASE + 0, lease.lease);
    raw.port.postMessage({ op: 'leases', commits: [lease.lease] });
    await truncating;
    const data = await fs.readFile('/t');
    expect(data.equals(Buffer.alloc(100, 0x5a))).toBe(true);
    expect(server.stats().leases).toBe(0);
    raw.port.close();
    await closeAll(server, fs);
  });

  it('a read lease pins its folios until released: truncate drops them from the file but the copy still reads old bytes', async () => {
    const fs = await mounted();
    const server = serveFilesystem(fs);
    await fs.writeFile('/r', pattern(2 * MiB, 5));
    const raw = rawClient(server.connect());
    const { fd } = await raw.request<{ fd: number }>({ op: 'open', path: '/r', flags: 'r' });
    const answer = await raw.request<{ bytes: number; lease: number; pieces: number[] }>({ op: 'read', fd, positionBytes: 0, lengthBytes: MiB, slot: 0 });
    expect(answer.lease).toBeGreaterThan(0);
    await fs.truncate('/r', 0);
    const memory = new Uint8Array(fs.files.core.memory.buffer);
    const copied = Buffer.from(memory.subarray(answer.pieces[0], answer.pieces[0] + answer.pieces[1]));
    expect(copied.equals(pattern(2 * MiB, 5).subarray(0, answer.pieces[1]))).toBe(true);
    expect(fs.files.cache.stats().lruFolioCount).toBeLessThan(fs.files.cache.stats().folioCount);
    raw.port.postMessage({ op: 'leases', releases: [answer.lease] });
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(server.stats().leases).toBe(0);
    raw.port.close();
    await closeAll(server, fs);
  });

  it('holds a client to one lease per staging slot; releases riding on a request end before it runs', async () => {
    const fs = await mounted();
    const server = serveFilesystem(fs, { slotCount: 2 });
    await fs.writeFile('/l', pattern(MiB, 7));
    const raw = rawClient(server.connect());
    const { fd } = await raw.request<{ fd: number }>({ op: 'open', path: '/l', flags: 'r' });
    const read = (slot: number, releases?: number[]) => raw.request<{ lease: number }>({ op: 'read', fd, positionBytes: 0, lengthBytes: 64 * 1024, slot, releases });
    const first = await read(0);
    const second = await read(1);
    const refused = await read(0).then(() => undefined, (e: { code?: string }) => e);
    expect(refused?.code).toBe('EINVAL');
    const third = await read(0, [first.lease]);
    expect(third.lease).toBeGreaterThan(0);
    expect(server.stats().leases).toBe(2);
    raw.port.postMessage({ op: 'leases', releases: [second.lease, third.lease] });
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(server.stats().leases).toBe(0);
    raw.port.close();
    await closeAll(server, fs);
  });

  it('buffer_head mounts write through the staging slots (no two-phase write), reads still pin', async () => {
    const fs = await mounted({ buffered: 'buffer_head' });
    const server = serveFilesystem(fs);
    const handle = server.connect();
    expect(handle.writeMode).toBe('staged');
    const client = connectFilesystem(handle);
    const data = pattern(3 * MiB + 17, 6);
    await client.writeFile('/b', data);
    expect((await client.readFile('/b') as Buffer).equals(data)).toBe(true);
    expect((await fs.readFile('/b')).equals(data)).toBe(true);
    expect(server.stats().folioWriteBytes).toBe(0);
    expect(server.stats().stagedWriteBytes).toBe(data.length);
    await client.close();
    await closeAll(server, fs);
  });
});
