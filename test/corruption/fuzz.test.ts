/**
 * Seeded corruption fuzz: damage random bytes of random *metadata* blocks (superblock, GDT,
 * bitmaps, inode-table blocks in use, extent tree blocks, directory leaf / dx blocks,
 * indirect blocks, slow-symlink blocks, the journal superblock), mount, and walk the whole
 * tree reading every file. Every outcome must be success or an FsError: never another
 * exception, a hang, a write, or a read outside the filesystem or device.
 *
 * Half of the cases re-seal the damaged block's checksum afterwards, so the damage reaches
 * the structural checks behind the checksum instead of stopping at it.
 *
 *   EXT4TS_CORRUPTION_FUZZ_CASES  cases per image (default 200: 400 in all, ~20 s)
 *   EXT4TS_CORRUPTION_FUZZ_SEED   base seed (default fixed; "random" picks one and prints it)
 *   EXT4TS_CORRUPTION_FUZZ_VERBOSE=1  print every case, its outcome and its time
 *
 * A failure prints each failing case's seed; EXT4TS_CORRUPTION_FUZZ_SEED=<seed>
 * EXT4TS_CORRUPTION_FUZZ_CASES=1 replays exactly that case on both images.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { format } from '@ext4ts/core';
import { makeRng } from '../helpers/tree.js';
import { corruptionImages, type CorruptionImage } from './images.js';
import {
  blockOf, damaged, describeOutcome, gdtOf, le, runOn, sealDirLeaf, sealDxBlock, sealExtentBlock, sealGroupDesc, sealInode,
  sealSuperblock, walkTree,
} from './harness.js';

const CASES_DEFAULT = 200;
const SEED_DEFAULT = 0x5eed;
const casesPerImage = Number(process.env.EXT4TS_CORRUPTION_FUZZ_CASES ?? CASES_DEFAULT);
const seedEnv = process.env.EXT4TS_CORRUPTION_FUZZ_SEED;
const baseSeed = seedEnv === 'random' ? Math.floor(Math.random() * 2 ** 31) : Number(seedEnv ?? SEED_DEFAULT);
const verbose = process.env.EXT4TS_CORRUPTION_FUZZ_VERBOSE === '1';
if (seedEnv === 'random') console.log(`corruption fuzz: EXT4TS_CORRUPTION_FUZZ_SEED=${baseSeed}`);

type Kind = 'superblock' | 'gdt' | 'bitmap' | 'inodes' | 'extent' | 'dirleaf' | 'dxroot' | 'dxnode' | 'indirect' | 'symlink' | 'journal';

interface MetaBlock {
  pblk: number;
  kind: Kind;
  /** The inode whose checksum seed covers the block (extent / dir blocks). */
  ino?: number;
}

/** Every metadata block of the image the read path may touch, with its kind. */
function metadataBlocks(image: CorruptionImage): MetaBlock[] {
  const out: MetaBlock[] = [];
  const sbBlock = image.blockSizeBytes === 1024 ? 1 : 0;
  out.push({ pblk: sbBlock, kind: 'superblock' });
  for (let i = 0; i < image.gdtBlocks; i++) out.push({ pblk: image.gdtBlock + i, kind: 'gdt' });
  for (const b of [...image.blockBitmaps, ...image.inodeBitmaps]) out.push({ pblk: b, kind: 'bitmap' });
  const gdt = le(gdtOf(image.bytes, image));
  const inodesPerBlock = image.blockSizeBytes / image.inodeSizeBytes;
  for (let group = 0; group < image.groupCount; group++) {
    const used = image.inodesPerGroup - gdt.getUint16(group * image.descSizeBytes + 0x1c, true);
    for (let i = 0; i < Math.ceil(used / inodesPerBlock); i++) out.push({ pblk: image.inodeTables[group] + i, kind: 'inodes' });
  }
  for (const [p, blocks] of image.map.extentTreeBlocks) for (const b of blocks) out.push({ pblk: b, kind: 'extent', ino: image.map.ino.get(p) });
  for (const [p, blocks] of image.map.indirectBlocks) for (const b of blocks) out.push({ pblk: b.block, kind: 'indirect' });
  for (const [p, blocks] of image.map.dirBlocks) {
    const ino = image.map.ino.get(p);
    blocks.forEach((pblk, lblk) => {
      if (pblk === 0) return;
      const block = blockOf(image.bytes, image, pblk);
      const hashed = (le(inodeBytes(image, ino ?? 0)).getUint32(0x20, true) & format.InodeFlags.INDEX) !== 0;
      const kind: Kind = hashed && lblk === 0 ? 'dxroot' : hashed && format.isDxNode(block) ? 'dxnode' : 'dirleaf';
      out.push({ pblk, kind, ino });
    });
  }
  for (const p of image.symlinks.keys()) for (const b of image.map.dataBlocks.get(p) ?? []) out.push({ pblk: b, kind: 'symlink' });
  if (image.journalSuperblock !== undefined) out.push({ pblk: image.journalSuperblock, kind: 'journal' });
  return out;
}

