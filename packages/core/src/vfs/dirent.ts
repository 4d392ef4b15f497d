/**
 * Dirent: what readdir({ withFileTypes: true }) returns, shaped like node's fs.Dirent.
 * The type comes from the directory entry (filetype feature) or, when that says
 * "unknown", from the inode.
 */
import { DirFileType } from '../format/dirent.js';
import { FileType, S_IFMT } from '../format/inode.js';

/** dirent file_type → S_IFMT bits. */
export function modeTypeOfDirFileType(fileType: number): number {
  switch (fileType) {
    case DirFileType.REG: return FileType.REG;
    case DirFileType.DIR: return FileType.DIR;
    case DirFileType.CHR: return FileType.CHR;
    case DirFileType.BLK: return FileType.BLK;
    case DirFileType.FIFO: return FileType.FIFO;
    case DirFileType.SOCK: return FileType.SOCK;
    case DirFileType.LNK: return FileType.LNK;
    default: return 0;
  }
}

export class Dirent<Name extends string | Buffer = string> {
  /** The entry's name (a string decoded as UTF-8, or the raw bytes with encoding 'buffer'). */
  readonly name: Name;
  /** The directory that holds the entry (node ≥ 20.12 calls it parentPath). */
  readonly parentPath: string;
  readonly path: string;
  /** The inode number the entry names. */
  readonly ino: number;
  private readonly typeBits: number;

  constructor(name: Name, parentPath: string, ino: number, modeType: number) {
    this.name = name;
    this.parentPath = parentPath;
    this.path = parentPath;
    this.ino = ino;
    this.typeBits = modeType & S_IFMT;
  }

  isFile(): boolean { return this.typeBits === FileType.REG; }
  isDirectory(): boolean { return this.typeBits === FileType.DIR; }
  isSymbolicLink(): boolean { return this.typeBits === FileType.LNK; }
  isBlockDevice(): boolean { return this.typeBits === FileType.BLK; }
  isCharacterDevice(): boolean { return this.typeBits === FileType.CHR; }
  isFIFO(): boolean { return this.typeBits === FileType.FIFO; }
  isSocket(): boolean { return this.typeBits === FileType.SOCK; }
}
