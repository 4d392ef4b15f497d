/**
 * FsError: every operating error ext4ts reports (bad path, no space, corrupt image,
 * device I/O error) is one of these, shaped like Node's SystemError so callers can
 * switch on `code` exactly as they do for `node:fs` errors.
 *
 * Programmer errors are not FsErrors: they are assertion failures (see ../assert.ts).
 */
import { constants as osConstants } from 'node:os';

/** Codes ext4ts reports. EUCLEAN is what Linux reports for EFSCORRUPTED. */
export type FsErrorCode =
  | 'ENOENT' | 'EEXIST' | 'ENOTDIR' | 'EISDIR' | 'ENOTEMPTY' | 'ENAMETOOLONG' | 'EINVAL'
  | 'EMLINK' | 'ENOSPC' | 'EROFS' | 'EBADF' | 'EFBIG' | 'EIO' | 'EUCLEAN' | 'EBADMSG'
  | 'ELOOP' | 'EACCES' | 'EPERM' | 'EXDEV' | 'ENOTSUP' | 'EBUSY' | 'ENODATA' | 'E2BIG' | 'ENXIO'
  | 'EOVERFLOW' | 'ESPIPE' | 'EFAULT';

const descriptions: Record<FsErrorCode, string> = {
  ENOENT: 'no such file or directory',
  EEXIST: 'file already exists',
  ENOTDIR: 'not a directory',
  EISDIR: 'illegal operation on a directory',
  ENOTEMPTY: 'directory not empty',
  ENAMETOOLONG: 'name too long',
  EINVAL: 'invalid argument',
  EMLINK: 'too many links',
  ENOSPC: 'no space left on device',
  EROFS: 'read-only file system',
  EBADF: 'bad file descriptor',
  EFBIG: 'file too large',
  EIO: 'i/o error',
  EUCLEAN: 'structure needs cleaning (file system corrupted)',
  EBADMSG: 'bad message (checksum mismatch)',
  ELOOP: 'too many symbolic links encountered',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EXDEV: 'cross-device link not permitted',
  ENOTSUP: 'operation not supported',
  EBUSY: 'resource busy or locked',
  ENODATA: 'no data available',
  E2BIG: 'argument list too long',
  ENXIO: 'no such device or address',
  EOVERFLOW: 'value too large for defined data type',
  ESPIPE: 'invalid seek',
  EFAULT: 'bad address (access past the end of a mapped file: SIGBUS)',
};

/** Linux errno numbers for the codes Node's os.constants may not carry (EUCLEAN). */
const linuxErrno: Partial<Record<FsErrorCode, number>> = { EUCLEAN: 117, EBADMSG: 74, ENODATA: 61 };

function errnoOf(code: FsErrorCode): number {
  const fromNode = (osConstants.errno as Record<string, number | undefined>)[code];
  return -(fromNode ?? linuxErrno[code] ?? 5);
}

export interface FsErrorOptions {
  syscall?: string;
  path?: string;
  dest?: string;
  /** Extra detail appended to the message (which structure, which block). */
  detail?: string;
  cause?: unknown;
}

/** Brand lets `FsError.is` work across worker threads and duplicated module copies. */
const BRAND = Symbol.for('ext4ts.FsError');

export class FsError extends Error {
  readonly code: FsErrorCode;
  readonly errno: number;
  readonly syscall: string | undefined;
  readonly path: string | undefined;
  readonly dest: string | undefined;
  readonly detail: string | undefined;

  constructor(code: FsErrorCode, options: FsErrorOptions = {}) {
    const where = options.path === undefined ? '' : ` '${options.path}'`;
    const to = options.dest === undefined ? '' : ` -> '${options.dest}'`;
    const detail = options.detail === undefined ? '' : ` (${options.detail})`;
    const syscall = options.syscall === undefined ? '' : `, ${options.syscall}`;
    super(`${code}: ${descriptions[code]}${syscall}${where}${to}${detail}`, { cause: options.cause });
    this.name = 'FsError';
    this.code = code;
    this.errno = errnoOf(code);
    this.syscall = options.syscall;
    this.path = options.path;
    this.dest = options.dest;
    this.detail = options.detail;
    (this as unknown as Record<symbol, boolean>)[BRAND] = true;
  }

  static is(value: unknown, code?: FsErrorCode): value is FsError {
    if (typeof value !== 'object' || value === null) return false;
    if ((value as Record<symbol, unknown>)[BRAND] !== true && !(value instanceof FsError)) return false;
    return code === undefined || (value as FsError).code === code;
  }

  /** Re-tag an error with the path/syscall of the public call that hit it. */
  withContext(options: FsErrorOptions): FsError {
    return new FsError(this.code, {
      syscall: this.syscall ?? options.syscall,
      path: this.path ?? options.path,
      dest: this.dest ?? options.dest,
      detail: this.detail,
      cause: this.cause,
    });
  }
}

/** A corrupt on-disk structure: EUCLEAN (the kernel's EFSCORRUPTED). */
export function corrupted(detail: string, options: FsErrorOptions = {}): FsError {
  return new FsError('EUCLEAN', { ...options, detail });
}

/** A checksum mismatch: the kernel reports EFSBADCRC as EBADMSG. */
export function badChecksum(detail: string, options: FsErrorOptions = {}): FsError {
  return new FsError('EBADMSG', { ...options, detail });
}
