// The ext4ts crash workload: a seeded sequence of namespace and data operations through
// the public API on a RecordingDevice, with a model of what the tree holds, and markers
// that say what every crash state must keep (checkAcknowledged).
//
// Markers (RecordingDevice.mark):
// - 'op'  before each operation starts: what it may change (OpMark). An operation whose
//         marker lies before the crash point may have landed whole, in part, or not at all;
//         one whose marker lies after it cannot have written anything.
// - 'ack' after an fsync / fdatasync / fs.sync() / unmount RESOLVED: what is now durable.
//
// What an acknowledgement promises in ext4ts (and what is checked). File data goes through
// the page cache with delayed allocation (as in ext4): FileHandle.sync() (fsync) and
// datasync() (fdatasync) write back THAT file's dirty data and then commit the running
// jbd2 transaction with a flush; fs.sync() writes back every file first; unmount syncs,
// commits and checkpoints. So:
// - fs.sync() and unmount acknowledge the WHOLE tree as it stood ('tree' ack): every
//   path, its type, symlink target, permission bits, and every file's bytes.
// - fsync and fdatasync acknowledge that file's bytes under the path it had ('file' ack):
//   other files' data may still be only in the cache (not even allocated), as POSIX and
//   ext4 allow; an fsync of an unlinked file acknowledges nothing checkable here.
// Times and link counts are not checked here (e2fsck checks link counts).
//
// A crash state recovers to the tree at some commit at or after the last ack A. Operations
// begun after A ('op' markers after A and before the crash point) make their paths
// uncertain; the check is "at least A":
// - a path of A that no later op touched (neither it nor an ancestor) exists with A's
//   type, target and mode (unless a later chmod touched that inode or dir);
// - its file bytes are A's, or, when later ops wrote that inode, a composition of its
//   versions: the size is one of the versions' sizes and every 4 KiB block (byte, where
//   sectors tore) equals the same block of one of them (an in-place overwrite reaches the
//   disk before its commit, data=ordered, so old and new bytes may mix; other files'
//   bytes, stale blocks or zeros where no version had zeros may not appear);
// - for a tree ack, a path not in A must lie under a path some later op touched, and a
//   file there must be composed of the versions of one inode (A's or later).
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import { Ext4, MemoryDevice, mkfs, type BlockDevice, type Ext4Filesystem, type FileHandle } from '@ext4ts/core';
import type { RecordedMark, RecordingDevice } from '../../packages/core/src/device/recording-device.js';
import { contentBytes, makeRng } from '../helpers/tree.js';

/** Small, so that saving a state to an image file (the main cost per state) is cheap. */
export const CRASH_IMAGE_BYTES = 16 * 1024 * 1024;
/** The smallest journal ext4ts mkfs makes: wraps (checkpoints) every few dozen commits. */
export const CRASH_JOURNAL_BLOCKS = 1024;
/** Bytes of file data the workload keeps live at most (of a 16 MiB image with a 4 MiB journal). */
const LIVE_DATA_BYTES_MAX = 4 * 1024 * 1024;
const NAMES = ['a', 'b', 'c', 'd', 'e', 'f', 'g', `long-${'n'.repeat(40)}`];
const DIR_DEPTH_MAX = 3;
const BLOCK_BYTES = 4096;
/**
 * Chance that a step is an fsync / fdatasync / fs.sync() (pwrite and open+unlink steps also
 * fsync at times): ~1 commit per 6 steps, ~10 journal blocks each, so a 900-step run logs
 * ~1,600 blocks and wraps the 1024-block journal, checkpointing to make room.
 */
const SYNC_PROBABILITY = 0.1;

// ---- model ---------------------------------------------------------------------------

export type SnapEntry =
  | { type: 'file'; id: number; data: Buffer; sha: string; mode: number }
  | { type: 'dir'; mode: number }
  | { type: 'symlink'; target: string };

export interface AckMark {
  kind: 'tree' | 'file';
  via: 'base' | 'fsync' | 'fdatasync' | 'sync' | 'unmount';
  step: number;
  /** Tree ack: every path (root left out). File ack: the one synced path. */
  entries: Map<string, SnapEntry>;
}

