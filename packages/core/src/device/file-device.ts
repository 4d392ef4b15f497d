/**
 * FileDevice: an image file (or any seekable file) reached through node:fs with one
 * fd and positional I/O, so concurrent requests never share a file offset.
 *
 * - Requests are split into syscalls of at most IO_BYTES_MAX (8 MiB): Linux moves at
 *   most ~2 GiB per call anyway, and bounded calls keep one request from holding a
 *   libuv thread for long. Short transfers are resumed; a read that hits end of file
 *   (the image shrank underneath us) is EIO.
 * - flush = fdatasync; a FUA write = write, then fdatasync (Node has no O_DSYNC per call).
 * - discard and zeroOut write zeros from one shared page-aligned 1 MiB buffer (Node has
 *   no fallocate/punch-hole): cost = lengthBytes of writes.
 * - Async calls run on the libuv pool; close() waits for the ones in flight before it
 *   closes the fd, so a late request can never hit a reused fd number.
 * - Size: `sizeBytes` when given (a larger file is used as a prefix; a smaller writable
 *   one is grown sparse with ftruncate; a block/char device is taken at its word), else
 *   the file's size.
 */
import * as fs from 'node:fs';
import { resolve } from 'node:path';
import { FsError } from '../vfs/errors.js';
import { sharedZeros } from './aligned-buffer.js';
import type { FileDeviceHandle, SyncBlockDevice, WriteOptions } from './block-device.js';
import { checkGeometry, checkRange, closedError, ioError, openError, readOnlyError } from './device-checks.js';

/** Bound on one read/write syscall. */
export const IO_BYTES_MAX = 8 * 1024 * 1024;

export interface FileDeviceOptions {
  readOnly?: boolean;
  /** Create the file if missing (needs a writable device). */
  create?: boolean;
  /** Device size; default the file's size. */
  sizeBytes?: number;
  /** 512 (default) or 4096. */
  sectorSizeBytes?: number;
}

interface Geometry {
  sizeBytes: number;
  sectorSizeBytes: number;
  /** Grow the file to this size (sparse) before use. */
  growToBytes?: number;
}

export class FileDevice implements SyncBlockDevice {
  readonly path: string;
  readonly sizeBytes: number;
  readonly sectorSizeBytes: number;
  readonly readOnly: boolean;
  private readonly fd: number;
  private closed = false;
  private inFlightCount = 0;
  private idleWaiters: (() => void)[] = [];

  private constructor(path: string, fd: number, geometry: Geometry, readOnly: boolean) {
    this.path = path;
    this.fd = fd;
    this.sizeBytes = geometry.sizeBytes;
    this.sectorSizeBytes = geometry.sectorSizeBytes;
    this.readOnly = readOnly;
  }

  static async open(path: string, options: FileDeviceOptions = {}): Promise<FileDevice> {
    const absolutePath = resolve(path);
    const fd = await call<number>((done) => fs.open(absolutePath, openFlags(options, absolutePath), 0o644, done))
      .catch((error: unknown) => { throw openError(error, 'open', absolutePath); });
    try {
      const stats = await call<fs.Stats>((done) => fs.fstat(fd, done));
      const geometry = decideGeometry(stats, options, absolutePath);
      if (geometry.growToBytes !== undefined) await call<void>((done) => fs.ftruncate(fd, geometry.growToBytes, done));
      return new FileDevice(absolutePath, fd, geometry, options.readOnly === true);
    } catch (error) {
      fs.close(fd, () => undefined);
      throw ioError(error, 'open', absolutePath);
    }
  }

  static openSync(path: string, options: FileDeviceOptions = {}): FileDevice {
    const absolutePath = resolve(path);
    let fd: number;
    try {
      fd = fs.openSync(absolutePath, openFlags(options, absolutePath), 0o644);
    } catch (error) {
      throw openError(error, 'open', absolutePath);
    }
    try {
      const geometry = decideGeometry(fs.fstatSync(fd), options, absolutePath);
      if (geometry.growToBytes !== undefined) fs.ftruncateSync(fd, geometry.growToBytes);
      return new FileDevice(absolutePath, fd, geometry, options.readOnly === true);
    } catch (error) {
      fs.closeSync(fd);
      throw ioError(error, 'open', absolutePath);
    }
  }

  /** A worker's own fd on the same image (synchronous open). */
  static fromHandle(handle: FileDeviceHandle): FileDevice {
    const { path, sizeBytes, sectorSizeBytes, readOnly } = handle;
    return FileDevice.openSync(path, { sizeBytes, sectorSizeBytes, readOnly });
  }

