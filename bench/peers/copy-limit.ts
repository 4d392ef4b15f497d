/**
 * Peer: the copy limit — the same bytes moved by a plain in-memory copy in this process,
 * through the same harness (one positional call per block). A "file" is one preallocated
 * buffer; pwrite is `file.set(block, pos)`, pread is `target.set(file.subarray(pos, …))`,
 * a hole read is `target.fill(0)` (what any engine must at least do), fsync does nothing.
 *
 * No file system can move data faster than this from the same caller's buffer, so it is
 * the ceiling for cached reads and for writes into a cache. Its memory is allocated and
 * touched once in setUp (first touch runs at ~0.5 GiB/s here and would swamp the copy).
 *
 * Cost: one TypedArray.set per call: ~11–14 GiB/s between an ordinary buffer and
 * ArrayBuffer memory on these machines (ARCHITECTURE.md), ~70–90 µs per 1 MiB.
 */
import { cloneFileName, type JobSpec } from '../src/job.js';
import type { BenchFile, BenchFs, ExecuteOptions, JobRun } from '../src/executor.js';
import { runGroups, type SuitePlan, type Target } from '../src/target.js';

interface MemoryFile {
  bytes: Uint8Array;
  sizeBytes: number;
  /** Bytes at or above this were never written (a sparse file's hole): they read as zeros. */
  writtenEndBytes: number;
}

class CopyFile implements BenchFile {
  constructor(private readonly file: MemoryFile) {}
  async pwrite(source: Uint8Array, positionBytes: number): Promise<void> {
    this.file.bytes.set(source, positionBytes);
    const endBytes = positionBytes + source.length;
    if (endBytes > this.file.sizeBytes) this.file.sizeBytes = endBytes;
    if (endBytes > this.file.writtenEndBytes) this.file.writtenEndBytes = endBytes;
  }
  async pread(target: Uint8Array, positionBytes: number): Promise<number> {
    const length = Math.max(0, Math.min(target.length, this.file.sizeBytes - positionBytes));
    if (positionBytes >= this.file.writtenEndBytes) target.fill(0, 0, length);
    else target.set(this.file.bytes.subarray(positionBytes, positionBytes + length));
    return length;
  }
  async fsync(): Promise<void> {}
  async fdatasync(): Promise<void> {}
  async close(): Promise<void> {}
}

class CopyFs implements BenchFs {
  constructor(private readonly files: Map<string, MemoryFile>) {}
  private file(name: string): MemoryFile {
    const file = this.files.get(name);
    if (file === undefined) throw new Error(`copy limit: no buffer planned for ${name}`);
    return file;
  }
  async sizeOf(name: string): Promise<number | undefined> {
    const file = this.files.get(name);
    return file === undefined || file.sizeBytes < 0 ? undefined : file.sizeBytes;
  }
  async open(name: string): Promise<BenchFile> {
    const file = this.file(name);
    if (file.sizeBytes < 0) file.sizeBytes = 0;
    return new CopyFile(file);
  }
  async makeSparse(name: string, sizeBytes: number): Promise<void> {
    const file = this.file(name);
    file.sizeBytes = sizeBytes;
    file.writtenEndBytes = 0;
  }
  async dropCaches(): Promise<void> {}
}

export class CopyLimitPeer implements Target {
  readonly id = 'copy';
  readonly label = 'copy limit';
  readonly kind = 'peer' as const;
  readonly notes = ['copy limit: TypedArray.set of each block into/out of one preallocated buffer per file, same harness; hole reads are fill(0)'];
  private files = new Map<string, MemoryFile>();

  async probe(): Promise<string | undefined> {
    return undefined;
  }

  async setUp(plan: SuitePlan): Promise<void> {
    const capacity = new Map<string, number>();
    for (const job of plan.groups.flat() as JobSpec[]) {
      for (let clone = 0; clone < job.numjobs; clone++) {
        const name = cloneFileName(job, clone);
        capacity.set(name, Math.max(capacity.get(name) ?? 0, job.sizeBytes));
      }
    }
    for (const [name, bytes] of capacity) {
      const buffer = new Uint8Array(bytes);
      buffer.fill(0xa5); // touch every page now, not in the timed write
      this.files.set(name, { bytes: buffer, sizeBytes: -1, writtenEndBytes: 0 });
    }
  }

  async runSuite(plan: SuitePlan, options: ExecuteOptions): Promise<JobRun[]> {
    for (const file of this.files.values()) {
      file.sizeBytes = -1; // "missing" again: every repetition starts from an empty file system
      file.writtenEndBytes = 0;
    }
    return runGroups(new CopyFs(this.files), plan.groups, options);
  }

  async tearDown(): Promise<void> {
    this.files.clear();
  }
}
