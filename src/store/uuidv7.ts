import { randomFillSync } from 'node:crypto';

let lastMs = 0;
let seq = 0;

// Random bytes are drawn 4 KiB at a time (one syscall per 256 ids, not one per id).
const POOL_SIZE = 4096;
const pool = Buffer.alloc(POOL_SIZE);
let offset = POOL_SIZE;

/** The id being built: overwritten by each call (its text is what leaves). */
const bytes = Buffer.alloc(16);

function random16(): Buffer {
  if (offset + 16 > POOL_SIZE) {
    randomFillSync(pool);
    offset = 0;
  }
  pool.copy(bytes, 0, offset, offset + 16);
  offset += 16;
  return bytes;
}

/** A UUIDv7 (RFC 9562): 48-bit Unix milliseconds, then random bits; ids sort by creation time. */
export function uuidv7(): string {
  random16();
  let ms = Date.now();
  // Keep ids monotonic within one process when many are made in the same millisecond.
  if (ms <= lastMs) {
    seq = (seq + 1) & 0xfff;
    if (seq === 0) lastMs += 1;
    ms = lastMs;
  } else {
    seq = bytes.readUInt16BE(6) & 0x7ff;
    lastMs = ms;
  }
  bytes.writeUIntBE(ms, 0, 6);
  bytes[6] = 0x70 | ((seq >> 8) & 0x0f);
  bytes[7] = seq & 0xff;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
