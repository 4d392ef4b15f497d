#!/usr/bin/env node
// The test suites use e2fsprogs (mkfs.ext4, e2fsck, debugfs, dumpe2fs) as oracles.
// On a fresh Debian machine run as root, install them; elsewhere say what is missing.
import { spawnSync } from 'node:child_process';

const tools = ['mkfs.ext4', 'e2fsck', 'debugfs', 'dumpe2fs'];
const has = (t) => spawnSync('sh', ['-c', `command -v ${t} || test -x /sbin/${t} || test -x /usr/sbin/${t}`]).status === 0;
const missing = tools.filter((t) => !has(t));
if (missing.length === 0) process.exit(0);

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const hasApt = spawnSync('sh', ['-c', 'command -v apt-get']).status === 0;
if (!isRoot || !hasApt) {
  console.error(`ext4ts tests need e2fsprogs (missing: ${missing.join(', ')}). Install it, e.g. 'sudo apt-get install e2fsprogs'.`);
  process.exit(1);
}
console.log(`installing e2fsprogs (missing: ${missing.join(', ')})`);
for (const args of [['update'], ['install', '-y', '--no-install-recommends', 'e2fsprogs']]) {
  const r = spawnSync('apt-get', args, { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
