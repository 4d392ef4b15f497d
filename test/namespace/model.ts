// A model of a filesystem namespace for the seeded sequences in random-ops.test.ts: paths
// → nodes, files share one FileObj per inode (hard links), and every operation predicts
// its error code exactly as ext4ts and Linux report it (null = success).
import { createHash } from 'node:crypto';
import type { HostEntry, HostTree } from '../helpers/tree.js';

export interface FileObj { data: Buffer; mode: number; id: number }
export type ModelNode = { type: 'file'; file: FileObj } | { type: 'dir'; mode: number } | { type: 'symlink'; target: string };

export class Model {
  readonly nodes = new Map<string, ModelNode>([['', { type: 'dir', mode: 0o755 }]]);
  private nextId = 1;

  static parentOf(p: string): string { return p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : ''; }

  get(p: string): ModelNode | undefined { return this.nodes.get(p); }

  children(dir: string): string[] {
    const prefix = dir === '' ? '' : `${dir}/`;
    return [...this.nodes.keys()].filter((k) => k !== '' && k.startsWith(prefix) && !k.slice(prefix.length).includes('/') && k !== dir);
  }

  dirs(): string[] { return [...this.nodes].filter(([, n]) => n.type === 'dir').map(([k]) => k); }
  files(): string[] { return [...this.nodes].filter(([, n]) => n.type === 'file').map(([k]) => k); }

  /** Error for a path whose parent must be an existing directory. */
  private parentError(p: string): string | null {
    const parent = this.nodes.get(Model.parentOf(p));
    if (parent === undefined) return 'ENOENT';
    return parent.type === 'dir' ? null : 'ENOTDIR';
  }

  write(p: string, data: Buffer, append: boolean): string | null {
    const e = this.parentError(p);
    if (e !== null) return e;
    const n = this.nodes.get(p);
    if (n?.type === 'dir') return 'EISDIR';
    if (n?.type === 'file') { n.file.data = append ? Buffer.concat([n.file.data, data]) : data; return null; }
    this.nodes.set(p, { type: 'file', file: { data, mode: 0o644, id: this.nextId++ } });
    return null;
  }

  truncate(p: string, len: number): string | null {
    const n = this.nodes.get(p);
    if (n === undefined) return 'ENOENT';
    if (n.type !== 'file') return n.type === 'dir' ? 'EISDIR' : 'EINVAL';
    const d = n.file.data;
    n.file.data = len <= d.length ? d.subarray(0, len) : Buffer.concat([d, Buffer.alloc(len - d.length)]);
    return null;
  }

  mkdir(p: string): string | null {
    const e = this.parentError(p);
    if (e !== null) return e;
    if (this.nodes.has(p)) return 'EEXIST';
    this.nodes.set(p, { type: 'dir', mode: 0o755 });
    return null;
  }

  rmdir(p: string): string | null {
    const e = this.parentError(p);
    if (e !== null) return e;
    const n = this.nodes.get(p);
    if (n === undefined) return 'ENOENT';
    if (n.type !== 'dir') return 'ENOTDIR';
    if (this.children(p).length > 0) return 'ENOTEMPTY';
    this.nodes.delete(p);
    return null;
  }

  unlink(p: string): string | null {
    const e = this.parentError(p);
    if (e !== null) return e;
    const n = this.nodes.get(p);
    if (n === undefined) return 'ENOENT';
    if (n.type === 'dir') return 'EISDIR';
    this.nodes.delete(p);
    return null;
  }

  symlink(target: string, p: string): string | null {
    const e = this.parentError(p);
    if (e !== null) return e;
    if (this.nodes.has(p)) return 'EEXIST';
    this.nodes.set(p, { type: 'symlink', target });
    return null;
  }

  link(a: string, b: string): string | null {
    const n = this.nodes.get(a);
    if (n === undefined) return this.parentError(a) ?? 'ENOENT';
    const e = this.parentError(b);
    if (e !== null) return e;
    if (n.type === 'dir') return 'EPERM';
    if (this.nodes.has(b)) return 'EEXIST';
    this.nodes.set(b, n);
    return null;
  }

  chmod(p: string, mode: number): string | null {
    const n = this.nodes.get(p);
    if (n === undefined) return 'ENOENT';
    if (n.type === 'file') n.file.mode = mode;
    else if (n.type === 'dir') n.mode = mode;
    return null;
  }

  rename(a: string, b: string): string | null {
    const ea = this.parentError(a);
    if (ea !== null) return ea;
    const eb = this.parentError(b);
    if (eb !== null) return eb;
    const src = this.nodes.get(a);
    if (src === undefined) return 'ENOENT';
    const dst = this.nodes.get(b);
    if (dst === src) return null;
    if (dst !== undefined) {
      if (src.type === 'dir' && dst.type !== 'dir') return 'ENOTDIR';
      if (src.type !== 'dir' && dst.type === 'dir') return 'EISDIR';
      if (dst.type === 'dir' && this.children(b).length > 0) return 'ENOTEMPTY';
    }
    if (src.type === 'dir' && (b === a || b.startsWith(`${a}/`))) return 'EINVAL';
    const moved = [...this.nodes].filter(([k]) => k === a || k.startsWith(`${a}/`));
    for (const [k] of moved) this.nodes.delete(k);
    this.nodes.delete(b);
    for (const [k, n] of moved) this.nodes.set(b + k.slice(a.length), n);
    return null;
  }

  /** The tree readImageTree should report (root and ignored names left out). */
  expected(): HostTree {
    const tree: HostTree = new Map();
    const names = new Map<number, string[]>();
    for (const [p, n] of this.nodes) if (n.type === 'file') names.set(n.file.id, [...(names.get(n.file.id) ?? []), p]);
    for (const [p, n] of [...this.nodes].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))) {
      if (p === '') continue;
      const base: Omit<HostEntry, 'type' | 'mode' | 'size' | 'nlink'> = { uid: 0, gid: 0, blocks: 0, linkGroup: p, mtimeNs: 0n, atimeNs: 0n, ctimeNs: 0n };
      if (n.type === 'file') {
        const all = (names.get(n.file.id) ?? []).sort();
        tree.set(p, { ...base, type: 'file', mode: n.file.mode, size: n.file.data.length, nlink: all.length, linkGroup: all[0], sha256: createHash('sha256').update(n.file.data).digest('hex') });
      } else if (n.type === 'dir') {
        tree.set(p, { ...base, type: 'dir', mode: n.mode, size: 0, nlink: 2 + this.children(p).filter((c) => this.nodes.get(c)?.type === 'dir').length + (p === '' ? 1 : 0) });
      } else {
        tree.set(p, { ...base, type: 'symlink', mode: 0o777, size: Buffer.byteLength(n.target), nlink: 1, target: n.target });
      }
    }
    return tree;
  }
}
