// Journals written by ext4ts, replayed by e2fsck, by recoverJournal and by the kernel.
//
// A 64 MiB mkfs.ext4 image has a 1024-block journal in three extents (15-24, 26-40,
// 1066-2064). ext4ts's Journal writes six transactions into it and "crashes" (abort: no
// checkpoint of the last ones, s_start != 0, RECOVER set):
//   tx1 256 free blocks F[0,256) (two descriptors)
//   tx2 revokes F[0,10); logs F[256,456)
//   tx3 logs F[456,712)
//   tx4 logs F[0,256) again (revoked blocks become metadata again)
//   tx5 logs F[712,912): the log is full, so tx1-4 are checkpointed and tx5 wraps
//   tx6 revokes F[712,722) (logged by tx5), logs block 0 with a new volume label and F[912,920)
// The logged blocks are free in the bitmaps (so any content is consistent for e2fsck),
// except block 0, whose superblock is re-encoded with its checksum. F[3], F[800] and
// F[915] always start with the jbd2 magic, so they are logged escaped.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileDevice } from '@ext4ts/core';
import {
  BlockType, COMMIT_CHKSUM_OFFSET, COMMIT_NSEC_OFFSET, JBD2_MAGIC, JIncompat, TagFlags, commitBlockChecksum, decodeJournalHeader,
  decodeJournalSuperblock, encodeJournalHeader, encodeJournalSuperblock, journalDataChecksum, journalSeed, journalTagBytes,
  sealJournalBlockTail,
} from '../../packages/core/src/format/jbd2.js';
import { LogMap } from '../../packages/core/src/jbd2/log-map.js';
import { SUPERBLOCK_OFFSET_BYTES, decodeSuperblock, encodeSuperblock } from '../../packages/core/src/format/superblock.js';
import { Journal } from '../../packages/core/src/jbd2/journal.js';
import { recoverJournal } from '../../packages/core/src/jbd2/recovery.js';
import { BLOCK_SIZE_BYTES as BS, debugfs, dumpe2fsHeader, e2fsck, mke2fsFromDir, requireE2fsprogs } from '../helpers/e2fs.js';
import { loopMountSupport, withLoopMount } from '../helpers/loop-mount.js';
import { makeTempDir, type TempDir } from '../helpers/tmp.js';
import { E2FSCK_STAMPED_BYTES, copyImage, differingBlocks, differingBytes, journalGeometry, readSuperblock, setRecoverFlag } from './helpers.js';

await requireE2fsprogs();
const loop = await loopMountSupport();
if (!loop.ok) console.warn(`skipping kernel replay of an ext4ts journal: ${loop.reason}`);

const IMAGE_BYTES = 64 * 1024 * 1024;
const FREE_FIRST = 8192; // F[i] = FREE_FIRST + i; mkfs uses blocks below ~2100 here
const FREE_COUNT = 920;
const LABEL = 'ext4ts-jbd2';

/** Blocks that always start with the jbd2 magic (logged escaped, replayed unescaped). */
const ESCAPED = new Set([FREE_FIRST + 3, FREE_FIRST + 800, FREE_FIRST + 915]);

let temp: TempDir;
let crashImg: string;
let baseImg: string;
/** Expected content of every F block after recovery: a fill byte, or 'untouched' (zeros). */
const expected = new Map<number, number | 'untouched'>();

function fill(blockNr: number, tx: number): number {
  return (blockNr * 7 + tx * 31) & 0xff || 1;
}

async function logBlocks(journal: Journal, blocks: readonly number[], tx: number, revoke: readonly number[] = []): Promise<void> {
  const handle = await journal.start(Math.max(1, blocks.length));
  for (const b of revoke) handle.revoke(b);
  for (const b of blocks) {
    const buf = await handle.getWriteAccess(b);
    buf.fill(fill(b, tx));
    if (ESCAPED.has(b)) new DataView(buf.buffer, buf.byteOffset).setUint32(0, JBD2_MAGIC);
    handle.dirtyMetadata(b);
  }
  await journal.stop(handle);
}