export interface OpMark {
  step: number;
  /** e.g. "rename a/b -> c" (for failure messages). */
  text: string;
  /** Paths whose subtree the op may change (created, removed, renamed). */
  paths: string[];
  /** Inodes (file ids) whose mode the op may change; dirs by path. */
  attrIds: number[];
  attrPaths: string[];
  /** File contents the op may leave, per file id, in the order they may appear. */
  versions: Array<[number, Buffer]>;
}

type Node = { type: 'file'; id: number } | { type: 'dir'; mode: number } | { type: 'symlink'; target: string };
interface FileState { data: Buffer; mode: number }

const shaCache = new WeakMap<Buffer, string>();
export function sha256Of(data: Buffer): string {
  let sha = shaCache.get(data);
  if (sha === undefined) {
    sha = createHash('sha256').update(data).digest('hex');
    shaCache.set(data, sha);
  }
  return sha;
}

const parentOf = (p: string): string => (p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : '');
const depthOf = (p: string): number => (p === '' ? 0 : p.split('/').length);
const under = (p: string, prefix: string): boolean => p === prefix || p.startsWith(`${prefix}/`);

/** The namespace model: paths → nodes; file bytes per inode id (hard links share one). */
class TreeModel {
  readonly nodes = new Map<string, Node>([['', { type: 'dir', mode: 0o755 }]]);
  readonly files = new Map<number, FileState>();
  private nextId = 1;

  paths(type?: Node['type']): string[] {
    return [...this.nodes].filter(([p, n]) => p !== '' && (type === undefined || n.type === type)).map(([p]) => p);
  }
  dirs(): string[] { return ['', ...this.paths('dir')]; }
  children(dir: string): string[] { return this.paths().filter((p) => parentOf(p) === dir); }
  liveBytes(): number { let total = 0; for (const f of this.files.values()) total += f.data.length; return total; }

  createFile(p: string, data: Buffer): number {
    const id = this.nextId++;
    this.files.set(id, { data, mode: 0o644 });
    this.nodes.set(p, { type: 'file', id });
    return id;
  }

  fileId(p: string): number {
    const node = this.nodes.get(p);
    if (node?.type !== 'file') throw new Error(`model: ${p} is not a file`);
    return node.id;
  }

  /** Drop inodes no path names any more (open handles are tracked by the workload). */
  collect(keep: ReadonlySet<number>): void {
    const named = new Set<number>();
    for (const n of this.nodes.values()) if (n.type === 'file') named.add(n.id);
    for (const id of [...this.files.keys()]) if (!named.has(id) && !keep.has(id)) this.files.delete(id);
  }

  rename(a: string, b: string): void {
    const moved = [...this.nodes].filter(([p]) => under(p, a));
    for (const [p] of [...this.nodes]) if (under(p, b)) this.nodes.delete(p);
    for (const [p] of moved) this.nodes.delete(p);
    for (const [p, n] of moved) this.nodes.set(b + p.slice(a.length), n);
  }

  snapshot(): Map<string, SnapEntry> {
    const entries = new Map<string, SnapEntry>();
    for (const [p, n] of this.nodes) if (p !== '') entries.set(p, this.entryOf(n));
    return entries;
  }

  entryOf(n: Node): SnapEntry {
    if (n.type !== 'file') return { ...n };
    const f = this.files.get(n.id);
    if (f === undefined) throw new Error(`model: file ${n.id} has no state`);
    return { type: 'file', id: n.id, data: f.data, sha: sha256Of(f.data), mode: f.mode };
  }
}

// ---- base image ----------------------------------------------------------------------

