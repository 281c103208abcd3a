/**
 * Deterministic samples for the drift statistics tests, bit-identical to the ones `scripts/drift-reference.py` draws
 * in Python: a mulberry32 stream of 32-bit integers, each turned into a 21-bit fraction u = (r >>> 11) / 2^21, so
 * every value is a short dyadic number that both languages compute exactly.
 */
import { mulberry32 as mulberry32Unit } from '../../src/dev/random';

export type SampleSpec =
  /** shift + scale·u */
  | { kind: 'uniform'; seed: number; n: number; shift: number; scale: number }
  /** shift + scale·(u_1 + … + u_terms − terms/2): a bell shape (Irwin-Hall) */
  | { kind: 'bell'; seed: number; n: number; shift: number; scale: number; terms: number }
  /** shift + floor(levels·u): integers, heavy ties */
  | { kind: 'ties'; seed: number; n: number; shift: number; levels: number }
  /** shift + floor(scale·(u_1 + … + u_terms − terms/2)): a bell shape on integers */
  | { kind: 'bellTies'; seed: number; n: number; shift: number; scale: number; terms: number };

/** mulberry32 as 32-bit unsigned integers (the doubles of src/dev/random.ts times 2^32, exactly). */
export function mulberry32(seed: number): () => number {
  const unit = mulberry32Unit(seed);
  return () => unit() * 4294967296;
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
