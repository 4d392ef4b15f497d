/**
 * A small argv parser for the ext4ts command: `cmd [flags] positionals`, where flags are
 * `-l`, `-lR` (grouped short flags), `--name value`, `--name=value` and `--flag`.
 */
export interface ParsedArgs {
  positionals: string[];
  flags: Map<string, string | true>;
}

/** Flags of each command that take a value (all others are booleans). */
export function parseArgs(argv: readonly string[], valued: ReadonlySet<string>): ParsedArgs {
  const positionals: string[] = [];
  const flags = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') { positionals.push(...argv.slice(i + 1)); break; }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq < 0 ? a.slice(2) : a.slice(2, eq);
      if (eq >= 0) flags.set(name, a.slice(eq + 1));
      else if (valued.has(name)) {
        if (i + 1 >= argv.length) throw new UsageError(`--${name} needs a value`);
        flags.set(name, argv[++i]);
      } else flags.set(name, true);
    } else if (a.startsWith('-') && a.length > 1) {
      const name = a.slice(1);
      if (valued.has(name)) {
        if (i + 1 >= argv.length) throw new UsageError(`-${name} needs a value`);
        flags.set(name, argv[++i]);
      } else for (const c of name) flags.set(c, true);
    } else positionals.push(a);
  }
  return { positionals, flags };
}

export class UsageError extends Error {
  override name = 'UsageError';
}

/** "1G", "512M", "64GiB", "4096" → bytes. */
export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(?:i?[bB])?$/.exec(text.trim());
  if (m === null) throw new UsageError(`bad size '${text}' (use e.g. 8M, 1G, 64G)`);
  const scale = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  const bytes = Math.floor(Number(m[1]) * scale);
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new UsageError(`bad size '${text}'`);
  return bytes;
}
