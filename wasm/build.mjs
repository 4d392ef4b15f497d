// Builds wasm/assembly/index.ts → wasm/build/ext4ts.wasm (+ .wat) with the AssemblyScript
// compiler's programmatic API, so a fresh machine needs only Node and npm packages.
//
// Memory: imported from env.memory, shared, declared maximum 65536 pages (4 GiB) so one
// memory can back the engine thread and every worker. Runtime: stub (the kernels never
// allocate). abort is aliased to a trap so the module imports nothing but its memory.
// --zeroFilledMemory drops all-zero data segments: otherwise a worker instantiating over
// the live memory would re-zero the crc32c tables while the engine thread reads them.
// The module may then carry no data segment at all (checked below); its start function
// rewrites the tables with identical bytes, which is harmless to concurrent readers.
import asc from 'assemblyscript/asc';
import { mkdirSync, readFileSync, renameSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const outWasm = join(here, 'build', 'ext4ts.wasm');
const outWat = join(here, 'build', 'ext4ts.wat');
const MAXIMUM_PAGES = 65536;

mkdirSync(dirname(outWasm), { recursive: true });
// asc names elements by path relative to its working directory (see --use below).
process.chdir(here);
const args = [
  'assembly/index.ts',
  '--outFile', `build/ext4ts.wasm.${process.pid}.tmp`,
  '--textFile', `build/ext4ts.wat.${process.pid}.tmp`,
  '-O3', '--noAssert',
  '--runtime', 'stub',
  '--importMemory', '--sharedMemory', '--zeroFilledMemory', '--maximumMemory', String(MAXIMUM_PAGES),
  '--enable', 'threads', '--enable', 'simd',
  '--use', 'abort=assembly/trap/trapAbort',
];
const { error, stderr } = await asc.main(args);
if (error) {
  console.error(stderr.toString());
  console.error(`build:wasm failed: ${error.message}`);
  process.exit(1);
}
// Check the output is a valid module before anyone loads it, then move it into place
// atomically: test files that build on demand may race, and a reader must never see half a file.
const bytes = readFileSync(`build/ext4ts.wasm.${process.pid}.tmp`);
const module = new WebAssembly.Module(bytes);
const imports = WebAssembly.Module.imports(module).map((i) => `${i.module}.${i.name}`);
if (imports.join() !== 'env.memory') throw new Error(`unexpected wasm imports: ${imports.join(', ')}`);
const wat = readFileSync(`build/ext4ts.wat.${process.pid}.tmp`, 'utf8');
if (/\(data /.test(wat)) throw new Error('wasm module has data segments; re-instantiation would rewrite live memory');
renameSync(`build/ext4ts.wat.${process.pid}.tmp`, outWat);
renameSync(`build/ext4ts.wasm.${process.pid}.tmp`, outWasm);
console.log(`build:wasm: wasm/build/ext4ts.wasm (${statSync(outWasm).size} bytes)`);
