/**
 * The client side of the channel: connectFilesystem(handle), in any thread, gives an
 * object shaped like the engine's Ext4Filesystem (open, stat, lstat, readdir, mkdir,
 * rmdir, rm, unlink, rename, link, symlink, readlink, realpath, access, exists,
 * truncate, chmod, chown, utimes, sync, readFile, writeFile, appendFile) whose open()
 * gives a ClientFileHandle shaped like FileHandle (read, readv, write, writev, readFile,
 * writeFile, appendFile, truncate, sync, datasync, stat, fallocate, seek, fiemap, chmod,
 * chown, utimes, close). Errors are FsErrors with the engine's code, syscall and path.
 *
 *   read(buf, 0, n, pos)  ─ request ─▶ engine pins the cached folios
 *                         ◀─ pieces ─  [ptr, len]* in the shared wasm memory
 *   buf.set(memory[ptr, +len))         ← the copy, on this thread
 *                         ─ release ─▶ engine unpins    (rides on the next request)
 *
 *   write(buf, 0, n, pos) ─ request ─▶ engine reserves, locks and pins the folios
 *                         ◀─ pieces ─
 *   memory.set(buf, ptr)               ← the copy, on this thread
 *                         ─ commit ──▶ engine marks them dirty, unlocks          (one-way)
 *
 * Small transfers (≤ handle.stagedBytesMax), reads of data not cached yet and writes on a
 * buffer_head mount go through one of the connection's staging slots instead (protocol.ts).
 * Every data request holds a slot while in flight, so a client has at most slotCount
 * reads and writes in flight (more wait here) and at most slotCount leases.
 *
 * A handle's position lives here (reads and writes without a position use and advance
 * it; O_APPEND writes land at EOF and move it there, as FileHandle's). A read or write
 * longer than handle.requestBytesMax is a loop of requests: another client's write may
 * land between two of its parts. The port keeps this thread alive only while requests
 * are in flight; close() ends the connection (the engine closes this client's files).
 *
 * A read's pins are let go with the next request (or one event-loop turn later): a client
 * that blocks its thread right after a read holds them meanwhile — at most slotCount
 * requests' folios, memory the cache cannot evict until then.
 *
 * Cost per call: one round trip (~17 µs between two idle threads here, 25–40 µs under
 * load) plus the copy on this thread (TypedArray.set between the wasm memory and the
 * caller's buffer: ~18 GiB/s for 1 MiB here, one thread); a folio write adds a one-way
 * commit. Measured per call and in aggregate: server.ts.
 */
import { Buffer } from 'node:buffer';
import type { MessagePort } from 'node:worker_threads';
import { assert } from '../assert.js';
import { FsError } from '../vfs/errors.js';
import type { Ext4Filesystem, PathLike, WriteFileOptions } from '../vfs/filesystem.js';
import { READ_FILE_BYTES_MAX, normaliseReadArgs, normaliseWriteArgs, type FileHandle, type ReadOptions, type ReadResult, type TimeLike, type WriteResult } from '../vfs/file-handle.js';
import type { BigIntStats, Stats } from '../vfs/stats.js';
import type { WasmMemory } from '../wasm/webassembly.js';
import {
  CHANNEL_PROTOCOL_VERSION, CHANNEL_REQUESTS_IN_FLIGHT_MAX, CONTROL_CLIENT_PUBLISH, CONTROL_COMMIT_BASE, CONTROL_ENGINE_PUBLISH,
  errorFromWire, valueFromWire,
  type Answer, type FilesystemHandle, type FsMethod, type HandleMethod, type Notice, type OpenAnswer, type ReadAnswer,
  type Request, type WireValue, type WriteBeginAnswer, type WriteStagedAnswer,
} from './protocol.js';

const SEEK_SET = 0;
const SEEK_CUR = 1;
const SEEK_END = 2;

type RequestBody = Request extends infer R ? (R extends { id: number } ? Omit<R, 'id'> : never) : never;

/** Connect to a served filesystem from this thread (handle from FilesystemServer.connect()). */
export function connectFilesystem(handle: FilesystemHandle): FilesystemClient {
  return new FilesystemClient(new ClientChannel(handle));
}