  handle(): FileDeviceHandle {
    this.checkOpen('handle');
    const { path, sizeBytes, sectorSizeBytes, readOnly } = this;
    return { kind: 'file', path, sizeBytes, sectorSizeBytes, readOnly };
  }

  readSync(offsetBytes: number, target: Uint8Array): void {
    this.checkRequest('read', offsetBytes, target.length);
    let doneBytes = 0;
    try {
      while (doneBytes < target.length) {
        const pieceBytes = Math.min(IO_BYTES_MAX, target.length - doneBytes);
        const bytesRead = fs.readSync(this.fd, target, doneBytes, pieceBytes, offsetBytes + doneBytes);
        doneBytes += checkProgress(bytesRead, 'read', offsetBytes + doneBytes);
      }
    } catch (error) {
      throw ioError(error, 'read', this.path);
    }
  }

  writeSync(offsetBytes: number, source: Uint8Array, options: WriteOptions = {}): void {
    this.checkWriteRequest('write', offsetBytes, source.length);
    try {
      this.writeAllSync(offsetBytes, source);
      if (options.fua === true) fs.fdatasyncSync(this.fd);
    } catch (error) {
      throw ioError(error, 'write', this.path);
    }
  }

  flushSync(): void {
    this.checkOpen('flush');
    try {
      fs.fdatasyncSync(this.fd);
    } catch (error) {
      throw ioError(error, 'flush', this.path);
    }
  }

  discardSync(offsetBytes: number, lengthBytes: number): void {
    this.zeroSync('discard', offsetBytes, lengthBytes);
  }

  zeroOutSync(offsetBytes: number, lengthBytes: number): void {
    this.zeroSync('zeroOut', offsetBytes, lengthBytes);
  }

  closeSync(): void {
    this.checkOpen('close');
    if (this.inFlightCount > 0) throw new FsError('EBUSY', { syscall: 'close', path: this.path, detail: `${this.inFlightCount} async requests in flight` });
    this.closed = true;
    try {
      fs.closeSync(this.fd);
    } catch (error) {
      throw ioError(error, 'close', this.path);
    }
  }

  async read(offsetBytes: number, target: Uint8Array): Promise<void> {
    this.checkRequest('read', offsetBytes, target.length);
    await this.tracked('read', async () => {
      for (let doneBytes = 0; doneBytes < target.length;) {
        const pieceBytes = Math.min(IO_BYTES_MAX, target.length - doneBytes);
        const position = offsetBytes + doneBytes;
        const bytesRead = await call<number>((done) => fs.read(this.fd, target, doneBytes, pieceBytes, position, done));
        doneBytes += checkProgress(bytesRead, 'read', position);
      }
    });
  }

  async write(offsetBytes: number, source: Uint8Array, options: WriteOptions = {}): Promise<void> {
    this.checkWriteRequest('write', offsetBytes, source.length);
    await this.tracked('write', async () => {
      await this.writeAll(offsetBytes, source);
      if (options.fua === true) await call<void>((done) => fs.fdatasync(this.fd, done));
    });
  }

  async flush(): Promise<void> {
    this.checkOpen('flush');
    await this.tracked('flush', () => call<void>((done) => fs.fdatasync(this.fd, done)));
  }

  async discard(offsetBytes: number, lengthBytes: number): Promise<void> {
    await this.zero('discard', offsetBytes, lengthBytes);
  }

  async zeroOut(offsetBytes: number, lengthBytes: number): Promise<void> {
    await this.zero('zeroOut', offsetBytes, lengthBytes);
  }

  async close(): Promise<void> {
    this.checkOpen('close');
    this.closed = true;
    while (this.inFlightCount > 0) await new Promise<void>((wake) => this.idleWaiters.push(wake));
    await call<void>((done) => fs.close(this.fd, done)).catch((error: unknown) => {
      throw ioError(error, 'close', this.path);
    });
  }

  private checkOpen(syscall: string): void {
    if (this.closed) throw closedError(syscall, this.path);
  }

  private checkRequest(syscall: string, offsetBytes: number, lengthBytes: number): void {
    this.checkOpen(syscall);
    checkRange(this, syscall, offsetBytes, lengthBytes, this.path);
  }

  private checkWriteRequest(syscall: string, offsetBytes: number, lengthBytes: number): void {
    this.checkRequest(syscall, offsetBytes, lengthBytes);
    if (this.readOnly) throw readOnlyError(syscall, this.path);
  }

