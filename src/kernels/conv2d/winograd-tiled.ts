// 3x3 stride-1 convolutions by Winograd's minimal filtering, F(4x4, 3x3) or F(2x2, 3x3), on the tiled GPU GEMM
// (tiled-gemm.ts): winograd.ts's lowering with its operands in storage buffers instead of textures, so it runs on
// any adapter and any channel counts (winograd.ts needs subgroups of 4 or 8 lanes and channels in whole texels).
// Transforms: winograd.wgsl.ts's buffer kernels; matrices: winograd-matrices.ts. Per pass:
// - forward: V = input transform of x [positions][T][Cin], U = weight transform [positions][Cin][Cout], one GEMM
//   batched over the alpha^2 positions, M = V U [positions][T][Cout], then the output transform into NCHW y;
// - data gradient: the same with gy as the input, the filter rotated by 180 degrees with Cin and Cout swapped
//   (U [positions][Cout][Cin]) and padding 2 - p, into gx;
// - weight gradient: F(3 x 3, m x m), the output-gradient tiles acting as the filter: V = input transform of x,
//   Q = transform of the gy tiles [positions][T][Cout], W = V^T Q [positions][Cin][Cout] (a GEMM whose reduction
//   runs over tiles; batch slices accumulate into W in order), then the output transform into gw.
// Batches whose tensors or scratch buffers exceed the binding limit are processed in slices.
import type { BatchChunk } from '../../runtime/chunks.js';
import type { Runtime } from '../../runtime/runtime.js';
import { Tensor } from '../../runtime/tensor.js';
import { recordTiledGemm, type TiledGemmName } from '../matmul/tiled-gemm.js';
import { flatGrid64 } from './col2im.js';
import type { Conv2dGeometry } from './geometry.js';
import type { ConvLoweringDef, ConvPass } from './lowering.js';
import { chooseConvTiledGemm, SCRATCH_BUDGET, tiledConvChunks, tiledGemmUnsupported, type TiledVariantRequest } from './tiled-conv-gemm.js';
import type { WinogradConvShape } from './winograd.js';
import { winogradPair, type WinogradMatrices } from './winograd-matrices.js';
import {
  winogradGradTransformBufferKernel,
  winogradInputTransformBufferKernel,
  winogradOutputTransformBufferKernel,
  winogradWeightGradOutputBufferKernel,
  winogradWeightTransformBufferKernel,
} from './winograd.wgsl.js';

type Tile = 2 | 4;

interface Tiles {
  tilesW: number;
  tilesPerSample: number;
}

function tilesOf(step: number, oh: number, ow: number): Tiles {
  const tilesW = Math.ceil(ow / step);
  return { tilesW, tilesPerSample: Math.ceil(oh / step) * tilesW };
}

/**
 * dst = conv(src, weights) for a 3x3 stride-1 convolution of shape `s`, the weights already transformed into U
 * [positions][cin][cout]: the shared body of the forward pass and the data gradient.
 */
function winogradConv(rt: Runtime, src: Tensor<'f32'>, U: Tensor<'f32'>, f: WinogradMatrices, s: WinogradConvShape, kernel: TiledGemmName, slices: BatchChunk[], label: string): Tensor<'f32'> {
  const positions = f.alpha * f.alpha;
  const t = tilesOf(f.m, s.oh, s.ow);
  const dst = Tensor.empty(rt, [s.n, s.cout, s.oh, s.ow], 'f32', label);
  const inPer = s.cin * s.h * s.w;
  const outPer = s.cout * s.oh * s.ow;
  const maxT = Math.max(...slices.map((c) => c.count)) * t.tilesPerSample;
  const V = Tensor.empty(rt, [positions * maxT * s.cin], 'f32', 'winograd.V');
  const M = Tensor.empty(rt, [positions * maxT * s.cout], 'f32', 'winograd.M');
  for (const ch of slices) {
    const T = ch.count * t.tilesPerSample;
    const tiles = { ...t, T };
    const v = V.gpuBindingRange(0, positions * T * s.cin);
    const m = M.gpuBindingRange(0, positions * T * s.cout);
    rt.dispatch(
      winogradInputTransformBufferKernel(f),
      flatGrid64(rt, T * s.cin),
      { X: src.gpuBindingRange(ch.start * inPer, ch.count * inPer), V: v },
      { C: s.cin, H: s.h, W: s.w, padTop: s.padTop, padLeft: s.padLeft, ...tiles },
    );
    recordTiledGemm(rt, kernel, { a: v, b: U, c: m, M: T, N: s.cout, K: s.cin, batch: positions, aBatch: T * s.cin, bBatch: s.cin * s.cout, cBatch: T * s.cout });
    rt.dispatch(
      winogradOutputTransformBufferKernel(f),
      flatGrid64(rt, T * s.cout),
      { M: m, Y: dst.gpuBindingRange(ch.start * outPer, ch.count * outPer) },
      { Nc: s.cout, H: s.oh, W: s.ow, ...tiles },
    );
  }
  V.release();
  M.release();
  return dst;
}