function inodeBytes(image: CorruptionImage, ino: number): Uint8Array {
  const group = Math.floor((ino - 1) / image.inodesPerGroup);
  const at = image.inodeTables[group] * image.blockSizeBytes + ((ino - 1) % image.inodesPerGroup) * image.inodeSizeBytes;
  return image.bytes.subarray(at, at + image.inodeSizeBytes);
}

/** Make the damaged block's checksum valid again, so only the structural checks can object. */
function reseal(bytes: Uint8Array, image: CorruptionImage, meta: MetaBlock): void {
  switch (meta.kind) {
    case 'superblock': sealSuperblock(bytes); break;
    case 'gdt': for (let g = 0; g < image.groupCount; g++) sealGroupDesc(bytes, image, g); break;
    case 'inodes': {
      let group = 0;
      image.inodeTables.forEach((table, g) => { if (table <= meta.pblk && table >= image.inodeTables[group]) group = g; });
      const base = group * image.inodesPerGroup + (meta.pblk - image.inodeTables[group]) * (image.blockSizeBytes / image.inodeSizeBytes);
      for (let i = 0; i < image.blockSizeBytes / image.inodeSizeBytes; i++) {
        const slot = blockOf(bytes, image, meta.pblk).subarray(i * image.inodeSizeBytes, (i + 1) * image.inodeSizeBytes);
        // i_extra_isize may now be out of range; the seal is then best effort.
        if (slot.some((x) => x !== 0)) { try { sealInode(bytes, image, base + i + 1); } catch { /* left unsealed */ } }
      }
      break;
    }
    case 'extent': if (meta.ino !== undefined) { try { sealExtentBlock(bytes, image, meta.pblk, meta.ino); } catch { /* bad eh_max */ } } break;
    case 'dirleaf': if (meta.ino !== undefined) sealDirLeaf(bytes, image, meta.pblk, meta.ino); break;
    case 'dxroot': if (meta.ino !== undefined) sealDxBlock(bytes, image, meta.pblk, meta.ino, 0x18 + blockOf(bytes, image, meta.pblk)[0x1d]); break;
    case 'dxnode': if (meta.ino !== undefined) sealDxBlock(bytes, image, meta.pblk, meta.ino, 8); break;
    default: break;
  }
}

interface FuzzCase { seed: number; meta: MetaBlock; flips: { offset: number; xor: number }[]; resealed: boolean }

