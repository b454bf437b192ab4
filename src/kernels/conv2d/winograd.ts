// 3x3 stride-1 convolutions by Winograd's minimal filtering, F(m x m, 3 x 3) with m = 4 (or 2): per position of
// the alpha x alpha transformed tile, a GEMM over channels replaces the 9 multiply-adds per output and input
// channel by alpha^2 / m^2 (36/16 = 2.25 for m = 4, against 9: 4x fewer multiplies). The transforms are in
// winograd.wgsl.ts, the matrices in winograd-matrices.ts; all three products of training use it:
// - forward: y = conv(x, w);
// - data gradient: gx = conv(gy, w rotated by 180 degrees with Cin and Cout swapped), padding 2 - p;
// - weight gradient: F(3 x 3, m x m), the output-gradient tiles acting as the filter, summed over tiles and samples
//   by a GEMM whose reduction runs over tiles.
// The per-position GEMMs are one texture GEMM dispatch (batched over positions), so the path needs subgroups of a
// known size (winogradApplies). Batches whose tensors exceed the binding limit or whose tiles exceed a texture's
// height are processed in slices.
import { fittingChunks, type BatchChunk } from '../../runtime/chunks.js';
import { SLICE_TEXTURE_BYTES } from '../../runtime/texture-pool.js';
import { recordTextureGemm, roundUp, textureGemmPadding, textureGemmSupported, TEXTURE_GEMM_ROWS } from '../matmul/texture-gemm.js';
import type { Runtime } from '../../runtime/runtime.js';
import { Tensor } from '../../runtime/tensor.js';
import { flatGrid64 } from './col2im.js';
import type { Conv2dGeometry } from './geometry.js';
import type { ConvLoweringDef } from './lowering.js';
import { winogradPair, type WinogradMatrices } from './winograd-matrices.js';
import {
  winogradGradTransformKernel,
  winogradInputTransformKernel,
  winogradInputTransposedTransformKernel,
  winogradOutputTransformKernel,
  winogradWeightGradOutputKernel,
  winogradWeightTransformKernel,
} from './winograd.wgsl.js';

export type WinogradTile = 2 | 4;

/**
 * Whether a convolution can take the Winograd path: 3x3, stride 1, channel counts that fill texels, on an adapter
 * where the texture GEMM runs (subgroups of size 4 or 8; elsewhere the implicit GEMM serves every convolution).
 */
export function winogradApplies(rt: Runtime, g: Conv2dGeometry): boolean {
  return (
    textureGemmSupported(rt) &&
    g.kh === 3 && g.kw === 3 && g.sh === 1 && g.sw === 1 && g.ph <= 2 && g.pw <= 2 && g.cin % 4 === 0 && g.cout % 4 === 0
  );
}

interface Tiling {
  f: WinogradMatrices;
  /** Tile side (f.m for the convolution, f.r for the weight gradient's output-gradient tiles). */
  step: number;
  tilesW: number;
  tilesPerSample: number;
}

function tiling(f: WinogradMatrices, step: number, oh: number, ow: number): Tiling {
  const tilesW = Math.ceil(ow / step);
  return { f, step, tilesW, tilesPerSample: Math.ceil(oh / step) * tilesW };
}

/**
 * The largest batch slices whose per-slice tensors fit the binding limit, whose GEMM rows fit a texture and (where
 * one sample's do) whose textures hold at most SLICE_TEXTURE_BYTES.
 */
function chunks(rt: Runtime, n: number, perSample: number[], texRows: (count: number) => number, texBytes: (count: number) => number): BatchChunk[] {
  const maxTex = rt.ctx.limits.maxTextureDimension2D;
  return fittingChunks(
    rt,
    n,
    perSample,
    (count) => perSample.every((p) => count * p * 4 <= rt.bindingLimit) && texRows(count) <= maxTex,
    'conv2d (Winograd)',
    (count) => texBytes(count) <= SLICE_TEXTURE_BYTES,
  );
}

/**
 * A 3x3 stride-1 convolution as Winograd computes it: the forward pass's shape, or the data gradient's (gy as the
 * input, channels swapped, padding 2 - p). Shared with winograd-tiled.ts.
 */
export interface WinogradConvShape {
  n: number;
  cin: number;
  h: number;
  w: number;
  cout: number;
  oh: number;
  ow: number;
  padTop: number;
  padLeft: number;
}

/**
 * y = conv(src, weights) for a 3x3 stride-1 convolution, with the weights already transformed into U: the shared
 * body of the forward pass and the data gradient.
 */