  /** Count an async request in flight (close waits for it) and map its errors. */
  private async tracked<T>(syscall: string, body: () => Promise<T>): Promise<T> {
    this.inFlightCount++;
    try {
      return await body();
    } catch (error) {
      throw ioError(error, syscall, this.path);
    } finally {
      this.inFlightCount--;
      if (this.inFlightCount === 0) this.idleWaiters.splice(0).forEach((wake) => wake());
    }
  }

  private writeAllSync(offsetBytes: number, source: Uint8Array): void {
    for (let doneBytes = 0; doneBytes < source.length;) {
      const pieceBytes = Math.min(IO_BYTES_MAX, source.length - doneBytes);
      const bytesWritten = fs.writeSync(this.fd, source, doneBytes, pieceBytes, offsetBytes + doneBytes);
      doneBytes += checkProgress(bytesWritten, 'write', offsetBytes + doneBytes);
    }
  }

  private async writeAll(offsetBytes: number, source: Uint8Array): Promise<void> {
    for (let doneBytes = 0; doneBytes < source.length;) {
      const pieceBytes = Math.min(IO_BYTES_MAX, source.length - doneBytes);
      const position = offsetBytes + doneBytes;
      const bytesWritten = await call<number>((done) => fs.write(this.fd, source, doneBytes, pieceBytes, position, done));
      doneBytes += checkProgress(bytesWritten, 'write', position);
    }
  }

  private zeroSync(syscall: string, offsetBytes: number, lengthBytes: number): void {
    this.checkWriteRequest(syscall, offsetBytes, lengthBytes);
    const zeros = sharedZeros();
    try {
      for (let doneBytes = 0; doneBytes < lengthBytes; doneBytes += zeros.length) {
        this.writeAllSync(offsetBytes + doneBytes, zeros.subarray(0, Math.min(zeros.length, lengthBytes - doneBytes)));
      }
    } catch (error) {
      throw ioError(error, syscall, this.path);
    }
  }

  private async zero(syscall: string, offsetBytes: number, lengthBytes: number): Promise<void> {
    this.checkWriteRequest(syscall, offsetBytes, lengthBytes);
    const zeros = sharedZeros();
    await this.tracked(syscall, async () => {
      for (let doneBytes = 0; doneBytes < lengthBytes; doneBytes += zeros.length) {
        await this.writeAll(offsetBytes + doneBytes, zeros.subarray(0, Math.min(zeros.length, lengthBytes - doneBytes)));
      }
    });
  }
}

function openFlags(options: FileDeviceOptions, path: string): number {
  const { O_RDONLY, O_RDWR, O_CREAT } = fs.constants;
  if (options.readOnly === true && options.create === true) {
    throw new FsError('EINVAL', { syscall: 'open', path, detail: 'create needs a writable device' });
  }
  if (options.readOnly === true) return O_RDONLY;
  return options.create === true ? O_RDWR | O_CREAT : O_RDWR;
}

/**
 * The device geometry for the file `stats` describes, opened with `options`. A block
 * or character device reports size 0 and cannot be grown: it needs `sizeBytes`, which
 * is trusted.
 */
function decideGeometry(stats: fs.Stats, options: FileDeviceOptions, path: string): Geometry {
  const sectorSizeBytes = options.sectorSizeBytes ?? 512;
  const fileSizeBytes = stats.size;
  const sizeBytes = options.sizeBytes ?? fileSizeBytes;
  checkGeometry({ sizeBytes, sectorSizeBytes }, 'open', path);
  if (!stats.isFile() || fileSizeBytes >= sizeBytes) return { sizeBytes, sectorSizeBytes };
  if (options.readOnly === true) {
    const detail = `file of ${fileSizeBytes} bytes is smaller than the ${sizeBytes}-byte device`;
    throw new FsError('EINVAL', { syscall: 'open', path, detail });
  }
  return { sizeBytes, sectorSizeBytes, growToBytes: sizeBytes };
}

function checkProgress(bytesMoved: number, syscall: string, positionBytes: number): number {
  if (bytesMoved > 0) return bytesMoved;
  throw new FsError('EIO', { syscall, detail: `no progress at byte ${positionBytes} (file shorter than the device?)` });
}

/** Promise over a node:fs callback API. */
function call<T>(start: (done: (error?: NodeJS.ErrnoException | null, value?: T) => void) => void): Promise<T> {
  return new Promise<T>((resolvePromise, reject) => {
    // Some callbacks pass null for success, others (close) pass nothing.
    start((error, value) => (error === null || error === undefined ? resolvePromise(value as T) : reject(error)));
  });
}
