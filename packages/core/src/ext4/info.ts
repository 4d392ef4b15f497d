/**
 * A `dumpe2fs -h`-style report of a superblock (and journal superblock), with the same
 * key names and value formats, so the two can be compared line by line in tests.
 * Pure: takes decoded structures, returns [key, value] pairs.
 */
import {
  type Superblock, featureNames, blockSizeBytes, SbFlags, State, Compat, RoCompat,
} from '../format/superblock.js';
import { type JournalSuperblock, JIncompat, JCompat, decodeJournalSuperblock } from '../format/jbd2.js';
import type { Ext4Super } from './super.js';
import { readInode } from './inode.js';
import { mapBlock } from './extents.js';

export type ReportLine = readonly [key: string, value: string];

function uuidString(b: Uint8Array): string {
  const h = Buffer.from(b).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function cString(b: Uint8Array): string {
  const end = b.indexOf(0);
  return Buffer.from(end < 0 ? b : b.subarray(0, end)).toString('utf8');
}

/** ctime(3)-style date in UTC, as dumpe2fs prints with TZ=UTC; 0 is "n/a". */
export function ctimeString(sec: number): string {
  if (sec === 0) return 'n/a';
  const d = new Date(sec * 1000);
  const day = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'][d.getUTCDay()];
  const mon = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'][d.getUTCMonth()];
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${day} ${mon} ${String(d.getUTCDate()).padStart(2, ' ')} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} ${d.getUTCFullYear()}`;
}

function stateString(state: number): string {
  const parts = [(state & State.VALID_FS) !== 0 ? 'clean' : 'not clean'];
  if ((state & State.ERROR_FS) !== 0) parts.push('with errors');
  if ((state & State.ORPHAN_FS) !== 0) parts.push('orphans being recovered');
  return parts.join(' ');
}

const HASH_NAMES = ['legacy', 'half_md4', 'tea', 'legacy_unsigned', 'half_md4_unsigned', 'tea_unsigned'];
const ERRORS = ['Unknown', 'Continue', 'Remount read-only', 'Panic'];

function mountOptsString(opts: number): string {
  const flags: [number, string][] = [[0x1, 'debug'], [0x2, 'bsdgroups'], [0x4, 'user_xattr'], [0x8, 'acl'], [0x10, 'uid16']];
  const out = flags.filter(([bit]) => (opts & bit) !== 0).map(([, n]) => n);
  // Bits 0x60 hold one data mode, not three flags.
  const mode = ['', 'journal_data', 'journal_data_ordered', 'journal_data_writeback'][(opts >>> 5) & 3];
  if (mode !== '') out.push(mode);
  return out.length === 0 ? '(none)' : out.join(' ');
}

export function superblockReport(sb: Superblock): ReportLine[] {
  const bs = blockSizeBytes(sb);
  const flags: string[] = [];
  if ((sb.flags & SbFlags.SIGNED_HASH) !== 0) flags.push('signed_directory_hash');
  if ((sb.flags & SbFlags.UNSIGNED_HASH) !== 0) flags.push('unsigned_directory_hash');
  if ((sb.flags & SbFlags.TEST_FS) !== 0) flags.push('test_filesystem');
  const lines: ReportLine[] = [
    ['Filesystem volume name', cString(sb.volumeName) || '<none>'],
    ['Last mounted on', cString(sb.lastMounted) || '<not available>'],
    ['Filesystem UUID', uuidString(sb.uuid)],
    ['Filesystem magic number', '0xEF53'],
    ['Filesystem revision #', `${sb.revLevel} (${sb.revLevel === 0 ? 'original' : 'dynamic'})`],
    ['Filesystem features', featureNames(sb).join(' ')],
    ['Filesystem flags', flags.join(' ')],
    ['Default mount options', mountOptsString(sb.defaultMountOpts)],
    ['Filesystem state', stateString(sb.state)],
    ['Errors behavior', ERRORS[sb.errors] ?? 'Unknown'],
    ['Filesystem OS type', ['Linux', 'Hurd', 'Masix', 'FreeBSD', 'Lites'][sb.creatorOs] ?? '(unknown os)'],
    ['Inode count', String(sb.inodesCount)],
    ['Block count', String(sb.blocksCount)],
    ['Reserved block count', String(sb.rBlocksCount)],
  ];
  if (sb.overheadClusters !== 0) lines.push(['Overhead clusters', String(sb.overheadClusters)]);
  lines.push(
    ['Free blocks', String(sb.freeBlocksCount)],
    ['Free inodes', String(sb.freeInodesCount)],
    ['First block', String(sb.firstDataBlock)],
    ['Block size', String(bs)],
    ['Fragment size', String(1024 * 2 ** sb.logClusterSize)],
  );
  if (sb.descSize !== 0) lines.push(['Group descriptor size', String(sb.descSize)]);
  if (sb.reservedGdtBlocks !== 0) lines.push(['Reserved GDT blocks', String(sb.reservedGdtBlocks)]);
  lines.push(
    ['Blocks per group', String(sb.blocksPerGroup)],
    ['Fragments per group', String(sb.clustersPerGroup)],
    ['Inodes per group', String(sb.inodesPerGroup)],
    ['Inode blocks per group', String(Math.ceil((sb.inodesPerGroup * sb.inodeSize) / bs))],
  );
  if (sb.logGroupsPerFlex !== 0) lines.push(['Flex block group size', String(2 ** sb.logGroupsPerFlex)]);
  lines.push(
    ['Filesystem created', ctimeString(sb.mkfsTime)],
    ['Last mount time', ctimeString(sb.mtime)],
    ['Last write time', ctimeString(sb.wtime)],
    ['Mount count', String(sb.mntCount)],
    ['Maximum mount count', String((sb.maxMntCount << 16) >> 16)],
    ['Last checked', ctimeString(sb.lastcheck)],
    ['Check interval', sb.checkinterval === 0 ? '0 (<none>)' : String(sb.checkinterval)],
  );
  return [...lines, ...tailReport(sb)];
}

function tailReport(sb: Superblock): ReportLine[] {
  const lines: ReportLine[] = [];
  const kb = sb.kbytesWritten;
  if (kb !== 0) lines.push(['Lifetime writes', kb < 8192 ? `${kb} kB` : kb < 8192 * 1024 ? `${Math.round(kb / 1024)} MB` : `${Math.round(kb / 1024 / 1024)} GB`]);
  lines.push(
    ['Reserved blocks uid', `${sb.defResuid}${sb.defResuid === 0 ? ' (user root)' : ''}`],
    ['Reserved blocks gid', `${sb.defResgid}${sb.defResgid === 0 ? ' (group root)' : ''}`],
    ['First inode', String(sb.firstIno)],
    ['Inode size', String(sb.inodeSize)],
  );
  if (sb.minExtraIsize !== 0) lines.push(['Required extra isize', String(sb.minExtraIsize)]);
  if (sb.wantExtraIsize !== 0) lines.push(['Desired extra isize', String(sb.wantExtraIsize)]);
  if (sb.journalInum !== 0) lines.push(['Journal inode', String(sb.journalInum)]);
  lines.push(['Default directory hash', HASH_NAMES[sb.defHashVersion] ?? String(sb.defHashVersion)]);
  lines.push(['Directory Hash Seed', uuidString(sb.hashSeed)]);
  if (sb.jnlBackupType === 1) lines.push(['Journal backup', 'inode blocks']);
  if ((sb.featureRoCompat & RoCompat.METADATA_CSUM) !== 0) {
    lines.push(['Checksum type', sb.checksumType === 1 ? 'crc32c' : String(sb.checksumType)]);
    lines.push(['Checksum', `0x${sb.checksum.toString(16).padStart(8, '0')}`]);
  }
  return lines;
}

export function journalReport(jsb: JournalSuperblock, blockSize: number): ReportLine[] {
  const feats: string[] = [];
  if ((jsb.featureCompat & JCompat.CHECKSUM) !== 0) feats.push('journal_checksum');
  const inc: [number, string][] = [[JIncompat.REVOKE, 'journal_incompat_revoke'], [JIncompat.BIT64, 'journal_64bit'], [JIncompat.ASYNC_COMMIT, 'journal_async_commit'], [JIncompat.CSUM_V2, 'journal_checksum_v2'], [JIncompat.CSUM_V3, 'journal_checksum_v3'], [JIncompat.FAST_COMMIT, 'journal_fast_commit']];
  for (const [bit, name] of inc) if ((jsb.featureIncompat & bit) !== 0) feats.push(name);
  const sizeK = (jsb.maxLen * blockSize) / 1024;
  const lines: ReportLine[] = [
    ['Journal features', feats.length === 0 ? '(none)' : feats.join(' ')],
    ['Total journal size', sizeK < 8192 ? `${sizeK}k` : `${sizeK / 1024}M`],
    ['Total journal blocks', String(jsb.maxLen)],
    ['Max transaction length', String(jsb.maxLen - jsb.numFcBlocks)],
    ['Fast commit length', String(jsb.numFcBlocks)],
    ['Journal sequence', `0x${jsb.sequenceFirst.toString(16).padStart(8, '0')}`],
    ['Journal start', String(jsb.start)],
  ];
  if ((jsb.featureIncompat & (JIncompat.CSUM_V2 | JIncompat.CSUM_V3)) !== 0) {
    lines.push(['Journal checksum type', 'crc32c'], ['Journal checksum', `0x${jsb.checksum.toString(16).padStart(8, '0')}`]);
  }
  return lines;
}

/** Render lines as dumpe2fs does: key, colon, padded to column 26. */
export function formatReport(lines: readonly ReportLine[]): string {
  return lines.map(([k, v]) => `${`${k}:`.padEnd(26)}${v}`).join('\n');
}

/** Read and decode the journal superblock of an open filesystem (undefined without a journal). */
export async function readJournalSuperblock(ext4: Ext4Super): Promise<JournalSuperblock | undefined> {
  if ((ext4.sb.featureCompat & Compat.HAS_JOURNAL) === 0 || ext4.sb.journalInum === 0) return undefined;
  const inode = await readInode(ext4, ext4.sb.journalInum);
  const first = await mapBlock(ext4, inode, 0);
  if (first.kind !== 'mapped') return undefined;
  const block = new Uint8Array(ext4.blockSizeBytes);
  await ext4.device.read(first.pblk * ext4.blockSizeBytes, block);
  return decodeJournalSuperblock(block);
}