/** U[pos][k][n] for the forward pass (k = ci, n = co) or the data gradient (flip: k = co, n = ci, rotated). */
function transformWeights(rt: Runtime, w: Tensor<'f32'>, g: Conv2dGeometry, f: WinogradMatrices, flip: boolean): Tensor<'f32'> {
  const [K, N] = flip ? [g.cout, g.cin] : [g.cin, g.cout];
  const U = Tensor.empty(rt, [f.alpha * f.alpha * K * N], 'f32', 'winograd.U');
  rt.dispatch(winogradWeightTransformBufferKernel(f), flatGrid64(rt, K * N), { w, U }, { K, N, cin: g.cin, flip: flip ? 1 : 0 });
  return U;
}

/** The forward pass's shape (flip = false) or the data gradient's: a correlation of gy with the rotated filter. */
function convShape(g: Conv2dGeometry, flip: boolean): WinogradConvShape {
  if (!flip) return { n: g.n, cin: g.cin, h: g.h, w: g.w, cout: g.cout, oh: g.oh, ow: g.ow, padTop: g.ph, padLeft: g.pw };
  // gx = full correlation of gy with the rotated filter: padding 2 - p keeps gx at H x W.
  return { n: g.n, cin: g.cout, h: g.oh, w: g.ow, cout: g.cin, oh: g.h, ow: g.w, padTop: 2 - g.ph, padLeft: 2 - g.pw };
}

function convSlices(rt: Runtime, f: WinogradMatrices, s: WinogradConvShape): BatchChunk[] {
  const positions = f.alpha * f.alpha;
  const { tilesPerSample } = tilesOf(f.m, s.oh, s.ow);
  return tiledConvChunks(rt, 'conv2d (Winograd, tiled GEMM)', s.n, [s.cin * s.h * s.w, s.cout * s.oh * s.ow], [positions * tilesPerSample * s.cin, positions * tilesPerSample * s.cout]);
}

function convPass(src: Tensor<'f32'>, w: Tensor<'f32'>, g: Conv2dGeometry, m: Tile, pass: 'forward' | 'data', variant: TiledVariantRequest): Tensor<'f32'> {
  const rt = src.rt;
  const { conv: f } = winogradPair(m);
  const flip = pass === 'data';
  const s = convShape(g, flip);
  const slices = convSlices(rt, f, s);
  const maxT = Math.max(...slices.map((c) => c.count)) * tilesOf(f.m, s.oh, s.ow).tilesPerSample;
  const kernel = chooseConvTiledGemm(rt, variant, `winograd${m}Tiled`, pass, 'V@U', g, { M: maxT, N: s.cout, K: s.cin, transA: false, transB: false, batch: f.alpha * f.alpha });
  const U = transformWeights(rt, w, g, f, flip);
  const out = winogradConv(rt, src, U, f, s, kernel, slices, flip ? 'conv2d.gx' : 'conv2d');
  U.release();
  return out;
}

function weightPass(gy: Tensor<'f32'>, x: Tensor<'f32'>, g: Conv2dGeometry, m: Tile, variant: TiledVariantRequest): Tensor<'f32'> {
  const rt = x.rt;
  const { weightGrad: f } = winogradPair(m);
  const positions = f.alpha * f.alpha;
  const t = tilesOf(f.r, g.oh, g.ow); // the output gradient in f.r x f.r tiles
  const inPer = g.cin * g.h * g.w;
  const gyPer = g.cout * g.oh * g.ow;
  const slices = tiledConvChunks(rt, 'conv2d (Winograd, tiled GEMM)', g.n, [inPer, gyPer], [positions * t.tilesPerSample * g.cin, positions * t.tilesPerSample * g.cout]);
  const maxT = Math.max(...slices.map((c) => c.count)) * t.tilesPerSample;
  // W = V^T Q: V [T][Cin] read transposed as the A operand, the reduction over tiles.
  const kernel = chooseConvTiledGemm(rt, variant, `winograd${m}Tiled`, 'weight', 'VT@Q', g, { M: g.cin, N: g.cout, K: maxT, transA: true, transB: false, batch: positions });
  const V = Tensor.empty(rt, [positions * maxT * g.cin], 'f32', 'winograd.V');
  const Q = Tensor.empty(rt, [positions * maxT * g.cout], 'f32', 'winograd.Q');
  const W = Tensor.empty(rt, [positions * g.cin * g.cout], 'f32', 'winograd.W');
  slices.forEach((ch, idx) => {
    const T = ch.count * t.tilesPerSample;
    const tiles = { ...t, T };
    const v = V.gpuBindingRange(0, positions * T * g.cin);
    const q = Q.gpuBindingRange(0, positions * T * g.cout);
    rt.dispatch(
      winogradInputTransformBufferKernel(f),
      flatGrid64(rt, T * g.cin),
      { X: x.gpuBindingRange(ch.start * inPer, ch.count * inPer), V: v },
      { C: g.cin, H: g.h, W: g.w, padTop: g.ph, padLeft: g.pw, ...tiles },
    );
    rt.dispatch(
      winogradGradTransformBufferKernel(f),
      flatGrid64(rt, T * g.cout),
      { G: gy.gpuBindingRange(ch.start * gyPer, ch.count * gyPer), Q: q },
      { C: g.cout, H: g.oh, W: g.ow, ...tiles },
    );
    recordTiledGemm(rt, kernel, {
      a: v,
      b: q,
      c: W,
      M: g.cin,
      N: g.cout,
      K: T,
      transA: true,
      batch: positions,
      aBatch: T * g.cin,
      bBatch: T * g.cout,
      cBatch: g.cin * g.cout,
      accumulate: idx > 0,
    });
  });
  const gw = Tensor.empty(rt, [g.cout, g.cin, 3, 3], 'f32', 'conv2d.gw');
  rt.dispatch(winogradWeightGradOutputBufferKernel(f), flatGrid64(rt, g.cin * g.cout), { Wt: W, GW: gw }, { Cin: g.cin, Cout: g.cout });
  V.release();
  Q.release();
  W.release();
  return gw;
}