/** The wire end on this thread: requests, slots, the shared memory views. */
class ClientChannel {
  readonly slotBytes: number;
  readonly stagedBytesMax: number;
  readonly requestBytesMax: number;
  readonly writeMode: 'folios' | 'staged';
  private readonly port: MessagePort;
  private readonly memory: WasmMemory;
  private memoryView: Uint8Array;
  private readonly controlWords: Int32Array;
  private readonly stagingBytes: Uint8Array;
  private readonly pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  private readonly requestWaiters: Array<() => void> = [];
  private readonly freeSlots: number[] = [];
  private readonly slotWaiters: Array<(slot: number) => void> = [];
  private nextId = 1;
  private closedError: Error | null = null;
  /** Lease ends not sent yet (they ride on the next request, or go alone next turn; commits never wait). */
  private releases: number[] = [];
  private commits: number[] = [];
  private noticeScheduled = false;

  constructor(handle: FilesystemHandle) {
    if (handle?.version !== CHANNEL_PROTOCOL_VERSION) {
      throw new FsError('EINVAL', { syscall: 'connectFilesystem', detail: `channel protocol ${String(handle?.version)}, this client speaks ${CHANNEL_PROTOCOL_VERSION}` });
    }
    this.port = handle.port;
    this.memory = handle.memory;
    this.memoryView = new Uint8Array(handle.memory.buffer);
    this.controlWords = new Int32Array(handle.control);
    this.stagingBytes = new Uint8Array(handle.staging);
    this.slotBytes = handle.slotBytes;
    this.stagedBytesMax = handle.stagedBytesMax;
    this.requestBytesMax = handle.requestBytesMax;
    this.writeMode = handle.writeMode;
    for (let slot = 0; slot < handle.slotCount; slot++) this.freeSlots.push(slot);
    this.port.on('message', (answer: Answer) => this.onAnswer(answer));
    this.port.on('close', () => this.fail(new FsError('EIO', { syscall: 'channel', detail: 'the filesystem channel closed' })));
    this.port.unref();
  }

  private onAnswer(answer: Answer): void {
    const waiter = this.pending.get(answer.id);
    if (waiter === undefined) return;
    this.pending.delete(answer.id);
    if (this.pending.size === 0) this.port.unref();
    const next = this.requestWaiters.shift();
    if (next !== undefined) next();
    if (answer.ok) waiter.resolve(answer.value);
    else waiter.reject(errorFromWire(answer.error));
  }

  private fail(error: Error): void {
    this.closedError ??= error;
    for (const waiter of this.pending.values()) waiter.reject(error);
    this.pending.clear();
    for (const next of this.requestWaiters.splice(0)) next();
  }

  /** One request and its answer (waits while CHANNEL_REQUESTS_IN_FLIGHT_MAX are in flight). */
  async request<T>(body: RequestBody): Promise<T> {
    while (this.closedError === null && this.pending.size >= CHANNEL_REQUESTS_IN_FLIGHT_MAX) {
      await new Promise<void>((resolve) => this.requestWaiters.push(resolve));
    }
    if (this.closedError !== null) throw this.closedError;
    const id = this.nextId++;
    const answer = new Promise<unknown>((resolve, reject) => this.pending.set(id, { resolve, reject }));
    if (this.pending.size === 1) this.port.ref();
    const request = { ...body, id } as Request;
    this.takeNotices(request);
    this.port.postMessage(request);
    return answer as Promise<T>;
  }

  // Move the queued lease ends onto a message.
  private takeNotices(message: Request | Notice): void {
    if (this.releases.length > 0) {
      message.releases = this.releases;
      this.releases = [];
    }
    if (this.commits.length > 0) {
      message.commits = this.commits;
      this.commits = [];
    }
  }

  /** A read lease is done with: its end rides on the next request (or goes next turn). */
  release(lease: number): void {
    this.releases.push(lease);
    this.scheduleNotices();
  }

  /**
   * A write lease's bytes are in: the COMMIT word of its slot says so (the publish; the
   * engine trusts it even if this thread dies now), and the notice goes at once. It could
   * ride on the next request as releases do (one engine wake less per write: 1 MiB writes
   * ~111 against ~137 µs, measured), but the folios stay locked until it arrives, and a
   * client that blocks its thread after write() returned (Atomics.wait on another client
   * that reads those bytes) would then deadlock.
   */
  commit(lease: number, slot: number): void {
    Atomics.store(this.controlWords, CONTROL_COMMIT_BASE + slot, lease);
    this.commits.push(lease);
    if (this.closedError !== null) return;
    const notice: Notice = { op: 'leases' };
    this.takeNotices(notice);
    this.port.postMessage(notice);
  }

