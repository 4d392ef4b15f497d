// Folio state: per-block bits against a model (every order and block size), the async lock,
// and the cross-thread protocol with a real worker_threads Worker over the same shared memory.
import { Worker } from 'node:worker_threads';
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureWasmBuilt, randomBelow, seededRandom } from '../wasm/testing.js';
import {
  FOLIO_BITMAP_BITS_PER_UNIT, FOLIO_STATE_DIRTY, FOLIO_STATE_LOCKED, FOLIO_STATE_LOCK_WAITERS, FOLIO_STATE_UPTODATE,
  FOLIO_STATE_WRITEBACK, FOLIO_STATE_WRITEBACK_WAITERS,
} from '../wasm/layout.js';
import { type Folio, FolioStateTable, bitsClear, bitsFind, bitsSet, folioWordOrder } from './folio.js';
import { eventually, sleep, withPageCache } from './testing.js';

beforeAll(() => ensureWasmBuilt());

const MiB = 1024 * 1024;

// The model of one folio's bits.
class FolioModel {
  readonly uptodate: boolean[];
  readonly dirty: boolean[];
  constructor(readonly blockCount: number) {
    this.uptodate = new Array<boolean>(blockCount).fill(false);
    this.dirty = new Array<boolean>(blockCount).fill(false);
  }
  runs(bits: boolean[]): Array<{ blockStart: number; blockEnd: number }> {
    const runs: Array<{ blockStart: number; blockEnd: number }> = [];
    for (let block = 0; block < bits.length; block++) {
      if (!bits[block]) continue;
      const blockStart = block;
      while (block < bits.length && bits[block]) block++;
      runs.push({ blockStart, blockEnd: block });
    }
    return runs;
  }
}

function checkAgainstModel(folio: Folio, model: FolioModel): void {
  const ups = model.uptodate;
  expect(folio.isUptodate()).toBe(ups.every(Boolean));
  expect(folio.isDirty()).toBe(model.dirty.some(Boolean));
  expect(folio.dirtyRanges()).toEqual(model.runs(model.dirty));
  const uptodate: boolean[] = [];
  const dirty: boolean[] = [];
  for (let block = 0; block < model.blockCount; block++) {
    uptodate.push(folio.isRangeUptodate(block, block + 1));
    dirty.push(folio.isRangeDirty(block, block + 1));
  }
  expect(uptodate).toEqual(ups);
  expect(dirty).toEqual(model.dirty);
}

describe('bit ranges', () => {
  it('bitsSet/bitsClear/bitsFind match a boolean array on random ranges', () => {
    const words = new Int32Array(new SharedArrayBuffer(64 * 4));
    const model = new Array<boolean>(64 * 32).fill(false);
    const random = seededRandom(0x0f01_0001);
    for (let step = 0; step < 3000; step++) {
      const start = randomBelow(random, model.length);
      const end = start + randomBelow(random, Math.min(200, model.length - start) + 1);
      const op = randomBelow(random, 3);
      if (op === 0) bitsSet(words, 0, start, end);
      if (op === 1) bitsClear(words, 0, start, end);
      if (op < 2) model.fill(op === 0, start, end);
      for (const value of [true, false]) {
        let expected = -1;
        for (let bit = start; bit < end; bit++) if (model[bit] === value) { expected = bit; break; }
        expect(bitsFind(words, 0, start, end, value)).toBe(expected);
      }
    }
  });
});

describe('Folio per-block state', () => {
  for (const blockBytes of [4096, 1024]) {
    it(`mark/test/find/startWriteback match a model at ${blockBytes}-byte blocks, orders 0..max, neighbours untouched`, async () => {
      await withPageCache({ cacheBytesMax: 32 * MiB }, async (cache) => {
        const mapping = cache.createMapping({ blockBytes });
        const random = seededRandom(0x0f01_0100 + blockBytes);
        const folios: Folio[] = [];
        const models: FolioModel[] = [];
        let index = 0;
        for (let order = 0; order <= mapping.orderMax; order++) {
          for (let copy = 0; copy < 2; copy++) {
            index = Math.ceil(index / (1 << order)) * (1 << order);
            const folio = mapping.tryGetOrCreate(index, order)!;
            expect(folio.order).toBe(order);
            expect(folio.blockCount).toBe((4096 << order) / blockBytes);
            folios.push(folio);
            models.push(new FolioModel(folio.blockCount));
            index = folio.indexEnd;
          }
        }
        for (let step = 0; step < 1500; step++) {
          const which = randomBelow(random, folios.length);
          const folio = folios[which];
          const model = models[which];
          const blockStart = randomBelow(random, folio.blockCount + 1);
          const blockEnd = blockStart + randomBelow(random, folio.blockCount - blockStart + 1);
          const op = randomBelow(random, 10);
          expect(folio.tryLock()).toBe(true);
          if (op < 4) {
            const whole = folio.markUptodate(blockStart, blockEnd);
            model.uptodate.fill(true, blockStart, blockEnd);
            expect(whole).toBe(model.uptodate.every(Boolean));
          } else if (op < 8) {
            folio.markDirty(blockStart, blockEnd);
            model.dirty.fill(true, blockStart, blockEnd);
          } else if (op === 8) {
            expect(folio.startWriteback()).toEqual(model.runs(model.dirty));
            model.dirty.fill(false);
            expect(folio.isWriteback()).toBe(true);
            folio.endWriteback();
          } else {
            expect(folio.findDirtyRange(blockStart)).toEqual(
              model.runs(model.dirty).map((run) => ({ blockStart: Math.max(run.blockStart, blockStart), blockEnd: run.blockEnd }))
                .find((run) => run.blockEnd > blockStart) ?? null,
            );
            if (!model.dirty.some(Boolean)) {
              folio.clearUptodate();
              model.uptodate.fill(false);
            }
          }
          folio.unlock();
          checkAgainstModel(folio, model);
          // Dirty accounting follows DIRTY.
          expect(folio.dirtyAccounted).toBe(folio.isDirty());
        }
        for (let which = 0; which < folios.length; which++) checkAgainstModel(folios[which], models[which]);
        const dirtyBytes = folios.filter((folio) => folio.isDirty()).reduce((sum, folio) => sum + folio.lengthBytes, 0);
        expect(cache.dirtyBytes).toBe(dirtyBytes);
        cache.checkInvariants();
        for (const folio of folios) {
          await folio.lock();
          folio.cancelDirty();
          folio.unlock();
          folio.put();
        }
        expect(cache.dirtyBytes).toBe(0);
      });
    });
  }
});

