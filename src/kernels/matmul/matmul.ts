// Host wrappers of the GEMM family: matmul with transposed operands, and the linear layer (torch's nn.Linear:
// y = x @ w^T + b, weights [out, in]) with its three backward pieces.
import { batchChunks } from '../../runtime/chunks.js';
import type { BufferSource, Runtime } from '../../runtime/runtime.js';
import { Tensor } from '../../runtime/tensor.js';
import { chooseMeasured } from '../tuning.js';
import { gemmCase, type GemmCase, type GemmShape } from '../workloads.js';
import { channelSumWgsl, gemmKernel } from './matmul.wgsl.js';
import { recordTextureGemm, stridedTexture, textureGemmPadding, textureGemmSupported } from './texture-gemm.js';
import {
  defaultTiledGemm,
  isTiledGemm,
  recordTiledGemm,
  TILED_GEMM_NAMES,
  tiledGemmApplies,
  type GemmOperands,
  type TiledGemmName,
} from './tiled-gemm.js';

export interface GemmTiling {
  /** Rows of C per workgroup. */
  tm: number;
  /** vec4 column groups per invocation. */
  tnv: number;
  /** Invocations per workgroup (the WG override). */
  wg: number;
}

/**
 * Tile shape per adapter. CPU drivers (lavapipe): one 8-wide subgroup per workgroup and a register tile of
 * 12 rows x 8 columns per invocation (measured fastest, see docs/kernels-performance.md). GPUs: wider workgroups so
 * a warp/wavefront is full, narrowed when N is small so few invocations idle.
 */
export function gemmTiling(rt: Runtime, n: number, transB = false): GemmTiling {
  // A transposed B (only the linear layer's small forward product here) takes the 4x-unrolled k loop: a smaller
  // tile keeps its compile time and register use down.
  if (rt.ctx.isCpuDriver) return transB ? { tm: 4, tnv: 1, wg: 8 } : { tm: 12, tnv: n > 32 ? 2 : 1, wg: 8 };
  const wg = Math.min(64, Math.max(32, 2 ** Math.ceil(Math.log2(Math.max(1, Math.ceil(n / 4))))));
  return { tm: 8, tnv: 1, wg };
}

/**
 * The storage-buffer GEMM kernels: 'storage', register tiles without workgroup memory (matmul.wgsl.ts; the CPU
 * drivers' choice), or a workgroup-memory tiled variant (tiled-gemm.ts; GPUs).
 */
export type GemmKernel = 'storage' | TiledGemmName;

export interface GemmArgs extends GemmOperands {
  /** A forced register tiling of the 'storage' kernel. */
  tiling?: GemmTiling;
  /** Default 'storage'; ops pass chooseGemmKernel's choice. */
  kernel?: GemmKernel;
}

/** Records one GEMM dispatch on raw bindings (the building block of matmul, linear and the conv lowering). */
export function recordGemm(rt: Runtime, g: GemmArgs): void {
  const { M, N, K } = g;
  if (M === 0 || N === 0) return;
  if (g.kernel && g.kernel !== 'storage') {
    recordTiledGemm(rt, g.kernel, g);
    return;
  }
  const transA = g.transA ?? false;
  const transB = g.transB ?? false;
  const batch = g.batch ?? 1;
  const aBatch = g.aBatch ?? 0;
  const bBatch = g.bBatch ?? 0;
  const cBatch = g.cBatch ?? 0;
  const t = g.tiling ?? gemmTiling(rt, N, transB);
  // vec4 loads need every vec4 to start on a multiple of 4 elements, including across batch items.
  const vecA = transB && !transA && K % 4 === 0 && aBatch % 4 === 0 && K > 0;
  const vecB = (transB ? K % 4 === 0 && K > 0 : N % 4 === 0) && bBatch % 4 === 0;
  const k4 = transB && K % 4 === 0;
  const def = { ...gemmKernel({ transA, transB, vecA, vecB, k4, bias: !!g.bias, tm: t.tm, tnv: t.tnv }), constants: { WG: t.wg } };
  const tilesN = Math.ceil(N / (t.wg * 4 * t.tnv));
  const tilesM = Math.ceil(M / t.tm);
  const [x, y] = rt.grid(tilesN * tilesM);
  const buffers: Record<string, BufferSource> = { [vecA ? 'Av' : 'A']: g.a, [vecB ? 'Bv' : 'B']: g.b, C: g.c };
  if (g.bias) buffers.bias = g.bias;
  rt.dispatch(def, [x, y, batch], buffers, {
    M,
    N,
    K,
    aBatch,
    bBatch,
    cBatch,
    tilesN,
    tilesM,
    accumulate: g.accumulate ? 1 : 0,
  });
}