  private scheduleNotices(): void {
    if (this.noticeScheduled) return;
    this.noticeScheduled = true;
    setImmediate(() => {
      this.noticeScheduled = false;
      if (this.closedError !== null) return;
      const notice: Notice = { op: 'leases' };
      this.takeNotices(notice);
      if (notice.releases !== undefined || notice.commits !== undefined) this.port.postMessage(notice);
    });
  }

  async acquireSlot(): Promise<number> {
    const slot = this.freeSlots.pop();
    if (slot !== undefined) return slot;
    return new Promise<number>((resolve) => this.slotWaiters.push(resolve));
  }

  releaseSlot(slot: number): void {
    const next = this.slotWaiters.shift();
    if (next !== undefined) next(slot);
    else this.freeSlots.push(slot);
  }

  slot(slot: number, lengthBytes: number): Uint8Array {
    assert(lengthBytes <= this.slotBytes, 'a staged transfer fits its slot');
    return this.stagingBytes.subarray(slot * this.slotBytes, slot * this.slotBytes + lengthBytes);
  }

  /** The engine's bytes (pieces, slot) are visible from here on (protocol.ts's ordering rule). */
  acquireEngineBytes(): void {
    Atomics.load(this.controlWords, CONTROL_ENGINE_PUBLISH);
  }

  /** Publish our copies before the message that hands them over. */
  publishClientBytes(): void {
    Atomics.add(this.controlWords, CONTROL_CLIENT_PUBLISH, 1);
  }

  /** The wasm memory, re-viewed if it grew since (pieces may lie past the old end). */
  memoryBytes(endBytes: number): Uint8Array {
    if (this.memoryView.length < endBytes) this.memoryView = new Uint8Array(this.memory.buffer);
    assert(endBytes <= this.memoryView.length, 'pieces lie inside the wasm memory');
    return this.memoryView;
  }

  close(): void {
    this.fail(new FsError('EIO', { syscall: 'channel', detail: 'the client closed the channel' }));
    this.port.close();
  }

  get isClosed(): boolean {
    return this.closedError !== null;
  }
}

// ─── Reads and writes over the channel ──────────────────────────────────────────────────

/** pread into target at positionBytes: loops until target is full or EOF; returns bytes read. */
async function readAt(channel: ClientChannel, fd: number, target: Uint8Array, positionBytes: number): Promise<number> {
  let done = 0;
  while (done < target.length) {
    const slot = await channel.acquireSlot();
    let answer: ReadAnswer;
    try {
      answer = await channel.request<ReadAnswer>({ op: 'read', fd, positionBytes: positionBytes + done, lengthBytes: target.length - done, slot });
      channel.acquireEngineBytes();
      if (answer.lease === 0) {
        target.set(channel.slot(slot, answer.bytes), done);
      } else {
        try {
          copyFromPieces(channel, answer.pieces, target, done);
        } finally {
          channel.release(answer.lease);
        }
      }
    } finally {
      channel.releaseSlot(slot);
    }
    done += answer.bytes;
    if (answer.eof || answer.bytes === 0) break;
  }
  return done;
}

function copyFromPieces(channel: ClientChannel, pieces: number[], target: Uint8Array, targetOffset: number): void {
  const memory = channel.memoryBytes(lastPieceEnd(pieces));
  let at = targetOffset;
  for (let i = 0; i < pieces.length; i += 2) {
    const ptr = pieces[i];
    const lengthBytes = pieces[i + 1];
    target.set(memory.subarray(ptr, ptr + lengthBytes), at);
    at += lengthBytes;
  }
}

function lastPieceEnd(pieces: number[]): number {
  let end = 0;
  for (let i = 0; i < pieces.length; i += 2) end = Math.max(end, pieces[i] + pieces[i + 1]);
  return end;
}

/**
 * pwrite of source at positionBytes (O_APPEND handles: at EOF, the engine decides): all
 * of it, or short when an error stops it after some bytes (with none written it throws).
 * Returns the bytes written and where they started.
 */
async function writeAt(channel: ClientChannel, fd: number, source: Uint8Array, positionBytes: number): Promise<{ bytesWritten: number; startBytes: number }> {
  let done = 0;
  let at = positionBytes;
  let startBytes = positionBytes;
  do {
    let step: { positionBytes: number; bytes: number };
    try {
      step = await writeStep(channel, fd, source.subarray(done), at);
    } catch (error) {
      if (done > 0) break; // a short write: what is written stays written
      throw error;
    }
    if (done === 0) startBytes = step.positionBytes;
    done += step.bytes;
    at = step.positionBytes + step.bytes;
    if (step.bytes === 0) break;
  } while (done < source.length);
  return { bytesWritten: done, startBytes };
}

