/**
 * FaultDevice: a wrapper that injects seeded device failures, for tests that check an
 * I/O error is reported (fsync returns EIO, the journal aborts) and never dropped.
 *
 * Every call that reaches storage gets an operation number `op`, counting from 0 in call
 * order over all kinds (read, write, flush, discard, zeroOut). A fault is chosen by
 * number (`failOps`), by probability per kind (seeded), or by the power cut:
 *
 *   ops:      0   1   2   ... K | K+1  K+2 ...
 *                               | writes, discards, zero-outs: resolve, but are dropped
 *                               | FUA writes and flushes: EIO (durability was promised)
 *                               | reads: pass through (they see what was persisted)
 *
 * An injected fault is an FsError EIO whose detail names the op number and request;
 * each one is also appended to `faults`. A failed write may be `torn` (a seeded prefix of
 * its sectors reaches the inner device, like a write cut mid-way) or leave nothing.
 * Cost: one counter and at most one PRNG draw per call.
 */
import { assert } from '../assert.js';
import { FsError } from '../vfs/errors.js';
import { seededRandom } from '../random.js';
import type { BlockDevice, DeviceHandle, SyncBlockDevice, WriteOptions } from './block-device.js';

export type FaultOpKind = 'read' | 'write' | 'flush' | 'discard' | 'zeroOut';

export interface FaultPlan {
  /** Seed for the probabilistic faults and torn writes; default 1. */
  seed?: number;
  /** Op numbers that fail with EIO (whatever their kind). */
  failOps?: readonly number[];
  /** Probability in [0, 1] that a call of that kind fails. */
  probability?: Partial<Record<FaultOpKind, number>>;
  /** After op K (so from op K+1 on) writes are dropped silently and flushes fail. */
  powerCutAfterOp?: number;
  /** What a failed write leaves on the inner device: nothing (default) or a seeded prefix of its sectors. */
  failedWrite?: 'nothing' | 'torn';
}

export interface InjectedFault {
  readonly op: number;
  readonly kind: FaultOpKind;
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  readonly reason: 'failOps' | 'probability' | 'powerCut';
}

function isSync(device: BlockDevice): device is SyncBlockDevice {
  return typeof (device as Partial<SyncBlockDevice>).writeSync === 'function';
}

/** What to do with one call: pass it on, fail it, or drop it silently. */
type Verdict = { action: 'pass' } | { action: 'drop' } | { action: 'fail'; error: FsError; tornSectors: number };

export class FaultDevice implements SyncBlockDevice {
  readonly inner: BlockDevice;
  readonly synchronous: boolean;
  /** Every fault injected so far (dropped writes after a power cut are not faults). */
  readonly faults: InjectedFault[] = [];
  /** Writes dropped silently after the power cut. */
  droppedWriteCount = 0;
  private opCounter = 0;
  private readonly failOps: ReadonlySet<number>;
  private readonly probability: Partial<Record<FaultOpKind, number>>;
  private powerCutAfterOp: number;
  private readonly failedWrite: 'nothing' | 'torn';
  private readonly random: () => number;

  constructor(inner: BlockDevice, plan: FaultPlan = {}) {
    this.inner = inner;
    this.synchronous = isSync(inner);
    this.failOps = new Set(plan.failOps ?? []);
    this.probability = plan.probability ?? {};
    this.powerCutAfterOp = plan.powerCutAfterOp ?? Infinity;
    this.failedWrite = plan.failedWrite ?? 'nothing';
    this.random = seededRandom(plan.seed ?? 1);
    for (const [kind, p] of Object.entries(this.probability)) {
      assert(typeof p === 'number' && p >= 0 && p <= 1, `fault probability for ${kind} is in [0, 1]`);
    }
  }

  get sizeBytes(): number { return this.inner.sizeBytes; }
  get sectorSizeBytes(): number { return this.inner.sectorSizeBytes; }
  get readOnly(): boolean { return this.inner.readOnly; }

  /** The number the next call will get. */
  get nextOp(): number { return this.opCounter; }

  /** True once op K (powerCutAfterOp) has been made: every later call sees the cut. */
  get powerIsCut(): boolean { return this.opCounter > this.powerCutAfterOp; }

  /** Cut the power now: every later call sees the power-cut rules. */
  cutPower(): void {
    this.powerCutAfterOp = Math.min(this.powerCutAfterOp, this.opCounter - 1);
  }

  // ---- async contract -------------------------------------------------------------

  async read(offsetBytes: number, target: Uint8Array): Promise<void> {
    const verdict = this.judge('read', offsetBytes, target.length, false);
    if (verdict.action === 'fail') throw verdict.error;
    return this.inner.read(offsetBytes, target);
  }

  async write(offsetBytes: number, source: Uint8Array, options?: WriteOptions): Promise<void> {
    const verdict = this.judge('write', offsetBytes, source.length, options?.fua === true);
    if (verdict.action === 'drop') return;
    if (verdict.action === 'fail') {
      if (verdict.tornSectors > 0) await this.inner.write(offsetBytes, source.subarray(0, verdict.tornSectors * this.sectorSizeBytes));
      throw verdict.error;
    }
    return this.inner.write(offsetBytes, source, options);
  }

