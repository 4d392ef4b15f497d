/**
 * Memory warm-up before each target. On these virtual machines the first touch of
 * memory the guest has not used lately runs at ~0.5 GiB/s (the host backs it page by page;
 * pages freed for a while go back to the host), while memory touched recently refills at
 * ~20 GiB/s. Every engine here takes fresh memory during its timed jobs: ext4ts a new
 * wasm page cache per mount, the kernel new page-cache pages, tmpfs new file pages. So
 * whichever target happened to run on cold memory would lose seconds to the hypervisor,
 * not to its design (measured: the kernel's 2 GiB write+fsync 359 MiB/s cold, ~1.5–1.8
 * GiB/s warm; ext4ts's 400 vs 900 MiB/s).
 *
 * warmMemory touches `bytes` in a child process that then exits, returning the pages to
 * the guest's free lists backed and fresh, right before a target starts. Cost: bytes at
 * 0.5 GiB/s when cold, ~20 GiB/s when already warm; capped at 60% of free memory.
 */
import { spawnSync } from 'node:child_process';
import { freemem } from 'node:os';

const CHUNK_BYTES = 256 * 1024 * 1024;
const FREE_SHARE_MAX = 0.6;

/** Touch about `bytes` of memory in a short-lived child process; returns the bytes touched. */
export function warmMemory(bytes: number): number {
  const target = Math.min(bytes, Math.floor(freemem() * FREE_SHARE_MAX));
  const chunkCount = Math.floor(target / CHUNK_BYTES);
  if (chunkCount <= 0) return 0;
  const script = `const kept = []; for (let i = 0; i < ${chunkCount}; i++) { const b = Buffer.allocUnsafeSlow(${CHUNK_BYTES}); b.fill(i & 255); kept.push(b); }`;
  const result = spawnSync(process.execPath, ['-e', script], { stdio: 'ignore', timeout: 120_000 });
  return result.status === 0 ? chunkCount * CHUNK_BYTES : 0;
}
