/**
 * Peer: Node's own fs (node:fs/promises FileHandle read/write/sync) on files in tmpfs —
 * no image, no format, no journal: the kernel's page cache is the file. An upper
 * reference for "a file API in Node": what ext4ts would cost if its format were free.
 *
 * Files live in a fresh directory under /dev/shm (tmpfs) each repetition; where there is
 * no /dev/shm, the OS temp directory is used and the note says so (then it is a disk
 * file system, no longer an upper reference). fsync on tmpfs returns at once (nothing is
 * below the cache). invalidate=1 does nothing: tmpfs data exists only in the page cache.
 *
 * Cost per call: one libuv thread-pool round trip (~10–20 µs) plus one kernel copy.
 */
import { constants as fsConstants } from 'node:fs';
import { mkdtemp, open, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BenchFile, type BenchFs, type ExecuteOptions, HandleBenchFile, type JobRun } from '../src/executor.js';
import { runGroups, type SuitePlan, type Target } from '../src/target.js';

const TMPFS_DIR = '/dev/shm';

class NodeFs implements BenchFs {
  constructor(private readonly dir: string) {}
  async sizeOf(name: string): Promise<number | undefined> {
    return (await stat(join(this.dir, name)).catch(() => undefined))?.size;
  }
  async open(name: string): Promise<BenchFile> {
    return new HandleBenchFile(await open(join(this.dir, name), fsConstants.O_RDWR | fsConstants.O_CREAT, 0o644));
  }
  async makeSparse(name: string, sizeBytes: number): Promise<void> {
    const handle = await open(join(this.dir, name), fsConstants.O_RDWR | fsConstants.O_CREAT, 0o644);
    try {
      await handle.truncate(sizeBytes);
    } finally {
      await handle.close();
    }
  }
  async dropCaches(): Promise<void> {}
}

export class NodeFsPeer implements Target {
  readonly id = 'node-fs';
  readonly label = 'node fs (tmpfs)';
  readonly kind = 'peer' as const;
  readonly notes: string[] = [];
  private parent = '';

  async probe(): Promise<string | undefined> {
    return undefined;
  }

  async setUp(_plan: SuitePlan): Promise<void> {
    const onTmpfs = await stat(TMPFS_DIR).then((s) => s.isDirectory(), () => false);
    this.parent = onTmpfs ? TMPFS_DIR : tmpdir();
    this.notes.length = 0;
    this.notes.push(onTmpfs
      ? 'node fs: node:fs/promises on tmpfs files (no image format; fsync returns at once on tmpfs)'
      : `node fs: no /dev/shm here, so files are in ${this.parent} (a disk file system, not an upper reference)`);
  }

  async runSuite(plan: SuitePlan, options: ExecuteOptions): Promise<JobRun[]> {
    const dir = await mkdtemp(join(this.parent, 'ext4ts-bench-nodefs-'));
    try {
      return await runGroups(new NodeFs(dir), plan.groups, options);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  async tearDown(): Promise<void> {}
}