  async flush(): Promise<void> {
    const verdict = this.judge('flush', 0, 0, false);
    if (verdict.action === 'fail') throw verdict.error;
    return this.inner.flush();
  }

  async discard(offsetBytes: number, lengthBytes: number): Promise<void> {
    const verdict = this.judge('discard', offsetBytes, lengthBytes, false);
    if (verdict.action === 'drop') return;
    if (verdict.action === 'fail') throw verdict.error;
    return this.inner.discard(offsetBytes, lengthBytes);
  }

  async zeroOut(offsetBytes: number, lengthBytes: number): Promise<void> {
    const verdict = this.judge('zeroOut', offsetBytes, lengthBytes, false);
    if (verdict.action === 'drop') return;
    if (verdict.action === 'fail') throw verdict.error;
    return this.inner.zeroOut(offsetBytes, lengthBytes);
  }

  async close(): Promise<void> {
    return this.inner.close();
  }

  // ---- sync contract (only when the inner device has it) ----------------------------

  readSync(offsetBytes: number, target: Uint8Array): void {
    const inner = this.syncInner();
    const verdict = this.judge('read', offsetBytes, target.length, false);
    if (verdict.action === 'fail') throw verdict.error;
    inner.readSync(offsetBytes, target);
  }

  writeSync(offsetBytes: number, source: Uint8Array, options?: WriteOptions): void {
    const inner = this.syncInner();
    const verdict = this.judge('write', offsetBytes, source.length, options?.fua === true);
    if (verdict.action === 'drop') return;
    if (verdict.action === 'fail') {
      if (verdict.tornSectors > 0) inner.writeSync(offsetBytes, source.subarray(0, verdict.tornSectors * this.sectorSizeBytes));
      throw verdict.error;
    }
    inner.writeSync(offsetBytes, source, options);
  }

  flushSync(): void {
    const inner = this.syncInner();
    const verdict = this.judge('flush', 0, 0, false);
    if (verdict.action === 'fail') throw verdict.error;
    inner.flushSync();
  }

  discardSync(offsetBytes: number, lengthBytes: number): void {
    const inner = this.syncInner();
    const verdict = this.judge('discard', offsetBytes, lengthBytes, false);
    if (verdict.action === 'drop') return;
    if (verdict.action === 'fail') throw verdict.error;
    inner.discardSync(offsetBytes, lengthBytes);
  }

  zeroOutSync(offsetBytes: number, lengthBytes: number): void {
    const inner = this.syncInner();
    const verdict = this.judge('zeroOut', offsetBytes, lengthBytes, false);
    if (verdict.action === 'drop') return;
    if (verdict.action === 'fail') throw verdict.error;
    inner.zeroOutSync(offsetBytes, lengthBytes);
  }

  closeSync(): void {
    this.syncInner().closeSync();
  }

  handle(): DeviceHandle {
    throw new FsError('ENOTSUP', {
      syscall: 'handle',
      detail: 'a fault-injecting device cannot be shared with workers: their calls would bypass the faults',
    });
  }

  // ---- internals ------------------------------------------------------------------

  private syncInner(): SyncBlockDevice {
    assert(this.synchronous, 'synchronous calls need an inner device that has them');
    return this.inner as SyncBlockDevice;
  }

  /**
   * Number the call and decide its fate. Requests are not range-checked here: a call
   * that passes is checked by the inner device, and a failing one fails anyway.
   */
  private judge(kind: FaultOpKind, offsetBytes: number, lengthBytes: number, fua: boolean): Verdict {
    const op = this.opCounter++;
    const changesStorage = kind === 'write' || kind === 'discard' || kind === 'zeroOut';
    if (op > this.powerCutAfterOp) {
      if (kind === 'read') return { action: 'pass' };
      if (changesStorage && !fua) {
        this.droppedWriteCount++;
        return { action: 'drop' };
      }
      return this.fail(op, kind, offsetBytes, lengthBytes, 'powerCut', false);
    }
    if (this.failOps.has(op)) return this.fail(op, kind, offsetBytes, lengthBytes, 'failOps', changesStorage);
    const p = this.probability[kind] ?? 0;
    if (p > 0 && this.random() / 2 ** 32 < p) return this.fail(op, kind, offsetBytes, lengthBytes, 'probability', changesStorage);
    return { action: 'pass' };
  }

  private fail(
    op: number,
    kind: FaultOpKind,
    offsetBytes: number,
    lengthBytes: number,
    reason: InjectedFault['reason'],
    mayTear: boolean,
  ): Verdict {
    this.faults.push({ op, kind, offsetBytes, lengthBytes, reason });
    const range = kind === 'flush' ? '' : ` [${offsetBytes}, +${lengthBytes})`;
    const detail = `injected fault at op ${op}: ${kind}${range}, ${reason}`;
    const error = new FsError('EIO', { syscall: kind, detail });
    const sectorCount = Math.floor(lengthBytes / this.sectorSizeBytes);
    const tear = mayTear && kind === 'write' && this.failedWrite === 'torn' && sectorCount > 1;
    const tornSectors = tear ? Math.floor((this.random() / 2 ** 32) * sectorCount) : 0;
    return { action: 'fail', error, tornSectors };
  }
}
