import { randomFillSync } from 'node:crypto';

/**
 * Request ids the gateway generates: random version 4 UUIDs, as `crypto.randomUUID()` makes them, but each one flat
 * string. Node's `randomUUID` concatenates 20 pieces, which V8 keeps as a tree of cons strings (about 480 bytes of
 * heap against 56 for the flat string) until something flattens it; the gateway keeps every id it answers in its
 * prediction memory (100,000 by default), so that tree was half of each remembered prediction, copied by every
 * young-generation collection it survived.
 */

/** Random bytes for 256 ids, refilled from the CSPRNG when used up (randomUUID keeps a cache the same way). */
const POOL = Buffer.allocUnsafeSlow(16 * 256);
let used = POOL.length;

/** The id being written: 36 ASCII characters, the dashes in place. */
const TEXT = Buffer.alloc(36, 0x2d);

/** Where each of the 16 bytes' two hex digits go in `xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`. */
const SPOTS = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];

/** The two ASCII hex digits of each byte value, lower case. */
const HEX = Buffer.from(Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, '0')).join(''), 'latin1');

/** A new random request id: a version 4 UUID in lower case (`0f8e…-…-4…-[89ab]…-…`), 122 random bits. */
export function newRequestId(): string {
  if (used === POOL.length) {
    randomFillSync(POOL);
    used = 0;
  }
  // RFC 9562: version 4 in the high nibble of byte 6, variant 10 in the top bits of byte 8.
  POOL[used + 6] = (POOL[used + 6]! & 0x0f) | 0x40;
  POOL[used + 8] = (POOL[used + 8]! & 0x3f) | 0x80;
  for (let i = 0; i < 16; i++) {
    const byte = POOL[used + i]!;
    const at = SPOTS[i]!;
    TEXT[at] = HEX[2 * byte]!;
    TEXT[at + 1] = HEX[2 * byte + 1]!;
  }
  used += 16;
  return TEXT.toString('latin1', 0, 36);
}
