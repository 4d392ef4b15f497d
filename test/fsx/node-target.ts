/**
 * An FsxTarget over a host file (node:fs FileHandle), used to prove the exerciser before
 * the ext4ts write path exists.
 *
 * - fallocate / punch / zero run util-linux fallocate(1) (`fallocate -o OFF -l LEN [-n] [-p]
 *   [-z] FILE`): Node has no fallocate binding. Each op spawns a process (~2 ms), so long
 *   runs should give those ops a small weight. Each mode is probed once on a scratch file
 *   beside the target; a mode the tool or the file system refuses is reported as missing.
 * - mapRead / mapWrite are EMULATED with pread / pwrite (plus ftruncate first, as fsx's
 *   domapwrite does): Node has no mmap. capabilities.mmap and capabilities.eofPage are false.
 * Cost per op: one or two libuv file syscalls; fallocate-family ops one process spawn.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { FsxCapabilities, FsxTarget } from '../../packages/cli/src/fsx/target.js';

const execFileAsync = promisify(execFile);
const FALLOCATE_TOOL = 'fallocate';

export interface NodeTargetOptions {
  /** Directory for the file (default: a fresh directory in os.tmpdir(), removed on close). */
  dir?: string;
  /** false: never use fallocate(1), report no fallocate/punch/zero capability. */
  useFallocateTool?: boolean;
}

export class NodeFsxTarget implements FsxTarget {
  private handle: FileHandle | null;

  private constructor(
    readonly filePath: string,
    readonly capabilities: FsxCapabilities,
    handle: FileHandle,
    private readonly removeDir: string | null,
  ) {
    this.handle = handle;
  }

  static async create(options: NodeTargetOptions = {}): Promise<NodeFsxTarget> {
    const removeDir = options.dir === undefined ? mkdtempSync(path.join(os.tmpdir(), 'ext4ts-fsx-')) : null;
    const dir = options.dir ?? removeDir!;
    const filePath = path.join(dir, 'fsxfile');
    const modes = options.useFallocateTool === false ? { fallocate: false, punch: false, zero: false } : await probeFallocate(dir);
    const handle = await open(filePath, 'w+');
    return new NodeFsxTarget(filePath, { ...modes, mmap: false, eofPage: false }, handle, removeDir);
  }

  private fh(): FileHandle {
    if (this.handle === null) throw new Error('node fsx target: file is closed');
    return this.handle;
  }

  async size(): Promise<number> {
    return (await this.fh().stat()).size;
  }

  async read(pos: number, len: number): Promise<Uint8Array> {
    const buffer = new Uint8Array(len);
    let done = 0;
    while (done < len) {
      const { bytesRead } = await this.fh().read(buffer, done, len - done, pos + done);
      if (bytesRead === 0) break; // EOF
      done += bytesRead;
    }
    return buffer.subarray(0, done);
  }

  async write(pos: number, data: Uint8Array): Promise<void> {
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.fh().write(data, done, data.length - done, pos + done);
      done += bytesWritten;
    }
  }

  async truncate(size: number): Promise<void> {
    await this.fh().truncate(size);
  }

  async fallocate(pos: number, len: number, options: { keepSize: boolean }): Promise<void> {
    await runFallocate(this.filePath, pos, len, options.keepSize ? ['-n'] : []);
  }

  async punchHole(pos: number, len: number): Promise<void> {
    await runFallocate(this.filePath, pos, len, ['-p']); // -p implies KEEP_SIZE
  }

  async zeroRange(pos: number, len: number, options: { keepSize: boolean }): Promise<void> {
    await runFallocate(this.filePath, pos, len, options.keepSize ? ['-z', '-n'] : ['-z']);
  }

  /** Emulated: pread (Node has no mmap). */
  async mapRead(pos: number, len: number): Promise<Uint8Array> {
    return this.read(pos, len);
  }

  /**
   * Emulated: ftruncate up to the end first (fsx domapwrite), then pwrite. No msync stand-in:
   * the pwrite is already visible to every reader, and durability is fsync's test, not this one's.
   */
  async mapWrite(pos: number, data: Uint8Array): Promise<void> {
    const end = pos + data.length;
    if (end > (await this.size())) await this.truncate(end);
    await this.write(pos, data);
  }

  async fsync(): Promise<void> {
    await this.fh().sync();
  }

  async reopen(): Promise<void> {
    await this.fh().close();
    this.handle = await open(this.filePath, 'r+');
  }

  async close(): Promise<void> {
    if (this.handle !== null) await this.handle.close();
    this.handle = null;
    if (this.removeDir !== null) rmSync(this.removeDir, { recursive: true, force: true });
  }
}

async function runFallocate(filePath: string, pos: number, len: number, flags: string[]): Promise<void> {
  await execFileAsync(FALLOCATE_TOOL, [...flags, '-o', String(pos), '-l', String(len), filePath]);
}

/** Tries each mode once on a scratch file: a missing tool or an EOPNOTSUPP file system both mean "no". */
async function probeFallocate(dir: string): Promise<{ fallocate: boolean; punch: boolean; zero: boolean }> {
  const probe = path.join(dir, '.fsx-probe');
  writeFileSync(probe, new Uint8Array(8192));
  const works = async (flags: string[]): Promise<boolean> => {
    try {
      await runFallocate(probe, 0, 4096, flags);
      return true;
    } catch {
      return false;
    }
  };
  try {
    const [fallocate, keepSize, punch, zero] = [await works([]), await works(['-n']), await works(['-p']), await works(['-z'])];
    return { fallocate: fallocate && keepSize, punch, zero };
  } finally {
    rmSync(probe, { force: true });
  }
}