describe('Folio lock (engine thread)', () => {
  it('lock waiters are served FIFO by hand-off; tryLock does not barge past them', async () => {
    await withPageCache({ cacheBytesMax: 1 * MiB }, async (cache) => {
      const folio = cache.createMapping({ blockBytes: 4096 }).tryGetOrCreate(0, 0)!;
      await folio.lock();
      const order: number[] = [];
      const waiters = [1, 2, 3].map((id) => folio.lock().then(() => {
        order.push(id);
        folio.unlock();
      }));
      folio.unlock();
      expect(folio.tryLock()).toBe(false); // handed to waiter 1, still LOCKED
      await Promise.all(waiters);
      expect(order).toEqual([1, 2, 3]);
      expect(folio.isLocked()).toBe(false);
      expect(folio.tryLock()).toBe(true);
      folio.unlock();
      folio.put();
    });
  });
});

// The worker body: plain JS over the same SharedArrayBuffers (vitest runs TS; workers get JS).
const WORKER_CODE = `
const { parentPort, workerData } = require('node:worker_threads');
const { stateBuffer, memoryBuffer, controlBuffer, slot, dataPtr, otherSlot, bits, k } = workerData;
const control = new Int32Array(controlBuffer); // control[0]: the engine thread says 'go on'
function awaitGo() { Atomics.wait(control, 0, 0); Atomics.store(control, 0, 0); }
const words = new Int32Array(stateBuffer);
const memory = new Uint8Array(memoryBuffer);
const nap = new Int32Array(new SharedArrayBuffer(4));
const sleep = (ms) => Atomics.wait(nap, 0, 0, ms);
function waitFor(bit) { while ((Atomics.load(words, slot) & bit) === 0) sleep(1); }
function tryLock() {
  for (;;) {
    const v = Atomics.load(words, slot);
    if (v & k.LOCKED) return false;
    if (Atomics.compareExchange(words, slot, v, v | k.LOCKED) === v) return true;
  }
}
function unlock() {
  const old = Atomics.and(words, slot, ~(k.LOCKED | k.LOCK_WAITERS));
  if (old & k.LOCK_WAITERS) Atomics.notify(words, slot);
}
parentPort.on('message', (message) => {
  if (message === 'writeback') {
    Atomics.or(words, slot, k.WRITEBACK);
    parentPort.postMessage('writeback-set');
    waitFor(k.WRITEBACK_WAITERS);     // the engine thread is now asleep on the word
    awaitGo();
    memory.fill(0xa5, dataPtr, dataPtr + 4096);   // bytes published by the clear below
    const old = Atomics.and(words, slot, ~(k.WRITEBACK | k.WRITEBACK_WAITERS));
    if (old & k.WRITEBACK_WAITERS) Atomics.notify(words, slot);
  } else if (message === 'lock-hold') {
    if (!tryLock()) throw new Error('worker expected a free lock');
    parentPort.postMessage('locked');
    waitFor(k.LOCK_WAITERS);
    awaitGo();
    memory.fill(0x5a, dataPtr, dataPtr + 4096);
    unlock();
  } else if (message === 'lock-blocking') {
    parentPort.postMessage('lock-waiting');
    for (;;) {
      if (tryLock()) break;
      const v = Atomics.load(words, slot);
      if ((v & k.LOCKED) === 0) continue;
      const want = v | k.LOCK_WAITERS;
      if (v !== want && Atomics.compareExchange(words, slot, v, want) !== v) continue;
      Atomics.wait(words, slot, want);
    }
    const seen = memory[dataPtr];
    unlock();
    parentPort.postMessage({ acquired: true, seen });
  } else if (message === 'toggle') {
    // Flip this folio's dirty bit many times, ending set, while the engine flips its neighbour's.
    const bit = otherSlot * bits + 1;
    const index = workerData.bitmapWordBase + (bit >>> 5);
    for (let i = 0; i < 200000; i++) {
      Atomics.or(words, index, 1 << (bit & 31));
      Atomics.and(words, index, ~(1 << (bit & 31)));
    }
    Atomics.or(words, index, 1 << (bit & 31));
    parentPort.postMessage('toggled');
  }
});
`;