/** What the base image holds besides lost+found (the workload's model starts from it). */
function populateModel(model: TreeModel): Array<() => (fs: Ext4Filesystem) => Promise<void>> {
  const steps: Array<() => (fs: Ext4Filesystem) => Promise<void>> = [];
  for (const dir of ['a', 'b', 'a/c']) {
    model.nodes.set(dir, { type: 'dir', mode: 0o755 });
    steps.push(() => async (fs) => { await fs.mkdir(`/${dir}`); });
  }
  for (const [p, size] of [['f', 5000], ['a/g', 70_000], ['b/d', 1_000], ['a/c/e', 300_000]] as const) {
    const data = contentBytes(0, `base:${p}`, 0, size);
    model.createFile(p, data);
    steps.push(() => async (fs) => { await fs.writeFile(`/${p}`, data); });
  }
  model.nodes.set('s', { type: 'symlink', target: 'a/g' });
  steps.push(() => async (fs) => { await fs.symlink('a/g', '/s'); });
  return steps;
}

/** A fresh 32 MiB ext4ts image with a 1024-block journal and a small populated tree. */
export async function makeCrashBase(): Promise<MemoryDevice> {
  const device = MemoryDevice.create({ sizeBytes: CRASH_IMAGE_BYTES });
  await mkfs(device, {
    assumeZeroed: true, journalBlocks: CRASH_JOURNAL_BLOCKS, now: new Date('2024-01-01T00:00:00Z'),
    uuid: Buffer.alloc(16, 0x5a), hashSeed: Buffer.alloc(16, 0xa5),
  });
  const fs = await mountReadWrite(device);
  for (const step of populateModel(new TreeModel())) await step()(fs);
  await fs.unmount();
  return device;
}

export function mountReadWrite(device: BlockDevice): Promise<Ext4Filesystem> {
  return Ext4.mount(device, { readOnly: false, commitIntervalMs: 0, uid: 0, gid: 0, umask: 0o022 });
}

// ---- the workload --------------------------------------------------------------------

export interface WorkloadStats {
  steps: number;
  acks: number;
  byOp: Record<string, number>;
  /** The journal's counters before unmount (commits, checkpoints, blocks logged). */
  journal?: { commits: number; checkpoints: number; blocksLogged: number; logBlocksTotal: number };
}

/**
 * Runs `steps` seeded operations on the recording device (over makeCrashBase's image),
 * marking each op before it starts and each acknowledgement after it resolves, then
 * unmounts (acknowledged too).
 */