// One request's worth of a write: staged, or two-phase into the folios.
async function writeStep(channel: ClientChannel, fd: number, source: Uint8Array, positionBytes: number): Promise<{ positionBytes: number; bytes: number }> {
  const slot = await channel.acquireSlot();
  try {
    if (channel.writeMode === 'staged' || source.length <= channel.stagedBytesMax) {
      const lengthBytes = Math.min(source.length, channel.slotBytes, channel.requestBytesMax);
      channel.slot(slot, lengthBytes).set(source.subarray(0, lengthBytes));
      channel.publishClientBytes();
      return await channel.request<WriteStagedAnswer>({ op: 'writeStaged', fd, positionBytes, lengthBytes, slot });
    }
    const answer = await channel.request<WriteBeginAnswer>({ op: 'writeBegin', fd, positionBytes, lengthBytes: source.length, slot });
    try {
      copyIntoPieces(channel, answer.pieces, source.subarray(0, answer.bytes));
    } finally {
      channel.commit(answer.lease, slot);
    }
    return answer;
  } finally {
    channel.releaseSlot(slot);
  }
}

function copyIntoPieces(channel: ClientChannel, pieces: number[], source: Uint8Array): void {
  const memory = channel.memoryBytes(lastPieceEnd(pieces));
  let at = 0;
  try {
    for (let i = 0; i < pieces.length; i += 2) {
      const ptr = pieces[i];
      const lengthBytes = pieces[i + 1];
      memory.set(source.subarray(at, at + lengthBytes), ptr);
      at += lengthBytes;
    }
    assert(at === source.length, 'the pieces take the whole prepared length');
  } catch (error) {
    // Never commit what the arena held before (another file's bytes): zeros instead.
    for (let i = 0; i < pieces.length; i += 2) memory.fill(0, pieces[i], pieces[i] + pieces[i + 1]);
    throw error;
  }
}

// ─── The filesystem ─────────────────────────────────────────────────────────────────────

type FsFunction<K extends keyof Ext4Filesystem> = Ext4Filesystem[K];

/** A served Ext4Filesystem seen from another thread: the same method shapes, as promises. */
export class FilesystemClient {
  /** node:fs style: `client.promises.readFile(...)` works too. */
  readonly promises: FilesystemClient = this;

  constructor(private readonly channel: ClientChannel) {}

  private async call(method: FsMethod, args: unknown[]): Promise<unknown> {
    return valueFromWire(await this.channel.request<WireValue>({ op: 'fs', method, args }));
  }

  private method<K extends FsMethod>(name: K): FsFunction<K> {
    return ((...args: unknown[]) => this.call(name, args)) as unknown as FsFunction<K>;
  }

  readonly stat = this.method('stat');
  readonly lstat = this.method('lstat');
  readonly readdir = this.method('readdir');
  readonly mkdir = this.method('mkdir');
  readonly rmdir = this.method('rmdir');
  readonly rm = this.method('rm');
  readonly unlink = this.method('unlink');
  readonly rename = this.method('rename');
  readonly link = this.method('link');
  readonly symlink = this.method('symlink');
  readonly readlink = this.method('readlink');
  readonly realpath = this.method('realpath');
  readonly access = this.method('access');
  readonly exists = this.method('exists');
  readonly truncate = this.method('truncate');
  readonly chmod = this.method('chmod');
  readonly chown = this.method('chown');
  readonly lchown = this.method('lchown');
  readonly utimes = this.method('utimes');
  readonly lutimes = this.method('lutimes');
  readonly sync = this.method('sync');

  /** Open a file (flags and mode as Ext4Filesystem.open). */
  async open(path: PathLike, flags: string | number = 'r', mode?: number | string): Promise<ClientFileHandle> {
    const answer = await this.channel.request<OpenAnswer>({ op: 'open', path, flags, mode });
    return new ClientFileHandle(this.channel, answer.fd, answer.append);
  }

  /** The whole file, read through the channel's data path (never inside a message). */
  async readFile(path: PathLike, options?: BufferEncoding | { encoding?: BufferEncoding | null; flag?: string } | null): Promise<Buffer | string> {
    const flag = typeof options === 'object' && options !== null ? options.flag ?? 'r' : 'r';
    const fh = await this.open(path, flag);
    try {
      return await fh.readFile(options);
    } finally {
      await fh.close();
    }
  }

