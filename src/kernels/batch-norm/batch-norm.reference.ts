// Float64 CPU reference of BatchNorm2d (NCHW), for tests only.

export interface BnShape {
  N: number;
  C: number;
  HW: number;
}

/** Per-channel mean and biased variance (two-pass). */
export function bnBatchStatsRef(x: Float64Array, { N, C, HW }: BnShape): { mean: Float64Array; variance: Float64Array } {
  const mean = new Float64Array(C);
  const variance = new Float64Array(C);
  const M = N * HW;
  for (let c = 0; c < C; c++) {
    let s = 0;
    for (let n = 0; n < N; n++) for (let i = 0; i < HW; i++) s += x[(n * C + c) * HW + i]!;
    const m = s / M;
    let q = 0;
    for (let n = 0; n < N; n++) for (let i = 0; i < HW; i++) q += (x[(n * C + c) * HW + i]! - m) ** 2;
    mean[c] = m;
    variance[c] = q / M;
  }
  return { mean, variance };
}

function affine(x: Float64Array, { N, C, HW }: BnShape, mean: Float64Array, variance: Float64Array, w: Float64Array, b: Float64Array, eps: number): Float64Array {
  const y = new Float64Array(x.length);
  for (let n = 0; n < N; n++)
    for (let c = 0; c < C; c++) {
      const inv = 1 / Math.sqrt(variance[c]! + eps);
      for (let i = 0; i < HW; i++) {
        const k = (n * C + c) * HW + i;
        y[k] = (x[k]! - mean[c]!) * inv * w[c]! + b[c]!;
      }
    }
  return y;
}

export function bnTrainRef(
  x: Float64Array,
  shape: BnShape,
  w: Float64Array,
  b: Float64Array,
  runningMean: Float64Array,
  runningVar: Float64Array,
  momentum = 0.1,
  eps = 1e-5,
): { y: Float64Array; mean: Float64Array; variance: Float64Array; runningMean: Float64Array; runningVar: Float64Array } {
  const { mean, variance } = bnBatchStatsRef(x, shape);
  const M = shape.N * shape.HW;
  const rm = runningMean.map((r, c) => (1 - momentum) * r + momentum * mean[c]!);
  const rv = runningVar.map((r, c) => (1 - momentum) * r + momentum * variance[c]! * (M / (M - 1)));
  return { y: affine(x, shape, mean, variance, w, b, eps), mean, variance, runningMean: rm, runningVar: rv };
}

export function bnEvalRef(x: Float64Array, shape: BnShape, w: Float64Array, b: Float64Array, runningMean: Float64Array, runningVar: Float64Array, eps = 1e-5): Float64Array {
  return affine(x, shape, runningMean, runningVar, w, b, eps);
}

/**
 * Training-mode gradients of sum(y * gy) in closed form (batch statistics depend on x):
 * gx = w / sqrt(var + eps) * (gy - mean(gy) - xhat * mean(gy * xhat)), gweight = sum(gy * xhat), gbias = sum(gy).
 */
export function bnTrainBackwardRef(
  x: Float64Array,
  shape: BnShape,
  w: Float64Array,
  gy: Float64Array,
  eps = 1e-5,
): { gx: Float64Array; gweight: Float64Array; gbias: Float64Array } {
  const { N, C, HW } = shape;
  const M = N * HW;
  const { mean, variance } = bnBatchStatsRef(x, shape);
  const gx = new Float64Array(x.length);
  const gweight = new Float64Array(C);
  const gbias = new Float64Array(C);
  for (let c = 0; c < C; c++) {
    const inv = 1 / Math.sqrt(variance[c]! + eps);
    let sg = 0;
    let sgx = 0;
    for (let n = 0; n < N; n++)
      for (let i = 0; i < HW; i++) {
        const k = (n * C + c) * HW + i;
        sg += gy[k]!;
        sgx += gy[k]! * (x[k]! - mean[c]!) * inv;
      }
    gbias[c] = sg;
    gweight[c] = sgx;
    for (let n = 0; n < N; n++)
      for (let i = 0; i < HW; i++) {
        const k = (n * C + c) * HW + i;
        const xhat = (x[k]! - mean[c]!) * inv;
        gx[k] = w[c]! * inv * (gy[k]! - sg / M - (xhat * sgx) / M);
      }
  }
  return { gx, gweight, gbias };
}

/** The fused epilogue: z = relu(y + residual), each part optional. */
export function bnEpilogueRef(y: Float64Array, relu: boolean, residual: Float64Array | null): Float64Array {
  return y.map((v, i) => {
    const s = residual ? v + residual[i]! : v;
    return relu && !(s > 0) ? 0 : s;
  });
}

/** dZ = gz * [z > 0] (relu), else gz: the gradient reaching bn(x) + residual, and the residual's gradient. */
export function bnEpilogueGradRef(gz: Float64Array, z: Float64Array, relu: boolean): Float64Array {
  return relu ? gz.map((g, i) => (z[i]! > 0 ? g : 0)) : Float64Array.from(gz);
}

/** Eval-mode gradients of sum(y * gy): y is affine in x with the running statistics as constants. */
export function bnEvalBackwardRef(
  x: Float64Array,
  { N, C, HW }: BnShape,
  w: Float64Array,
  runningMean: Float64Array,
  runningVar: Float64Array,
  gy: Float64Array,
  eps = 1e-5,
): { gx: Float64Array; gweight: Float64Array; gbias: Float64Array } {
  const gx = new Float64Array(x.length);
  const gweight = new Float64Array(C);
  const gbias = new Float64Array(C);
  for (let c = 0; c < C; c++) {
    const inv = 1 / Math.sqrt(runningVar[c]! + eps);
    for (let n = 0; n < N; n++)
      for (let i = 0; i < HW; i++) {
        const k = (n * C + c) * HW + i;
        gx[k] = gy[k]! * w[c]! * inv;
        gweight[c] += gy[k]! * (x[k]! - runningMean[c]!) * inv;
        gbias[c] += gy[k]!;
      }
  }
  return { gx, gweight, gbias };
}
