// Kernel loop mounts of ext4 images: the second oracle beside e2fsprogs. Mounting needs
// root, /dev/loop-control and a kernel with ext4, which CI has but a laptop or container
// may not, so suites probe once and skip with a printed reason:
//
//   const loop = await loopMountSupport();
//   if (!loop.ok) console.warn(`skipping kernel mount tests: ${loop.reason}`);
//   it.skipIf(!loop.ok)('mounted image matches the host tree', async () => {
//     await withLoopMount(img, async (mountPoint) => { ... }, { readOnly: true });
//   });
//
// Cost: a mount + umount of a small image is ~10-50 ms here.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { mke2fsFromDir } from './e2fs.js';
import { run } from './run.js';
import { makeTempDir } from './tmp.js';

export type LoopMountSupport = { ok: true } | { ok: false; reason: string };

export interface WithLoopMountOptions {
  /** Mount with -o ro (and noload: no journal replay, so the image is not modified). */
  readOnly?: boolean;
  /** Extra -o options, e.g. ['data=journal']. */
  mountOptions?: readonly string[];
}

const UMOUNT_ATTEMPTS_MAX = 10;
const UMOUNT_RETRY_DELAY_MS = 200;
const PROBE_IMAGE_BYTES = 4 * 1024 * 1024;

let supportCache: Promise<LoopMountSupport> | undefined;

/** Probes once per process whether this machine can loop-mount an ext4 image. */
export function loopMountSupport(): Promise<LoopMountSupport> {
  supportCache ??= probeLoopMount();
  return supportCache;
}

async function probeLoopMount(): Promise<LoopMountSupport> {
  if (process.platform !== 'linux') return { ok: false, reason: `platform is ${process.platform}, not linux` };
  if (process.getuid?.() !== 0) return { ok: false, reason: 'not running as root' };
  if (!existsSync('/dev/loop-control')) return { ok: false, reason: '/dev/loop-control does not exist' };
  const temp = makeTempDir('ext4ts-loopprobe-');
  try {
    const source = path.join(temp.dir, 'src');
    mkdirSync(source);
    writeFileSync(path.join(source, 'probe'), 'probe\n');
    const img = path.join(temp.dir, 'probe.img');
    await mke2fsFromDir(img, source, { sizeBytes: PROBE_IMAGE_BYTES, extraArgs: ['-O', '^has_journal'] });
    let seen = '';
    await withLoopMount(img, (mountPoint) => {
      seen = readFileSync(path.join(mountPoint, 'probe'), 'utf8');
    }, { readOnly: true });
    if (seen !== 'probe\n') return { ok: false, reason: `probe mount read ${JSON.stringify(seen)}` };
    return { ok: true };
  } catch (error) {
    return { ok: false, reason: `probe mount failed: ${(error as Error).message.split('\n')[0]}` };
  } finally {
    temp.cleanup();
  }
}

/**
 * Mounts img (mount -o loop) on a fresh temp dir, runs fn(mountPoint), and always unmounts
 * (retrying while busy), detaches the loop device it used if still bound, and removes the
 * dir. Mount a private copy, not a shared cached image: while an image is mounted,
 * e2fsck run on it by another test process warns "is mounted" (and so is not clean).
 */
export async function withLoopMount<T>(
  img: string,
  fn: (mountPoint: string) => Promise<T> | T,
  options: WithLoopMountOptions = {},
): Promise<T> {
  const temp = makeTempDir('ext4ts-mnt-');
  const mountPoint = temp.dir;
  const mountOptions = ['loop', ...(options.readOnly ? ['ro', 'noload'] : []), ...(options.mountOptions ?? [])];
  let mounted = false;
  let device: string | undefined;
  try {
    await run('mount', ['-t', 'ext4', '-o', mountOptions.join(','), img, mountPoint], { timeoutMs: 60_000 });
    mounted = true;
    device = mountSource(mountPoint);
    return await fn(mountPoint);
  } finally {
    try {
      if (mounted) await unmountWithRetry(mountPoint);
      if (device !== undefined) await detachLoopDevice(img, device);
    } finally {
      temp.cleanup();
    }
  }
}

/** The device mounted on mountPoint, from /proc/self/mountinfo ("... - ext4 /dev/loop3 rw"). */
function mountSource(mountPoint: string): string | undefined {
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const fields = line.split(' ');
    const separator = fields.indexOf('-');
    if (separator > 4 && fields[4] === mountPoint) return fields[separator + 2];
  }
  return undefined;
}

async function unmountWithRetry(mountPoint: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const result = await run('umount', [mountPoint], { allowFailure: true, timeoutMs: 60_000 });
    if (result.exitCode === 0) return;
    const busy = /busy/i.test(result.stderr);
    if (!busy || attempt >= UMOUNT_ATTEMPTS_MAX) {
      throw new Error(`umount ${mountPoint} failed (exit ${result.exitCode}): ${result.stderr.trim()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, UMOUNT_RETRY_DELAY_MS * attempt));
  }
}

/**
 * `mount -o loop` sets autoclear, so this is normally a no-op; it guards against leaking
 * our own loop device. Only `device` is touched: other processes may have img bound too.
 */
async function detachLoopDevice(img: string, device: string): Promise<void> {
  const bound = async (): Promise<boolean> => {
    const { stdout } = await run('losetup', ['-j', img], { allowFailure: true, timeoutMs: 30_000 });
    return stdout.split('\n').some((line) => line.startsWith(`${device}:`));
  };
  if (!(await bound())) return;
  await run('losetup', ['-d', device], { allowFailure: true, timeoutMs: 30_000 });
  if (await bound()) throw new Error(`loop device ${device} still bound to ${img}`);
}
