#!/usr/bin/env node
/**
 * The `ext4ts` command: make, inspect and copy out of ext4 images.
 *
 *   ext4ts mkfs IMAGE --size 1G [--label L]
 *   ext4ts info IMAGE
 *   ext4ts ls [-l] [-R] [-a] IMAGE [PATH]
 *   ext4ts cat IMAGE PATH...
 *   ext4ts stat IMAGE PATH...
 *   ext4ts cp [-r] IMAGE SOURCE TARGET
 *   ext4ts demo
 *
 * Exit codes: 0 ok, 1 an operation failed (FsError, printed as `ext4ts: CODE: …`),
 * 2 bad usage.
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
  demo                                 make and inspect a filesystem on the in-memory device`;

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    console.log(USAGE);
    return name === undefined ? 2 : 0;
  }
  const command = commands[name];
  if (command === undefined) throw new UsageError(`unknown command '${name}'`);
  await command(rest);
  return 0;
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
