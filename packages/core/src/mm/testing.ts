/**
 * Test support for mm/ (used by *.test.ts; not part of the public API): a page cache over
 * a fresh wasm core, and a fake filesystem writeback that records what it wrote and ends
 * writeback at once, after a delay, or when the test says so.
 */
import { loadWasmCore, type WasmCore } from '../wasm/core.js';
import type { Folio } from './folio.js';
import type { AddressSpace } from './mapping.js';
import { type PageCache, type PageCacheOptions, type WritebackOps, type WritebackRequest, createPageCache } from './page-cache.js';

export async function withPageCache(
  options: PageCacheOptions,
  body: (cache: PageCache, core: WasmCore) => Promise<void> | void,
): Promise<void> {
  // Address space for the reserved region (8 MiB) + the arena, rounded up.
  const maximumPages = Math.ceil((16 * 1024 * 1024 + options.cacheBytesMax) / 65536);
  const core = loadWasmCore({ maximumPages });
  const cache = createPageCache(core, options);
  try {
    await body(cache, core);
  } finally {
    cache.close();
    core.close();
  }
}

export type WritebackCompletion = 'immediate' | 'manual' | number;

/** A fake writepages: writes nothing, ends writeback per `completion` (ms delay when a number). */
export class FakeWriteback implements WritebackOps {
  readonly calls: Array<{ mappingId: number; request: WritebackRequest; atMs: number }> = [];
  /** Folio indices written, per mapping id, in the order they were started. */
  readonly written = new Map<number, number[]>();
  private pending: Folio[] = [];

  constructor(private readonly cache: PageCache, public completion: WritebackCompletion = 'immediate') {}

  async writebackMapping(mapping: AddressSpace, request: WritebackRequest): Promise<void> {
    this.calls.push({ mappingId: mapping.id, request, atMs: this.cache.now() });
    let bytesStarted = 0;
    for (const folio of mapping.dirtyFolios(0, 2 ** 32)) {
      if (bytesStarted >= request.lengthBytesMax) break;
      folio.get();
      await folio.lock();
      if (request.reason === 'sync') await folio.waitWriteback();
      if (folio.isDirty() && !folio.writebackAccounted) {
        folio.startWriteback();
        bytesStarted += folio.lengthBytes;
        const list = this.written.get(mapping.id) ?? [];
        list.push(folio.index);
        this.written.set(mapping.id, list);
        this.pending.push(folio.get());
      }
      folio.unlock();
      folio.put();
    }
    if (this.completion === 'immediate') this.completeAll();
    else if (typeof this.completion === 'number') setTimeout(() => this.completeAll(), this.completion);
  }

  get pendingCount(): number {
    return this.pending.length;
  }

  /** End writeback of every folio started so far. */
  completeAll(): void {
    const folios = this.pending;
    this.pending = [];
    for (const folio of folios) {
      folio.endWriteback();
      folio.put();
    }
  }
}

/** Resolve after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Poll `condition` every few ms until it holds or `timeoutMs` passes; returns whether it held. */
export async function eventually(condition: () => boolean, timeoutMs = 2000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) return false;
    await sleep(2);
  }
  return true;
}
