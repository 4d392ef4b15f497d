/**
 * Test support for the writeback pool (not part of the public API). Vitest runs the
 * TypeScript sources, but piscina starts its workers from the compiled entry
 * dist/writeback/worker.js (pool.ts: writebackWorkerFilename), so a test that wants real
 * workers first brings packages/core/dist up to date. Cost: `tsc -b packages/core` is
 * incremental — ~0.2 s when nothing changed, a few seconds after edits.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { writebackWorkerFilename } from './pool.js';

const CORE_PROJECT_DIR = fileURLToPath(new URL('../../', import.meta.url));

/**
 * Build packages/core (tsc -b) so the worker entry matches the sources. Type errors
 * elsewhere in the package do not stop the emit (tsc ≥ 5.6 builds through them), so only
 * a missing entry afterwards is an error.
 */
export function ensureWritebackWorkerBuilt(): void {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  let output = '';
  try {
    execFileSync(process.execPath, [tsc, '-b', CORE_PROJECT_DIR], { stdio: 'pipe' });
  } catch (error) {
    output = String((error as { stdout?: unknown }).stdout ?? error);
  }
  const filename = writebackWorkerFilename();
  if (!existsSync(filename)) throw new Error(`writeback worker entry ${filename} missing after tsc -b: ${output}`);
}
