/** Deterministic uniform values in [-0.5, 0.5) (a linear congruential generator: the same everywhere). Benchmarks and
 * the tuner's operands (src/kernels/workloads.ts) and the bench's peers draw from it, so all see the same numbers. */
export function pseudoRandom(n: number, seed = 12345): Float32Array {
  const data = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    data[i] = s / 2 ** 32 - 0.5;
  }
  return data;
}
