// Journals written by the kernel, replayed by e2fsck and by recoverJournal: same bytes.
//
// The crash image (ext4-format.md §10): mount a fresh mkfs.ext4 image, write files, sync,
// write more (create, rename, delete; a directory journaled then removed, so its blocks
// are revoked), shut the fs down with
// EXT4_IOC_SHUTDOWN(LOGFLUSH) so the log is flushed but never checkpointed, umount. The
// image then has needs_recovery and a non-empty log. One copy is replayed by
// `e2fsck -E journal_only`, the other by recoverJournal (+ RECOVER cleared, as ext4 will);
// the images must be identical except the superblock fields e2fsck stamps. Then both get
// a full `e2fsck -fy` and must again be identical and check clean.
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileDevice } from '@ext4ts/core';
import { decodeJournalSuperblock } from '../../packages/core/src/format/jbd2.js';
import { LogMap } from '../../packages/core/src/jbd2/log-map.js';
import { recoverJournal, type RecoveryReport } from '../../packages/core/src/jbd2/recovery.js';
import { BLOCK_SIZE_BYTES as BS, dumpe2fsHeader, e2fsck, mke2fsFromDir, requireE2fsprogs } from '../helpers/e2fs.js';
import { loopMountSupport, withLoopMount } from '../helpers/loop-mount.js';
import { run } from '../helpers/run.js';
import { makeTempDir, type TempDir } from '../helpers/tmp.js';
import { makeRng } from '../helpers/tree.js';
import { E2FSCK_GDT_SUMMARY_OFFSETS, E2FSCK_STAMPED_BYTES, E2FSCK_SUMMARY_BYTES, copyImage, differingBlocks, differingBytes, journalGeometry, readSuperblock, setRecoverFlag } from './helpers.js';

await requireE2fsprogs();
const EXT4_IOC_SHUTDOWN = 0x8004587d;
const EXT4_GOING_FLAGS_LOGFLUSH = 1;
const SHUTDOWN_PY = [
  'import fcntl, os, struct, sys',
  'fd = os.open(sys.argv[1], os.O_RDONLY)',
  `fcntl.ioctl(fd, ${EXT4_IOC_SHUTDOWN}, struct.pack('I', ${EXT4_GOING_FLAGS_LOGFLUSH}))`,
  'os.close(fd)',
].join('\n');

async function support(): Promise<{ ok: true } | { ok: false; reason: string }> {
  const loop = await loopMountSupport();
  if (!loop.ok) return loop;
  const python = await run('python3', ['-c', 'import fcntl'], { allowFailure: true }).catch(() => undefined);
  if (python === undefined || python.exitCode !== 0) return { ok: false, reason: 'python3 (for the shutdown ioctl) not available' };
  return { ok: true };
}
const supported = await support();
if (!supported.ok) console.warn(`skipping replay of kernel-written journals: ${supported.reason}`);

const IMAGE_BYTES = 64 * 1024 * 1024;
let temp: TempDir;
let crashImg: string;

function blob(rng: () => number, bytes: number): Buffer {
  const out = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) out[i] = Math.floor(rng() * 256);
  return out;
}

/** Files before the sync (checkpointed or logged), more after it (only in the log). */
async function kernelWorkload(mnt: string): Promise<void> {
  const rng = makeRng(4242);
  const a = path.join(mnt, 'a');
  mkdirSync(a);
  for (let i = 0; i < 40; i++) writeFileSync(path.join(a, `f${i}`), blob(rng, 1024 + Math.floor(rng() * 40_000)));
  await run('sync', ['-f', a]);
  const b = path.join(mnt, 'b');
  mkdirSync(path.join(b, 'deep', 'er'), { recursive: true });
  for (let i = 0; i < 300; i++) writeFileSync(path.join(b, `name-${i}-${'x'.repeat(i % 40)}`), blob(rng, 64 + Math.floor(rng() * 6000)));
  for (let i = 0; i < 40; i += 3) renameSync(path.join(a, `f${i}`), path.join(b, 'deep', `moved${i}`));
  for (let i = 1; i < 40; i += 3) rmSync(path.join(a, `f${i}`));
  writeFileSync(path.join(b, 'deep', 'er', 'big'), blob(rng, 3 * 1024 * 1024));
  await run('sync', ['-f', b]); // data and the metadata so far reach the log
  // A directory whose blocks are journaled, then freed: the kernel revokes them.
  const c = path.join(mnt, 'c');
  mkdirSync(c);
  for (let i = 0; i < 200; i++) writeFileSync(path.join(c, `entry-with-a-long-name-${i}`), '');
  await run('sync', ['-f', c]);
  rmSync(c, { recursive: true });
  for (let i = 0; i < 50; i++) writeFileSync(path.join(b, 'deep', `late${i}`), blob(rng, 512));
  await run('python3', ['-c', SHUTDOWN_PY, mnt]);
}

