/**
 * format/ against the real thing: an image made by mkfs.ext4 (+ mke2fs -d) is decoded,
 * every checksum ext4ts computes must equal what e2fsprogs wrote, and encode(decode(x))
 * must give back x byte for byte.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  decodeSuperblock, encodeSuperblock, verifySuperblock, fsChecksumSeed, blockSizeBytes, groupCount, featureNames,
  featureVerdict, Incompat, RoCompat, SUPERBLOCK_OFFSET_BYTES,
} from './superblock.js';
import { decodeGroupDesc, encodeGroupDesc, verifyGroupDesc, groupDescChecksum, GroupFlags } from './group-desc.js';
import { blockBitmapChecksum, inodeBitmapChecksum, bitmapChecksumMatches } from './bitmap.js';
import { decodeInode, encodeInode, verifyInodeChecksum, inodeChecksumSeed, decodeTime, encodeTime, FileType, S_IFMT, InodeFlags } from './inode.js';
import { checkExtentNode, decodeExtent, decodeExtentIndex, verifyExtentBlock, sealExtentBlock, nodeMaxEntries } from './extent.js';
import { parseDirBlock, verifyDirBlock, sealDirBlock, DirFileType } from './dirent.js';
import { decodeDxRootInfo, dxRootCountOffset, decodeDxEntries, dxLimit, verifyDxBlock, sealDxBlock } from './htree.js';
import { dirHash, hashSeedWords } from './dirhash.js';
import { decodeJournalSuperblock, encodeJournalSuperblock, verifyJournalSuperblock } from './jbd2.js';
import { crc32c, crc32cTs, crc32cU32le, crc32cZeros } from './crc32c.js';

const BS = 4096;
let dir: string;
let img: Uint8Array;

function block(n: number): Uint8Array {
  return img.subarray(n * BS, (n + 1) * BS);
}

function sb() {
  return decodeSuperblock(img.subarray(SUPERBLOCK_OFFSET_BYTES, SUPERBLOCK_OFFSET_BYTES + 1024));
}

function gdtBytes(): Uint8Array {
  const s = sb();
  return img.slice(BS, BS + Math.ceil((groupCount(s) * s.descSize) / BS) * BS);
}

function inodeSlot(ino: number): Uint8Array {
  const s = sb();
  const group = Math.floor((ino - 1) / s.inodesPerGroup);
  const index = (ino - 1) % s.inodesPerGroup;
  const gd = decodeGroupDesc(gdtBytes(), group, s.descSize);
  const off = gd.inodeTable * BS + index * s.inodeSize;
  return img.subarray(off, off + s.inodeSize);
}

/** Leaf extents of an inode whose tree has depth ≤ 1. */
function extentsOf(ino: number) {
  const inode = decodeInode(inodeSlot(ino), sb().inodeSize);
  const h = checkExtentNode(inode.block, Number(inode.block[6] | (inode.block[7] << 8)), 4);
  const out = [];
  for (let i = 0; i < h.entries; i++) {
    if (h.depth === 0) out.push(decodeExtent(inode.block, i));
    else {
      const leaf = block(decodeExtentIndex(inode.block, i).leaf);
      const lh = checkExtentNode(leaf, h.depth - 1, nodeMaxEntries(BS));
      for (let j = 0; j < lh.entries; j++) out.push(decodeExtent(leaf, j));
    }
  }
  return out;
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ext4ts-format-'));
  const src = join(dir, 'src');
  mkdirSync(join(src, 'big'), { recursive: true });
  // 400 names overflow one 4 KiB block, so mke2fs builds an htree for big/.
  for (let i = 0; i < 400; i++) writeFileSync(join(src, 'big', `file-with-a-longish-name-${i}`), `${i}`);
  // A fragmented file (> 4 extents → an extent index block) is made with holes.
  const frag = Buffer.alloc(40 * BS);
  for (let i = 0; i < 40; i += 4) frag.fill(i + 1, i * BS, (i + 1) * BS);
  writeFileSync(join(src, 'frag'), frag);
  execFileSync('truncate', ['-s', '64M', join(dir, 'a.img')]);
  execFileSync('mkfs.ext4', ['-q', '-F', '-b', '4096', '-d', src, join(dir, 'a.img')]);
  // mke2fs -d writes linear directories; e2fsck -D re-indexes big/ into an htree.
  // (Exit code 1 = "errors corrected", which -D optimisation reports.)
  spawnSync('e2fsck', ['-fyD', join(dir, 'a.img')], { stdio: 'ignore' });
  img = new Uint8Array(readFileSync(join(dir, 'a.img')));
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('crc32c', () => {
  it('crc32c matches the ext4 test vector', () => {
    expect(crc32c(0xffffffff, new TextEncoder().encode('123456789'))).toBe(0x1cf96d7c);
  });
  it('crc32cTs chains: crc(crc(s,a),b) == crc(s,a‖b) at every split and alignment', () => {
    const data = new Uint8Array(300).map((_, i) => (i * 131 + 7) & 0xff);
    const whole = crc32cTs(0x12345678, data, 3, 300);
    for (let split = 3; split <= 300; split += 7) {
      expect(crc32cTs(crc32cTs(0x12345678, data, 3, split), data, split, 300)).toBe(whole);
    }
  });
  it('crc32cU32le and crc32cZeros equal crc32c over the bytes they stand for', () => {
    for (const [seed, value] of [[0, 0], [0xffffffff, 1], [0x12345678, 0xdeadbeef], [7, 2 ** 32 - 1]]) {
      const le = new Uint8Array(4);
      new DataView(le.buffer).setUint32(0, value, true);
      expect(crc32cU32le(seed, value)).toBe(crc32cTs(seed, le));
      for (const count of [0, 1, 2, 5]) expect(crc32cZeros(seed, count)).toBe(crc32cTs(seed, new Uint8Array(count)));
    }
  });
});

describe('superblock', () => {
  it('decodeSuperblock reads mkfs.ext4 geometry and the Debian feature set', () => {
    const s = sb();
    verifySuperblock(s, img.length);
    expect(blockSizeBytes(s)).toBe(4096);
    expect(s.blocksCount).toBe(16384);
    expect(s.inodesCount).toBe(16384);
    expect(s.descSize).toBe(64);
    expect(featureNames(s).sort()).toEqual([
      '64bit', 'dir_index', 'dir_nlink', 'ext_attr', 'extent', 'extra_isize', 'filetype', 'flex_bg', 'has_journal',
      'huge_file', 'large_file', 'metadata_csum', 'resize_inode', 'sparse_super',
    ]);
    expect(featureVerdict(s)).toEqual({ mountable: true, writable: true, reasons: [] });
  });

  it('encodeSuperblock round-trips byte for byte, checksum included', () => {
    const raw = img.subarray(1024, 2048);
    expect(Buffer.from(encodeSuperblock(sb())).equals(Buffer.from(raw))).toBe(true);
  });

  it('encodeSuperblock recomputes the checksum after a change, and verify catches a flipped byte', () => {
    const s = sb();
    s.freeInodesCount -= 1;
    const enc = encodeSuperblock(s);
    verifySuperblock(decodeSuperblock(enc), img.length);
    enc[0x40] ^= 1;
    expect(() => verifySuperblock(decodeSuperblock(enc), img.length)).toThrow(/checksum/);
  });

  it('verifySuperblock rejects geometry a device cannot hold', () => {
    expect(() => verifySuperblock(sb(), img.length / 2)).toThrowError(expect.objectContaining({ code: 'EUCLEAN' }));
  });

  it('featureVerdict refuses unknown incompat bits and is read-only for unknown ro_compat', () => {
    const s = sb();
    expect(featureVerdict({ ...s, featureIncompat: s.featureIncompat | Incompat.INLINE_DATA }).mountable).toBe(false);
    const ro = featureVerdict({ ...s, featureRoCompat: s.featureRoCompat | RoCompat.QUOTA });
    expect(ro).toMatchObject({ mountable: true, writable: false });
  });
});

describe('group descriptors and bitmaps', () => {
  it('every descriptor checksum and bitmap checksum equals what mke2fs wrote', () => {
    const s = sb();
    const seed = fsChecksumSeed(s);
    const gdt = gdtBytes();
    const ctx = { metadataCsum: true, gdtCsum: false, fsSeed: seed, uuid: s.uuid, descSize: s.descSize };
    for (let g = 0; g < groupCount(s); g++) {
      verifyGroupDesc(gdt, g, ctx);
      const gd = decodeGroupDesc(gdt, g, s.descSize);
      if ((gd.flags & GroupFlags.BLOCK_UNINIT) === 0) {
        const want = blockBitmapChecksum(seed, block(gd.blockBitmap), s.clustersPerGroup);
        expect(bitmapChecksumMatches(want, gd.blockBitmapCsum, s.descSize)).toBe(true);
      }
      if ((gd.flags & GroupFlags.INODE_UNINIT) === 0) {
        const want = inodeBitmapChecksum(seed, block(gd.inodeBitmap), s.inodesPerGroup);
        expect(bitmapChecksumMatches(want, gd.inodeBitmapCsum, s.descSize)).toBe(true);
      }
      const copy = gdt.slice();
      encodeGroupDesc(gd, copy, g, s.descSize);
      expect(Buffer.from(copy).equals(Buffer.from(gdt))).toBe(true);
    }
  });

  it('groupDescChecksum changes when a field changes', () => {
    const s = sb();
    const gdt = gdtBytes();
    const ctx = { metadataCsum: true, gdtCsum: false, fsSeed: fsChecksumSeed(s), uuid: s.uuid, descSize: s.descSize };
    const before = groupDescChecksum(gdt, 0, ctx);
    gdt[0x0c] ^= 1;
    expect(groupDescChecksum(gdt, 0, ctx)).not.toBe(before);
    expect(() => verifyGroupDesc(gdt, 0, ctx)).toThrowError(expect.objectContaining({ code: 'EBADMSG' }));
  });
});

describe('inodes', () => {
  it('decodeInode reads root and lost+found as mke2fs made them, checksums verified', () => {
    const s = sb();
    const seed = fsChecksumSeed(s);
    for (const ino of [1, 2, 7, 8, 11]) {
      const inode = decodeInode(inodeSlot(ino), s.inodeSize);
      verifyInodeChecksum(inode.raw, inodeChecksumSeed(seed, ino, inode.generation), ino);
      expect(Buffer.from(encodeInode(inode)).equals(Buffer.from(inode.raw))).toBe(true);
    }
    const root = decodeInode(inodeSlot(2), s.inodeSize);
    expect(root.mode & S_IFMT).toBe(FileType.DIR);
    expect(root.mode & 0o7777).toBe(0o755);
    expect(root.flags & InodeFlags.EXTENTS).toBe(InodeFlags.EXTENTS);
    expect(root.extraIsize).toBe(32);
    const lpf = decodeInode(inodeSlot(11), s.inodeSize);
    expect(lpf.mode & 0o7777).toBe(0o700);
    expect(lpf.size).toBe(16384);
  });

  it('encodeInode with a seed reproduces the stored checksum; a flipped byte fails verification', () => {
    const s = sb();
    const inode = decodeInode(inodeSlot(2), s.inodeSize);
    const seed = inodeChecksumSeed(fsChecksumSeed(s), 2, inode.generation);
    const enc = encodeInode(inode, { inodeSeed: seed });
    expect(Buffer.from(enc).equals(Buffer.from(inode.raw))).toBe(true);
    enc[0x10] ^= 0x80;
    expect(() => verifyInodeChecksum(enc, seed, 2)).toThrowError(expect.objectContaining({ code: 'EBADMSG' }));
  });

  it('decodeTime/encodeTime cover pre-1970, 2038 and 2446 with nanoseconds', () => {
    for (const t of [
      { sec: 0, nsec: 0 }, { sec: -1, nsec: 999_999_999 }, { sec: -(2 ** 31), nsec: 1 }, { sec: 2 ** 31 - 1, nsec: 5 },
      { sec: 2 ** 31, nsec: 123_456_789 }, { sec: 2 ** 32 + 17, nsec: 0 }, { sec: 2 ** 34 - 2 ** 31 - 1, nsec: 42 },
    ]) {
      const { base, extra } = encodeTime(t);
      expect(decodeTime(base, extra)).toEqual(t);
    }
    // The kernel's own encoding of 2038-01-19T03:14:08Z: base 0x80000000, epoch bits 01.
    expect(encodeTime({ sec: 2 ** 31, nsec: 0 })).toEqual({ base: 0x80000000, extra: 1 });
  });
});

describe('extent trees', () => {
  it('the journal inode extents cover its whole size, checkExtentNode accepts them', () => {
    const s = sb();
    const j = decodeInode(inodeSlot(8), s.inodeSize);
    const total = extentsOf(8).reduce((n, e) => n + e.len, 0);
    expect(total * BS).toBe(j.size);
  });

  it('a fragmented file gets an index block whose tail checksum verifies and re-seals identically', () => {
    const s = sb();
    const ino = findName(2, 'frag');
    const inode = decodeInode(inodeSlot(ino), s.inodeSize);
    expect(inode.block[6]).toBe(1); // depth 1
    const leafNo = decodeExtentIndex(inode.block, 0).leaf;
    const leaf = block(leafNo).slice();
    const seed = inodeChecksumSeed(fsChecksumSeed(s), ino, inode.generation);
    verifyExtentBlock(leaf, seed, leafNo);
    const copy = leaf.slice();
    copy.fill(0, 4092);
    sealExtentBlock(copy, seed);
    expect(Buffer.from(copy).equals(Buffer.from(leaf))).toBe(true);
    expect(extentsOf(ino).map((e) => e.lblk)).toEqual([0, 4, 8, 12, 16, 20, 24, 28, 32, 36]);
    leaf[20] ^= 1;
    expect(() => verifyExtentBlock(leaf, seed, leafNo)).toThrowError(expect.objectContaining({ code: 'EBADMSG' }));
  });

  it('checkExtentNode rejects out-of-order extents and a bad depth', () => {
    const node = new Uint8Array(60);
    const v = new DataView(node.buffer);
    v.setUint16(0, 0xf30a, true); v.setUint16(2, 2, true); v.setUint16(4, 4, true);
    v.setUint32(12, 10, true); v.setUint16(16, 5, true); v.setUint32(20, 100, true);
    v.setUint32(24, 12, true); v.setUint16(28, 1, true); v.setUint32(32, 200, true);
    expect(() => checkExtentNode(node, 0, 4)).toThrow(/overlaps|order/);
    expect(() => checkExtentNode(node, 1, 4)).toThrow(/depth/);
  });
});

function dirBlocks(ino: number): Uint8Array[] {
  return extentsOf(ino).flatMap((e) => Array.from({ length: e.len }, (_, i) => block(e.pblk + i)));
}

function findName(dirIno: number, name: string): number {
  for (const b of dirBlocks(dirIno)) {
    if (b.subarray(0, 4).every((x) => x === 0) && new DataView(b.buffer, b.byteOffset).getUint16(4, true) === BS) continue;
    for (const e of parseDirBlock(b, true)) if (new TextDecoder().decode(e.name) === name) return e.inode;
  }
  throw new Error(`${name} not found`);
}

describe('directories', () => {
  it('parseDirBlock lists the root; the 0xDE tail checksum verifies and re-seals identically', () => {
    const s = sb();
    const root = decodeInode(inodeSlot(2), s.inodeSize);
    const seed = inodeChecksumSeed(fsChecksumSeed(s), 2, root.generation);
    const blk = dirBlocks(2)[0].slice();
    verifyDirBlock(blk, seed);
    const names = parseDirBlock(blk, true).filter((e) => e.inode !== 0).map((e) => new TextDecoder().decode(e.name));
    expect(names).toEqual(expect.arrayContaining(['.', '..', 'lost+found', 'big', 'frag']));
    expect(parseDirBlock(blk, true)[0]).toMatchObject({ inode: 2, fileType: DirFileType.DIR, recLen: 12 });
    const copy = blk.slice();
    copy.fill(0, BS - 4);
    sealDirBlock(copy, seed);
    expect(Buffer.from(copy).equals(Buffer.from(blk))).toBe(true);
  });

  it('parseDirBlock refuses a rec_len that runs past the block', () => {
    const blk = dirBlocks(2)[0].slice();
    new DataView(blk.buffer).setUint16(4, 8000, true);
    expect(() => parseDirBlock(blk, true)).toThrowError(expect.objectContaining({ code: 'EUCLEAN' }));
  });

  it('an htree root made by mke2fs decodes, its dx checksum verifies, and every name hashes into its leaf', () => {
    const s = sb();
    const ino = findName(2, 'big');
    const inode = decodeInode(inodeSlot(ino), s.inodeSize);
    expect(inode.flags & InodeFlags.INDEX).toBe(InodeFlags.INDEX);
    const seed = inodeChecksumSeed(fsChecksumSeed(s), ino, inode.generation);
    const blocks = dirBlocks(ino);
    const info = decodeDxRootInfo(blocks[0]);
    expect(info.indirectLevels).toBe(0);
    const co = dxRootCountOffset(info);
    verifyDxBlock(blocks[0], co, seed, 'dx root');
    const resealed = blocks[0].slice();
    resealed.fill(0, co + 507 * 8 + 4, co + 507 * 8 + 8);
    sealDxBlock(resealed, co, seed);
    expect(Buffer.from(resealed).equals(Buffer.from(blocks[0]))).toBe(true);
    const dx = decodeDxEntries(blocks[0], co, dxLimit(BS, co, true), 'dx root');
    const version = info.hashVersion + ((s.flags & 2) !== 0 ? 3 : 0);
    const seedWords = hashSeedWords(s.hashSeed);
    let seen = 0;
    dx.entries.forEach((entry, i) => {
      const hi = i + 1 < dx.entries.length ? (dx.entries[i + 1].hash & ~1) >>> 0 : 2 ** 32;
      for (const e of parseDirBlock(blocks[entry.block], true)) {
        if (e.inode === 0) continue;
        const h = dirHash(e.name, version, seedWords).hash;
        expect(h >= entry.hash - (entry.hash & 1) && h < hi).toBe(true);
        seen++;
      }
    });
    expect(seen).toBe(400);
  });
});

describe('dirHash', () => {
  const hello = new TextEncoder().encode('hello');
  it('matches debugfs dx_hash vectors with the default seed', () => {
    expect(dirHash(hello, 0).hash).toBe(0x32252546);
    expect(dirHash(hello, 1)).toEqual({ hash: 0x1746da32, minor: 0x420013b5 });
    expect(dirHash(hello, 2)).toEqual({ hash: 0x6f5bb1a8, minor: 0x231917c2 });
  });
  it('matches vectors with a real seed, long names and signed/unsigned bytes', () => {
    const uuid = Buffer.from('72ec60fd9dea45ca955c529660aea996', 'hex');
    const seed = hashSeedWords(uuid);
    expect(dirHash(new TextEncoder().encode('lost+found'), 1, seed)).toEqual({ hash: 0xdf3a3dac, minor: 0x712259c0 });
    expect(dirHash(new TextEncoder().encode('x'.repeat(40)), 1, seed)).toEqual({ hash: 0x16dcbbf4, minor: 0x8e386576 });
    const e = new Uint8Array([0xc3, 0xa9]);
    expect(dirHash(e, 1)).toEqual({ hash: 0x89d4704e, minor: 0x75d52d82 });
    expect(dirHash(e, 4)).toEqual({ hash: 0xfda9f3f8, minor: 0x69788442 });
  });
  it('agrees with debugfs dx_hash for random names of every length class', () => {
    const names = ['a', 'ab', 'abc', 'abcd', 'x'.repeat(31), 'y'.repeat(32), 'z'.repeat(33), 'q'.repeat(255), 'naïve-ü', '日本語'];
    const script = names.flatMap((n) => ['half_md4', 'tea', 'legacy'].map((h) => `dx_hash -h ${h} -s 72ec60fd-9dea-45ca-955c-529660aea996 ${n}`));
    writeFileSync(join(dir, 'cmds'), script.join('\n') + '\n');
    const out = execFileSync('debugfs', ['-f', join(dir, 'cmds'), join(dir, 'a.img')], { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
    const got = [...out.matchAll(/Hash of .* is (0x[0-9a-f]+) \(minor (0x[0-9a-f]+)\)/g)].map((m) => [Number(m[1]), Number(m[2])]);
    expect(got.length).toBe(script.length);
    const seed = hashSeedWords(Buffer.from('72ec60fd9dea45ca955c529660aea996', 'hex'));
    let k = 0;
    for (const n of names) {
      for (const v of [1, 2, 0]) {
        const mine = dirHash(new TextEncoder().encode(n), v, seed);
        expect([mine.hash, mine.minor], `${n} v${v}`).toEqual(got[k++]);
      }
    }
  });
});

describe('jbd2 superblock', () => {
  it('decodes the mke2fs journal superblock and round-trips it', () => {
    const s = sb();
    const first = extentsOf(8)[0];
    const jsbBytes = block(first.pblk).subarray(0, 1024);
    const jsb = decodeJournalSuperblock(jsbBytes);
    const total = extentsOf(8).reduce((n, e) => n + e.len, 0);
    verifyJournalSuperblock(jsb, blockSizeBytes(s), total);
    expect(jsb).toMatchObject({ blockSize: 4096, maxLen: 1024, first: 1, start: 0, sequenceFirst: 1, featureIncompat: 0 });
    expect(Buffer.from(encodeJournalSuperblock(jsb)).equals(Buffer.from(jsbBytes))).toBe(true);
  });
});