beforeAll(async () => {
  temp = makeTempDir('ext4ts-jbd2-w-');
  const src = path.join(temp.dir, 'src');
  mkdirSync(src);
  const base = path.join(temp.dir, 'base.img');
  await mke2fsFromDir(base, src, { sizeBytes: IMAGE_BYTES });
  const free = await debugfs(base, [`testb ${FREE_FIRST} ${FREE_COUNT}`]);
  expect(free).not.toMatch(/marked in use/);
  const geometry = await journalGeometry(base);
  expect(geometry.extents.length).toBeGreaterThan(1);

  baseImg = base;
  crashImg = copyImage(base, temp.dir, 'crash.img');
  const device = await FileDevice.open(crashImg);
  try {
    const sb = await readSuperblock(device);
    const F = (i: number): number => FREE_FIRST + i;
    const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => F(from + i));
    const journal = await Journal.open(device, geometry, {
      readBlock: async (b) => { const bytes = new Uint8Array(BS); await device.read(b * BS, bytes); return bytes; },
      onFirstDirty: () => setRecoverFlag(device, true),
      commitIntervalMs: 0,
      fsBlockCount: sb.blocksCount,
    });
    await logBlocks(journal, range(0, 256), 1);
    await journal.commit();
    await logBlocks(journal, range(256, 456), 2, range(0, 10));
    await journal.commit();
    await logBlocks(journal, range(456, 712), 3);
    await journal.commit();
    await logBlocks(journal, range(0, 256), 4);
    await journal.commit();
    expect(journal.stats.checkpoints).toBe(0);
    await logBlocks(journal, range(712, 912), 5);
    await journal.commit();
    expect(journal.stats.checkpoints).toBe(1); // tx1-4 went home to make room; tx5 wrapped
    // tx6: the superblock itself, with a new label, and a revoke of blocks tx5 logged.
    const h6 = await journal.start(9);
    for (const b of range(712, 722)) h6.revoke(b);
    const block0 = await h6.getWriteAccess(0);
    const s = decodeSuperblock(block0.subarray(SUPERBLOCK_OFFSET_BYTES, SUPERBLOCK_OFFSET_BYTES + 1024));
    s.volumeName = new Uint8Array(16);
    s.volumeName.set(new TextEncoder().encode(LABEL));
    block0.set(encodeSuperblock(s), SUPERBLOCK_OFFSET_BYTES);
    h6.dirtyMetadata(0);
    await journal.stop(h6);
    await logBlocks(journal, range(912, 920), 6);
    await journal.commit();
    journal.abort('simulated crash');
    const jsbStart = journal.superblock.start;
    expect(jsbStart).toBeGreaterThan(900); // tx5 starts near the end of the log and wraps
    // The newest committed version of each F block: tx4 for F[0,256), tx2/tx3 for
    // [256,712), tx5 for [722,912) (F[712,722) were revoked: still zero), tx6 for [912,920).
    for (let i = 0; i < FREE_COUNT; i++) {
      const tx = i < 256 ? 4 : i < 456 ? 2 : i < 712 ? 3 : i < 912 ? 5 : 6;
      expected.set(F(i), i >= 712 && i < 722 ? 'untouched' : fill(F(i), tx));
    }
  } finally {
    await device.close();
  }
  const header = await dumpe2fsHeader(crashImg);
  expect(header.features.has('needs_recovery')).toBe(true);
  expect(header.journalFeatures).toEqual(new Set(['journal_incompat_revoke', 'journal_64bit', 'journal_checksum_v3']));
});

afterAll(() => temp?.cleanup());

function checkBlocks(img: string, wanted: ReadonlyMap<number, number | 'untouched'> = expected): void {
  const bytes = readFileSync(img);
  const bad: string[] = [];
  for (const [b, want] of wanted) {
    const block = bytes.subarray(b * BS, (b + 1) * BS);
    if (want === 'untouched') {
      if (block.some((x) => x !== 0)) bad.push(`${b}: not zero`);
      continue;
    }
    const first = ESCAPED.has(b) ? block.readUInt32BE(0) === JBD2_MAGIC : block[0] === want;
    if (!first || block[4] !== want || block[BS - 1] !== want) bad.push(`${b}: ${block[0]},${block[4]} want ${want}`);
  }
  expect(bad.slice(0, 10)).toEqual([]);
}

/** e2fsck's replay also stamps its own superblock fields; nothing else may differ. */
function expectSameAsE2fsck(theirs: string, ours: string): void {
  const diff = differingBlocks(theirs, ours);
  expect(diff.filter((b) => b !== 0)).toEqual([]);
  expect(differingBytes(theirs, ours, 0, BS).filter((offset) => !E2FSCK_STAMPED_BYTES.has(offset))).toEqual([]);
}