  async writeFile(path: PathLike, data: Uint8Array | string, options?: WriteFileOptions): Promise<void> {
    await this.writeWhole(path, data, options, 'w');
  }

  async appendFile(path: PathLike, data: Uint8Array | string, options?: WriteFileOptions): Promise<void> {
    await this.writeWhole(path, data, options, 'a');
  }

  private async writeWhole(path: PathLike, data: Uint8Array | string, options: WriteFileOptions, flagDefault: string): Promise<void> {
    const opts = typeof options === 'string' ? { encoding: options } : options ?? {};
    const bytes = typeof data === 'string' ? Buffer.from(data, opts.encoding ?? 'utf8') : data;
    const fh = await this.open(path, 'flag' in opts && opts.flag !== undefined ? opts.flag : flagDefault, 'mode' in opts ? opts.mode : undefined);
    try {
      await fh.write(bytes, 0, bytes.length, null);
    } finally {
      await fh.close();
    }
  }

  /** End the connection: the engine closes this client's open files; later calls fail with EIO. */
  async close(): Promise<void> {
    if (this.channel.isClosed) return;
    try {
      await this.channel.request({ op: 'disconnect' });
    } finally {
      this.channel.close();
    }
  }
}

// ─── A file handle ──────────────────────────────────────────────────────────────────────

/** A FileHandle of the engine, seen from a client thread. */
export class ClientFileHandle {
  private positionBytes = 0;

  constructor(private readonly channel: ClientChannel, readonly fd: number, private readonly append: boolean) {}

  private call(method: HandleMethod, args: unknown[]): Promise<unknown> {
    return this.channel.request<WireValue>({ op: 'fh', fd: this.fd, method, args }).then(valueFromWire);
  }

  read<T extends Uint8Array = Buffer>(buffer: T, offset?: number, length?: number, position?: number | bigint | null): Promise<ReadResult<T>>;
  read<T extends Uint8Array = Buffer>(buffer: T, options?: Omit<ReadOptions<T>, 'buffer'>): Promise<ReadResult<T>>;
  read<T extends Uint8Array = Buffer>(options?: ReadOptions<T>): Promise<ReadResult<T>>;
  async read<T extends Uint8Array>(
    bufferOrOptions?: T | ReadOptions<T>,
    offsetOrOptions?: number | Omit<ReadOptions<T>, 'buffer'>,
    length?: number,
    position?: number | bigint | null,
  ): Promise<ReadResult<T>> {
    const args = normaliseReadArgs(bufferOrOptions, offsetOrOptions, length, position);
    const at = args.position ?? this.positionBytes;
    const bytesRead = await readAt(this.channel, this.fd, args.buffer.subarray(args.offset, args.offset + args.length), at);
    if (args.position === null) this.positionBytes = at + bytesRead;
    return { bytesRead, buffer: args.buffer };
  }

  /** readv: fills the buffers in order from one position (the handle's when position is null). */
  async readv<T extends readonly Uint8Array[]>(buffers: T, position?: number | null): Promise<{ bytesRead: number; buffers: T }> {
    let bytesRead = 0;
    for (const buffer of buffers) {
      const at = position === undefined || position === null ? null : position + bytesRead;
      const { bytesRead: n } = await this.read(buffer, 0, buffer.length, at);
      bytesRead += n;
      if (n < buffer.length) break;
    }
    return { bytesRead, buffers };
  }

  /** The rest of the file from the handle's position. */
  async readFile(options?: BufferEncoding | { encoding?: BufferEncoding | null } | null): Promise<Buffer | string> {
    const sizeBytes = (await this.stat()).size;
    if (sizeBytes > READ_FILE_BYTES_MAX) throw new FsError('EFBIG', { syscall: 'read', detail: `file of ${sizeBytes} bytes is too large for one buffer` });
    const out = Buffer.allocUnsafe(Math.max(0, sizeBytes - this.positionBytes));
    const bytesRead = await readAt(this.channel, this.fd, out, this.positionBytes);
    this.positionBytes += bytesRead;
    const bytes = bytesRead === out.length ? out : out.subarray(0, bytesRead);
    const encoding = typeof options === 'string' ? options : options?.encoding ?? null;
    return encoding === null ? bytes : bytes.toString(encoding);
  }

