/**
 * mulberry32: a 32-bit state advanced by a constant and mixed by multiplications modulo 2^32; uniform doubles in [0, 1)
 * with 32 random bits. The same seed gives the same sequence on every run and machine, for generated data and load.
 */
export function mulberry32(seed: number): () => number {
  let a = seed | 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