describe('a journal written by ext4ts', () => {
  it('e2fsck -fy replays it: blocks at home, label changed, then e2fsck -fn is clean', async () => {
    const img = copyImage(crashImg, temp.dir, 'e2fsck.img');
    const fix = await e2fsck(img, ['-fy']);
    expect(fix.output).toMatch(/recovering journal/i);
    expect(fix.exitCode).toBeLessThanOrEqual(1);
    checkBlocks(img);
    expect((await dumpe2fsHeader(img)).fields['Filesystem volume name']).toBe(LABEL);
    const check = await e2fsck(img, ['-fn']);
    expect(check.complaints).toEqual([]);
    expect(check.clean).toBe(true);
  });

  it('recoverJournal replays it to the same bytes as e2fsck (whole image)', async () => {
    const theirs = copyImage(crashImg, temp.dir, 'theirs.img');
    const fix = await e2fsck(theirs, ['-fy', '-E', 'journal_only']);
    expect(fix.exitCode).toBeLessThanOrEqual(1);
    const ours = copyImage(crashImg, temp.dir, 'ours.img');
    const device = await FileDevice.open(ours);
    try {
      const sb = await readSuperblock(device);
      const report = await recoverJournal(device, await journalGeometry(ours), { fsBlockCount: sb.blocksCount });
      expect(report).toMatchObject({ transactionsReplayed: 2, blocksRevoked: 10, revokeRecords: 10, failedCommitTid: undefined });
      expect(report.blocksWritten).toBe(200 - 10 + 9);
      await setRecoverFlag(device, false);
    } finally {
      await device.close();
    }
    checkBlocks(ours);
    expectSameAsE2fsck(theirs, ours);
    expect((await e2fsck(ours, ['-fn'])).complaints).toEqual([]);
  });

  it('a torn last commit (bad checksum) is dropped by e2fsck and recoverJournal alike', async () => {
    const torn = copyImage(crashImg, temp.dir, 'torn.img');
    const geometry = await journalGeometry(torn);
    const device = await FileDevice.open(torn);
    try {
      // tx6's commit block: the only commit block with tid 6 in the log.
      const map = new LogMap(device, geometry);
      const block = new Uint8Array(BS);
      let found = -1;
      for (let j = 1; j < map.blockCount && found < 0; j++) {
        await map.read(device, j, block);
        const header = decodeJournalHeader(block);
        if (header.magic === JBD2_MAGIC && header.blockType === BlockType.COMMIT && header.sequence === 6) found = j;
      }
      expect(found).toBeGreaterThan(0);
      block[COMMIT_NSEC_OFFSET + 3] ^= 1;
      await device.write(map.offsetBytes(found), block);
    } finally {
      await device.close();
    }
    const theirs = copyImage(torn, temp.dir, 'torn-theirs.img');
    const fix = await e2fsck(theirs, ['-fy', '-E', 'journal_only']);
    expect(fix.output).toMatch(/transaction 6 was corrupt/i);
    const ours = copyImage(torn, temp.dir, 'torn-ours.img');
    const oursDevice = await FileDevice.open(ours);
    try {
      const report = await recoverJournal(oursDevice, geometry);
      expect(report).toMatchObject({ transactionsReplayed: 1, endTid: 6, failedCommitTid: 6, blocksWritten: 200 });
      await setRecoverFlag(oursDevice, false);
    } finally {
      await oursDevice.close();
    }
    const wanted = new Map(expected);
    for (let i = 712; i < 722; i++) wanted.set(FREE_FIRST + i, fill(FREE_FIRST + i, 5)); // the revoke was in tx6
    for (let i = 912; i < 920; i++) wanted.set(FREE_FIRST + i, 'untouched');
    checkBlocks(ours, wanted);
    checkBlocks(theirs, wanted);
    expectSameAsE2fsck(theirs, ours);
  });

  it('a clean close checkpoints everything, clears RECOVER and leaves an empty log e2fsck and the kernel accept', async () => {
    const img = copyImage(baseImg, temp.dir, 'clean.img');
    const geometry = await journalGeometry(img);
    const device = await FileDevice.open(img);
    const events: string[] = [];
    try {
      const journal = await Journal.open(device, geometry, {
        readBlock: async (b) => { const bytes = new Uint8Array(BS); await device.read(b * BS, bytes); return bytes; },
        onFirstDirty: async () => { events.push('set RECOVER'); await setRecoverFlag(device, true); },
        onLogEmpty: async () => { events.push('clear RECOVER'); await setRecoverFlag(device, false); },
        commitIntervalMs: 0,
      });
      for (let t = 1; t <= 3; t++) {
        const range = Array.from({ length: 100 }, (_, i) => FREE_FIRST + t * 100 + i);
        await logBlocks(journal, range, t);
        await journal.commit();
      }
      await journal.close();
    } finally {
      await device.close();
    }
    expect(events).toEqual(['set RECOVER', 'clear RECOVER']);
    const header = await dumpe2fsHeader(img);
    expect(header.features.has('needs_recovery')).toBe(false);
    expect(header.fields['Journal start']).toBe('0');
    expect(Number(header.fields['Journal sequence'])).toBe(4);
    expect(header.journalFeatures).toEqual(new Set(['journal_64bit', 'journal_checksum_v3']));
    const bytes = readFileSync(img);
    expect(bytes[(FREE_FIRST + 250) * BS + 9]).toBe(fill(FREE_FIRST + 250, 2));
    expect((await e2fsck(img, ['-fn'])).complaints).toEqual([]);
    if (loop.ok) {
      // The kernel takes over our journal superblock and writes its own transactions.
      await withLoopMount(img, (mnt) => { writeFileSync(path.join(mnt, 'after'), 'kernel\n'); });
      expect((await e2fsck(img, ['-fn'])).complaints).toEqual([]);
    }
  });

  it.skipIf(!loop.ok)('the kernel replays it on mount', async () => {
    const img = copyImage(crashImg, temp.dir, 'kernel.img');
    await withLoopMount(img, () => undefined);
    checkBlocks(img);
    expect((await dumpe2fsHeader(img)).features.has('needs_recovery')).toBe(false);
    expect((await dumpe2fsHeader(img)).fields['Filesystem volume name']).toBe(LABEL);
    const check = await e2fsck(img, ['-fn']);
    expect(check.complaints).toEqual([]);
  });
});

