/**
 * Test support for the wasm core (used by *.test.ts here and in bench/; not part of the
 * public API): build the module when a fresh checkout has not, and a seeded PRNG so every
 * random test reproduces from its seed.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const WASM_PATH = fileURLToPath(new URL('../../../../wasm/build/ext4ts.wasm', import.meta.url));
const BUILD_SCRIPT = fileURLToPath(new URL('../../../../wasm/build.mjs', import.meta.url));
const SOURCE_DIR = fileURLToPath(new URL('../../../../wasm/assembly/', import.meta.url));

// Newest modification time of the AssemblyScript sources and the build script.
function sourcesModifiedMs(): number {
  const files = readdirSync(SOURCE_DIR).map((name) => SOURCE_DIR + name);
  return Math.max(statSync(BUILD_SCRIPT).mtimeMs, ...files.map((file) => statSync(file).mtimeMs));
}

/**
 * Run wasm/build.mjs when wasm/build/ext4ts.wasm is missing or older than its sources
 * (~3 s), so `vitest run <file>` works on a fresh checkout and never tests a stale module.
 */
export function ensureWasmBuilt(): void {
  if (existsSync(WASM_PATH) && statSync(WASM_PATH).mtimeMs >= sourcesModifiedMs()) return;
  execFileSync(process.execPath, [BUILD_SCRIPT], { stdio: 'inherit' });
}

export { seededRandom, randomBelow } from '../random.js';
