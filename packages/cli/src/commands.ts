/**
 * The ext4ts subcommands. Each takes its argv tail and writes to stdout; failures are
 * FsErrors (exit 1) or UsageErrors (exit 2), reported by main.ts.
 */
import { mkdir, symlink, lutimes, link, chmod, utimes, lstat as hostLstat, open as hostOpen, readdir as hostReaddir, readlink as hostReadlink } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { once } from 'node:events';
import {
  Ext4, FileDevice, MemoryDevice, mkfs, superblockReport, journalReport, formatReport, readJournalSuperblock,
  FsError, type Ext4Filesystem, type BigIntStats, type SyncBlockDevice,
} from '@ext4ts/core';
import { parseArgs, parseSize, UsageError } from './args.js';
import { modeString, statText, lsLine } from './text.js';
import { fsxCommand } from './fsx/command.js';

/** Resolves to the exit code, or nothing for 0 (fsx returns 1 when a check failed). */
type Command = (argv: string[]) => Promise<void | number>;

async function withImage<T>(image: string, body: (fs: Ext4Filesystem, device: SyncBlockDevice) => Promise<T>): Promise<T> {
  const device = await FileDevice.open(image, { readOnly: true });
  try {
    const fs = await Ext4.mount(device, { readOnly: true });
    try {
      return await body(fs, device);
    } finally {
      await fs.unmount();
    }
  } finally {
    await device.close();
  }
}

function need(positionals: string[], count: number, what: string): void {
  if (positionals.length < count) throw new UsageError(`missing ${what}`);
}

/** Write to stdout, waiting when the pipe is full so huge files stream in bounded memory. */
async function out(text: string | Uint8Array): Promise<void> {
  if (!process.stdout.write(text)) await once(process.stdout, 'drain');
}

const mkfsCommand: Command = async (argv) => {
  const { positionals, flags } = parseArgs(argv, new Set(['size', 'label', 'L']));
  need(positionals, 1, 'IMAGE');
  const sizeFlag = flags.get('size');
  if (typeof sizeFlag !== 'string') throw new UsageError('mkfs needs --size (e.g. --size 1G)');
  const sizeBytes = parseSize(sizeFlag);
  const label = flags.get('label') ?? flags.get('L');
  const image = positionals[0];
  let existed = true;
  try { await hostLstat(image); } catch { existed = false; }
  const device = await FileDevice.open(image, { create: true, sizeBytes });
  try {
    const started = performance.now();
    const result = await mkfs(device, { sizeBytes, label: typeof label === 'string' ? label : undefined, assumeZeroed: !existed });
    await device.flush();
    const ms = performance.now() - started;
    await out(`${image}: ${result.blocksCount} blocks of 4096, ${result.groupCount} groups, ${result.inodesCount} inodes, ` +
      `journal ${result.journalBlocks} blocks; ${(result.bytesWritten / 2 ** 20).toFixed(1)} MiB written in ${ms.toFixed(0)} ms\n`);
  } finally {
    await device.close();
  }
};

const infoCommand: Command = async (argv) => {
  const { positionals } = parseArgs(argv, new Set());
  need(positionals, 1, 'IMAGE');
  await withImage(positionals[0], async (fs) => {
    const lines = [...superblockReport(fs.internals.sb)];
    const jsb = await readJournalSuperblock(fs.internals);
    if (jsb !== undefined) lines.push(...journalReport(jsb, fs.internals.blockSizeBytes));
    await out(formatReport(lines) + '\n');
  });
};