export interface MatmulOptions {
  /** a is given as [..., K, M] and used transposed. */
  transA?: boolean;
  /** b is given as [..., N, K] and used transposed. */
  transB?: boolean;
  /**
   * 'storage': the register-tile storage-buffer GEMM (any adapter); a tiled variant (tiled-gemm.ts: workgroup-memory
   * tiles, any adapter whose limits admit it); 'texture': operands copied into textures for the texture GEMM
   * (adapters with subgroups of size 4 or 8). Default: the tuner's measured choice for the shape (autotune.ts).
   */
  variant?: MatmulVariant | 'auto';
}

export type MatmulVariant = GemmKernel | 'texture';

export type { GemmShape } from '../workloads.js';

/**
 * The storage-buffer GEMM kernel for a shape. CPU drivers: always 'storage' (llvmpipe runs a workgroup's
 * subgroups one after another, so the tiled variants' barriers and workgroup-memory staging only add work there). GPUs (and the 'gpu'
 * kernel mode): the tuner measures 'storage' and every tiled variant the device admits, defaulting to the largest
 * tile the shape fills. `requested` forces one (tests).
 */
export function chooseGemmKernel(rt: Runtime, s: GemmShape, requested: GemmKernel | 'auto' = 'auto'): GemmKernel {
  if (requested !== 'auto') {
    if (isTiledGemm(requested) && !tiledGemmApplies(rt, requested)) throw new Error(`matmul: the ${requested} GEMM does not fit this device's workgroup limits`);
    return requested;
  }
  if (rt.ctx.isCpuDriver) return 'storage';
  const fallback = defaultTiledGemm(rt, s.M, s.N) ?? 'storage';
  const candidates: GemmKernel[] = ['storage', ...TILED_GEMM_NAMES.filter((n) => tiledGemmApplies(rt, n))];
  const key = `gemm ${s.batch}x${s.M}x${s.N}x${s.K} ${s.transA ? 't' : 'n'}${s.transB ? 't' : 'n'}`;
  return chooseMeasured(rt, {
    key,
    candidates,
    fallback,
    operands: () => gemmCase(rt, s),
    run({ a, b, c }, kernel) {
      const { M, N, K, transA, transB, batch } = s;
      recordGemm(rt, { a, b, c, M, N, K, transA, transB, batch, aBatch: M * K, bBatch: K * N, cBatch: M * N, kernel });
      return c.view(c.shape);
    },
  });
}

interface MatmulShape extends GemmShape {
  aBatched: boolean;
  bBatched: boolean;
}

/** Below this many multiply-adds the texture path's operand copies cost more than they save. */
const TEXTURE_MATMUL_MIN_MACS = 1 << 24;

function matmulVariant(rt: Runtime, s: MatmulShape, requested: MatmulVariant | 'auto' = 'auto'): MatmulVariant {
  if (requested === 'texture' && !textureGemmSupported(rt)) throw new Error('matmul: the texture variant needs an adapter with subgroups of size 4 or 8');
  if (requested === 'texture') return requested;
  if (requested !== 'auto' || !textureGemmSupported(rt)) return chooseGemmKernel(rt, s, requested);
  if (s.batch * s.M * s.N * s.K < TEXTURE_MATMUL_MIN_MACS) return 'storage';
  const key = `matmul ${s.batch}x${s.M}x${s.N}x${s.K} ${s.transA ? 't' : 'n'}${s.transB ? 't' : 'n'}`;
  return chooseMeasured<MatmulVariant, GemmCase>(rt, {
    key,
    candidates: ['storage', 'texture'],
    operands: () => gemmCase(rt, s),
    run({ a, b, c }, v) {
      if (v === 'texture') recordTextureMatmul(rt, a, b, c, { ...s, aBatched: true, bBatched: true });
      else recordGemm(rt, { a, b, c, M: s.M, N: s.N, K: s.K, transA: s.transA, transB: s.transB, batch: s.batch, aBatch: s.M * s.K, bBatch: s.K * s.N, cBatch: s.M * s.N });
      return c.view(c.shape);
    },
  });
}

