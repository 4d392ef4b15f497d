import { describe, expect, it } from 'vitest';
import { MemoryDevice } from '../device/memory-device.js';
import {
  BlockType, JBD2_MAGIC, JIncompat, TagFlags, decodeJournalHeader, decodeJournalSuperblock, encodeJournalSuperblock,
} from '../format/jbd2.js';
import { FsError } from '../vfs/errors.js';
import { tagsPerDescriptor } from './commit.js';
import { Journal, type JournalOptions } from './journal.js';
import { LogMap, type JournalExtent, type JournalGeometry } from './log-map.js';
import { decodeDescriptorTags, recoverJournal } from './recovery.js';
import { RecordingDevice, crashImage, formatJournal, prng, type DeviceOp } from './testing.js';

// A 2 MiB device of 1 KiB blocks; the 1024-block journal is split in two extents so
// runs and wrap-around cross an extent boundary: journal [0,400) → fs [600,1000),
// journal [400,1024) → fs [1100,1724). Metadata blocks used by the tests: [10, 500).
const BS = 1024;
const DEVICE_BYTES = 2 * 1024 * 1024;
const EXTENTS: JournalExtent[] = [
  { logicalStart: 0, physicalStart: 600, blockCount: 400 },
  { logicalStart: 400, physicalStart: 1100, blockCount: 624 },
];
const GEOMETRY: JournalGeometry = { blockSizeBytes: BS, extents: EXTENTS };
const UUID = Uint8Array.from({ length: 16 }, (_, i) => 0x10 + i);
const META_FIRST = 10;
const META_END = 500;

async function freshDevice(): Promise<MemoryDevice> {
  const device = MemoryDevice.create({ sizeBytes: DEVICE_BYTES });
  // Recognisable home contents: block b is filled with (b & 0xff).
  const image = new Uint8Array(DEVICE_BYTES);
  for (let b = META_FIRST; b < META_END; b++) image.fill(b & 0xff, b * BS, (b + 1) * BS);
  await device.write(0, image);
  await formatJournal(device, EXTENTS, { blockSizeBytes: BS, maxLen: 1024, uuid: UUID });
  return device;
}

async function readBlock(device: { read(o: number, t: Uint8Array): Promise<void> }, blockNr: number): Promise<Uint8Array> {
  const bytes = new Uint8Array(BS);
  await device.read(blockNr * BS, bytes);
  return bytes;
}

async function wholeImage(device: MemoryDevice | RecordingDevice): Promise<Uint8Array> {
  const bytes = new Uint8Array(DEVICE_BYTES);
  await device.read(0, bytes);
  return bytes;
}

async function deviceFrom(image: Uint8Array): Promise<MemoryDevice> {
  const device = MemoryDevice.create({ sizeBytes: DEVICE_BYTES });
  await device.write(0, image);
  return device;
}

function openJournal(device: MemoryDevice | RecordingDevice, options: Partial<JournalOptions> = {}): Promise<Journal> {
  return Journal.open(device, GEOMETRY, { readBlock: (b) => readBlock(device, b), commitIntervalMs: 0, ...options });
}

/** One handle that fills each block with `value` (byte 0 stays distinct per block). */
async function writeBlocks(journal: Journal, blocks: readonly number[], value: number): Promise<void> {
  const handle = await journal.start(blocks.length);
  for (const b of blocks) {
    const buf = await handle.getWriteAccess(b);
    buf.fill(value);
    handle.dirtyMetadata(b);
  }
  await journal.stop(handle);
}

async function jsbOf(device: MemoryDevice): Promise<ReturnType<typeof decodeJournalSuperblock>> {
  return decodeJournalSuperblock(await readBlock(device, EXTENTS[0].physicalStart));
}

