// Correctness checks of the bench's kernel cases: a sample of output entries recomputed on the CPU in float64 from
// the same inputs (pseudoRandom), so that a wrong kernel cannot give a fast figure. Each entry is a sum of products;
// its error is measured against the root sum of squares of those products (`scale`): float32 rounding stays near
// eps * sqrt(K) (about 4e-5 at K = 400k terms, the largest sum here), while one missing or doubled term already
// gives 1/sqrt(K) (over 1.5e-3 up to K = 400k). CHECK_BOUND sits between (BENCH_CHECK_BOUND overrides it, e.g. for
// a variant that rounds its operands to f16, or to see a check fail).
import { convOutSize, type ConvDirection, type ConvShape } from './shapes.js';

export const CHECK_BOUND = Number(globalThis.process?.env.BENCH_CHECK_BOUND) || 1e-3;
export const CHECK_SAMPLES = 128;

export interface CheckResult {
  ok: boolean;
  /** Output entries compared. */
  samples: number;
  /** Largest |gpu - cpu| / scale over the samples (Infinity for a non-finite output). */
  maxError: number;
  bound: number;
  /** The worst sample, when the check failed. */
  error?: string;
}

/** Deterministic sample positions in [0, count): the first and last entries plus CHECK_SAMPLES spread at random. */
export function samplePositions(count: number, samples = CHECK_SAMPLES, seed = 99): number[] {
  const out = new Set<number>([0, count - 1]);
  let s = seed >>> 0;
  while (out.size < Math.min(count, samples + 2)) {
    s = (s * 1664525 + 1013904223) >>> 0;
    out.add(Math.floor((s / 2 ** 32) * count));
  }
  return [...out];
}

/** One reference entry: the float64 sum and the root sum of squares of its products. */
interface Ref {
  value: number;
  scale: number;
}

function compare(got: ArrayLike<number>, positions: number[], ref: (i: number) => Ref, describe: (i: number) => string): CheckResult {
  let maxError = 0;
  let worst = -1;
  let worstRef: Ref = { value: 0, scale: 0 };
  for (const i of positions) {
    const r = ref(i);
    const g = got[i]!;
    const err = Number.isFinite(g) ? Math.abs(g - r.value) / Math.max(r.scale, 1e-30) : Infinity;
    if (err > maxError || worst < 0) {
      maxError = Math.max(maxError, err);
      worst = i;
      worstRef = r;
    }
  }
  const ok = maxError <= CHECK_BOUND;
  return {
    ok,
    samples: positions.length,
    maxError,
    bound: CHECK_BOUND,
    ...(ok ? {} : { error: `${describe(worst)}: got ${got[worst]}, CPU float64 ${worstRef.value} (error ${maxError.toExponential(2)} of scale ${worstRef.scale.toExponential(2)})` }),
  };
}

/** C = A B with A, B n x n row-major. */
export function checkMatmul(c: ArrayLike<number>, a: Float32Array, b: Float32Array, n: number): CheckResult {
  return compare(
    c,
    samplePositions(n * n),
    (idx) => {
      const i = Math.floor(idx / n);
      const j = idx % n;
      let sum = 0;
      let sq = 0;
      for (let k = 0; k < n; k++) {
        const t = a[i * n + k]! * b[k * n + j]!;
        sum += t;
        sq += t * t;
      }
      return { value: sum, scale: Math.sqrt(sq) };
    },
    (idx) => `C[${Math.floor(idx / n)}, ${idx % n}]`,
  );
}

export interface ConvOperands {
  /** x [N, Cin, H, W] (forward, weight gradient). */
  x: Float32Array | null;
  /** w [Cout, Cin, K, K] (forward, data gradient). */
  w: Float32Array | null;
  /** gy [N, Cout, O, O] (data and weight gradients). */
  gy: Float32Array | null;
}