export async function ext4Workload(
  device: RecordingDevice,
  mark: (label: string, data?: unknown) => void,
  options: { seed: number; steps: number },
): Promise<WorkloadStats> {
  const { seed } = options;
  const rng = makeRng(seed);
  const below = (n: number): number => Math.floor(rng() * n);
  const pick = <T>(items: readonly T[]): T => items[below(items.length)];
  const model = new TreeModel();
  populateModel(model);
  const stats: WorkloadStats = { steps: 0, acks: 0, byOp: {} };
  let dataCounter = 0;
  const data = (n: number): Buffer => contentBytes(seed, `w${dataCounter++}`, 0, n);
  const size = (): number => {
    const r = rng();
    return r < 0.6 ? below(12_000) : r < 0.92 ? below(100_000) : below(600_000);
  };
  /** Handles of unlinked files still open: [handle, file id]. */
  const orphans: Array<[FileHandle, number]> = [];
  const ackTree = (via: AckMark['via'], step: number): void => {
    stats.acks++;
    mark('ack', { kind: 'tree', via, step, entries: model.snapshot() } satisfies AckMark);
  };
  const ackFile = (via: AckMark['via'], step: number, p: string): void => {
    stats.acks++;
    mark('ack', { kind: 'file', via, step, entries: new Map([[p, model.entryOf(model.nodes.get(p)!)]]) } satisfies AckMark);
  };
  const newPath = (): string => {
    const dir = pick(model.dirs().filter((d) => depthOf(d) < DIR_DEPTH_MAX));
    return dir === '' ? pick(NAMES) : `${dir}/${pick(NAMES)}`;
  };
  const freePath = (): string | undefined => {
    for (let attempt = 0; attempt < 8; attempt++) {
      const p = newPath();
      if (!model.nodes.has(p)) return p;
    }
    return undefined;
  };

  mark('ack', { kind: 'tree', via: 'base', step: -1, entries: model.snapshot() } satisfies AckMark);
  const fs = await mountReadWrite(device);
  for (let step = 0; step < options.steps; step++) {
    const op: OpMark = { step, text: '', paths: [], attrIds: [], attrPaths: [], versions: [] };
    const files = model.paths('file');
    const full = model.liveBytes() > LIVE_DATA_BYTES_MAX;
    const r = rng() < SYNC_PROBABILITY ? 1 : rng();
    let run: (() => Promise<void>) | undefined;
    let name = '';
    if (r < 0.14 && !full) {
      name = 'writeFile';
      const p = rng() < 0.5 && files.length > 0 ? pick(files) : freePath();
      if (p === undefined) continue;
      const d = data(size());
      if (model.nodes.get(p)?.type === 'file') {
        const id = model.fileId(p);
        model.files.get(id)!.data = d;
        op.versions.push([id, Buffer.alloc(0)], [id, d]);
      } else {
        const id = model.createFile(p, d);
        op.paths.push(p);
        op.versions.push([id, Buffer.alloc(0)], [id, d]);
      }
      op.text = `writeFile ${p} (${d.length} bytes)`;
      run = () => fs.writeFile(`/${p}`, d);
    } else if (r < 0.24 && files.length > 0 && !full) {
      name = 'appendFile';
      const p = pick(files);
      const id = model.fileId(p);
      const d = data(size());
      const file = model.files.get(id)!;
      file.data = Buffer.concat([file.data, d]);
      op.versions.push([id, file.data]);
      op.text = `appendFile ${p} (+${d.length} bytes)`;
      run = () => fs.appendFile(`/${p}`, d);
    } else if (r < 0.36 && files.length > 0 && !full) {
      name = 'pwrite';
      const p = pick(files);
      const id = model.fileId(p);
      const file = model.files.get(id)!;
      const position = rng() < 0.8 ? below(file.data.length + 1) : file.data.length + below(50_000);
      const d = data(rng() < 0.7 ? 1 + below(20_000) : size() + 1);
      const next = Buffer.alloc(Math.max(file.data.length, position + d.length));
      file.data.copy(next);
      d.copy(next, position);
      file.data = next;
      op.versions.push([id, next]);
      const sync = rng() < 0.3;
      op.text = `pwrite ${p} @${position} (${d.length} bytes)${sync ? ' + fsync' : ''}`;
      run = async () => {
        const fh = await fs.open(`/${p}`, 'r+');
        try {
          await fh.write(d, 0, d.length, position);
          if (sync) {
            await fh.sync();
            ackFile('fsync', step, p);
          }
        } finally {
          await fh.close();
        }
      };
    } else if (r < 0.44 && files.length > 0) {
      name = 'truncate';
      const p = pick(files);
      const id = model.fileId(p);
      const file = model.files.get(id)!;
      const len = rng() < 0.6 ? below(file.data.length + 1) : file.data.length + below(200_000);
      const next = Buffer.alloc(len);
      file.data.copy(next, 0, 0, Math.min(len, file.data.length));
      file.data = next;
      op.versions.push([id, next]);
      op.text = `truncate ${p} to ${len}`;
      run = () => fs.truncate(`/${p}`, len);
    } else if (r < 0.52) {
      name = 'mkdir';
      const p = freePath();
      if (p === undefined) continue;
      model.nodes.set(p, { type: 'dir', mode: 0o755 });
      op.paths.push(p);
      op.text = `mkdir ${p}`;
      run = async () => { await fs.mkdir(`/${p}`); };
    } else if (r < 0.63) {
      name = 'rename';
      const all = model.paths();
      if (all.length === 0) continue;
      const a = pick(all);
      const source = model.nodes.get(a)!;
      let b: string | undefined;
      if (rng() < 0.4) {
        // Over an existing target of a compatible kind (an empty dir for a dir).
        const targets = all.filter((t) => t !== a && !under(t, a) && !under(a, t) &&
          (source.type === 'dir' ? model.nodes.get(t)!.type === 'dir' && model.children(t).length === 0 : model.nodes.get(t)!.type !== 'dir'));
        if (targets.length > 0) b = pick(targets);
      }
      b ??= freePath();
      const target = b === undefined ? undefined : model.nodes.get(b);
      // rename between two names of one inode does nothing (POSIX); not modelled.
      if (source.type === 'file' && target?.type === 'file' && target.id === source.id) continue;
      if (b === undefined || under(b, a) || depthOf(b) + subtreeDepth(model, a) > DIR_DEPTH_MAX + 1) continue;
      model.rename(a, b);
      op.paths.push(a, b);
      op.text = `rename ${a} -> ${b}`;
      const [from, to] = [a, b];
      run = () => fs.rename(`/${from}`, `/${to}`);
    } else if (r < 0.68 && files.length > 0) {
      name = 'link';
      const a = pick(files);
      const b = freePath();
      if (b === undefined) continue;
      model.nodes.set(b, { type: 'file', id: model.fileId(a) });
      op.paths.push(b);
      op.text = `link ${a} -> ${b}`;
      run = () => fs.link(`/${a}`, `/${b}`);
    } else if (r < 0.76) {
      name = 'unlink';
      const victims = [...model.paths('file'), ...model.paths('symlink')];
      if (victims.length === 0) continue;
      const p = pick(victims);
      model.nodes.delete(p);
      op.paths.push(p);
      op.text = `unlink ${p}`;
      run = () => fs.unlink(`/${p}`);
    } else if (r < 0.79) {
      name = 'rmdir';
      const empty = model.paths('dir').filter((d) => model.children(d).length === 0);
      if (empty.length === 0) continue;
      const p = pick(empty);
      model.nodes.delete(p);
      op.paths.push(p);
      op.text = `rmdir ${p}`;
      run = () => fs.rmdir(`/${p}`);
    } else if (r < 0.84) {
      name = 'symlink';
      const p = freePath();
      if (p === undefined) continue;
      const target = rng() < 0.8 ? pick(model.paths().concat(['nowhere'])) : `${'t'.repeat(70 + below(100))}`;
      model.nodes.set(p, { type: 'symlink', target });
      op.paths.push(p);
      op.text = `symlink ${p} -> ${target}`;
      run = () => fs.symlink(target, `/${p}`);
    } else if (r < 0.88) {
      name = 'chmod';
      const candidates = [...model.paths('file'), ...model.paths('dir')];
      if (candidates.length === 0) continue;
      const p = pick(candidates);
      const node = model.nodes.get(p)!;
      const mode = pick([0o600, 0o640, 0o644, 0o700, 0o755, 0o711]);
      if (node.type === 'file') {
        model.files.get(node.id)!.mode = mode;
        op.attrIds.push(node.id);
      } else if (node.type === 'dir') {
        node.mode = mode;
        op.attrPaths.push(p);
      }
      op.text = `chmod ${p} ${mode.toString(8)}`;
      run = () => fs.chmod(`/${p}`, mode);
    } else if (r < 0.9) {
      name = 'utimes';
      const all = model.paths();
      if (all.length === 0) continue;
      const p = pick(all);
      const when = new Date(Date.UTC(2020, 0, 1) + below(1e9) * 1000);
      op.text = `utimes ${p}`;
      run = () => (model.nodes.get(p)!.type === 'symlink' ? fs.lutimes(`/${p}`, when, when) : fs.utimes(`/${p}`, when, when));
    } else if (r < 0.93 && files.length > 0 && orphans.length < 3 && !full) {
      name = 'unlinkOpen';
      // Open, unlink, keep writing through the handle: the inode waits on the orphan list.
      const p = pick(files);
      const id = model.fileId(p);
      const file = model.files.get(id)!;
      const d = data(1 + below(30_000));
      const position = file.data.length;
      file.data = Buffer.concat([file.data, d]);
      model.nodes.delete(p);
      op.paths.push(p);
      op.versions.push([id, file.data]);
      const sync = rng() < 0.5;
      op.text = `open+unlink ${p}, append ${d.length} bytes${sync ? ' + fsync' : ''}`;
      run = async () => {
        const fh = await fs.open(`/${p}`, 'r+');
        orphans.push([fh, id]);
        await fs.unlink(`/${p}`);
        await fh.write(d, 0, d.length, position);
        if (sync) await fh.sync();
      };
    } else if (r < 0.95 && orphans.length > 0) {
      name = 'closeOrphan';
      const [fh] = orphans.splice(below(orphans.length), 1)[0];
      op.text = 'close an unlinked file';
      run = () => fh.close();
    } else {
      name = 'sync';
      const how = rng();
      if (how < 0.4 && files.length > 0) {
        const p = pick(files);
        op.text = `fsync ${p}`;
        run = async () => {
          const fh = await fs.open(`/${p}`, 'r');
          try { await fh.sync(); } finally { await fh.close(); }
          ackFile('fsync', step, p);
        };
      } else if (how < 0.6 && files.length > 0) {
        const p = pick(files);
        op.text = `fdatasync ${p}`;
        run = async () => {
          const fh = await fs.open(`/${p}`, 'r');
          try { await fh.datasync(); } finally { await fh.close(); }
          ackFile('fdatasync', step, p);
        };
      } else {
        op.text = 'fs.sync()';
        run = async () => { await fs.sync(); ackTree('sync', step); };
      }
    }
    if (run === undefined) continue;
    model.collect(new Set(orphans.map(([, id]) => id)));
    mark('op', op);
    try {
      await run();
    } catch (error) {
      throw new Error(`workload seed ${seed} step ${step} (${op.text}) failed: ${(error as Error).message}`, { cause: error });
    }
    stats.steps++;
    stats.byOp[name] = (stats.byOp[name] ?? 0) + 1;
  }
  mark('op', { step: options.steps, text: 'unmount', paths: [], attrIds: [], attrPaths: [], versions: [] } satisfies OpMark);
  const journal = fs.mount.journal?.stats;
  if (journal !== undefined) stats.journal = { commits: journal.commits, checkpoints: journal.checkpoints, blocksLogged: journal.blocksLogged, logBlocksTotal: journal.logBlocksTotal };
  await fs.unmount();
  model.collect(new Set());
  ackTree('unmount', options.steps);
  return stats;
}

