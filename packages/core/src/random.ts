/**
 * The project's one seeded PRNG (mulberry32): small, fast, and reproducible, so every
 * randomised test and fault plan replays from its seed. Not for anything secret.
 */

/** A generator of u32 values from `seed`. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** A random integer in [0, bound). */
export function randomBelow(random: () => number, bound: number): number {
  return Math.floor((random() / 2 ** 32) * bound);
}

/** A generator of numbers in [0, 1) from `seed` (the same sequence as seededRandom / 2^32). */
export function seededUnitRandom(seed: number): () => number {
  const next = seededRandom(seed);
  return () => next() / 4294967296;
}