describe('Journal commit + recoverJournal', () => {
  it('a committed transaction is in the log only, and recovery writes it home', async () => {
    const device = await freshDevice();
    let firstDirty = 0;
    const journal = await openJournal(device, { onFirstDirty: async () => { firstDirty++; } });
    await writeBlocks(journal, [20, 21, 400], 0xab);
    await journal.commit();
    journal.abort('test crash');
    expect(firstDirty).toBe(1);
    expect((await readBlock(device, 20))[5]).toBe(20); // home untouched before checkpoint
    const jsb = await jsbOf(device);
    expect(jsb.start).toBe(1);
    expect(jsb.sequenceFirst).toBe(1);
    expect(jsb.featureIncompat).toBe(JIncompat.BIT64 | JIncompat.CSUM_V3);
    expect(jsb.checksumType).toBe(4);

    const report = await recoverJournal(device, GEOMETRY);
    expect(report).toMatchObject({ needed: true, startTid: 1, endTid: 2, transactionsReplayed: 1, blocksWritten: 3, sequenceAfter: 3 });
    for (const b of [20, 21, 400]) expect((await readBlock(device, b)).every((x) => x === 0xab)).toBe(true);
    expect((await readBlock(device, 22))[0]).toBe(22);
    const after = await jsbOf(device);
    expect(after.start).toBe(0);
    expect(after.sequenceFirst).toBe(3);
    // A second recovery has nothing to do.
    expect((await recoverJournal(device, GEOMETRY)).needed).toBe(false);
  });

  it('escapes a block that starts with the jbd2 magic and restores it on replay', async () => {
    const device = await freshDevice();
    const journal = await openJournal(device);
    const handle = await journal.start(1);
    const buf = await handle.getWriteAccess(30);
    buf.fill(0x5a);
    new DataView(buf.buffer, buf.byteOffset).setUint32(0, JBD2_MAGIC);
    handle.dirtyMetadata(30);
    await journal.stop(handle);
    await journal.commit();
    journal.abort();
    // Journal block 1 = descriptor, block 2 = the escaped copy.
    const map = new LogMap(device, GEOMETRY);
    const descriptor = await readBlock(device, map.fsBlock(1));
    const tags = decodeDescriptorTags(descriptor, { incompat: JIncompat.BIT64 | JIncompat.CSUM_V3, tagBytes: 16, tailBytes: 4 });
    expect(tags).toHaveLength(1);
    expect(tags[0].flags & TagFlags.ESCAPE).toBe(TagFlags.ESCAPE);
    expect(tags[0].flags & TagFlags.LAST_TAG).toBe(TagFlags.LAST_TAG);
    expect(Array.from((await readBlock(device, map.fsBlock(2))).subarray(0, 5))).toEqual([0, 0, 0, 0, 0x5a]);
    await recoverJournal(device, GEOMETRY);
    const home = await readBlock(device, 30);
    expect(new DataView(home.buffer).getUint32(0)).toBe(JBD2_MAGIC);
    expect(home[4]).toBe(0x5a);
  });

  it('a revoke hides earlier copies of a block; a later transaction logging it again wins', async () => {
    const device = await freshDevice();
    const journal = await openJournal(device);
    await writeBlocks(journal, [40, 41, 42], 0x11); // tid 1
    await journal.commit();
    let h = await journal.start(1); // tid 2: revoke 40 and 41
    h.revoke(40);
    h.revoke(41);
    await journal.stop(h);
    await journal.commit();
    await writeBlocks(journal, [41], 0x33); // tid 3: 41 is metadata again
    await journal.commit();
    h = await journal.start(1); // tid 4: revoke and re-log 42 in one transaction = logged
    h.revoke(42);
    const again = h.getCreateAccess(42);
    again.fill(0x44);
    h.dirtyMetadata(42);
    await journal.stop(h);
    await journal.commit();
    journal.abort();
    const jsb = await jsbOf(device);
    expect(jsb.featureIncompat & JIncompat.REVOKE).toBe(JIncompat.REVOKE);
    const report = await recoverJournal(device, GEOMETRY);
    expect(report.transactionsReplayed).toBe(4);
    expect(report.revokeRecords).toBe(2);
    expect(report.blocksRevoked).toBe(2); // 40 and 41 of tid 1
    expect((await readBlock(device, 40))[0]).toBe(40);
    expect((await readBlock(device, 41))[0]).toBe(0x33);
    expect((await readBlock(device, 42))[0]).toBe(0x44);
  });

  it('writes several descriptor blocks for a large transaction', async () => {
    const device = await freshDevice();
    const journal = await openJournal(device);
    const perDescriptor = tagsPerDescriptor(BS);
    expect(perDescriptor).toBe(62);
    const blocks = Array.from({ length: 150 }, (_, i) => META_FIRST + i);
    await writeBlocks(journal, blocks, 0x77);
    await journal.commit();
    journal.abort();
    const map = new LogMap(device, GEOMETRY);
    const types: number[] = [];
    for (let j = 1; j <= 150 + 3 + 1; j++) types.push(decodeJournalHeader(await readBlock(device, map.fsBlock(j))).blockType);
    expect(types[0]).toBe(BlockType.DESCRIPTOR);
    expect(types[63]).toBe(BlockType.DESCRIPTOR);
    expect(types[126]).toBe(BlockType.DESCRIPTOR);
    expect(types[153]).toBe(BlockType.COMMIT);
    const report = await recoverJournal(device, GEOMETRY);
    expect(report.blocksWritten).toBe(150);
    for (const b of blocks) expect((await readBlock(device, b))[100]).toBe(0x77);
  });

  it('ignores a torn last transaction: commit block missing, or with a bad checksum', async () => {
    for (const tear of ['missing', 'bad-checksum'] as const) {
      const device = await freshDevice();
      const recording = new RecordingDevice(device);
      const journal = await openJournal(recording);
      await writeBlocks(journal, [50], 0x01);
      await journal.commit();
      await writeBlocks(journal, [50, 51], 0x02);
      await journal.commit();
      journal.abort();
      const commitWrite = recording.ops.filter((op): op is Extract<DeviceOp, { kind: 'write' }> => op.kind === 'write' && op.fua).at(-1);
      expect(commitWrite).toBeDefined();
      const bytes = commitWrite!.bytes.slice();
      if (tear === 'missing') bytes.fill(0);
      else bytes[0x38 + 3] ^= 1; // commit nanoseconds changed (not older): checksum now wrong
      await device.write(commitWrite!.offsetBytes, bytes);
      const report = await recoverJournal(device, GEOMETRY);
      expect(report.transactionsReplayed).toBe(1);
      expect(report.endTid).toBe(2);
      expect(report.failedCommitTid).toBe(tear === 'missing' ? undefined : 2);
      expect((await readBlock(device, 50))[0]).toBe(0x01);
      expect((await readBlock(device, 51))[0]).toBe(51);
    }
  });
});

