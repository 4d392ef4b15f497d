import { describe, it, expect } from 'vitest';
import path from 'node:path';
import { Ext4, FileDevice, mkfs } from '@ext4ts/core';
import { e2fsck } from '../helpers/e2fs.js';
import { makeTempDir } from '../helpers/tmp.js';

describe('smoke', () => {
  it('create, write, unlink', async () => {
    const tmp = makeTempDir('ext4ts-smoke-');
    const img = path.join(tmp.dir, 'a.img');
    const sizeBytes = 64 * 2 ** 20;
    const device = await FileDevice.open(img, { create: true, sizeBytes });
    await mkfs(device, { sizeBytes, assumeZeroed: true });
    const fs = await Ext4.mount(device, { readOnly: false, commitIntervalMs: 0 });
    await fs.writeFile('/a.txt', 'hello world');
    await fs.mkdir('/d/e/f', { recursive: true });
    await fs.writeFile('/d/big', Buffer.alloc(5 * 2 ** 20, 7));
    await fs.symlink('short', '/d/s1');
    await fs.symlink('x'.repeat(100), '/d/s2');
    await fs.link('/a.txt', '/d/hard');
    await fs.rename('/d/e', '/e2');
    await fs.truncate('/d/big', 5000);
    await fs.appendFile('/a.txt', '!!');
    expect(await fs.readFile('/a.txt', 'utf8')).toBe('hello world!!');
    expect(await fs.readlink('/d/s2')).toBe('x'.repeat(100));
    await fs.writeFile('/gone', 'bye');
    await fs.unlink('/gone');
    await fs.unmount();
    await device.close();
    const r = await e2fsck(img);
    console.log(r.output);
    expect(r.clean).toBe(true);
    tmp.cleanup();
  });
});
