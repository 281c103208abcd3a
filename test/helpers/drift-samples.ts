/**
 * Deterministic samples for the drift statistics tests, bit-identical to the ones `scripts/drift-reference.py` draws
 * in Python: a mulberry32 stream of 32-bit integers, each turned into a 21-bit fraction u = (r >>> 11) / 2^21, so
 * every value is a short dyadic number that both languages compute exactly.
 */

export type SampleSpec =
  /** shift + scale·u */
  | { kind: 'uniform'; seed: number; n: number; shift: number; scale: number }
  /** shift + scale·(u_1 + … + u_terms − terms/2): a bell shape (Irwin-Hall) */
  | { kind: 'bell'; seed: number; n: number; shift: number; scale: number; terms: number }
  /** shift + floor(levels·u): integers, heavy ties */
  | { kind: 'ties'; seed: number; n: number; shift: number; levels: number }
  /** shift + floor(scale·(u_1 + … + u_terms − terms/2)): a bell shape on integers */
  | { kind: 'bellTies'; seed: number; n: number; shift: number; scale: number; terms: number };

/** mulberry32: a 32-bit state advanced by a constant and mixed by multiplications modulo 2^32. */
export function mulberry32(seed: number): () => number {
  let a = seed | 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (t ^ (t >>> 14)) >>> 0;
  };
}

const FRACTION = 2 ** 21;

/** The sample a spec describes, in draw order (not sorted). */
export function generateSample(spec: SampleSpec): Float64Array {
  const next = mulberry32(spec.seed);
  const u = () => (next() >>> 11) / FRACTION;
  const out = new Float64Array(spec.n);
  for (let i = 0; i < spec.n; i++) {
    switch (spec.kind) {
      case 'uniform':
        out[i] = spec.shift + spec.scale * u();
        break;
      case 'ties':
        out[i] = spec.shift + Math.floor(spec.levels * u());
        break;
      case 'bell':
      case 'bellTies': {
        let s = 0;
        for (let t = 0; t < spec.terms; t++) s += u();
        const x = spec.scale * (s - spec.terms / 2);
        out[i] = spec.shift + (spec.kind === 'bell' ? x : Math.floor(x));
        break;
      }
    }
  }
  return out;
}

/** The sample sorted ascending, as the KS merge pass takes it. */
export function sortedSample(spec: SampleSpec): Float64Array {
  return generateSample(spec).sort();
}