describe('Journal buffers, checkpoint, close', () => {
  it('peek shows uncommitted changes; handles share one buffer; checkpoint writes home and hands bytes back', async () => {
    const device = await freshDevice();
    const checkpointed = new Map<number, number>();
    const journal = await openJournal(device, { onCheckpointed: (b, bytes) => checkpointed.set(b, bytes[0]) });
    const h1 = await journal.start(2);
    const h2 = await journal.start(2);
    const a = await h1.getWriteAccess(60);
    const b = await h2.getWriteAccess(60);
    expect(a).toBe(b);
    a[0] = 9;
    h1.dirtyMetadata(60);
    h2.dirtyMetadata(60);
    expect(h1.creditsLeft).toBe(1);
    expect(h2.creditsLeft).toBe(2); // the block was already in the transaction
    expect(journal.peek(60)?.[0]).toBe(9);
    expect(journal.peek(61)).toBeUndefined();
    await journal.stop(h1);
    await journal.stop(h2);
    await journal.commit();
    // The next transaction gets the same live buffer; the commit kept its own copy.
    const h3 = await journal.start(1);
    const c = await h3.getWriteAccess(60);
    expect(c).toBe(a);
    c[0] = 10;
    h3.dirtyMetadata(60);
    await journal.stop(h3);
    await journal.checkpoint(); // only the committed transaction (byte 9) goes home
    expect((await readBlock(device, 60))[0]).toBe(9);
    expect(checkpointed.get(60)).toBe(9);
    expect(journal.peek(60)?.[0]).toBe(10); // still held by the running transaction
    await journal.close();
    expect((await readBlock(device, 60))[0]).toBe(10);
    expect(journal.peek(60)).toBeUndefined();
  });

  it('close checkpoints, marks the log empty and calls onLogEmpty', async () => {
    const device = await freshDevice();
    const events: string[] = [];
    const journal = await openJournal(device, {
      onFirstDirty: async () => { events.push('first-dirty'); },
      onLogEmpty: async () => { events.push('log-empty'); },
    });
    await writeBlocks(journal, [70, 71], 0x42);
    await journal.commit();
    await writeBlocks(journal, [72], 0x43);
    await journal.close();
    expect(events).toEqual(['first-dirty', 'log-empty']);
    const jsb = await jsbOf(device);
    expect(jsb.start).toBe(0);
    expect(jsb.sequenceFirst).toBe(3);
    expect((await readBlock(device, 71))[0]).toBe(0x42);
    expect((await readBlock(device, 72))[0]).toBe(0x43);
    expect((await recoverJournal(device, GEOMETRY)).needed).toBe(false);
    // Reopen: tids continue from s_sequence.
    const again = await openJournal(device);
    await writeBlocks(again, [73], 0x44);
    await again.commit();
    again.abort();
    expect((await jsbOf(device)).sequenceFirst).toBe(3);
    expect((await recoverJournal(device, GEOMETRY)).endTid).toBe(4);
  });

  it('the commit timer commits the running transaction', async () => {
    const device = await freshDevice();
    const journal = await openJournal(device, { commitIntervalMs: 20 });
    await writeBlocks(journal, [80], 0x21);
    expect(journal.stats.commits).toBe(0);
    await new Promise((resolve) => setTimeout(resolve, 80));
    expect(journal.stats.commits).toBe(1);
    await journal.close();
  });

  it('start commits a full transaction and starts the next; too many credits is ENOSPC', async () => {
    const device = await freshDevice();
    const journal = await openJournal(device, { maxTransactionBlocks: 8 });
    await writeBlocks(journal, [90, 91, 92, 93, 94, 95], 1);
    await writeBlocks(journal, [96, 97, 98], 2); // 6 + 3 > 8: the first transaction commits
    expect(journal.stats.commits).toBe(1);
    await expect(journal.start(9)).rejects.toSatisfy((e: unknown) => FsError.is(e, 'ENOSPC'));
    const h = await journal.start(2);
    expect(h.extend(3)).toBe(true);
    expect(h.extend(10)).toBe(false);
    await journal.stop(h);
    await journal.close();
  });
});

