// Convolutions as texture GEMMs over im2col matrices, for the shapes Winograd does not take (7x7 stride 2, 3x3
// stride 2, 1x1 stride 2 in ResNet-18) on adapters where the texture GEMM runs (subgroups of size 4 or 8).
// With P = OH * OW output positions and K = Cin * KH * KW reduction indices, per sample n:
// - forward:        y[n] (P x Cout, stored NCHW)   = im2col(x[n]) (P x K) @ w^T (K x Cout);
// - data gradient:  cols[n] (P x K, stored K x P)  = gy[n]^T (P x Cout) @ w (Cout x K), then col2im sums the
//                   columns back into gx (the kernel the implicit path's few-channel case uses);
// - weight gradient: gw (Cout x K) = sum over n of gy[n] (Cout x P) @ im2col(x[n]) (P x K), the samples split into
//                   groups summed in the GEMM (its reduction runs over layers) and the groups' partial sums added
//                   in a fixed order.
// Operands are written into textures by im2col.wgsl.ts's kernels; batches are processed in slices that keep each
// binding under the binding limit and, where one sample's do, each slice's textures under SLICE_TEXTURE_BYTES (the
// im2col matrix of conv1 at batch 32 would be 300 MB). Each texture layer stacks S samples along the GEMM dimension
// that runs over positions (samplesPerLayer), so that a small feature map (ResNet's 2x2 and 4x4 at 64 px) is not
// padded to a whole row tile or k block per sample.
import { fittingChunks, type BatchChunk } from '../../runtime/chunks.js';
import { kBlockOf, recordTextureGemm, roundUp, stridedTexture, textureGemmSupported, TEXTURE_GEMM_COLS, TEXTURE_GEMM_ROWS } from '../matmul/texture-gemm.js';
import type { BufferSource, Runtime } from '../../runtime/runtime.js';
import { SLICE_TEXTURE_BYTES } from '../../runtime/texture-pool.js';
import { Tensor } from '../../runtime/tensor.js';
import type { Conv2dGeometry } from './geometry.js';
import { flatGrid64, recordCol2im } from './col2im.js';
import { sumPartialsWgsl } from './conv2d.wgsl.js';
import { im2colTextureWgsl } from './im2col.wgsl.js';
import type { ConvLoweringDef } from './lowering.js';

export function im2colApplies(rt: Runtime): boolean {
  return textureGemmSupported(rt);
}

/** Padding of a GEMM dimension used as the reduction (k blocks) or as the columns (column tiles). */
function kPad(rt: Runtime, n: number): number {
  return roundUp(n, kBlockOf(rt));
}
function nPad(rt: Runtime, n: number): number {
  return roundUp(n, 4 * rt.ctx.subgroupSize! * TEXTURE_GEMM_COLS);
}

function chunks(rt: Runtime, g: Conv2dGeometry, perSample: number[], textureBytes: number, extra: (count: number) => boolean = () => true): BatchChunk[] {
  return fittingChunks(
    rt,
    g.n,
    perSample,
    (count) =>
      perSample.every((p) => count * p * 4 <= rt.bindingLimit) && count <= rt.ctx.limits.maxTextureArrayLayers && extra(count),
    'conv2d (im2col)',
    (count) => count * textureBytes <= SLICE_TEXTURE_BYTES,
  );
}

/**
 * Samples per texture layer for `count` samples of P positions, the GEMM padding that dimension to a multiple of
 * `multiple`: the divisor S of `count` that leaves the fewest padded rows in all (count / S layers of
 * roundUp(S * P, multiple) rows), the smallest such, with S * P within the texture size limit. 1 when P is a
 * multiple already.
 */
export function samplesPerLayer(rt: Runtime, count: number, P: number, multiple: number): number {
  let best = 1;
  let bestRows = count * roundUp(P, multiple);
  for (let S = 2; S <= count && S * P <= rt.ctx.limits.maxTextureDimension2D; S++) {
    if (count % S !== 0) continue;
    const rows = (count / S) * roundUp(S * P, multiple);
    if (rows < bestRows) [best, bestRows] = [S, rows];
  }
  return best;
}

/**
 * Writes the im2col matrices of `layers * S` samples (x bound from the slice's first sample) into a texture, S
 * samples stacked per layer in rows padded to Pp.
 */
function im2col(rt: Runtime, x: BufferSource, g: Conv2dGeometry, layers: number, S: number, Pp: number, Kp: number): GPUTexture {
  const T = rt.textures.acquire({ width: Kp / 4, height: Pp, layers }, 'conv2d.im2col');
  const P = g.oh * g.ow;
  const constants = { C: g.cin, H: g.h, W: g.w, KH: g.kh, KW: g.kw, SH: g.sh, SW: g.sw, PH: g.ph, PW: g.pw, OW: g.ow, P, S, Pp, K: g.cin * g.kh * g.kw, Kq: Kp / 4 };
  rt.dispatch({ ...im2colTextureWgsl, constants }, flatGrid64(rt, layers * Pp * (Kp / 4)), { X: x, T }, { layers });
  return T;
}

