/** CRC-16 (reflected polynomial 0xA001, as ext4's gdt_csum uses); pure function. */
const TABLE: Uint16Array = (() => {
  const t = new Uint16Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xa001 : c >>> 1;
    t[n] = c;
  }
  return t;
})();

export function crc16(seed: number, bytes: Uint8Array): number {
  let crc = seed & 0xffff;
  for (let i = 0; i < bytes.length; i++) crc = (TABLE[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8)) & 0xffff;
  return crc;
}