beforeAll(async () => {
  if (!supported.ok) return;
  temp = makeTempDir('ext4ts-jbd2-k-');
  const src = path.join(temp.dir, 'src');
  mkdirSync(src);
  const base = path.join(temp.dir, 'base.img');
  await mke2fsFromDir(base, src, { sizeBytes: IMAGE_BYTES });
  crashImg = copyImage(base, temp.dir, 'crash.img');
  await withLoopMount(crashImg, kernelWorkload);
  const header = await dumpe2fsHeader(crashImg);
  expect(header.features.has('needs_recovery')).toBe(true);
  expect(Number(header.fields['Journal start'])).toBeGreaterThan(0);
});

afterAll(() => temp?.cleanup());

async function replayOurs(img: string): Promise<RecoveryReport> {
  const device = await FileDevice.open(img);
  try {
    const sb = await readSuperblock(device);
    const report = await recoverJournal(device, await journalGeometry(img), { fsBlockCount: sb.blocksCount });
    await setRecoverFlag(device, false);
    return report;
  } finally {
    await device.close();
  }
}

/**
 * The images are identical except the superblock fields e2fsck stamps and, with
 * `summaries`, the fields e2fsck recomputes even with -E journal_only (free counts,
 * mount count; in the group descriptors of block 1, bg_itable_unused and bg_checksum).
 */
function expectSameImages(theirs: string, ours: string, summaries: boolean): void {
  const diff = differingBlocks(theirs, ours);
  expect(diff.filter((b) => b !== 0 && !(summaries && b === 1))).toEqual([]);
  const allowed = (offset: number): boolean => E2FSCK_STAMPED_BYTES.has(offset) || (summaries && E2FSCK_SUMMARY_BYTES.has(offset));
  expect(differingBytes(theirs, ours, 0, BS).filter((offset) => !allowed(offset))).toEqual([]);
  if (summaries) expect(differingBytes(theirs, ours, 1, BS).filter((offset) => !E2FSCK_GDT_SUMMARY_OFFSETS.has(offset % 64))).toEqual([]);
}

describe.skipIf(!supported.ok)('a journal written by the kernel', () => {
  it('recoverJournal replays it to the same bytes as e2fsck -E journal_only', async () => {
    const theirs = copyImage(crashImg, temp.dir, 'theirs.img');
    const fix = await e2fsck(theirs, ['-fy', '-E', 'journal_only']);
    expect(fix.output).toMatch(/recovering journal/i);
    const ours = copyImage(crashImg, temp.dir, 'ours.img');
    const report = await replayOurs(ours);
    expect(report.transactionsReplayed).toBeGreaterThan(0);
    expect(report.blocksWritten).toBeGreaterThan(10);
    expect(report.blocksFailedChecksum).toEqual([]);
    expect(report.failedCommitTid).toBeUndefined();
    expect(report.revokeRecords).toBeGreaterThan(0);
    console.log(`kernel journal: ${report.transactionsReplayed} transactions (tid ${report.startTid}..${report.endTid - 1}), ` +
      `${report.blocksWritten} blocks written, ${report.revokeRecords} revoke records, ${report.blocksRevoked} blocks revoked`);
    expectSameImages(theirs, ours, true);
    // The journal superblocks agree too: s_start 0, s_sequence = end + 1.
    const device = await FileDevice.open(ours, { readOnly: true });
    try {
      const geometry = await journalGeometry(ours);
      const map = new LogMap(device, geometry);
      const block = new Uint8Array(BS);
      await map.read(device, 0, block);
      const jsb = decodeJournalSuperblock(block);
      expect(jsb.start).toBe(0);
      expect(jsb.sequenceFirst).toBe(report.sequenceAfter);
    } finally {
      await device.close();
    }
  });

  it('after a full e2fsck -fy both replays are identical and check clean', async () => {
    const theirs = copyImage(crashImg, temp.dir, 'theirs-full.img');
    await e2fsck(theirs, ['-fy']);
    const ours = copyImage(crashImg, temp.dir, 'ours-full.img');
    await replayOurs(ours);
    await e2fsck(ours, ['-fy']);
    expectSameImages(theirs, ours, false);
    expect((await e2fsck(theirs, ['-fn'])).complaints).toEqual([]);
    expect((await e2fsck(ours, ['-fn'])).complaints).toEqual([]);
  });
});
