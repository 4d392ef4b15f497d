/**
 * Assertions state programmer invariants. A failure is a bug in ext4ts and is never
 * caught; operating errors (bad input, corrupt images) are FsErrors instead.
 */
export class AssertionError extends Error {
  override name = 'AssertionError';
}

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new AssertionError(`assertion failed: ${message}`);
}

export function unreachable(value: never, message = 'unreachable'): never {
  throw new AssertionError(`${message}: ${String(value)}`);
}