function subtreeDepth(model: TreeModel, p: string): number {
  let deepest = 0;
  for (const q of model.paths()) if (under(q, p)) deepest = Math.max(deepest, depthOf(q) - depthOf(p) + 1);
  return deepest;
}

// ---- the check -----------------------------------------------------------------------

/** A recovered tree as the checker needs it (readImageTree's or readHostTree's shape). */
export interface SeenEntry { type: string; mode: number; sha256?: string; target?: string }

export interface SeenTree {
  entries: ReadonlyMap<string, SeenEntry>;
  readFile(path: string): Promise<Buffer>;
}

/** Paths the base image has that the model leaves out. */
const IGNORED_PATHS = ['lost+found'];

function asAck(mark: RecordedMark): AckMark { return mark.data as AckMark; }
function asOp(mark: RecordedMark): OpMark { return mark.data as OpMark; }

/**
 * Every problem with a recovered tree given the markers before the crash point (empty =
 * it holds everything acknowledged; see the header for exactly what that means).
 */
export async function checkAcknowledged(seen: SeenTree, acknowledged: readonly RecordedMark[]): Promise<string[]> {
  let lastTree = -1;
  acknowledged.forEach((m, index) => { if (m.label === 'ack' && asAck(m).kind === 'tree') lastTree = index; });
  if (lastTree < 0) throw new Error('no tree acknowledgement before the crash point (the base one is missing)');
  const problems: string[] = [];
  for (let index = lastTree; index < acknowledged.length; index++) {
    const m = acknowledged[index];
    if (m.label !== 'ack' || (index !== lastTree && asAck(m).kind !== 'file')) continue;
    const later = acknowledged.slice(index + 1).filter((x) => x.label === 'op').map(asOp);
    problems.push(...(await checkOneAck(seen, asAck(m), later)));
  }
  return problems;
}