export function conv2dForwardIm2col(x: Tensor<'f32'>, w: Tensor<'f32'>, g: Conv2dGeometry): Tensor<'f32'> {
  const rt = x.rt;
  const P = g.oh * g.ow;
  const K = g.cin * g.kh * g.kw;
  const [Pp, Kp, Np] = [roundUp(P, TEXTURE_GEMM_ROWS), kPad(rt, K), nPad(rt, g.cout)];
  // w^T as the B operand: texel (co/4, k) holds w[co..co+3][k].
  const B = stridedTexture(rt, w, { layers: 1, rows: K, cols: g.cout, ls: 0, rs: 1, cs: K, Rp: Kp, Cp: Np }, 'conv2d.wT');
  const y = Tensor.empty(rt, [g.n, g.cout, g.oh, g.ow], 'f32', 'conv2d');
  const inPer = g.cin * g.h * g.w;
  const outPer = g.cout * P;
  for (const ch of chunks(rt, g, [inPer, outPer], Pp * Kp * 4)) {
    // Rows r = s * P + p of layer l: sample l * S + s, stored at y[n][co][p].
    const S = samplesPerLayer(rt, ch.count, P, TEXTURE_GEMM_ROWS);
    const layers = ch.count / S;
    const A = im2col(rt, x.gpuBindingRange(ch.start * inPer, ch.count * inPer), g, layers, S, roundUp(S * P, TEXTURE_GEMM_ROWS), Kp);
    recordTextureGemm(rt, {
      a: A,
      b: B,
      out: {
        kind: 'strided',
        c: y.gpuBindingRange(ch.start * outPer, ch.count * outPer),
        batchStride: S * outPer,
        rowsPerGroup: P,
        groupStride: outPer,
        rowStride: 1,
        colStride: P,
      },
      M: S * P,
      N: g.cout,
      Kp,
      batch: layers,
      aLayers: 1,
      bLayers: 0,
    });
    rt.textures.release(A);
  }
  rt.textures.release(B);
  return y;
}

export function conv2dBackwardInputIm2col(gy: Tensor<'f32'>, w: Tensor<'f32'>, g: Conv2dGeometry): Tensor<'f32'> {
  const rt = gy.rt;
  const P = g.oh * g.ow;
  const K = g.cin * g.kh * g.kw;
  const [Pp, Cp, Np] = [roundUp(P, TEXTURE_GEMM_ROWS), kPad(rt, g.cout), nPad(rt, K)];
  // w as the B operand: texel (k/4, co) holds w[co][k..k+3].
  const B = stridedTexture(rt, w, { layers: 1, rows: g.cout, cols: K, ls: 0, rs: K, cs: 1, Rp: Cp, Cp: Np }, 'conv2d.w');
  const gx = Tensor.empty(rt, [g.n, g.cin, g.h, g.w], 'f32', 'conv2d.gx');
  const gyPer = g.cout * P;
  const gxPer = g.cin * g.h * g.w;
  const colsPer = K * P;
  const slices = chunks(rt, g, [gyPer, gxPer], Pp * Cp * 4, (count) => count * colsPer * 4 <= rt.bindingLimit);
  const cols = Tensor.empty(rt, [Math.max(...slices.map((c) => c.count)) * colsPer], 'f32', 'conv2d.cols');
  for (const ch of slices) {
    // gy^T as the A operand, S samples per layer: texel (co/4, s * P + p) of layer l holds gy[n][co..co+3][p] of
    // sample n = l * S + s.
    const S = samplesPerLayer(rt, ch.count, P, TEXTURE_GEMM_ROWS);
    const layers = ch.count / S;
    const gyBinding = gy.gpuBindingRange(ch.start * gyPer, ch.count * gyPer);
    const A = stridedTexture(
      rt,
      gyBinding,
      { layers, rows: S * P, cols: g.cout, ls: S * gyPer, rs: 1, cs: P, rowGroup: P, rowGroupStride: gyPer, Rp: roundUp(S * P, TEXTURE_GEMM_ROWS), Cp },
      'conv2d.gyT',
    );
    const colsBinding = cols.gpuBindingRange(0, ch.count * colsPer);
    recordTextureGemm(rt, {
      a: A,
      b: B,
      out: { kind: 'strided', c: colsBinding, batchStride: S * colsPer, rowsPerGroup: P, groupStride: colsPer, rowStride: 1, colStride: P },
      M: S * P,
      N: K,
      Kp: Cp,
      batch: layers,
      aLayers: 1,
      bLayers: 0,
    });
    rt.textures.release(A);
    recordCol2im(rt, g, colsBinding, gx.gpuBindingRange(ch.start * gxPer, ch.count * gxPer), ch.count);
  }
  cols.release();
  rt.textures.release(B);
  return gx;
}

