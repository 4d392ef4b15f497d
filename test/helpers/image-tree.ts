// readImageTree: an ext4ts-mounted filesystem read into readHostTree's shape (tree.ts), so
// a tree seen through ext4ts can be diffed field by field against the host, the kernel's
// view of a loop mount, or a fixture's source snapshot. Reads every file whole (sha256).
import { createHash } from 'node:crypto';
import type { Ext4Filesystem } from '@ext4ts/core';
import { entryType, type HostEntry, type HostTree } from './tree.js';

export interface ImageTreeRead {
  tree: HostTree;
  bytesRead: number;
  files: number;
}

/** Walk `fs` from its root (the root itself left out, as readHostTree does). */
export async function readImageTree(fs: Ext4Filesystem): Promise<ImageTreeRead> {
  const tree: HostTree = new Map();
  const firstPathOfIno = new Map<bigint, string>();
  const inoOf = new Map<string, bigint>();
  let bytesRead = 0, files = 0;
  const walk = async (relDir: string): Promise<void> => {
    const names = (await fs.readdir(`/${relDir}`)).sort();
    for (const name of names) {
      const rel = relDir === '' ? name : `${relDir}/${name}`;
      const s = await fs.lstat(`/${rel}`, { bigint: true });
      const type = entryType(s);
      const entry: HostEntry = {
        type, mode: Number(s.mode & 0o7777n), uid: Number(s.uid), gid: Number(s.gid), size: Number(s.size),
        blocks: Number(s.blocks), nlink: Number(s.nlink), linkGroup: rel,
        mtimeNs: s.mtimeNs, atimeNs: s.atimeNs, ctimeNs: s.ctimeNs,
      };
      inoOf.set(rel, s.ino);
      const first = firstPathOfIno.get(s.ino);
      if (first === undefined || rel < first) firstPathOfIno.set(s.ino, rel);
      if (type === 'symlink') entry.target = await fs.readlink(`/${rel}`);
      if (type === 'file') {
        const bytes = await fs.readFile(`/${rel}`);
        bytesRead += bytes.length;
        files++;
        entry.sha256 = createHash('sha256').update(bytes).digest('hex');
      }
      tree.set(rel, entry);
      if (type === 'dir') await walk(rel);
    }
  };
  await walk('');
  // Hard links: every name of an inode gets the smallest of its paths, like readHostTree.
  for (const [rel, entry] of tree) entry.linkGroup = firstPathOfIno.get(inoOf.get(rel) as bigint) ?? rel;
  return { tree, bytesRead, files };
}