describe('a hand-built csum-v2 journal (older kernels: 16-bit tag checksums, 14-byte tags)', () => {
  it('e2fsck and recoverJournal replay it to the same bytes', async () => {
    const img = copyImage(baseImg, temp.dir, 'v2.img');
    const geometry = await journalGeometry(img);
    const device = await FileDevice.open(img);
    const targets = [FREE_FIRST + 1000, FREE_FIRST + 1001, FREE_FIRST + 1002];
    try {
      const map = new LogMap(device, geometry);
      const block0 = new Uint8Array(BS);
      await map.read(device, 0, block0);
      const jsb = decodeJournalSuperblock(block0);
      const tid = 10;
      Object.assign(jsb, { featureIncompat: JIncompat.CSUM_V2 | JIncompat.BIT64 | JIncompat.REVOKE, checksumType: 4, start: 1, sequenceFirst: tid });
      const seed = journalSeed(jsb.uuid);
      const tagBytes = journalTagBytes(jsb.featureIncompat);
      expect(tagBytes).toBe(14);
      const descriptor = new Uint8Array(BS);
      const dv = new DataView(descriptor.buffer);
      encodeJournalHeader(descriptor, BlockType.DESCRIPTOR, tid);
      let at = 12;
      const data = targets.map((b, i) => {
        const bytes = new Uint8Array(BS).fill(0x60 + i);
        dv.setUint32(at, b); // t_blocknr
        dv.setUint16(at + 4, journalDataChecksum(seed, tid, bytes) & 0xffff); // t_checksum
        dv.setUint16(at + 6, (i === 0 ? 0 : TagFlags.SAME_UUID) | (i === targets.length - 1 ? TagFlags.LAST_TAG : 0));
        dv.setUint32(at + 8, 0); // t_blocknr_high; then 2 bytes of padding
        at += tagBytes + (i === 0 ? 16 : 0);
        return bytes;
      });
      sealJournalBlockTail(descriptor, seed);
      const commit = new Uint8Array(BS);
      encodeJournalHeader(commit, BlockType.COMMIT, tid);
      new DataView(commit.buffer).setUint32(COMMIT_CHKSUM_OFFSET, commitBlockChecksum(commit, seed));
      for (const [j, block] of [[1, descriptor], [2, data[0]], [3, data[1]], [4, data[2]], [5, commit]] as const) {
        await device.write(map.offsetBytes(j), block);
      }
      block0.set(encodeJournalSuperblock(jsb), 0);
      await device.write(map.offsetBytes(0), block0);
      await setRecoverFlag(device, true);
    } finally {
      await device.close();
    }
    const theirs = copyImage(img, temp.dir, 'v2-theirs.img');
    const fix = await e2fsck(theirs, ['-fy', '-E', 'journal_only']);
    expect(fix.output).toMatch(/recovering journal/i);
    const oursDevice = await FileDevice.open(img);
    try {
      const report = await recoverJournal(oursDevice, geometry);
      expect(report).toMatchObject({ transactionsReplayed: 1, blocksWritten: 3, blocksFailedChecksum: [], sequenceAfter: 12 });
      await setRecoverFlag(oursDevice, false);
    } finally {
      await oursDevice.close();
    }
    // e2fsck read the same 14-byte tags: all three blocks are home in its image too.
    for (const file of [img, theirs]) {
      const bytes = readFileSync(file);
      targets.forEach((b, i) => expect(bytes[b * BS + 100]).toBe(0x60 + i));
    }
    expectSameAsE2fsck(theirs, img);
  });
});