async function checkOneAck(seen: SeenTree, ack: AckMark, later: readonly OpMark[]): Promise<string[]> {
  const problems: string[] = [];
  const touched = later.flatMap((op) => op.paths);
  const uncertain = (p: string): boolean => touched.some((t) => under(p, t));
  const attrIds = new Set(later.flatMap((op) => op.attrIds));
  const attrPaths = new Set(later.flatMap((op) => op.attrPaths));
  const versions = new Map<number, Buffer[]>();
  for (const [, entry] of ack.entries) if (entry.type === 'file') versions.set(entry.id, [entry.data]);
  for (const op of later) for (const [id, data] of op.versions) versions.set(id, [...(versions.get(id) ?? []), data]);
  const context = `${ack.via} ack at step ${ack.step}, ${later.length} later op(s)${later.length > 0 ? ` [${later.map((op) => op.text).join('; ')}]` : ''}`;

  for (const [p, expected] of ack.entries) {
    if (uncertain(p)) continue;
    const actual = seen.entries.get(p);
    if (actual === undefined) { problems.push(`${p}: acknowledged ${expected.type} is missing (${context})`); continue; }
    if (actual.type !== expected.type) { problems.push(`${p}: acknowledged ${expected.type} is a ${actual.type} (${context})`); continue; }
    if (expected.type === 'symlink' && actual.target !== expected.target) problems.push(`${p}: symlink target '${actual.target}', acknowledged '${expected.target}'`);
    if (expected.type === 'dir' && !attrPaths.has(p) && actual.mode !== expected.mode) problems.push(`${p}: dir mode ${actual.mode.toString(8)}, acknowledged ${expected.mode.toString(8)}`);
    if (expected.type !== 'file') continue;
    if (!attrIds.has(expected.id) && actual.mode !== expected.mode) problems.push(`${p}: mode ${actual.mode.toString(8)}, acknowledged ${expected.mode.toString(8)}`);
    if (actual.sha256 === expected.sha) continue;
    const candidates = versions.get(expected.id) ?? [expected.data];
    const bytes = await seen.readFile(p);
    const why = composedOf(bytes, candidates);
    if (why !== null) problems.push(`${p}: ${bytes.length} bytes that are neither the acknowledged ${expected.data.length} nor a later version: ${why} (${context})`);
  }
  if (ack.kind !== 'tree') return problems;
  const knownShas = new Set<string>();
  for (const list of versions.values()) for (const data of list) knownShas.add(sha256Of(data));
  for (const [p, actual] of seen.entries) {
    if (IGNORED_PATHS.some((q) => under(p, q))) continue;
    if (!uncertain(p)) {
      if (!ack.entries.has(p)) problems.push(`${p}: a ${actual.type} that was neither acknowledged nor touched since (${context})`);
      continue;
    }
    if (actual.type !== 'file' || (actual.sha256 !== undefined && knownShas.has(actual.sha256))) continue;
    const bytes = await seen.readFile(p);
    const fits = [...versions.values()].some((list) => composedOf(bytes, list) === null);
    if (!fits) problems.push(`${p}: a file of ${bytes.length} bytes composed of no inode's versions (${context})`);
  }
  return problems;
}

