/**
 * Reading a file's bytes: walk the block mappings over the requested range and read
 * each physically contiguous run with one device read, straight into the caller's
 * buffer where the run is block-aligned. Holes and unwritten extents read as zeros;
 * the range is clipped at i_size, so a read past EOF returns 0 bytes.
 *
 * Cost: one mapping lookup per extent (cached metadata) and one device read per
 * contiguous run; partial first/last blocks go through a one-block bounce buffer
 * (the device reads whole sectors only).
 */
import { assert } from '../assert.js';
import type { Ext4Super } from '../ext4/super.js';
import type { Ext4Inode } from '../ext4/inode.js';
import { walkMappings, type BlockMapping } from '../ext4/extents.js';

/** Largest single device read: bounds the time one request holds the device. */
export const READ_RUN_BYTES_MAX = 8 * 1024 * 1024;

/**
 * Copy file bytes [positionBytes, positionBytes + target.length) into target, clipped at
 * EOF; returns the number of bytes read.
 */
export async function readInodeData(ext4: Ext4Super, inode: Ext4Inode, target: Uint8Array, positionBytes: number): Promise<number> {
  if (positionBytes >= inode.size || target.length === 0) return 0;
  const endBytes = Math.min(inode.size, positionBytes + target.length);
  const bs = ext4.blockSizeBytes;
  const startLblk = Math.floor(positionBytes / bs);
  const endLblk = Math.ceil(endBytes / bs);
  let run: BlockMapping | undefined;
  for await (const m of walkMappings(ext4, inode, startLblk, endLblk)) {
    if (m.kind !== 'mapped') {
      if (run !== undefined) { await copyRun(ext4, run, target, positionBytes, endBytes); run = undefined; }
      zeroRange(m, bs, target, positionBytes, endBytes);
      continue;
    }
    // Merge physically contiguous extents into one device read, up to the bound.
    if (run !== undefined && run.pblk + run.len === m.pblk && (run.len + m.len) * bs <= READ_RUN_BYTES_MAX) {
      run = { ...run, len: run.len + m.len };
      continue;
    }
    if (run !== undefined) await copyRun(ext4, run, target, positionBytes, endBytes);
    run = m;
  }
  if (run !== undefined) await copyRun(ext4, run, target, positionBytes, endBytes);
  return endBytes - positionBytes;
}

/** The part of a mapping's byte range that falls inside [startBytes, endBytes). */
function clip(m: BlockMapping, bs: number, startBytes: number, endBytes: number): { fromBytes: number; toBytes: number } {
  return { fromBytes: Math.max(m.lblk * bs, startBytes), toBytes: Math.min((m.lblk + m.len) * bs, endBytes) };
}

function zeroRange(m: BlockMapping, bs: number, target: Uint8Array, startBytes: number, endBytes: number): void {
  const { fromBytes, toBytes } = clip(m, bs, startBytes, endBytes);
  if (toBytes > fromBytes) target.fill(0, fromBytes - startBytes, toBytes - startBytes);
}

/** Read one mapped run: aligned middle directly, partial edge blocks through a bounce buffer. */
async function copyRun(ext4: Ext4Super, m: BlockMapping, target: Uint8Array, startBytes: number, endBytes: number): Promise<void> {
  const bs = ext4.blockSizeBytes;
  const { fromBytes, toBytes } = clip(m, bs, startBytes, endBytes);
  if (toBytes <= fromBytes) return;
  ext4.cache.checkRange(m.pblk, m.len, 'file data');
  const deviceOf = (fileBytes: number): number => (m.pblk - m.lblk) * bs + fileBytes;
  // Whole blocks inside [fromBytes, toBytes) go straight to the target.
  const alignedFrom = Math.ceil(fromBytes / bs) * bs;
  const alignedTo = Math.floor(toBytes / bs) * bs;
  if (alignedTo > alignedFrom) {
    await ext4.device.read(deviceOf(alignedFrom), target.subarray(alignedFrom - startBytes, alignedTo - startBytes));
    if (fromBytes < alignedFrom) await copyPartial(ext4, deviceOf, fromBytes, alignedFrom, target, startBytes);
    if (alignedTo < toBytes) await copyPartial(ext4, deviceOf, alignedTo, toBytes, target, startBytes);
    return;
  }
  // The range sits inside one or two blocks without a whole block between.
  let at = fromBytes;
  while (at < toBytes) {
    const blockEnd = Math.min((Math.floor(at / bs) + 1) * bs, toBytes);
    await copyPartial(ext4, deviceOf, at, blockEnd, target, startBytes);
    at = blockEnd;
  }
}

/** Copy file bytes [fromBytes, toBytes), inside one block, via a bounce buffer. */
async function copyPartial(ext4: Ext4Super, deviceOf: (b: number) => number, fromBytes: number, toBytes: number, target: Uint8Array, startBytes: number): Promise<void> {
  const bs = ext4.blockSizeBytes;
  const blockStart = Math.floor(fromBytes / bs) * bs;
  assert(toBytes - blockStart <= bs, 'a partial copy stays inside one block');
  const bounce = new Uint8Array(bs);
  await ext4.device.read(deviceOf(blockStart), bounce);
  target.set(bounce.subarray(fromBytes - blockStart, toBytes - blockStart), fromBytes - startBytes);
}
