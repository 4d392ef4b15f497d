/**
 * Request checks and error mapping shared by MemoryDevice and FileDevice, so both
 * report the same FsError for the same mistake (the contract suite runs over both).
 *
 * - Geometry (size, sector size) and request ranges are public input: EINVAL.
 * - Writes to a read-only device: EROFS. Any call after close: EBADF.
 * - Errors from node:fs become EIO carrying the cause, except the few codes a caller
 *   can act on (ENOSPC; and on open ENOENT, EACCES, EPERM, EISDIR, ENOTDIR, EROFS).
 */
import { FsError, type FsErrorCode } from '../vfs/errors.js';

export const SECTOR_SIZES_BYTES: readonly number[] = [512, 4096];

export interface DeviceGeometry {
  readonly sizeBytes: number;
  readonly sectorSizeBytes: number;
}

/** Throw EINVAL unless the geometry describes a usable device. */
export function checkGeometry(geometry: DeviceGeometry, syscall: string, path?: string): void {
  const { sizeBytes, sectorSizeBytes } = geometry;
  const fail = (why: string): never => {
    throw new FsError('EINVAL', { syscall, path, detail: `device of ${sizeBytes} bytes, ${sectorSizeBytes}-byte sectors: ${why}` });
  };
  if (!SECTOR_SIZES_BYTES.includes(sectorSizeBytes)) fail('sector size must be 512 or 4096');
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0) fail('size must be a positive integer');
  if (sizeBytes % sectorSizeBytes !== 0) fail('size is not a multiple of the sector size');
}

/** Throw EINVAL unless [offsetBytes, offsetBytes + lengthBytes) is sector-aligned and inside the device. */
export function checkRange(
  geometry: DeviceGeometry,
  syscall: string,
  offsetBytes: number,
  lengthBytes: number,
  path?: string,
): void {
  const { sizeBytes, sectorSizeBytes } = geometry;
  let why: string | undefined;
  if (!Number.isSafeInteger(offsetBytes) || offsetBytes < 0) why = 'offset is not a non-negative integer';
  else if (!Number.isSafeInteger(lengthBytes) || lengthBytes < 0) why = 'length is not a non-negative integer';
  else if (offsetBytes % sectorSizeBytes !== 0) why = `offset is not a multiple of the ${sectorSizeBytes}-byte sector`;
  else if (lengthBytes % sectorSizeBytes !== 0) why = `length is not a multiple of the ${sectorSizeBytes}-byte sector`;
  else if (offsetBytes + lengthBytes > sizeBytes) why = `range ends past the device end at ${sizeBytes}`;
  if (why === undefined) return;
  const detail = `${syscall} of [${offsetBytes}, +${lengthBytes}) bytes: ${why}`;
  throw new FsError('EINVAL', { syscall, path, detail });
}

export function closedError(syscall: string, path?: string): FsError {
  return new FsError('EBADF', { syscall, path, detail: 'device is closed' });
}

export function readOnlyError(syscall: string, path?: string): FsError {
  return new FsError('EROFS', { syscall, path, detail: 'device is read-only' });
}

const OPEN_CODES_KEPT: readonly FsErrorCode[] = ['ENOENT', 'EACCES', 'EPERM', 'EISDIR', 'ENOTDIR', 'EROFS'];

function nodeCodeOf(cause: unknown): string | undefined {
  const code = (cause as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** Map an error thrown by node:fs during I/O: ENOSPC stays, everything else is EIO. */
export function ioError(cause: unknown, syscall: string, path?: string): FsError {
  if (FsError.is(cause)) return cause.withContext({ syscall, path });
  const nodeCode = nodeCodeOf(cause);
  const code: FsErrorCode = nodeCode === 'ENOSPC' ? 'ENOSPC' : 'EIO';
  return new FsError(code, { syscall, path, detail: `node:fs ${nodeCode ?? 'error'}`, cause });
}

/** Map an error thrown by node:fs while opening: path errors stay, the rest is EIO. */
export function openError(cause: unknown, syscall: string, path?: string): FsError {
  if (FsError.is(cause)) return cause;
  const nodeCode = nodeCodeOf(cause);
  const kept = OPEN_CODES_KEPT.find((code) => code === nodeCode);
  if (kept === undefined) return ioError(cause, syscall, path);
  return new FsError(kept, { syscall, path, cause });
}