/** C = op(A) @ op(B) on the texture GEMM: both operands written into textures in its layouts, any orientation. */
function recordTextureMatmul(rt: Runtime, a: Tensor, b: Tensor, c: Tensor, s: MatmulShape): void {
  const { Mp, Np, Kp } = textureGemmPadding(rt, s.M, s.N, s.K);
  const layersA = s.aBatched ? s.batch : 1;
  const layersB = s.bBatched ? s.batch : 1;
  // A as rows m with k along the texel row; op(A) = A^T reads A [K, M] with the strides swapped. Likewise B.
  const A = stridedTexture(rt, a, { layers: layersA, rows: s.M, cols: s.K, ls: s.M * s.K, rs: s.transA ? 1 : s.K, cs: s.transA ? s.M : 1, Rp: Mp, Cp: Kp }, 'matmul.A');
  const B = stridedTexture(rt, b, { layers: layersB, rows: s.K, cols: s.N, ls: s.K * s.N, rs: s.transB ? 1 : s.N, cs: s.transB ? s.K : 1, Rp: Kp, Cp: Np }, 'matmul.B');
  recordTextureGemm(rt, {
    a: A,
    b: B,
    out: { kind: 'strided', c, batchStride: s.M * s.N, rowStride: s.N, colStride: 1 },
    M: s.M,
    N: s.N,
    Kp,
    batch: s.batch,
    aLayers: s.aBatched ? 1 : 0,
    bLayers: s.bBatched ? 1 : 0,
  });
  rt.textures.release(A);
  rt.textures.release(B);
}

/**
 * C = op(a) @ op(b). Operands are 2-D, or 3-D with a leading batch dimension (a 2-D operand is shared by every
 * batch item). Returns [M, N] or [batch, M, N].
 */
export function matmul(a: Tensor<'f32'>, b: Tensor<'f32'>, opts: MatmulOptions = {}): Tensor<'f32'> {
  const rt = a.rt;
  const transA = opts.transA ?? false;
  const transB = opts.transB ?? false;
  if (a.shape.length < 2 || a.shape.length > 3 || b.shape.length < 2 || b.shape.length > 3) {
    throw new Error(`matmul: operands must be 2-D or 3-D, got [${a.shape.join(', ')}] and [${b.shape.join(', ')}]`);
  }
  const [ar, ac] = a.shape.slice(-2) as [number, number];
  const [br, bc] = b.shape.slice(-2) as [number, number];
  const [M, K] = transA ? [ac, ar] : [ar, ac];
  const [K2, N] = transB ? [bc, br] : [br, bc];
  if (K !== K2) throw new Error(`matmul: inner dimensions differ (op(a) is ${M}x${K}, op(b) is ${K2}x${N})`);
  const aBatchN = a.shape.length === 3 ? a.shape[0]! : 1;
  const bBatchN = b.shape.length === 3 ? b.shape[0]! : 1;
  if (aBatchN !== bBatchN && aBatchN !== 1 && bBatchN !== 1) throw new Error(`matmul: batch sizes ${aBatchN} and ${bBatchN} differ`);
  const batch = Math.max(aBatchN, bBatchN);
  const batched = a.shape.length === 3 || b.shape.length === 3;
  const c = Tensor.empty(rt, batched ? [batch, M, N] : [M, N], 'f32', 'matmul');
  const shape = { M, N, K, transA, transB, batch, aBatched: a.shape.length === 3, bBatched: b.shape.length === 3 };
  const variant = matmulVariant(rt, shape, opts.variant);
  if (variant === 'texture') {
    recordTextureMatmul(rt, a, b, c, shape);
    return c;
  }
  recordGemm(rt, {
    a,
    b,
    c,
    M,
    N,
    K,
    transA,
    transB,
    batch,
    aBatch: a.shape.length === 3 ? M * K : 0,
    bBatch: b.shape.length === 3 ? K * N : 0,
    cBatch: M * N,
    kernel: variant,
  });
  return c;
}

function linearShapes(x: Tensor, w: Tensor): { n: number; inF: number; outF: number } {
  if (x.shape.length !== 2 || w.shape.length !== 2) {
    throw new Error(`linear: x must be [N, in] and w [out, in], got [${x.shape.join(', ')}] and [${w.shape.join(', ')}]`);
  }
  const [n, inF] = x.shape as [number, number];
  const [outF, inW] = w.shape as [number, number];
  if (inW !== inF) throw new Error(`linear: x has ${inF} features but w expects ${inW}`);
  return { n, inF, outF };
}

/**
 * c[n, N] = a[n, K] @ op(w) (+ bias) with w shared by every row: a and c are bound in slices of rows when they
 * exceed the binding limit. op(w) is w^T for w stored [N, K] (transB), else w as [K, N].
 */
function recordRowSlicedGemm(
  rt: Runtime,
  a: Tensor,
  w: Tensor,
  c: Tensor,
  n: number,
  K: number,
  N: number,
  transB: boolean,
  bias: Tensor | null,
  requested: GemmKernel | 'auto' = 'auto',
): void {
  const kernel = chooseGemmKernel(rt, { M: n, N, K, transA: false, transB, batch: 1 }, requested);
  for (const ch of batchChunks(rt, n, [K, N])) {
    recordGemm(rt, {
      a: a.gpuBindingRange(ch.start * K, ch.count * K),
      b: w,
      c: c.gpuBindingRange(ch.start * N, ch.count * N),
      bias,
      M: ch.count,
      N,
      K,
      transB,
      kernel,
    });
  }
}

