/**
 * Child process of memory.test.ts: a sequential write then read of FILE_BYTES through a
 * CACHE_BYTES page cache on an image file (a FileDevice, so the device's bytes live in the
 * host's page cache, not in this process), checking every MiB read back, then printing one
 * JSON line: throughput, peak RSS (getrusage maxrss) and the page cache's own counters.
 *
 * Plain JavaScript over the built package (packages/core/dist), so it runs as a bare node
 * process whose RSS is only the engine's.
 *
 *   node memory-child.mjs IMAGE FILE_BYTES CACHE_BYTES PATH(iomap|buffer_head)
 *
 * Cost: FILE_BYTES written and read once (plus mkfs of an image sized for it).
 */
import { Buffer } from 'node:buffer';
import { Ext4, FileDevice, mkfs } from '../../packages/core/dist/index.js';

const [image, fileBytesText, cacheBytesText, pathText] = process.argv.slice(2);
const fileBytes = Number(fileBytesText);
const cacheBytes = Number(cacheBytesText);
const buffered = pathText === 'buffer_head' ? 'buffer_head' : 'iomap';
const MiB = 1024 * 1024;

/** The 1 MiB block `index`: its index in every 8-byte word, so a misplaced block shows. */
function blockOf(index, out) {
  for (let i = 0; i < out.length; i += 8) {
    out.writeUInt32LE(index, i);
    out.writeUInt32LE(i, i + 4);
  }
  return out;
}

const device = await FileDevice.open(image);
await mkfs(device, {});
const fs = await Ext4.mount(device, { readOnly: false, cacheBytes, buffered });
const fh = await fs.open('/big', 'w+');
const block = Buffer.alloc(MiB);
let rssPeakDuringBytes = 0;
const sample = () => { rssPeakDuringBytes = Math.max(rssPeakDuringBytes, process.memoryUsage.rss()); };
let started = performance.now();
for (let at = 0; at < fileBytes; at += MiB) {
  await fh.write(blockOf(at / MiB, block), 0, MiB, at);
  if ((at / MiB) % 64 === 0) sample();
}
await fh.sync();
const writeMs = performance.now() - started;
const cacheAfterWrite = fs.files.cache.stats();
started = performance.now();
const expected = Buffer.alloc(MiB);
let mismatches = 0;
for (let at = 0; at < fileBytes; at += MiB) {
  const { bytesRead } = await fh.read(block, 0, MiB, at);
  if (bytesRead !== MiB || !block.equals(blockOf(at / MiB, expected))) mismatches++;
  if ((at / MiB) % 64 === 0) sample();
}
const readMs = performance.now() - started;
const cacheAfterRead = fs.files.cache.stats();
await fh.close();
await fs.unmount();
await device.close();
console.log(JSON.stringify({
  fileBytes, cacheBytes, buffered, writeMs, readMs, mismatches,
  maxRssBytes: process.resourceUsage().maxRSS * 1024, rssPeakDuringBytes,
  cacheBytesInUseAfterWrite: cacheAfterWrite.bytesInUse, cacheBytesInUseAfterRead: cacheAfterRead.bytesInUse,
  evictedFolios: cacheAfterRead.evictedFolioCount,
}));
