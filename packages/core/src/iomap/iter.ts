/**
 * iomapIter: the one loop every buffered operation runs (Linux's iomap_iter). The
 * filesystem maps the start of what is left; the actor handles [pos, min(end, mapping
 * end)) through the page cache and says how many bytes it did; end() hears the result.
 *
 *   pos ──begin──► [ mapping ............ ) ──actor──► done
 *        done = length  → continue at pos + done
 *        0 < done < length, STALE clear → short: stop (the caller reports done so far)
 *        STALE set (cookie changed after a folio lock) → re-map at pos + done, go on
 *
 * Half-open byte ranges. No locks are held here: the actor takes folio locks after begin()
 * returned, so the filesystem never holds anything across a folio lock (seed §1.5).
 *
 * Cost: one begin() (+ end()) per mapping; a stale re-map costs one more begin(). Bounded:
 * at most ITER_STALE_RETRIES_MAX re-maps in a row that make no progress.
 */
import { assert } from '../assert.js';
import { type Iomap, IomapFlags, type IomapInode, type IomapOps } from './types.js';

/** Re-maps without progress before the loop gives up (a filesystem whose cookie never settles is a bug). */
export const ITER_STALE_RETRIES_MAX = 1000;

/** Handles [posBytes, posBytes + lengthBytes) inside `iomap`; returns bytes done (may set STALE). */
export type IomapActor = (iomap: Iomap, posBytes: number, lengthBytes: number) => Promise<number>;

/** Runs the loop over [posBytes, posBytes + lengthBytes); returns the bytes done (< length: short). */
export async function iomapIter(
  inode: IomapInode,
  ops: IomapOps,
  range: { posBytes: number; lengthBytes: number; op: number },
  actor: IomapActor,
): Promise<number> {
  const { posBytes, lengthBytes, op } = range;
  assert(Number.isSafeInteger(posBytes) && posBytes >= 0, 'iter starts at a non-negative offset');
  assert(Number.isSafeInteger(lengthBytes) && lengthBytes >= 0, 'iter length is non-negative');
  const end = posBytes + lengthBytes;
  let pos = posBytes;
  let staleRetries = 0;
  while (pos < end) {
    const iomap = await ops.begin(inode, pos, end - pos, op);
    checkMapping(inode, iomap, pos);
    const length = Math.min(end, iomap.offsetBytes + iomap.lengthBytes) - pos;
    const done = await actor(iomap, pos, length);
    assert(done >= 0 && done <= length, 'actor did at most what it was given');
    if (ops.end !== undefined) await ops.end(inode, pos, length, done, op, iomap);
    pos += done;
    if ((iomap.flags & IomapFlags.STALE) !== 0) {
      staleRetries = done > 0 ? 0 : staleRetries + 1;
      assert(staleRetries <= ITER_STALE_RETRIES_MAX, 'stale re-maps make progress');
      continue;
    }
    if (done < length) break;
  }
  return pos - posBytes;
}

function checkMapping(inode: IomapInode, iomap: Iomap, pos: number): void {
  const blockBytes = inode.blockSizeBytes;
  assert(iomap.offsetBytes <= pos && pos < iomap.offsetBytes + iomap.lengthBytes, 'mapping covers the position');
  assert(iomap.offsetBytes % blockBytes === 0 && iomap.lengthBytes % blockBytes === 0, 'mapping is block aligned');
  assert((iomap.flags & IomapFlags.STALE) === 0, 'a fresh mapping is not stale');
}