async function listDir(fs: Ext4Filesystem, dir: string, opts: { long: boolean; recursive: boolean; all: boolean }, header: boolean): Promise<void> {
  const entries = (await fs.readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  if (header) await out(`${dir}:\n`);
  const names = opts.all ? ['.', '..', ...entries.map((e) => e.name)] : entries.map((e) => e.name);
  for (const name of names) {
    const path = posix.join(dir, name);
    if (!opts.long) { await out(`${name}\n`); continue; }
    const st = await fs.lstat(path, { bigint: true });
    const target = st.isSymbolicLink() ? await fs.readlink(path) : undefined;
    await out(lsLine(st, name, target) + '\n');
  }
  if (!opts.recursive) return;
  for (const e of entries) {
    if (!e.isDirectory()) continue;
    await out('\n');
    await listDir(fs, posix.join(dir, e.name), opts, true);
  }
}

const lsCommand: Command = async (argv) => {
  const { positionals, flags } = parseArgs(argv, new Set());
  need(positionals, 1, 'IMAGE');
  const path = positionals[1] ?? '/';
  const opts = { long: flags.has('l'), recursive: flags.has('R'), all: flags.has('a') };
  await withImage(positionals[0], async (fs) => {
    const st = await fs.lstat(path, { bigint: true });
    if (!st.isDirectory()) {
      await out((opts.long ? lsLine(st, path, st.isSymbolicLink() ? await fs.readlink(path) : undefined) : path) + '\n');
      return;
    }
    await listDir(fs, path, opts, opts.recursive);
  });
};

const CAT_CHUNK_BYTES = 1 << 20;

const catCommand: Command = async (argv) => {
  const { positionals } = parseArgs(argv, new Set());
  need(positionals, 2, 'IMAGE and PATH');
  await withImage(positionals[0], async (fs) => {
    for (const path of positionals.slice(1)) {
      const fh = await fs.open(path, 'r');
      try {
        for (let pos = 0; ; ) {
          const buffer = Buffer.alloc(CAT_CHUNK_BYTES);
          const { bytesRead } = await fh.read(buffer, 0, CAT_CHUNK_BYTES, pos);
          if (bytesRead === 0) break;
          await out(buffer.subarray(0, bytesRead));
          pos += bytesRead;
        }
      } finally {
        await fh.close();
      }
    }
  });
};

const statCommand: Command = async (argv) => {
  const { positionals } = parseArgs(argv, new Set());
  need(positionals, 2, 'IMAGE and PATH');
  await withImage(positionals[0], async (fs) => {
    for (const path of positionals.slice(1)) {
      const st = await fs.lstat(path, { bigint: true });
      const target = st.isSymbolicLink() ? await fs.readlink(path) : undefined;
      await out(statText(path, st, target) + '\n');
    }
  });
};

interface CopyState { fs: Ext4Filesystem; hardLinks: Map<bigint, string>; files: number; bytes: number }

async function copyOut(state: CopyState, source: string, target: string, recursive: boolean): Promise<void> {
  const st = await state.fs.lstat(source, { bigint: true });
  if (st.isDirectory()) {
    if (!recursive) throw new FsError('EISDIR', { syscall: 'cp', path: source, detail: 'use -r to copy a directory' });
    await mkdir(target, { recursive: true });
    for (const name of await state.fs.readdir(source)) await copyOut(state, posix.join(source, name), join(target, name), true);
  } else if (st.isSymbolicLink()) {
    await symlink(await state.fs.readlink(source, { encoding: 'buffer' }), target);
    // A symlink's mode cannot be set on Linux; its times can.
    await lutimes(target, secondsText(st.atimeNs), secondsText(st.mtimeNs));
    return;
  } else if (st.isFile()) {
    const first = st.nlink > 1n ? state.hardLinks.get(st.ino) : undefined;
    if (first !== undefined) { await link(first, target); return; }
    if (st.nlink > 1n) state.hardLinks.set(st.ino, target);
    await copyFileOut(state, source, target, st);
  } else {
    throw new FsError('ENOTSUP', { syscall: 'cp', path: source, detail: 'device, fifo and socket nodes are not copied' });
  }
  await chmod(target, Number(st.mode & 0o7777n));
  // Node turns a negative *number* into "now"; a decimal string keeps pre-1970 times.
  await utimes(target, secondsText(st.atimeNs), secondsText(st.mtimeNs));
}

/** Nanoseconds since the epoch as a decimal seconds string ("-12.000000001"). */
function secondsText(ns: bigint): string {
  const sign = ns < 0n ? '-' : '';
  const abs = ns < 0n ? -ns : ns;
  return `${sign}${abs / 1_000_000_000n}.${(abs % 1_000_000_000n).toString().padStart(9, '0')}`;
}

async function copyFileOut(state: CopyState, source: string, target: string, st: BigIntStats): Promise<void> {
  const fh = await state.fs.open(source, 'r');
  const host = await hostOpen(target, 'w');
  try {
    const buffer = Buffer.alloc(CAT_CHUNK_BYTES);
    for (let pos = 0; pos < Number(st.size); ) {
      const { bytesRead } = await fh.read(buffer, 0, CAT_CHUNK_BYTES, pos);
      if (bytesRead === 0) break;
      // Keep holes: a zero chunk is skipped and the size set by truncate below.
      if (!buffer.subarray(0, bytesRead).every((b) => b === 0)) await host.write(buffer, 0, bytesRead, pos);
      pos += bytesRead;
    }
    await host.truncate(Number(st.size));
    state.files++;
    state.bytes += Number(st.size);
  } finally {
    await host.close();
    await fh.close();
  }
}

/** `IMAGE:/path` when IMAGE is an existing host file: the target of a copy into an image. */
async function imageTarget(arg: string): Promise<{ image: string; path: string } | undefined> {
  const m = /^(.+?):(\/.*)$/.exec(arg);
  if (m === null) return undefined;
  try {
    if ((await hostLstat(m[1])).isFile()) return { image: m[1], path: m[2] };
  } catch { /* not an image */ }
  return undefined;
}

/** Open an image read-write for one command; unmount (commit, checkpoint) at the end. */
async function withImageRw<T>(image: string, body: (fs: Ext4Filesystem) => Promise<T>): Promise<T> {
  const device = await FileDevice.open(image);
  try {
    const fs = await Ext4.mount(device, { readOnly: false, commitIntervalMs: 0 });
    try {
      return await body(fs);
    } finally {
      await fs.unmount();
    }
  } finally {
    await device.close();
  }
}

interface CopyInState { fs: Ext4Filesystem; hardLinks: Map<string, string>; files: number; bytes: number }

/** Copy a host file, symlink or (recursive) tree to `target` in the image, keeping modes, owners, times and hard links. */
async function copyIn(state: CopyInState, source: string, target: string, recursive: boolean): Promise<void> {
  const { fs } = state;
  const st = await hostLstat(source, { bigint: true });
  if (st.isDirectory()) {
    if (!recursive) throw new FsError('EISDIR', { syscall: 'cp', path: source, detail: 'use -r to copy a directory' });
    await fs.mkdir(target, { recursive: true });
    for (const name of (await hostReaddir(source)).sort()) await copyIn(state, join(source, name), posix.join(target, name), true);
  } else if (st.isSymbolicLink()) {
    await fs.symlink(await hostReadlink(source, { encoding: 'buffer' }), target);
    await fs.lchown(target, Number(st.uid), Number(st.gid));
    await fs.lutimes(target, secondsText(st.atimeNs), secondsText(st.mtimeNs));
    return;
  } else if (st.isFile()) {
    const key = `${st.dev}:${st.ino}`;
    const first = st.nlink > 1n ? state.hardLinks.get(key) : undefined;
    if (first !== undefined) { await fs.link(first, target); return; }
    if (st.nlink > 1n) state.hardLinks.set(key, target);
    await copyFileIn(state, source, target, Number(st.size));
  } else {
    throw new FsError('ENOTSUP', { syscall: 'cp', path: source, detail: 'device, fifo and socket nodes are not copied' });
  }
  await fs.chown(target, Number(st.uid), Number(st.gid));
  await fs.chmod(target, Number(st.mode & 0o7777n));
  await fs.utimes(target, secondsText(st.atimeNs), secondsText(st.mtimeNs));
}

async function copyFileIn(state: CopyInState, source: string, target: string, sizeBytes: number): Promise<void> {
  const host = await hostOpen(source, 'r');
  const fh = await state.fs.open(target, 'w');
  try {
    const buffer = Buffer.alloc(CAT_CHUNK_BYTES);
    for (let pos = 0; pos < sizeBytes; ) {
      const { bytesRead } = await host.read(buffer, 0, CAT_CHUNK_BYTES, pos);
      if (bytesRead === 0) break;
      // Keep holes: an all-zero chunk is skipped, the size set by truncate below.
      if (!buffer.subarray(0, bytesRead).every((b) => b === 0)) await fh.write(buffer, 0, bytesRead, pos);
      pos += bytesRead;
    }
    await fh.truncate(sizeBytes);
    state.files++;
    state.bytes += sizeBytes;
  } finally {
    await fh.close();
    await host.close();
  }
}

async function existsDir(fs: Ext4Filesystem, p: string): Promise<boolean> {
  try { return (await fs.stat(p)).isDirectory(); } catch (error) { if (FsError.is(error, 'ENOENT')) return false; throw error; }
}

const cpCommand: Command = async (argv) => {
  const { positionals, flags } = parseArgs(argv, new Set());
  const recursive = flags.has('r') || flags.has('R');
  const into = positionals.length >= 2 ? await imageTarget(positionals[positionals.length - 1]) : undefined;
  if (into !== undefined) {
    const sources = positionals.slice(0, -1);
    await withImageRw(into.image, async (fs) => {
      const state: CopyInState = { fs, hardLinks: new Map(), files: 0, bytes: 0 };
      const intoDir = sources.length > 1 || await existsDir(fs, into.path);
      for (const source of sources) {
        const name = posix.basename(source.replace(/\/+$/, '')) || 'root';
        await copyIn(state, source, intoDir ? posix.join(into.path, name) : into.path, recursive);
      }
    });
    return;
  }
  need(positionals, 3, 'IMAGE, SOURCE and TARGET');
  const [image, source, target] = positionals;
  await withImage(image, async (fs) => {
    let dest = target;
    try {
      if ((await hostLstat(target)).isDirectory()) dest = join(target, posix.basename(posix.resolve('/', source)) || 'root');
    } catch { /* target does not exist: copy to that name */ }
    const state: CopyState = { fs, hardLinks: new Map(), files: 0, bytes: 0 };
    await copyOut(state, source, dest, flags.has('r') || flags.has('R'));
  });
};

const demoCommand: Command = async () => {
  const sizeBytes = 1 << 30;
  const device = MemoryDevice.create({ sizeBytes });
  try {
    let t = performance.now();
    const made = await mkfs(device, { sizeBytes, label: 'ext4ts-demo', assumeZeroed: true });
    await out(`mkfs: 1 GiB in-memory ext4, ${made.groupCount} groups, ${(made.bytesWritten / 2 ** 20).toFixed(1)} MiB written in ${(performance.now() - t).toFixed(0)} ms\n`);
    t = performance.now();
    const fs = await Ext4.mount(device, { readOnly: true });
    await out(`mount: ${(performance.now() - t).toFixed(1)} ms, features: ${fs.info.features.join(' ')}\n\n`);
    const lines = [...superblockReport(fs.internals.sb)];
    const jsb = await readJournalSuperblock(fs.internals);
    if (jsb !== undefined) lines.push(...journalReport(jsb, fs.internals.blockSizeBytes));
    await out(formatReport(lines) + '\n\n');
    await listDir(fs, '/', { long: true, recursive: true, all: true }, true);
    await fs.unmount();
  } finally {
    await device.close();
  }
};

const mkdirCommand: Command = async (argv) => {
  const { positionals, flags } = parseArgs(argv, new Set());
  need(positionals, 2, 'IMAGE and PATH');
  await withImageRw(positionals[0], async (fs) => {
    for (const p of positionals.slice(1)) await fs.mkdir(p, { recursive: flags.has('p') });
  });
};

const rmCommand: Command = async (argv) => {
  const { positionals, flags } = parseArgs(argv, new Set());
  need(positionals, 2, 'IMAGE and PATH');
  await withImageRw(positionals[0], async (fs) => {
    for (const p of positionals.slice(1)) await fs.rm(p, { recursive: flags.has('r') || flags.has('R'), force: flags.has('f') });
  });
};

const mvCommand: Command = async (argv) => {
  const { positionals } = parseArgs(argv, new Set());
  need(positionals, 3, 'IMAGE, SOURCE and TARGET');
  const [image, source, target] = positionals;
  await withImageRw(image, async (fs) => {
    // Like mv: into an existing directory keeps the name.
    const dest = await existsDir(fs, target) ? posix.join(target, posix.basename(source)) : target;
    await fs.rename(source, dest);
  });
};

const lnCommand: Command = async (argv) => {
  const { positionals, flags } = parseArgs(argv, new Set());
  need(positionals, 3, 'IMAGE, TARGET and LINK');
  const [image, target, linkPath] = positionals;
  await withImageRw(image, async (fs) => {
    if (flags.has('s')) await fs.symlink(target, linkPath);
    else await fs.link(target, linkPath);
  });
};

const chmodCommand: Command = async (argv) => {
  const { positionals } = parseArgs(argv, new Set());
  need(positionals, 3, 'IMAGE, MODE and PATH');
  const [image, modeText, ...paths] = positionals;
  if (!/^[0-7]{1,4}$/.test(modeText)) throw new UsageError(`chmod takes an octal mode, got '${modeText}'`);
  await withImageRw(image, async (fs) => {
    for (const p of paths) await fs.chmod(p, parseInt(modeText, 8));
  });
};

const touchCommand: Command = async (argv) => {
  const { positionals, flags } = parseArgs(argv, new Set(['d', 'date']));
  need(positionals, 2, 'IMAGE and PATH');
  const dateText = flags.get('d') ?? flags.get('date');
  const when = typeof dateText === 'string' ? new Date(/^-?\d+(\.\d+)?$/.test(dateText) ? Number(dateText) * 1000 : dateText) : new Date();
  if (Number.isNaN(when.getTime())) throw new UsageError(`touch: bad date '${String(dateText)}'`);
  await withImageRw(positionals[0], async (fs) => {
    for (const p of positionals.slice(1)) {
      try {
        await fs.stat(p);
      } catch (error) {
        if (!FsError.is(error, 'ENOENT')) throw error;
        await fs.writeFile(p, '', { flag: 'a' });
      }
      await fs.utimes(p, when, when);
    }
  });
};

/**
 * `ext4ts bench`: the fio-style runner, which lives in the workspace's bench/ package and
 * is loaded from its build at run time (it is not part of the published CLI: it brings
 * the peers' tools with it). Resolves to the runner's exit code.
 */
const benchCommand: Command = async (argv) => {
  const entry = new URL('../../../bench/dist/src/cli.js', import.meta.url);
  let bench: { benchMain(argv: readonly string[]): Promise<number> };
  try {
    bench = (await import(entry.href)) as typeof bench;
  } catch (error) {
    throw new UsageError(`bench is not built here (${(error as Error).message.split('\n')[0]}); in the repository run 'pnpm run build'`);
  }
  return bench.benchMain(argv);
};

export const commands: Record<string, Command> = {
  mkfs: mkfsCommand, info: infoCommand, ls: lsCommand, cat: catCommand, stat: statCommand, cp: cpCommand, demo: demoCommand,
  mkdir: mkdirCommand, rm: rmCommand, mv: mvCommand, ln: lnCommand, chmod: chmodCommand, touch: touchCommand,
  fsx: fsxCommand, bench: benchCommand,
};

export { modeString };
