/** Text renderings of stat results, in the style of ls -l and GNU stat. */
import type { BigIntStats } from '@ext4ts/core';

const TYPE_CHARS: Record<number, string> = { 0o010000: 'p', 0o020000: 'c', 0o040000: 'd', 0o060000: 'b', 0o100000: '-', 0o120000: 'l', 0o140000: 's' };

/** "drwxr-xr-x", with s/S, t/T for setuid, setgid and sticky. */
export function modeString(mode: number): string {
  const type = TYPE_CHARS[mode & 0o170000] ?? '?';
  const bits = ['r', 'w', 'x', 'r', 'w', 'x', 'r', 'w', 'x'].map((c, i) => ((mode >> (8 - i)) & 1 ? c : '-'));
  const special = (i: number, bit: number, on: string) => {
    if ((mode & bit) !== 0) bits[i] = bits[i] === 'x' ? on : on.toUpperCase();
  };
  special(2, 0o4000, 's');
  special(5, 0o2000, 's');
  special(8, 0o1000, 't');
  return type + bits.join('');
}

/** ISO-like time with nanoseconds, UTC: 2024-01-02 03:04:05.123456789 +0000. */
export function timeString(ns: bigint): string {
  const sec = ns / 1_000_000_000n - (ns < 0n && ns % 1_000_000_000n !== 0n ? 1n : 0n);
  const frac = ns - sec * 1_000_000_000n;
  const iso = new Date(Number(sec) * 1000).toISOString().replace('T', ' ').replace(/\.\d+Z$/, '');
  return `${iso}.${frac.toString().padStart(9, '0')} +0000`;
}

export function lsLine(st: BigIntStats, name: string, target?: string): string {
  const date = new Date(Number(st.mtimeMs)).toISOString().slice(0, 16).replace('T', ' ');
  const size = st.isCharacterDevice() || st.isBlockDevice() ? `${st.rdev >> 8n}, ${st.rdev & 0xffn}` : String(st.size);
  return `${modeString(Number(st.mode))} ${String(st.nlink).padStart(3)} ${String(st.uid).padStart(5)} ${String(st.gid).padStart(5)} ${size.padStart(10)} ${date} ${name}${target === undefined ? '' : ` -> ${target}`}`;
}

export function statText(path: string, st: BigIntStats, target?: string): string {
  const kind = st.isFile() ? (st.size === 0n ? 'regular empty file' : 'regular file') : st.isDirectory() ? 'directory'
    : st.isSymbolicLink() ? 'symbolic link' : st.isFIFO() ? 'fifo' : st.isSocket() ? 'socket'
    : st.isCharacterDevice() ? 'character special file' : 'block special file';
  return [
    `  File: ${path}${target === undefined ? '' : ` -> ${target}`}`,
    `  Size: ${st.size}\tBlocks: ${st.blocks}\tIO Block: ${st.blksize}\t${kind}`,
    `Device: ${st.dev}\tInode: ${st.ino}\tLinks: ${st.nlink}`,
    `Access: (${(Number(st.mode) & 0o7777).toString(8).padStart(4, '0')}/${modeString(Number(st.mode))})  Uid: ${st.uid}  Gid: ${st.gid}`,
    `Access: ${timeString(st.atimeNs)}`,
    `Modify: ${timeString(st.mtimeNs)}`,
    `Change: ${timeString(st.ctimeNs)}`,
    ` Birth: ${timeString(st.birthtimeNs)}`,
  ].join('\n');
}