function winogradConv(rt: Runtime, src: Tensor<'f32'>, U: GPUTexture, t: Tiling, s: WinogradConvShape, Kp: number, label: string): Tensor<'f32'> {
  const { f } = t;
  const positions = f.alpha * f.alpha;
  const y = Tensor.empty(rt, [s.n, s.cout, s.oh, s.ow], 'f32', label);
  const inPer = s.cin * s.h * s.w;
  const outPer = s.cout * s.oh * s.ow;
  const rowsOf = (count: number): number => roundUp(count * t.tilesPerSample, TEXTURE_GEMM_ROWS);
  const { Np } = textureGemmPadding(rt, 1, s.cout, Kp);
  // V and M: (Kp + Np) floats a row, a layer per position.
  const slices = chunks(rt, s.n, [inPer, outPer], rowsOf, (count) => (Kp + Np) * rowsOf(count) * positions * 4);
  const rows = rowsOf(Math.max(...slices.map((c) => c.count)));
  const V = rt.textures.acquire({ width: Kp / 4, height: rows, layers: positions }, 'winograd.V');
  const M = rt.textures.acquire({ width: Np / 4, height: rows, layers: positions }, 'winograd.M');
  for (const ch of slices) {
    const T = ch.count * t.tilesPerSample;
    const tiles = { tilesW: t.tilesW, tilesPerSample: t.tilesPerSample, T };
    rt.dispatch(
      winogradInputTransformKernel(f),
      flatGrid64(rt, T * (Kp / 4)),
      { X: src.gpuBindingRange(ch.start * inPer, ch.count * inPer), V },
      { C: s.cin, H: s.h, W: s.w, padTop: s.padTop, padLeft: s.padLeft, ...tiles, Cq: Kp / 4 },
    );
    recordTextureGemm(rt, { a: V, b: U, out: { kind: 'texture', texture: M }, M: T, N: s.cout, Kp, batch: positions });
    rt.dispatch(
      winogradOutputTransformKernel(f),
      flatGrid64(rt, T * (s.cout / 4)),
      { M, Y: y.gpuBindingRange(ch.start * outPer, ch.count * outPer) },
      { H: s.oh, W: s.ow, ...tiles, Cq: s.cout / 4 },
    );
  }
  rt.textures.release(V);
  rt.textures.release(M);
  return y;
}

/** U[pos][k][n] for the forward pass (k = ci, n = co) or the data gradient (flip: k = co, n = ci, rotated). */
function transformWeights(rt: Runtime, w: Tensor<'f32'>, g: Conv2dGeometry, f: WinogradMatrices, flip: boolean): { U: GPUTexture; Kp: number } {
  const [K, N] = flip ? [g.cout, g.cin] : [g.cin, g.cout];
  const { Kp, Np } = textureGemmPadding(rt, 1, N, K);
  const U = rt.textures.acquire({ width: Np / 4, height: Kp, layers: f.alpha * f.alpha }, 'winograd.U');
  rt.dispatch(winogradWeightTransformKernel(f), flatGrid64(rt, Kp * (Np / 4)), { w, U }, { K, N, Kp, Nq: Np / 4, cin: g.cin, flip: flip ? 1 : 0 });
  return { U, Kp };
}

export function conv2dForwardWinograd(x: Tensor<'f32'>, w: Tensor<'f32'>, g: Conv2dGeometry, m: WinogradTile = 4): Tensor<'f32'> {
  const rt = x.rt;
  const { conv: f } = winogradPair(m);
  const { U, Kp } = transformWeights(rt, w, g, f, false);
  const t = tiling(f, f.m, g.oh, g.ow);
  const y = winogradConv(rt, x, U, t, { n: g.n, cin: g.cin, h: g.h, w: g.w, cout: g.cout, oh: g.oh, ow: g.ow, padTop: g.ph, padLeft: g.pw }, Kp, 'conv2d');
  rt.textures.release(U);
  return y;
}

export function conv2dBackwardInputWinograd(gy: Tensor<'f32'>, w: Tensor<'f32'>, g: Conv2dGeometry, m: WinogradTile = 4): Tensor<'f32'> {
  const rt = gy.rt;
  const { conv: f } = winogradPair(m);
  const { U, Kp } = transformWeights(rt, w, g, f, true);
  const t = tiling(f, f.m, g.h, g.w);
  // gx = full correlation of gy with the rotated filter: padding 2 - p keeps gx at H x W.
  const s = { n: g.n, cin: g.cout, h: g.oh, w: g.ow, cout: g.cin, oh: g.h, ow: g.w, padTop: 2 - g.ph, padLeft: 2 - g.pw };
  const gx = winogradConv(rt, gy, U, t, s, Kp, 'conv2d.gx');
  rt.textures.release(U);
  return gx;
}