function nextMessage(worker: Worker): Promise<unknown> {
  return new Promise((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
}

describe('Folio state across threads (worker_threads over the same shared memory)', () => {
  it('worker sets WRITEBACK, engine waits, worker publishes data and clears with notify; locks both ways', async () => {
    await withPageCache({ cacheBytesMax: 1 * MiB }, async (cache, core) => {
      const mapping = cache.createMapping({ blockBytes: 4096 });
      const folio = mapping.tryGetOrCreate(0, 0)!;
      const neighbour = mapping.tryGetOrCreate(1, 0)!;
      expect(Math.abs(neighbour.slot - folio.slot)).toBe(1); // their bitmap bits share a word
      const table = FolioStateTable.fromShare(cache.share());
      const control = new Int32Array(new SharedArrayBuffer(4));
      const go = () => {
        Atomics.store(control, 0, 1);
        Atomics.notify(control, 0);
      };
      expect(folioWordOrder(Atomics.load(table.words, folio.slot))).toBe(0);
      const worker = new Worker(WORKER_CODE, {
        eval: true,
        workerData: {
          stateBuffer: cache.share().buffer, memoryBuffer: core.memory.buffer, controlBuffer: control.buffer, slot: folio.slot, dataPtr: folio.dataPtr,
          otherSlot: neighbour.slot, bits: FOLIO_BITMAP_BITS_PER_UNIT, bitmapWordBase: table.bitmapWordBase,
          k: {
            LOCKED: FOLIO_STATE_LOCKED, LOCK_WAITERS: FOLIO_STATE_LOCK_WAITERS, WRITEBACK: FOLIO_STATE_WRITEBACK,
            WRITEBACK_WAITERS: FOLIO_STATE_WRITEBACK_WAITERS,
          },
        },
      });
      try {
        // 1. Writeback set and cleared by the worker; the engine sleeps in waitAsync meanwhile.
        worker.postMessage('writeback');
        expect(await nextMessage(worker)).toBe('writeback-set');
        expect(folio.isWriteback()).toBe(true);
        let woke = false;
        const waiting = folio.waitWriteback().then(() => { woke = true; });
        await sleep(5);
        expect(woke).toBe(false);
        go();
        await waiting;
        expect(folio.isWriteback()).toBe(false);
        expect(folio.state() & FOLIO_STATE_WRITEBACK_WAITERS).toBe(0);
        expect(folio.bytes().every((byte) => byte === 0xa5)).toBe(true);

        // 2. The worker holds the lock; the engine's lock() waits (waitAsync) and then gets it.
        worker.postMessage('lock-hold');
        expect(await nextMessage(worker)).toBe('locked');
        expect(folio.tryLock()).toBe(false);
        const locking = folio.lock();
        await sleep(5);
        expect(folio.lockedHere).toBe(false);
        go();
        await locking;
        expect(folio.lockedHere).toBe(true);
        expect(folio.bytes()[4095]).toBe(0x5a);

        // 3. The engine holds the lock; the worker blocks in Atomics.wait until unlock().
        worker.postMessage('lock-blocking');
        expect(await nextMessage(worker)).toBe('lock-waiting');
        const acquired = nextMessage(worker);
        expect(await eventually(() => (folio.state() & FOLIO_STATE_LOCK_WAITERS) !== 0)).toBe(true);
        await sleep(5);
        folio.bytes().fill(0x33);
        folio.unlock();
        expect(await acquired).toEqual({ acquired: true, seen: 0x33 });

        // 4. Both threads hammer bits of two folios that share a bitmap word: no lost updates.
        const words = table.words;
        const ourBit = folio.slot * FOLIO_BITMAP_BITS_PER_UNIT;
        worker.postMessage('toggle');
        const toggled = nextMessage(worker);
        for (let i = 0; i < 200000; i++) {
          bitsSet(words, table.bitmapWordBase, ourBit, ourBit + 1);
          bitsClear(words, table.bitmapWordBase, ourBit, ourBit + 1);
        }
        bitsSet(words, table.bitmapWordBase, ourBit, ourBit + 1);
        expect(await toggled).toBe('toggled');
        expect(folio.isRangeUptodate(0, 1)).toBe(true); // our bit: uptodate of block 0
        expect(neighbour.isRangeDirty(0, 1)).toBe(true); // the worker's: neighbour's dirty bit
      } finally {
        await worker.terminate();
      }
      expect(folio.state() & (FOLIO_STATE_LOCKED | FOLIO_STATE_DIRTY | FOLIO_STATE_UPTODATE)).toBe(0);
    });
  });
});
