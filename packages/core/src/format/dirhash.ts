/**
 * Directory-index name hashes (ext4-format.md §7): legacy, half_md4 and tea, each with
 * signed or unsigned treatment of name bytes ≥ 0x80. Versions 3..5 are the unsigned
 * twins of 0..2 (selected when s_flags has UNSIGNED_HASH).
 */

export const HashVersion = { LEGACY: 0, HALF_MD4: 1, TEA: 2, LEGACY_UNSIGNED: 3, HALF_MD4_UNSIGNED: 4, TEA_UNSIGNED: 5 } as const;

const DEFAULT_SEED = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476];

export interface DirHash { hash: number; minor: number }

function byteAt(name: Uint8Array, i: number, signed: boolean): number {
  const b = name[i];
  return signed && b >= 0x80 ? b - 256 : b;
}

/** Pack up to 4·num bytes of name[offset..] into num u32 words, padded with the length. */
function str2hashbuf(name: Uint8Array, offset: number, length: number, out: Uint32Array, num: number, signed: boolean): void {
  let pad = (length | (length << 8)) >>> 0;
  pad = (pad | (pad << 16)) >>> 0;
  let val = pad;
  const used = Math.min(length, num * 4);
  let w = 0;
  for (let i = 0; i < used; i++) {
    val = (byteAt(name, offset + i, signed) + ((val << 8) >>> 0)) >>> 0;
    if (i % 4 === 3) {
      out[w++] = val;
      val = pad;
    }
  }
  if (w < num) out[w++] = val;
  while (w < num) out[w++] = pad;
}

function rotl(x: number, s: number): number {
  return ((x << s) | (x >>> (32 - s))) >>> 0;
}

const F = (x: number, y: number, z: number): number => (z ^ (x & (y ^ z))) >>> 0;
const G = (x: number, y: number, z: number): number => ((x & y) + ((x ^ y) & z)) >>> 0;
const H = (x: number, y: number, z: number): number => (x ^ y ^ z) >>> 0;

/** The three rounds of half-MD4: word order and shifts per round (ext4-format.md §7). */
const ROUNDS: ReadonlyArray<{ f: typeof F; k: number; words: number[]; shifts: number[] }> = [
  { f: F, k: 0, words: [0, 1, 2, 3, 4, 5, 6, 7], shifts: [3, 7, 11, 19] },
  { f: G, k: 0x5a827999, words: [1, 3, 5, 7, 0, 2, 4, 6], shifts: [3, 5, 9, 13] },
  { f: H, k: 0x6ed9eba1, words: [3, 7, 2, 6, 1, 5, 0, 4], shifts: [3, 9, 11, 15] },
];

function halfMd4Transform(buf: Uint32Array, input: Uint32Array): void {
  // s holds a,b,c,d; step j updates s[(4 - j%4) % 4] with the others rotated in after it.
  const s = [buf[0], buf[1], buf[2], buf[3]];
  for (const round of ROUNDS) {
    for (let j = 0; j < 8; j++) {
      const t = (4 - (j % 4)) % 4;
      const a = s[t], b = s[(t + 1) % 4], c = s[(t + 2) % 4], d = s[(t + 3) % 4];
      s[t] = rotl((a + round.f(b, c, d) + ((input[round.words[j]] + round.k) >>> 0)) >>> 0, round.shifts[j % 4]);
    }
  }
  for (let i = 0; i < 4; i++) buf[i] = (buf[i] + s[i]) >>> 0;
}

function teaTransform(buf: Uint32Array, input: Uint32Array): void {
  let sum = 0;
  let b0 = buf[0], b1 = buf[1];
  const [a, b, c, d] = [input[0], input[1], input[2], input[3]];
  for (let n = 0; n < 16; n++) {
    sum = (sum + 0x9e3779b9) >>> 0;
    b0 = (b0 + ((((b1 << 4) + a) ^ (b1 + sum) ^ ((b1 >>> 5) + b)) >>> 0)) >>> 0;
    b1 = (b1 + ((((b0 << 4) + c) ^ (b0 + sum) ^ ((b0 >>> 5) + d)) >>> 0)) >>> 0;
  }
  buf[0] = (buf[0] + b0) >>> 0;
  buf[1] = (buf[1] + b1) >>> 0;
}

function legacyHash(name: Uint8Array, signed: boolean): number {
  let h0 = 0x12a3fe2d, h1 = 0x37abe8f9;
  for (let i = 0; i < name.length; i++) {
    let h = (h1 + ((h0 ^ Math.imul(byteAt(name, i, signed), 7152373)) >>> 0)) >>> 0;
    if (h & 0x80000000) h = (h - 0x7fffffff) >>> 0;
    h1 = h0;
    h0 = h;
  }
  return (h0 << 1) >>> 0;
}

/** Hash a name. `seed` = s_hash_seed as 4 u32 words (all zero ⇒ the default seed). */
export function dirHash(name: Uint8Array, version: number, seed?: ArrayLike<number>): DirHash {
  const buf = new Uint32Array(4);
  const useDefault = seed === undefined || (seed[0] | seed[1] | seed[2] | seed[3]) === 0;
  for (let i = 0; i < 4; i++) buf[i] = useDefault ? DEFAULT_SEED[i] : seed[i];
  const signed = version < 3;
  let hash: number, minor: number;
  switch (version % 3) {
    case 0:
      hash = legacyHash(name, signed);
      minor = 0;
      break;
    case 1: {
      const input = new Uint32Array(8);
      for (let off = 0; off < name.length || off === 0; off += 32) {
        str2hashbuf(name, off, name.length - off, input, 8, signed);
        halfMd4Transform(buf, input);
        if (name.length === 0) break;
      }
      hash = buf[1];
      minor = buf[2];
      break;
    }
    default: {
      const input = new Uint32Array(4);
      for (let off = 0; off < name.length || off === 0; off += 16) {
        str2hashbuf(name, off, name.length - off, input, 4, signed);
        teaTransform(buf, input);
        if (name.length === 0) break;
      }
      hash = buf[0];
      minor = buf[1];
    }
  }
  hash = (hash & ~1) >>> 0;
  if (hash === 0xfffffffe) hash = 0xfffffffc;
  return { hash, minor };
}

/** s_hash_seed bytes → 4 little-endian u32 words. */
export function hashSeedWords(hashSeed: Uint8Array): Uint32Array {
  const v = new DataView(hashSeed.buffer, hashSeed.byteOffset, 16);
  return new Uint32Array([v.getUint32(0, true), v.getUint32(4, true), v.getUint32(8, true), v.getUint32(12, true)]);
}
