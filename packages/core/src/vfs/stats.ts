/**
 * Stats and BigIntStats shaped like node:fs's, built from an inode.
 *
 * Times: `xtimeMs = sec·1000 + nsec/10^6` (a float, as node computes it), Dates from the
 * rounded milliseconds; with `{ bigint: true }` every number is a bigint and
 * `xtimeNs = sec·10^9 + nsec` is exact. `birthtime` is the inode's crtime, or the epoch
 * when the inode is too small to hold one (node does the same when statx has none).
 * `dev` is derived from the filesystem UUID (no kernel device number exists here);
 * `blksize` is the filesystem block size; `blocks` counts 512-byte units.
 */
import { FileType, S_IFMT, type Timestamp } from '../format/inode.js';
import type { Ext4Inode } from '../ext4/inode.js';

/** The type tests node's Stats carry, on the prototype (like node's). */
abstract class TypeTests {
  protected abstract modeBits(): number;
  isFile(): boolean { return (this.modeBits() & S_IFMT) === FileType.REG; }
  isDirectory(): boolean { return (this.modeBits() & S_IFMT) === FileType.DIR; }
  isSymbolicLink(): boolean { return (this.modeBits() & S_IFMT) === FileType.LNK; }
  isBlockDevice(): boolean { return (this.modeBits() & S_IFMT) === FileType.BLK; }
  isCharacterDevice(): boolean { return (this.modeBits() & S_IFMT) === FileType.CHR; }
  isFIFO(): boolean { return (this.modeBits() & S_IFMT) === FileType.FIFO; }
  isSocket(): boolean { return (this.modeBits() & S_IFMT) === FileType.SOCK; }
}

export interface StatsFields<T> {
  dev: T; ino: T; mode: T; nlink: T; uid: T; gid: T; rdev: T; size: T; blksize: T; blocks: T;
  atimeMs: T; mtimeMs: T; ctimeMs: T; birthtimeMs: T;
  atime: Date; mtime: Date; ctime: Date; birthtime: Date;
}

export class Stats extends TypeTests implements StatsFields<number> {
  dev = 0; ino = 0; mode = 0; nlink = 0; uid = 0; gid = 0; rdev = 0; size = 0; blksize = 0; blocks = 0;
  atimeMs = 0; mtimeMs = 0; ctimeMs = 0; birthtimeMs = 0;
  atime = new Date(0); mtime = new Date(0); ctime = new Date(0); birthtime = new Date(0);
  protected modeBits(): number { return this.mode; }
}

export class BigIntStats extends TypeTests implements StatsFields<bigint> {
  dev = 0n; ino = 0n; mode = 0n; nlink = 0n; uid = 0n; gid = 0n; rdev = 0n; size = 0n; blksize = 0n; blocks = 0n;
  atimeMs = 0n; mtimeMs = 0n; ctimeMs = 0n; birthtimeMs = 0n;
  atimeNs = 0n; mtimeNs = 0n; ctimeNs = 0n; birthtimeNs = 0n;
  atime = new Date(0); mtime = new Date(0); ctime = new Date(0); birthtime = new Date(0);
  protected modeBits(): number { return Number(this.mode); }
}

/**
 * Device number of a character/block special file. Old encoding in i_block[0]
 * (major 8 bits, minor 8 bits); new encoding in i_block[1] (major 12, minor 20).
 * Returned as Linux's dev_t: (major << 8) | (minor & 0xff) | ((minor & ~0xff) << 12).
 */
export function deviceNumber(inode: Ext4Inode): number {
  const type = inode.mode & S_IFMT;
  if (type !== FileType.CHR && type !== FileType.BLK) return 0;
  const v = new DataView(inode.block.buffer, inode.block.byteOffset, inode.block.length);
  const old = v.getUint32(0, true);
  let major: number, minor: number;
  if (old !== 0) {
    major = (old >>> 8) & 0xff;
    minor = old & 0xff;
  } else {
    const enc = v.getUint32(4, true);
    major = (enc & 0xfff00) >>> 8;
    minor = (enc & 0xff) | ((enc >>> 12) & 0xfff00);
  }
  return major * 256 + (minor & 0xff) + (minor - (minor & 0xff)) * 4096;
}

function ms(t: Timestamp): number {
  return t.sec * 1000 + t.nsec / 1e6;
}
function ns(t: Timestamp): bigint {
  return BigInt(t.sec) * 1_000_000_000n + BigInt(t.nsec);
}
function date(msValue: number): Date {
  return new Date(Math.round(msValue));
}

export interface StatContext { dev: number; blockSizeBytes: number }

export function statsOf(inode: Ext4Inode, ctx: StatContext): Stats {
  const s = new Stats();
  s.dev = ctx.dev; s.ino = inode.ino; s.mode = inode.mode; s.nlink = inode.linksCount;
  s.uid = inode.uid; s.gid = inode.gid; s.rdev = deviceNumber(inode); s.size = inode.size;
  s.blksize = ctx.blockSizeBytes; s.blocks = inode.sectors512;
  const birth = inode.crtime ?? { sec: 0, nsec: 0 };
  s.atimeMs = ms(inode.atime); s.mtimeMs = ms(inode.mtime); s.ctimeMs = ms(inode.ctime); s.birthtimeMs = ms(birth);
  s.atime = date(s.atimeMs); s.mtime = date(s.mtimeMs); s.ctime = date(s.ctimeMs); s.birthtime = date(s.birthtimeMs);
  return s;
}

export function bigintStatsOf(inode: Ext4Inode, ctx: StatContext): BigIntStats {
  const s = new BigIntStats();
  s.dev = BigInt(ctx.dev); s.ino = BigInt(inode.ino); s.mode = BigInt(inode.mode); s.nlink = BigInt(inode.linksCount);
  s.uid = BigInt(inode.uid); s.gid = BigInt(inode.gid); s.rdev = BigInt(deviceNumber(inode)); s.size = BigInt(inode.size);
  s.blksize = BigInt(ctx.blockSizeBytes); s.blocks = BigInt(inode.sectors512);
  const birth = inode.crtime ?? { sec: 0, nsec: 0 };
  s.atimeNs = ns(inode.atime); s.mtimeNs = ns(inode.mtime); s.ctimeNs = ns(inode.ctime); s.birthtimeNs = ns(birth);
  // node: xtimeMs = sec·1000 + floor(nsec / 10^6) for bigint stats.
  const toMs = (x: bigint): bigint => (x >= 0n ? x / 1_000_000n : -((-x + 999_999n) / 1_000_000n));
  s.atimeMs = toMs(s.atimeNs); s.mtimeMs = toMs(s.mtimeNs); s.ctimeMs = toMs(s.ctimeNs); s.birthtimeMs = toMs(s.birthtimeNs);
  s.atime = date(Number(s.atimeMs)); s.mtime = date(Number(s.mtimeMs)); s.ctime = date(Number(s.ctimeMs)); s.birthtime = date(Number(s.birthtimeMs));
  return s;
}