describe('Journal write ordering and crashes', () => {
  it('every commit block follows a flush after its log blocks; checkpoint writes follow a durable commit', async () => {
    const device = await freshDevice();
    const recording = new RecordingDevice(device);
    const journal = await openJournal(recording);
    const map = new LogMap(device, GEOMETRY);
    const journalByteRanges = EXTENTS.map((e) => [e.physicalStart * BS, (e.physicalStart + e.blockCount) * BS]);
    const inJournal = (offset: number): boolean => journalByteRanges.some(([s, e]) => offset >= s && offset < e);
    const rng = prng(7);
    for (let t = 0; t < 80; t++) {
      const blocks = new Set<number>();
      const count = 1 + Math.floor(rng() * 40);
      for (let k = 0; k < count; k++) blocks.add(META_FIRST + Math.floor(rng() * 200));
      await writeBlocks(journal, [...blocks], t);
      await journal.commit();
    }
    await journal.close();
    // Walk the op log as a disk would see it: parse each log write's blocks in log order
    // (descriptor → its data blocks; commit), remember which fs blocks each tid logged,
    // and which tids have a durable commit block.
    const ops = recording.ops;
    const jsbOffset = map.offsetBytes(0);
    const loggedBy = new Map<number, Set<number>>();
    const durable = new Set<number>(); // fs blocks logged by a transaction whose commit is durable
    let dataBlocksExpected = 0;
    let currentTid = -1;
    let logWritesSinceFlush = 0;
    let flushedLog = false;
    let homeWritesSinceFlush = 0;
    let commits = 0;
    let homeWrites = 0;
    for (const op of ops) {
      if (op.kind === 'flush') {
        if (logWritesSinceFlush > 0) flushedLog = true;
        logWritesSinceFlush = 0;
        homeWritesSinceFlush = 0;
        continue;
      }
      if (op.kind !== 'write') continue;
      if (!inJournal(op.offsetBytes)) {
        // Checkpoint: only blocks of durably committed transactions, never mid-commit.
        expect(logWritesSinceFlush).toBe(0);
        for (let k = 0; k < op.bytes.length / BS; k++) expect(durable.has(op.offsetBytes / BS + k)).toBe(true);
        homeWrites++;
        homeWritesSinceFlush++;
        continue;
      }
      if (op.offsetBytes === jsbOffset) {
        expect(op.fua).toBe(true);
        expect(homeWritesSinceFlush).toBe(0); // the tail moves only after home writes are flushed
        continue;
      }
      for (let k = 0; k < op.bytes.length / BS; k++) {
        const block = op.bytes.subarray(k * BS, (k + 1) * BS);
        if (dataBlocksExpected > 0) {
          dataBlocksExpected--;
          continue;
        }
        const header = decodeJournalHeader(block);
        expect(header.magic).toBe(JBD2_MAGIC);
        currentTid = header.sequence;
        if (header.blockType === BlockType.DESCRIPTOR) {
          const tags = decodeDescriptorTags(block, { incompat: JIncompat.BIT64 | JIncompat.CSUM_V3, tagBytes: 16, tailBytes: 4 });
          const set = loggedBy.get(currentTid) ?? new Set<number>();
          for (const tag of tags) set.add(tag.blockNr);
          loggedBy.set(currentTid, set);
          dataBlocksExpected = tags.length;
        } else if (header.blockType === BlockType.COMMIT) {
          expect(op.bytes.length).toBe(BS);
          expect(op.fua).toBe(true);
          expect(flushedLog).toBe(true); // descriptors and data were flushed first
          expect(logWritesSinceFlush).toBe(0);
          for (const b of loggedBy.get(currentTid) ?? []) durable.add(b);
          flushedLog = false;
          commits++;
        }
      }
      if (decodeJournalHeader(op.bytes).blockType !== BlockType.COMMIT) logWritesSinceFlush++;
    }
    expect(commits).toBe(80);
    expect(homeWrites).toBeGreaterThan(0);
    expect(journal.stats.checkpoints).toBeGreaterThan(1); // the log filled and wrapped
  });

  it('survives a crash at any write: recovery gives the state of the last durable commit (seeded)', async () => {
    const seed = 20240611;
    const rng = prng(seed);
    const device = await freshDevice();
    const base = await wholeImage(device);
    const recording = new RecordingDevice(device);
    const journal = await openJournal(recording, { maxTransactionBlocks: 64 });
    // models[c] = the metadata after c commits (block → first byte; bytes are uniform).
    const models: Map<number, number>[] = [new Map()];
    const current = new Map<number, number>();
    let commitsDone = 0;
    for (let t = 0; t < 80; t++) {
      const handles = 1 + Math.floor(rng() * 4);
      for (let k = 0; k < handles; k++) {
        const h = await journal.start(16);
        const count = 1 + Math.floor(rng() * 16);
        for (let i = 0; i < count; i++) {
          const b = META_FIRST + Math.floor(rng() * 120);
          if (rng() < 0.1) {
            h.revoke(b);
            current.delete(b);
            continue;
          }
          const buf = await h.getWriteAccess(b);
          const value = Math.floor(rng() * 256);
          buf.fill(value);
          if (value === 0xc0) new DataView(buf.buffer, buf.byteOffset).setUint32(0, JBD2_MAGIC); // escaped
          h.dirtyMetadata(b);
          current.set(b, value);
        }
        await journal.stop(h);
      }
      await journal.commit();
      commitsDone++;
      models.push(new Map(current));
      recording.mark(`commit ${commitsDone}`);
    }
    journal.abort();
    const ops = recording.ops;
    expect(journal.stats.checkpoints).toBeGreaterThan(0);
    let checked = 0;
    let durableCommits = 0;
    for (let cut = 0; cut <= ops.length; cut++) {
      if (cut > 0 && ops[cut - 1].kind === 'mark') durableCommits++;
      if (cut > 0 && ops[cut - 1].kind !== 'write' && ops[cut - 1].kind !== 'flush') continue;
      for (const keep of ['none', 'all', 'random'] as const) {
        const image = crashImage(base, ops, cut, () => keep === 'all' || (keep === 'random' && rng() < 0.5));
        const crashed = await deviceFrom(image);
        await recoverJournal(crashed, GEOMETRY);
        const recovered = await wholeImage(crashed);
        const matches = (model: Map<number, number>): boolean => {
          for (const [b, value] of model) {
            const first = value === 0xc0 ? recovered[b * BS + 4] : recovered[b * BS];
            if (first !== value || recovered[b * BS + BS - 1] !== value) return false;
          }
          return true;
        };
        // Commits whose commit() returned are there; the one in flight may or may not be.
        const ok = matches(models[durableCommits]) || (durableCommits + 1 < models.length && matches(models[durableCommits + 1]));
        if (!ok) throw new Error(`seed ${seed}: crash after op ${cut} (keep ${keep}) recovered to no committed state (durable commits ${durableCommits})`);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(300);
  });
});

describe('recoverJournal on corrupt logs', () => {
  async function deviceWithOneCommit(): Promise<MemoryDevice> {
    const device = await freshDevice();
    const journal = await openJournal(device);
    await writeBlocks(journal, [100, 101], 0x66);
    await journal.commit();
    journal.abort();
    return device;
  }

  it('a tag pointing outside the filesystem is EUCLEAN and nothing is written', async () => {
    const device = await deviceWithOneCommit();
    const before = await wholeImage(device);
    await expect(recoverJournal(device, GEOMETRY, { fsBlockCount: 101 })).rejects.toSatisfy((e: unknown) => FsError.is(e, 'EUCLEAN'));
    expect(Buffer.from(await wholeImage(device)).equals(Buffer.from(before))).toBe(true);
  });

  it('a descriptor with a bad checksum and a newer commit is EBADMSG; a bad data checksum skips the block', async () => {
    const device = await deviceWithOneCommit();
    const map = new LogMap(device, GEOMETRY);
    const descriptor = await readBlock(device, map.fsBlock(1));
    const corrupt = descriptor.slice();
    corrupt[BS - 100] ^= 0xff; // unused tag space: the tail checksum no longer matches
    await device.write(map.offsetBytes(1), corrupt);
    await expect(recoverJournal(device, GEOMETRY)).rejects.toSatisfy((e: unknown) => FsError.is(e, 'EBADMSG'));
    await device.write(map.offsetBytes(1), descriptor);
    const data = await readBlock(device, map.fsBlock(3));
    data[7] ^= 1;
    await device.write(map.offsetBytes(3), data);
    const report = await recoverJournal(device, GEOMETRY);
    expect(report.blocksFailedChecksum).toEqual([101]);
    expect((await readBlock(device, 100))[0]).toBe(0x66);
    expect((await readBlock(device, 101))[0]).toBe(101);
  });

  it('a log whose every block claims the expected tid ends with EUCLEAN, not a hang', async () => {
    const device = await freshDevice();
    const map = new LogMap(device, GEOMETRY);
    const revoke = new Uint8Array(BS);
    const view = new DataView(revoke.buffer);
    view.setUint32(0, JBD2_MAGIC);
    view.setUint32(4, BlockType.REVOKE);
    view.setUint32(8, 1);
    view.setUint32(12, 16);
    for (let j = 1; j < 1024; j++) await device.write(map.offsetBytes(j), revoke);
    const jsb = await jsbOf(device);
    jsb.start = 1;
    const block0 = new Uint8Array(BS);
    block0.set(encodeJournalSuperblock(jsb));
    await device.write(map.offsetBytes(0), block0);
    await expect(recoverJournal(device, GEOMETRY)).rejects.toSatisfy((e: unknown) => FsError.is(e, 'EUCLEAN'));
  });

  it('replays a journal without checksum features and with 32-bit tags (older kernels)', async () => {
    const device = await freshDevice();
    const map = new LogMap(device, GEOMETRY);
    // tid 5 at log block 10: descriptor with two 8-byte tags, two data blocks, commit.
    const descriptor = new Uint8Array(BS);
    const dv = new DataView(descriptor.buffer);
    dv.setUint32(0, JBD2_MAGIC); dv.setUint32(4, BlockType.DESCRIPTOR); dv.setUint32(8, 5);
    dv.setUint32(12, 200); dv.setUint16(18, 0); // tag 0: block 200, flags 0, then 16-byte uuid
    dv.setUint32(36, 201); dv.setUint16(42, TagFlags.SAME_UUID | TagFlags.LAST_TAG | TagFlags.ESCAPE);
    const d0 = new Uint8Array(BS).fill(0x0d);
    const d1 = new Uint8Array(BS).fill(0x0e);
    d1.fill(0, 0, 4);
    const commit = new Uint8Array(BS);
    const cv = new DataView(commit.buffer);
    cv.setUint32(0, JBD2_MAGIC); cv.setUint32(4, BlockType.COMMIT); cv.setUint32(8, 5);
    for (const [j, block] of [[10, descriptor], [11, d0], [12, d1], [13, commit]] as const) await device.write(map.offsetBytes(j), block);
    const jsb = await jsbOf(device);
    jsb.start = 10;
    jsb.sequenceFirst = 5;
    const block0 = new Uint8Array(BS);
    block0.set(encodeJournalSuperblock(jsb));
    await device.write(map.offsetBytes(0), block0);
    const report = await recoverJournal(device, GEOMETRY);
    expect(report).toMatchObject({ transactionsReplayed: 1, blocksWritten: 2, endTid: 6, sequenceAfter: 7 });
    expect((await readBlock(device, 200))[9]).toBe(0x0d);
    const restored = await readBlock(device, 201);
    expect(new DataView(restored.buffer).getUint32(0)).toBe(JBD2_MAGIC);
    expect(restored[9]).toBe(0x0e);
  });
});

describe('JournalHandle.onCommitted', () => {
  it('onCommitted callbacks run once the transaction is durable, in order, and never after an abort', async () => {
    const device = await freshDevice();
    const journal = await openJournal(device);
    const seen: string[] = [];
    const h = await journal.start(1);
    const buf = await h.getWriteAccess(30);
    buf[0] = 0x5a;
    h.dirtyMetadata(30);
    h.onCommitted(() => seen.push('first'));
    h.onCommitted(() => seen.push('second'));
    await journal.stop(h);
    expect(seen).toEqual([]); // stopped, not committed
    await journal.commit();
    expect(seen).toEqual(['first', 'second']);

    const aborted = await journal.start(1);
    (await aborted.getWriteAccess(31))[0] = 1;
    aborted.dirtyMetadata(31);
    aborted.onCommitted(() => seen.push('after abort'));
    await journal.stop(aborted);
    journal.abort();
    await journal.commit().catch(() => undefined);
    expect(seen).toEqual(['first', 'second']);
  });
});

describe('JournalHandle.orderData', () => {
  const DATA_BLOCK = 1800; // outside the metadata range and the journal

  it('the commit block follows the flush that follows the ordered data; waits run after the handles drained', async () => {
    const device = new RecordingDevice(await freshDevice());
    const journal = await openJournal(device);
    const events: string[] = [];
    const h = await journal.start(1);
    (await h.getWriteAccess(40))[0] = 0x77;
    h.dirtyMetadata(40);
    h.orderData(async () => {
      events.push('wait');
      await new Promise((resolve) => setTimeout(resolve, 5)); // a slow data write
      await device.write(DATA_BLOCK * BS, new Uint8Array(BS).fill(0xda));
      events.push('data written');
    });
    const committed = journal.commit();
    await new Promise((resolve) => setTimeout(resolve, 1));
    expect(events).toEqual([]); // the handle is still open: the commit is draining
    await journal.stop(h);
    await committed;
    expect(events).toEqual(['wait', 'data written']);
    const dataAt = device.ops.findIndex((op) => op.kind === 'write' && op.offsetBytes === DATA_BLOCK * BS);
    const commitAt = device.ops.findIndex((op) => op.kind === 'write' && op.fua && decodeJournalHeader(op.bytes).blockType === BlockType.COMMIT);
    const flushAt = device.ops.slice(0, commitAt).map((op) => op.kind).lastIndexOf('flush');
    expect(dataAt).toBeGreaterThanOrEqual(0);
    expect(dataAt).toBeLessThan(flushAt);
    expect(flushAt).toBeLessThan(commitAt);
  });

  it('an empty transaction drops its waits; a rejected wait aborts the journal with no commit block', async () => {
    const device = new RecordingDevice(await freshDevice());
    const journal = await openJournal(device);
    let called = 0;
    const empty = await journal.start(1);
    empty.orderData(async () => { called++; });
    await journal.stop(empty);
    await journal.commit();
    expect(called).toBe(0);

    const h = await journal.start(1);
    (await h.getWriteAccess(41))[0] = 1;
    h.dirtyMetadata(41);
    h.orderData(() => Promise.reject(new FsError('EIO', { syscall: 'write' })));
    await journal.stop(h);
    await expect(journal.commit()).rejects.toMatchObject({ code: 'EIO' });
    const commitBlocks = device.ops.filter((op) => op.kind === 'write' && op.fua && decodeJournalHeader(op.bytes).blockType === BlockType.COMMIT);
    expect(commitBlocks).toEqual([]);
    await expect(journal.start(1)).rejects.toMatchObject({ code: 'EIO' });
  });
});

describe('JournalHandle.setFrozenTrigger', () => {
  it('a frozen trigger runs once per transaction, after its last handle, on the bytes the log and home get', async () => {
    const device = await freshDevice();
    const journal = await openJournal(device);
    let counter = 0; // state many handles change; block 50 sums it up
    let runs = 0;
    /** A handle that bumps the counter; the first of a transaction takes block 50 and sets the trigger. */
    const bump = async (h: Awaited<ReturnType<Journal['start']>>): Promise<void> => {
      counter++;
      if (!h.hasFrozenTrigger(50)) {
        await h.getWriteAccess(50);
        h.dirtyMetadata(50);
        h.setFrozenTrigger(50, (bytes) => { runs++; bytes[0] = counter; });
      }
      expect(h.hasFrozenTrigger(50)).toBe(true);
    };
    for (let i = 0; i < 3; i++) {
      const h = await journal.start(1);
      await bump(h);
      await journal.stop(h);
    }
    expect(runs).toBe(0); // not before the commit
    // A handle still open when the commit starts: the trigger runs after it stops.
    const late = await journal.start(1);
    await bump(late);
    const committed = journal.commit();
    await new Promise((resolve) => setTimeout(resolve, 1));
    counter += 10;
    await journal.stop(late);
    await committed;
    expect(runs).toBe(1);
    const next = await journal.start(1);
    expect(next.hasFrozenTrigger(50)).toBe(false); // a new transaction: set it again
    await journal.stop(next);
    counter = 99; // outside any handle, after the commit: reaches no disk
    await journal.checkpoint();
    expect((await readBlock(device, 50))[0]).toBe(14); // 4 bumps + 10: the value at the freeze
    expect(runs).toBe(1);

    // The log holds the frozen bytes: a crash after the commit replays them.
    counter = 20;
    const h = await journal.start(1);
    await bump(h);
    await journal.stop(h);
    await journal.commit();
    expect(runs).toBe(2);
    journal.abort();
    const crashed = await deviceFrom(await wholeImage(device));
    await recoverJournal(crashed, GEOMETRY);
    expect((await readBlock(crashed, 50))[0]).toBe(21);
  });

  it('a frozen trigger is dropped when the journal aborts before the commit', async () => {
    const device = await freshDevice();
    const journal = await openJournal(device);
    let runs = 0;
    const h = await journal.start(1);
    await h.getWriteAccess(51);
    h.dirtyMetadata(51);
    h.setFrozenTrigger(51, () => { runs++; });
    await journal.stop(h);
    journal.abort();
    await expect(journal.commit()).rejects.toMatchObject({ code: 'EIO' });
    expect(runs).toBe(0);
  });
});

describe('JournalHandle.getWriteAccessNow', () => {
  it('getWriteAccessNow gives the live bytes of a block the journal holds, and nothing (no read) for one it does not', async () => {
    const device = await freshDevice();
    const journal = await openJournal(device);
    const h = await journal.start(2);
    expect(h.getWriteAccessNow(60)).toBeUndefined(); // not held: it would need a read
    const live = await h.getWriteAccess(60);
    live[0] = 0x61;
    h.dirtyMetadata(60);
    await journal.stop(h);
    const next = await journal.start(1);
    const now = next.getWriteAccessNow(60);
    expect(now).toBe(live); // the same object, as getWriteAccess gives
    now![1] = 0x62;
    next.dirtyMetadata(60); // already in the transaction: no credit
    expect(next.creditsLeft).toBe(1);
    await journal.stop(next);
    await journal.commit();
    await journal.checkpoint();
    expect([...(await readBlock(device, 60)).subarray(0, 2)]).toEqual([0x61, 0x62]);
    const after = await journal.start(1);
    expect(after.getWriteAccessNow(60)).toBeUndefined(); // checkpointed home: the journal let it go
    await journal.stop(after);
  });
});