/**
 * null when `actual` is a composition of `versions` (see the header), else why not.
 * Cost: one compare per version per block; per byte only where a block matched none.
 */
export function composedOf(actual: Buffer, versions: readonly Buffer[]): string | null {
  if (!versions.some((v) => v.length === actual.length)) {
    return `size ${actual.length} is none of the versions' sizes (${[...new Set(versions.map((v) => v.length))].join(', ')})`;
  }
  const zeros = Buffer.alloc(BLOCK_BYTES);
  const blockOf = (v: Buffer, start: number, end: number): Buffer => {
    if (start >= v.length) return zeros.subarray(0, end - start);
    if (end <= v.length) return v.subarray(start, end);
    return Buffer.concat([v.subarray(start), zeros.subarray(0, end - v.length)]);
  };
  for (let start = 0; start < actual.length; start += BLOCK_BYTES) {
    const end = Math.min(actual.length, start + BLOCK_BYTES);
    const block = actual.subarray(start, end);
    const sources = versions.map((v) => blockOf(v, start, end));
    if (sources.some((s) => s.equals(block))) continue;
    for (let i = 0; i < block.length; i++) {
      if (!sources.some((s) => s[i] === block[i])) return `byte ${start + i} (0x${block[i].toString(16)}) is in no version`;
    }
  }
  return null;
}