export function conv2dBackwardWeightWinograd(gy: Tensor<'f32'>, x: Tensor<'f32'>, g: Conv2dGeometry, m: WinogradTile = 4): Tensor<'f32'> {
  const rt = x.rt;
  const { weightGrad: f } = winogradPair(m);
  const positions = f.alpha * f.alpha;
  const t = tiling(f, f.r, g.oh, g.ow); // the output gradient in f.r x f.r tiles
  const inPer = g.cin * g.h * g.w;
  const gyPer = g.cout * g.oh * g.ow;
  const pad = (count: number) => textureGemmPadding(rt, g.cin, g.cout, count * t.tilesPerSample);
  // Vt (Kp x Mp) and Q (Kp x Np), a layer per position.
  const slices = chunks(rt, g.n, [inPer, gyPer], (count) => pad(count).Kp, (count) => {
    const p = pad(count);
    return p.Kp * (p.Mp + p.Np) * positions * 4;
  });
  const pMax = pad(Math.max(...slices.map((c) => c.count)));
  const Vt = rt.textures.acquire({ width: pMax.Kp / 4, height: pMax.Mp, layers: positions }, 'winograd.Vt');
  const Q = rt.textures.acquire({ width: pMax.Np / 4, height: pMax.Kp, layers: positions }, 'winograd.Q');
  const W = Tensor.empty(rt, [positions * g.cin * pMax.Np], 'f32', 'winograd.W');
  slices.forEach((ch, idx) => {
    const T = ch.count * t.tilesPerSample;
    const { Kp } = pad(ch.count);
    const tiles = { tilesW: t.tilesW, tilesPerSample: t.tilesPerSample, T };
    rt.dispatch(
      winogradInputTransposedTransformKernel(f),
      flatGrid64(rt, g.cin * (Kp / 4)),
      { X: x.gpuBindingRange(ch.start * inPer, ch.count * inPer), V: Vt },
      { C: g.cin, H: g.h, W: g.w, padTop: g.ph, padLeft: g.pw, ...tiles, Tq: Kp / 4 },
    );
    rt.dispatch(
      winogradGradTransformKernel(f),
      flatGrid64(rt, Kp * (pMax.Np / 4)),
      { G: gy.gpuBindingRange(ch.start * gyPer, ch.count * gyPer), Q },
      { C: g.cout, H: g.oh, W: g.ow, ...tiles, rows: Kp, Cq: pMax.Np / 4 },
    );
    recordTextureGemm(rt, {
      a: Vt,
      b: Q,
      out: { kind: 'strided', c: W, batchStride: g.cin * pMax.Np, rowStride: pMax.Np, colStride: 1, accumulate: idx > 0 },
      M: g.cin,
      N: g.cout,
      Kp,
      batch: positions,
    });
  });
  const gw = Tensor.empty(rt, [g.cout, g.cin, 3, 3], 'f32', 'conv2d.gw');
  rt.dispatch(winogradWeightGradOutputKernel(f), flatGrid64(rt, g.cin * (g.cout / 4)), { Wt: W, GW: gw }, { Cin: g.cin, Cq: g.cout / 4, rowQ: pMax.Np / 4 });
  rt.textures.release(Vt);
  rt.textures.release(Q);
  W.release();
  return gw;
}

function winogradLowering<Name extends string>(name: Name, m: WinogradTile): ConvLoweringDef<Name> {
  return {
    name,
    unsupported: (rt, g, pass, hasBias) =>
      !winogradApplies(rt, g)
        ? 'Winograd needs a 3x3 stride-1 convolution with channel counts divisible by 4 on an adapter with subgroups of size 4 or 8'
        : pass === 'forward' && hasBias
          ? `the ${name} forward pass takes no bias`
          : null,
    forward: (x, w, _b, g) => conv2dForwardWinograd(x, w, g, m),
    data: (gy, w, g) => conv2dBackwardInputWinograd(gy, w, g, m),
    weight: (gy, x, g) => conv2dBackwardWeightWinograd(gy, x, g, m),
  };
}

export const winograd4Lowering = winogradLowering('winograd4', 4);
export const winograd2Lowering = winogradLowering('winograd2', 2);