/** Why this lowering cannot compute `pass` of `g` here, or null. */
function unsupported(rt: Runtime, g: Conv2dGeometry, pass: ConvPass, m: Tile, variant: TiledVariantRequest): string | null {
  if (!(g.kh === 3 && g.kw === 3 && g.sh === 1 && g.sw === 1 && g.ph <= 2 && g.pw <= 2)) return 'Winograd needs a 3x3 stride-1 convolution with padding at most 2';
  const why = tiledGemmUnsupported(rt, variant);
  if (why) return why;
  const { conv, weightGrad } = winogradPair(m);
  const f = pass === 'weight' ? weightGrad : conv;
  const positions = f.alpha * f.alpha;
  // U (or W) is bound whole; the per-slice scratch must fit for one sample.
  if (positions * g.cin * g.cout * 4 > rt.bindingLimit) return `the transformed weights (${positions * g.cin * g.cout * 4} bytes) exceed the binding limit`;
  const limit = Math.min(rt.bindingLimit, SCRATCH_BUDGET);
  const [step, oh, ow] = pass === 'weight' ? [f.r, g.oh, g.ow] : pass === 'data' ? [f.m, g.h, g.w] : [f.m, g.oh, g.ow];
  const { tilesPerSample } = tilesOf(step, oh, ow);
  if (positions * tilesPerSample * Math.max(g.cin, g.cout) * 4 > limit) return `one sample's transformed tiles exceed ${limit} bytes`;
  return null;
}

/** Shared by both tile sizes: `variant` forces one tiled GEMM variant for every product (tests), or 'auto'. */
function winogradTiledDef<N extends string>(name: N, m: Tile, variant: TiledVariantRequest): ConvLoweringDef<N> {
  return {
    name,
    unsupported: (rt, g, pass, hasBias) => (pass === 'forward' && hasBias ? `the ${name} forward pass takes no bias` : unsupported(rt, g, pass, m, variant)),
    // CPU drivers keep their own choices (the texture GEMM's Winograd, the implicit GEMM) in 'auto'.
    offered: (rt) => !rt.ctx.isCpuDriver,
    forward(x, w, b, g) {
      if (b) throw new Error(`conv2d: the ${name} forward pass takes no bias`);
      return convPass(x, w, g, m, 'forward', variant);
    },
    data: (gy, w, g) => convPass(gy, w, g, m, 'data', variant),
    weight: (gy, x, g) => weightPass(gy, x, g, m, variant),
  };
}

/** Winograd F(4x4, 3x3) on the tiled GEMM; `variant` forces a tiled GEMM variant (tests). */
export function winograd4Tiled(variant: TiledVariantRequest = 'auto'): ConvLoweringDef<'winograd4Tiled'> {
  return winogradTiledDef('winograd4Tiled', 4, variant);
}

/** Winograd F(2x2, 3x3) on the tiled GEMM; `variant` forces a tiled GEMM variant (tests). */
export function winograd2Tiled(variant: TiledVariantRequest = 'auto'): ConvLoweringDef<'winograd2Tiled'> {
  return winogradTiledDef('winograd2Tiled', 2, variant);
}

export const winograd4TiledLowering: ConvLoweringDef<'winograd4Tiled'> = winograd4Tiled();
export const winograd2TiledLowering: ConvLoweringDef<'winograd2Tiled'> = winograd2Tiled();