  write<T extends Uint8Array>(buffer: T, offset?: number | null, length?: number | null, position?: number | null): Promise<WriteResult<T>>;
  write(data: string, position?: number | null, encoding?: BufferEncoding | null): Promise<WriteResult<string>>;
  async write<T extends Uint8Array>(
    data: T | string, offsetOrPosition?: number | null, lengthOrEncoding?: number | BufferEncoding | null, position?: number | null,
  ): Promise<WriteResult<T | string>> {
    const { bytes, at } = normaliseWriteArgs(data, offsetOrPosition, lengthOrEncoding, position);
    const positional = at !== null;
    const { bytesWritten, startBytes } = await writeAt(this.channel, this.fd, bytes, at ?? this.positionBytes);
    if (!positional || this.append) this.positionBytes = startBytes + bytesWritten;
    return { bytesWritten, buffer: data };
  }

  /** writev: the buffers in order, as one write from one position (the handle's when null). */
  async writev<T extends readonly Uint8Array[]>(buffers: T, position?: number | null): Promise<{ bytesWritten: number; buffers: T }> {
    const total = buffers.reduce((sum, b) => sum + b.length, 0);
    const joined = buffers.length === 1 ? buffers[0] : Buffer.concat(buffers, total);
    const { bytesWritten } = await this.write(joined, 0, joined.length, position ?? null);
    return { bytesWritten, buffers };
  }

  async writeFile(data: Uint8Array | string, options?: BufferEncoding | { encoding?: BufferEncoding | null } | null): Promise<void> {
    const encoding = typeof options === 'string' ? options : options?.encoding ?? 'utf8';
    const bytes = typeof data === 'string' ? Buffer.from(data, encoding) : data;
    await this.write(bytes, 0, bytes.length, null);
  }

  async appendFile(data: Uint8Array | string, options?: BufferEncoding | { encoding?: BufferEncoding | null } | null): Promise<void> {
    const encoding = typeof options === 'string' ? options : options?.encoding ?? 'utf8';
    const bytes = typeof data === 'string' ? Buffer.from(data, encoding) : data;
    await this.write(bytes, 0, bytes.length, this.append ? null : (await this.stat()).size);
  }

  async truncate(len = 0): Promise<void> {
    await this.call('truncate', [len]);
  }

  async sync(): Promise<void> {
    await this.call('sync', []);
  }

  async datasync(): Promise<void> {
    await this.call('datasync', []);
  }

  stat(options?: { bigint?: false }): Promise<Stats>;
  stat(options: { bigint: true }): Promise<BigIntStats>;
  async stat(options?: { bigint?: boolean }): Promise<Stats | BigIntStats> {
    return (await this.call('stat', options === undefined ? [] : [options])) as Stats | BigIntStats;
  }

  /** fallocate(2) modes as FileHandle.fallocate (constants.FALLOC_FL_*). */
  async fallocate(mode: number, offset: number, length: number): Promise<void> {
    await this.call('fallocate', [mode, offset, length]);
  }

  /** lseek(2): SEEK_SET/CUR/END here; SEEK_DATA/HOLE asked of the engine. */
  async seek(offset: number, whence = SEEK_SET): Promise<number> {
    if (!Number.isSafeInteger(offset)) throw new FsError('EINVAL', { syscall: 'lseek', detail: `offset ${offset}` });
    let next: number;
    switch (whence) {
      case SEEK_SET: next = offset; break;
      case SEEK_CUR: next = this.positionBytes + offset; break;
      case SEEK_END: next = (await this.stat()).size + offset; break;
      default: next = (await this.call('seek', [offset, whence])) as number;
    }
    if (next < 0 || !Number.isSafeInteger(next)) throw new FsError('EINVAL', { syscall: 'lseek', detail: `position ${next}` });
    this.positionBytes = next;
    return next;
  }

  fiemap: FileHandle['fiemap'] = (...args) => this.call('fiemap', args) as ReturnType<FileHandle['fiemap']>;

  async chmod(mode: number): Promise<void> {
    await this.call('chmod', [mode]);
  }

  async chown(uid: number, gid: number): Promise<void> {
    await this.call('chown', [uid, gid]);
  }

  async utimes(atime: TimeLike, mtime: TimeLike): Promise<void> {
    await this.call('utimes', [atime, mtime]);
  }

  async close(): Promise<void> {
    await this.channel.request({ op: 'close', fd: this.fd });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