/** Workgroups the weight gradient's GEMM should have at least (its output is small: Cout x K). */
const WEIGHT_GRAD_GROUPS = 64;

export function conv2dBackwardWeightIm2col(gy: Tensor<'f32'>, x: Tensor<'f32'>, g: Conv2dGeometry): Tensor<'f32'> {
  const rt = x.rt;
  const P = g.oh * g.ow;
  const K = g.cin * g.kh * g.kw;
  // The reduction runs over positions (padded to whole k blocks, zeros in both operands) and samples (layers).
  const [Pp, Cp, Np] = [kPad(rt, P), roundUp(g.cout, TEXTURE_GEMM_ROWS), nPad(rt, K)];
  const inPer = g.cin * g.h * g.w;
  const gyPer = g.cout * P;
  const slices = chunks(rt, g, [inPer, gyPer], (Pp * Np + Cp * Pp) * 4);
  // Samples of a slice are split into groups (GEMM batch items) so that the GEMM has enough workgroups; each
  // group's sum goes to its own partial result.
  const tiles = Math.ceil(g.cout / TEXTURE_GEMM_ROWS) * Math.ceil(K / (4 * rt.ctx.subgroupSize! * TEXTURE_GEMM_COLS));
  const groupsOf = (count: number): number => {
    // (At most as many groups as partial results fit one binding.)
    const want = Math.max(1, Math.min(count, Math.ceil(WEIGHT_GRAD_GROUPS / tiles), Math.floor(rt.bindingLimit / (4 * g.cout * K))));
    // The smallest group size that divides the slice into at most `want` groups.
    let per = Math.ceil(count / want);
    while (count % per !== 0) per++;
    return count / per;
  };
  const maxGroups = Math.max(...slices.map((c) => groupsOf(c.count)));
  const gw = Tensor.empty(rt, [g.cout, g.cin, g.kh, g.kw], 'f32', 'conv2d.gw');
  const part = Tensor.empty(rt, [maxGroups * g.cout * K], 'f32', 'conv2d.gwPart');
  slices.forEach((ch, idx) => {
    const groups = groupsOf(ch.count);
    const per = ch.count / groups;
    // S samples per layer along the reduction (a group's `per` samples are per / S layers).
    const S = samplesPerLayer(rt, per, P, kBlockOf(rt));
    const layers = ch.count / S;
    const SPp = kPad(rt, S * P);
    const gyBinding = gy.gpuBindingRange(ch.start * gyPer, ch.count * gyPer);
    // gy as the A operand: texel (r/4, co) of layer l holds gy[n][co][p..p+3] at r = s * P + p, n = l * S + s.
    const A = stridedTexture(
      rt,
      gyBinding,
      { layers, rows: g.cout, cols: S * P, ls: S * gyPer, rs: P, cs: 1, colGroup: P, colGroupStride: gyPer, Rp: Cp, Cp: SPp },
      'conv2d.gy',
    );
    const B = im2col(rt, x.gpuBindingRange(ch.start * inPer, ch.count * inPer), g, layers, S, SPp, Np);
    recordTextureGemm(rt, {
      a: A,
      b: B,
      out: { kind: 'strided', c: part, batchStride: g.cout * K, rowStride: K, colStride: 1 },
      M: g.cout,
      N: K,
      Kp: SPp,
      kLayers: per / S,
      batch: groups,
    });
    rt.textures.release(A);
    rt.textures.release(B);
    const n = g.cout * K;
    rt.dispatch(sumPartialsWgsl, flatGrid64(rt, n), { part, out: gw }, { n, splits: groups, accumulate: idx > 0 ? 1 : 0 });
  });
  part.release();
  return gw;
}

export const im2colLowering: ConvLoweringDef<'im2col'> = {
  name: 'im2col',
  unsupported: (rt, _g, pass, hasBias) =>
    !im2colApplies(rt)
      ? 'the im2col lowering needs an adapter with subgroups of size 4 or 8'
      : pass === 'forward' && hasBias
        ? 'the im2col forward pass takes no bias'
        : null,
  forward: (x, w, _b, g) => conv2dForwardIm2col(x, w, g),
  data: (gy, w, g) => conv2dBackwardInputIm2col(gy, w, g),
  weight: (gy, x, g) => conv2dBackwardWeightIm2col(gy, x, g),
};