/**
 * The convolution's output in `direction` (forward: y [N, Cout, O, O]; backward-data: gx [N, Cin, H, W];
 * backward-weight: gw [Cout, Cin, K, K]) at sampled entries, against direct float64 sums.
 */
export function checkConv(out: ArrayLike<number>, c: ConvShape, direction: ConvDirection, batch: number, ops: ConvOperands): CheckResult {
  const { cin, cout, hw: H, k: K, stride: S, padding: P } = c;
  const O = convOutSize(c);
  const xAt = (n: number, ci: number, h: number, w: number): number => ops.x![((n * cin + ci) * H + h) * H + w]!;
  const wAt = (co: number, ci: number, kh: number, kw: number): number => ops.w![((co * cin + ci) * K + kh) * K + kw]!;
  const gyAt = (n: number, co: number, oh: number, ow: number): number => ops.gy![((n * cout + co) * O + oh) * O + ow]!;
  let dims: number[];
  let ref: (idx: number[]) => Ref;
  if (direction === 'forward') {
    dims = [batch, cout, O, O];
    ref = ([n, co, oh, ow]) => {
      let sum = 0;
      let sq = 0;
      for (let ci = 0; ci < cin; ci++)
        for (let kh = 0; kh < K; kh++) {
          const h = oh! * S - P + kh;
          if (h < 0 || h >= H) continue;
          for (let kw = 0; kw < K; kw++) {
            const w = ow! * S - P + kw;
            if (w < 0 || w >= H) continue;
            const t = xAt(n!, ci, h, w) * wAt(co!, ci, kh, kw);
            sum += t;
            sq += t * t;
          }
        }
      return { value: sum, scale: Math.sqrt(sq) };
    };
  } else if (direction === 'backward-data') {
    dims = [batch, cin, H, H];
    ref = ([n, ci, h, w]) => {
      let sum = 0;
      let sq = 0;
      for (let kh = 0; kh < K; kh++) {
        const th = h! + P - kh;
        if (th < 0 || th % S !== 0 || th / S >= O) continue;
        for (let kw = 0; kw < K; kw++) {
          const tw = w! + P - kw;
          if (tw < 0 || tw % S !== 0 || tw / S >= O) continue;
          for (let co = 0; co < cout; co++) {
            const t = gyAt(n!, co, th / S, tw / S) * wAt(co, ci!, kh, kw);
            sum += t;
            sq += t * t;
          }
        }
      }
      return { value: sum, scale: Math.sqrt(sq) };
    };
  } else {
    dims = [cout, cin, K, K];
    ref = ([co, ci, kh, kw]) => {
      let sum = 0;
      let sq = 0;
      for (let n = 0; n < batch; n++)
        for (let oh = 0; oh < O; oh++) {
          const h = oh * S - P + kh!;
          if (h < 0 || h >= H) continue;
          for (let ow = 0; ow < O; ow++) {
            const w = ow * S - P + kw!;
            if (w < 0 || w >= H) continue;
            const t = gyAt(n, co!, oh, ow) * xAt(n, ci!, h, w);
            sum += t;
            sq += t * t;
          }
        }
      return { value: sum, scale: Math.sqrt(sq) };
    };
  }
  const count = dims.reduce((a, b) => a * b, 1);
  if (out.length !== count) return { ok: false, samples: 0, maxError: Infinity, bound: CHECK_BOUND, error: `output has ${out.length} entries, expected ${count}` };
  const unflat = (idx: number): number[] => {
    const r: number[] = [];
    for (let d = dims.length - 1; d >= 0; d--) {
      r[d] = idx % dims[d]!;
      idx = Math.floor(idx / dims[d]!);
    }
    return r;
  };
  const name = direction === 'forward' ? 'y' : direction === 'backward-data' ? 'gx' : 'gw';
  return compare(out, samplePositions(count), (i) => ref(unflat(i)), (i) => `${name}[${unflat(i).join(', ')}]`);
}