function makeCase(image: CorruptionImage, blocks: MetaBlock[], seed: number): FuzzCase {
  const rng = makeRng(seed);
  // Pick a kind first, then a block of that kind: the one superblock is hit as often as
  // the hundreds of directory blocks.
  const kinds = [...new Set(blocks.map((b) => b.kind))];
  const kind = kinds[Math.floor(rng() * kinds.length)];
  const ofKind = blocks.filter((b) => b.kind === kind);
  const meta = ofKind[Math.floor(rng() * ofKind.length)];
  // Superblock damage stays inside the 1024 superblock bytes (the rest of block 0 is boot sector).
  const [from, to] = meta.kind === 'superblock' && image.blockSizeBytes > 1024 ? [1024, 2048] : [0, image.blockSizeBytes];
  // Mostly a few bytes; sometimes a burst (a torn sector's worth of garbage).
  const count = rng() < 0.8 ? 1 + Math.floor(rng() * 4) : 16 + Math.floor(rng() * 64);
  const flips = Array.from({ length: count }, () => ({ offset: from + Math.floor(rng() * (to - from)), xor: 1 + Math.floor(rng() * 255) }));
  // A third of the cases instead set one aligned field to a boundary value: the values that
  // size and index things (0, 1, all ones, the block count) find more than random bits do.
  if (rng() < 0.35) {
    const width = rng() < 0.5 ? 2 : 4;
    const offset = from + Math.floor((rng() * (to - from)) / width) * width;
    const values = [0, 1, 2, 0xff, 0x8000, 0xffff, 0x7fffffff, 0xffffffff, image.blocksCount, image.blocksCount - 1, Math.floor(rng() * 2 ** 32)];
    const value = values[Math.floor(rng() * values.length)] % 2 ** (8 * width);
    const old = width === 2 ? le(image.bytes).getUint16(c0(image, meta) + offset, true) : le(image.bytes).getUint32(c0(image, meta) + offset, true);
    const xor = (old ^ value) >>> 0;
    return { seed, meta, flips: [0, 1, 2, 3].slice(0, width).map((k) => ({ offset: offset + k, xor: (xor >>> (8 * k)) & 0xff })).filter((f) => f.xor !== 0), resealed: rng() < 0.7 };
  }
  return { seed, meta, flips, resealed: rng() < 0.5 };
}

/** Byte offset of the block's start in the image. */
function c0(image: CorruptionImage, meta: MetaBlock): number {
  return meta.pblk * image.blockSizeBytes;
}

function applyCase(image: CorruptionImage, c: FuzzCase): Uint8Array {
  return damaged(image, (bytes) => {
    const block = blockOf(bytes, image, c.meta.pblk);
    for (const f of c.flips) block[f.offset] ^= f.xor;
    if (c.resealed) reseal(bytes, image, c.meta);
  });
}

let images: { A: CorruptionImage; B: CorruptionImage };
beforeAll(async () => { images = await corruptionImages(); });

describe('corruption fuzz', () => {
  for (const name of ['A', 'B'] as const) {
    it(`image ${name}: ${casesPerImage} random metadata corruptions give success or FsError, never a crash, hang or stray read`, async () => {
      const image = images[name];
      const blocks = metadataBlocks(image);
      const tally = new Map<string, number>();
      const failures: string[] = [];
      for (let i = 0; i < casesPerImage; i++) {
        const c = makeCase(image, blocks, baseSeed + i);
        const label = `fuzz ${name} seed ${c.seed}: ${c.meta.kind} block ${c.meta.pblk}, ${c.flips.length} bytes${c.resealed ? ', re-sealed' : ''}`;
        const startedMs = Date.now();
        const outcome = await runOn(applyCase(image, c), (fs) => walkTree(fs), label);
        if (verbose) console.log(`${label} → ${describeOutcome(outcome).split('\n')[0]} (${Date.now() - startedMs} ms)`);
        const key = outcome.kind === 'fserror' ? outcome.code : outcome.kind;
        tally.set(`${c.meta.kind}:${key}`, (tally.get(`${c.meta.kind}:${key}`) ?? 0) + 1);
        if (outcome.kind === 'other' || outcome.kind === 'violation') {
          failures.push(`${label} → ${describeOutcome(outcome).split('\n').slice(0, 6).join('\n')}\n  replay: EXT4TS_CORRUPTION_FUZZ_SEED=${c.seed} EXT4TS_CORRUPTION_FUZZ_CASES=1`);
        }
      }
      console.log(`corruption fuzz ${name} (base seed ${baseSeed}): ${[...tally].sort().map(([k, v]) => `${k}=${v}`).join(' ')}`);
      expect(failures, failures.slice(0, 10).join('\n\n')).toEqual([]);
    }, 60_000 + casesPerImage * 1_000);
  }
});
