// Float64 CPU reference of max_pool2d (NCHW), for tests only; same scan order and tie rule as PyTorch.
import { poolOutputSize } from './max-pool.js';

export interface PoolRefParams {
  N: number;
  C: number;
  H: number;
  W: number;
  k: [number, number];
  s: [number, number];
  p: [number, number];
  d: [number, number];
  ceilMode: boolean;
}

export function maxPoolRef(x: Float64Array, q: PoolRefParams): { y: Float64Array; indices: Int32Array; OH: number; OW: number } {
  const OH = poolOutputSize(q.H, q.k[0], q.s[0], q.p[0], q.d[0], q.ceilMode);
  const OW = poolOutputSize(q.W, q.k[1], q.s[1], q.p[1], q.d[1], q.ceilMode);
  const y = new Float64Array(q.N * q.C * OH * OW);
  const indices = new Int32Array(y.length);
  for (let plane = 0; plane < q.N * q.C; plane++)
    for (let oh = 0; oh < OH; oh++)
      for (let ow = 0; ow < OW; ow++) {
        let best = -Infinity;
        let bestIndex = -1;
        for (let a = 0; a < q.k[0]; a++)
          for (let b = 0; b < q.k[1]; b++) {
            const ih = oh * q.s[0] - q.p[0] + a * q.d[0];
            const iw = ow * q.s[1] - q.p[1] + b * q.d[1];
            if (ih < 0 || ih >= q.H || iw < 0 || iw >= q.W) continue;
            const v = x[plane * q.H * q.W + ih * q.W + iw]!;
            if (bestIndex < 0 || v > best) {
              best = v;
              bestIndex = ih * q.W + iw;
            }
          }
        const o = (plane * OH + oh) * OW + ow;
        y[o] = best;
        indices[o] = bestIndex;
      }
  return { y, indices, OH, OW };
}

/** Scatters gy to the argmax positions. */
export function maxPoolBackwardRef(gy: Float64Array, indices: Int32Array, q: PoolRefParams, OH: number, OW: number): Float64Array {
  const gx = new Float64Array(q.N * q.C * q.H * q.W);
  for (let plane = 0; plane < q.N * q.C; plane++)
    for (let o = 0; o < OH * OW; o++) gx[plane * q.H * q.W + indices[plane * OH * OW + o]!] += gy[plane * OH * OW + o]!;
  return gx;
}