export interface LinearOptions {
  /** The GEMM kernel (default: chooseGemmKernel's choice for the shape). */
  kernel?: GemmKernel | 'auto';
}

/** y[N, out] = x[N, in] @ w[out, in]^T + b[out] (as torch.nn.functional.linear). */
export function linearForward(x: Tensor, w: Tensor, b: Tensor | null, opts: LinearOptions = {}): Tensor<'f32'> {
  const rt = x.rt;
  const { n, inF, outF } = linearShapes(x, w);
  if (b && (b.shape.length !== 1 || b.shape[0] !== outF)) throw new Error(`linear: bias must be [${outF}], got [${b.shape.join(', ')}]`);
  const y = Tensor.empty(rt, [n, outF], 'f32', 'linear');
  recordRowSlicedGemm(rt, x, w, y, n, inF, outF, true, b, opts.kernel);
  return y;
}

/** dL/dx[N, in] = gy[N, out] @ w[out, in]. */
export function linearBackwardInput(gy: Tensor, w: Tensor, opts: LinearOptions = {}): Tensor<'f32'> {
  const rt = gy.rt;
  const [n, outF] = gy.shape as [number, number];
  const [outW, inF] = w.shape as [number, number];
  if (gy.shape.length !== 2 || w.shape.length !== 2 || outW !== outF) throw new Error(`linearBackwardInput: gy [${gy.shape.join(', ')}] does not match w [${w.shape.join(', ')}]`);
  const gx = Tensor.empty(rt, [n, inF], 'f32', 'linear.gx');
  recordRowSlicedGemm(rt, gy, w, gx, n, outF, inF, false, null, opts.kernel);
  return gx;
}

/** dL/dw[out, in] = gy[N, out]^T @ x[N, in]; batch slices are summed in order (deterministic). */
export function linearBackwardWeight(gy: Tensor, x: Tensor, opts: LinearOptions = {}): Tensor<'f32'> {
  const rt = gy.rt;
  const [n, outF] = gy.shape as [number, number];
  const [nx, inF] = x.shape as [number, number];
  if (gy.shape.length !== 2 || x.shape.length !== 2 || n !== nx) {
    throw new Error(`linearBackwardWeight: gy [${gy.shape.join(', ')}] and x [${x.shape.join(', ')}] do not match`);
  }
  const gw = Tensor.empty(rt, [outF, inF], 'f32', 'linear.gw');
  const kernel = chooseGemmKernel(rt, { M: outF, N: inF, K: n, transA: true, transB: false, batch: 1 }, opts.kernel);
  const chunks = batchChunks(rt, n, [inF, outF]);
  chunks.forEach((ch, i) => {
    recordGemm(rt, {
      a: gy.gpuBindingRange(ch.start * outF, ch.count * outF),
      b: x.gpuBindingRange(ch.start * inF, ch.count * inF),
      c: gw,
      M: outF,
      N: inF,
      K: ch.count,
      transA: true,
      accumulate: i > 0,
      kernel,
    });
  });
  return gw;
}

/** dL/db[out] = column sums of gy[N, out] (fixed-order reduction). */
export function linearBackwardBias(gy: Tensor): Tensor<'f32'> {
  const rt = gy.rt;
  if (gy.shape.length !== 2) throw new Error(`linearBackwardBias: gy must be [N, out], got [${gy.shape.join(', ')}]`);
  const [n, outF] = gy.shape as [number, number];
  const gb = Tensor.empty(rt, [outF], 'f32', 'linear.gb');
  recordChannelSum(rt, gy, gb, n, outF, 1);
  return gb;
}

/**
 * out[c] = sum over o, i of g[o, c, i] for g laid out [outer, channels, inner] (linear: inner = 1; conv: NCHW with
 * inner = H * W). Slices along `outer` that exceed the binding limit are added in order.
 */
export function recordChannelSum(rt: Runtime, g: Tensor, out: Tensor, outer: number, channels: number, inner: number): void {
  const per = channels * inner;
  const chunks = batchChunks(rt, outer, [per]);
  if (outer === 0) {
    rt.clear(out.buffer, 0, channels * 4);
    return;
  }
  const [x, y] = rt.grid(channels);
  chunks.forEach((ch, i) => {
    rt.dispatch(channelSumWgsl, [x, y], { g: g.gpuBindingRange(ch.start * per, ch.count * per), out }, {
      outer: ch.count,
      channels,
      inner,
      accumulate: i > 0 ? 1 : 0,
    });
  });
}
