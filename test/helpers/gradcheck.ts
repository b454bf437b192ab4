// Shared tools for the op tests: seeded random data, float64 central differences, and the error metrics.

/** Deterministic uniform [0,1) generator (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal values (Box-Muller), rounded to f32. */
export function randn(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(r(), 1e-12);
    out[i] = scale * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r());
  }
  return out;
}

export function uniform(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => lo + (hi - lo) * r());
}

/**
 * Central-difference gradient of the scalar f at `inputs[which]`, in float64. f must be a float64 CPU reference.
 */
export function numericGrad(
  f: (inputs: Float64Array[]) => number,
  inputs: Float64Array[],
  which: number,
  eps = 1e-6,
): Float64Array {
  const x = inputs[which]!;
  const g = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const orig = x[i]!;
    x[i] = orig + eps;
    const fp = f(inputs);
    x[i] = orig - eps;
    const fm = f(inputs);
    x[i] = orig;
    g[i] = (fp - fm) / (2 * eps);
  }
  return g;
}

/** max |a - b| / max |b|: the error relative to the reference's scale (robust where b crosses zero). */
export function maxRelError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) throw new Error(`length ${actual.length} vs ${expected.length}`);
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < expected.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(actual[i]! - expected[i]!));
    maxRef = Math.max(maxRef, Math.abs(expected[i]!));
  }
  if (Number.isNaN(maxDiff)) return Infinity;
  return maxRef === 0 ? maxDiff : maxDiff / maxRef;
}

/** sum(out * weights): turns an op into the scalar whose gradient w.r.t. out is `weights`. */
export function dot(out: ArrayLike<number>, weights: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < out.length; i++) s += out[i]! * weights[i]!;
  return s;
}

export const f64 = (a: ArrayLike<number>): Float64Array => Float64Array.from(a as ArrayLike<number>);
