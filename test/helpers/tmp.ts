// Temporary directories for tests. /dev/shm (tmpfs) is preferred because image builds,
// e2fsck runs and loop mounts are I/O bound and tmpfs makes them several times faster;
// we fall back to os.tmpdir() when /dev/shm is missing or too full.
import { mkdtempSync, rmSync, statfsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const SHM_DIR = '/dev/shm';
const TEMP_FREE_BYTES_MIN_DEFAULT = 1024 * 1024 * 1024;

export interface TempDir {
  dir: string;
  cleanup: () => void;
}

export interface TempBaseOptions {
  /** /dev/shm is used only if at least this much is free (default 1 GiB). */
  freeBytesMin?: number;
}

function freeBytes(dir: string): number {
  try {
    const s = statfsSync(dir);
    return Number(s.bavail) * Number(s.bsize);
  } catch {
    return 0;
  }
}

/** The base directory for temp files: /dev/shm when it exists and has room, else os.tmpdir(). */
export function tempBase(options: TempBaseOptions = {}): string {
  const freeBytesMin = options.freeBytesMin ?? TEMP_FREE_BYTES_MIN_DEFAULT;
  if (process.platform === 'linux' && freeBytes(SHM_DIR) >= freeBytesMin) return SHM_DIR;
  return os.tmpdir();
}

/** Creates a fresh directory `<base>/<prefix>XXXXXX`; cleanup() removes it recursively (idempotent). */
export function makeTempDir(prefix: string, options: TempBaseOptions = {}): TempDir {
  const dir = mkdtempSync(path.join(tempBase(options), prefix));
  return {
    dir,
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
