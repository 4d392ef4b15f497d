#!/usr/bin/env node
/**
 * The `ext4ts` command: make, inspect and copy out of ext4 images.
 *
 *   ext4ts mkfs IMAGE --size 1G [--label L]
 *   ext4ts info IMAGE
 *   ext4ts ls [-l] [-R] [-a] IMAGE [PATH]
 *   ext4ts cat IMAGE PATH...
 *   ext4ts stat IMAGE PATH...
 *   ext4ts cp [-r] IMAGE SOURCE TARGET         (out of the image)
 *   ext4ts cp [-r] SOURCE... IMAGE:/PATH       (into the image: the last argument names
 *                                              an existing image file, a colon, an absolute path)
 *   ext4ts mkdir [-p] IMAGE PATH...
 *   ext4ts rm [-r] [-f] IMAGE PATH...
 *   ext4ts mv IMAGE SOURCE TARGET
 *   ext4ts ln [-s] IMAGE TARGET LINK
 *   ext4ts chmod IMAGE MODE PATH...
 *   ext4ts touch [-d TIME] IMAGE PATH...
 *   ext4ts demo
 *   ext4ts fsx [fsx options] [--buffered iomap|buffer_head] [--no-large-folios]
 *              [--cache-size SIZE] [--image FILE] [fname]   (fsx exerciser on an ext4ts file)
 *   ext4ts bench [fio options] [--buffered iomap|buffer_head] [--no-large-folios]
 *              [--device memory|FILE] [--repeat N] [--full] [--peers LIST] [JOBFILE...]
 *              (fio-style benchmark; no job: the seed's table and its peers)
 *
 * Exit codes: 0 ok, 1 an operation failed (FsError, printed as `ext4ts: CODE: …`; fsx: a
 * check failed; bench: an ext4ts configuration failed), 2 bad usage.
 */
import { FsError } from '@ext4ts/core';
import { UsageError } from './args.js';
import { commands } from './commands.js';

const USAGE = `usage: ext4ts <command> [options]
  mkfs IMAGE --size SIZE [--label L]   make an ext4 filesystem (like mkfs.ext4 -b 4096)
  info IMAGE                           superblock and journal summary (like dumpe2fs -h)
  ls [-l] [-R] [-a] IMAGE [PATH]       list a directory
  cat IMAGE PATH...                    print files
  stat IMAGE PATH...                   show inode details
  cp [-r] IMAGE SOURCE TARGET          copy a file or tree out of the image
  cp [-r] SOURCE... IMAGE:/PATH        copy host files or trees into the image (modes, owners,
                                       times, symlinks, hard links kept)
  mkdir [-p] IMAGE PATH...             make directories (-p: with parents, no error if present)
  rm [-r] [-f] IMAGE PATH...           remove files (-r: trees; -f: missing paths are fine)
  mv IMAGE SOURCE TARGET               rename or move (into TARGET if it is a directory)
  ln [-s] IMAGE TARGET LINK            hard link (-s: symbolic link holding TARGET)
  chmod IMAGE MODE PATH...             set permission bits (octal)
  touch [-d TIME] IMAGE PATH...        create if missing; set atime and mtime (now, or -d:
                                       seconds since the epoch or a date string)
  demo                                 make and inspect a filesystem on the in-memory device
  fsx [options] [fname]                fsx exerciser on one file of an ext4ts image (fstests'
                                       option letters -N -S -l -o -R -W -F -H -z --replay-ops,
                                       plus --buffered, --no-large-folios, --cache-size, --image;
                                       'ext4ts fsx -h' lists them)
  bench [options] [JOBFILE...]         fio-style benchmark (fio's option names and job files); no
                                       job: the seed's table on buffer_head, iomap and iomap + large
                                       folios, with the kernel, ext2fs, node fs and the copy limit
                                       beside it ('ext4ts bench -h' lists the options)`;

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    console.log(USAGE);
    return name === undefined ? 2 : 0;
  }
  const command = commands[name];
  if (command === undefined) throw new UsageError(`unknown command '${name}'`);
  return (await command(rest)) ?? 0;
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (error: unknown) => {
    if (error instanceof UsageError) {
      console.error(`ext4ts: ${error.message}\n${USAGE}`);
      process.exitCode = 2;
    } else if (FsError.is(error)) {
      console.error(`ext4ts: ${error.message}`);
      process.exitCode = 1;
    } else {
      throw error;
    }
  },
);
