// Convolutions as tiled GPU GEMMs (tiled-gemm.ts) over im2col matrices in storage buffers: the im2col lowering of
// im2col.ts without textures, so it runs on any adapter (im2col.ts needs subgroups of 4 or 8 lanes). With
// P = OH * OW output positions and K = Cin * KH * KW reduction indices, cols[n] = im2col(x[n]) stored [K][P]:
// - forward:         y[n] (Cout x P, which is NCHW)  = w (Cout x K) @ cols[n] (K x P), batched over the samples;
// - data gradient:   cols[n] (K x P) = w^T @ gy[n] (Cout x P), then col2im sums the columns back into gx;
// - weight gradient: gw (Cout x K) = sum over n of gy[n] (Cout x P) @ cols[n]^T, one partial product per sample
//                    (a batched GEMM) summed in sample order, slice after slice (deterministic).
// Batches are processed in slices that keep every binding under the binding limit and the scratch buffers under
// SCRATCH_BUDGET bytes. The forward pass takes no bias (the GEMM's bias is per column, here per row).
import type { BatchChunk } from '../../runtime/chunks.js';
import type { Runtime } from '../../runtime/runtime.js';
import { Tensor } from '../../runtime/tensor.js';
import { recordTiledGemm } from '../matmul/tiled-gemm.js';
import { flatGrid64, recordCol2im } from './col2im.js';
import { sumPartialsWgsl } from './conv2d.wgsl.js';
import type { Conv2dGeometry } from './geometry.js';
import { im2colBufferWgsl } from './im2col.wgsl.js';
import type { ConvLoweringDef, ConvPass } from './lowering.js';
import { chooseConvTiledGemm, SCRATCH_BUDGET, tiledConvChunks, tiledGemmUnsupported, type TiledVariantRequest } from './tiled-conv-gemm.js';

const NAME = 'im2colTiled';

function dims(g: Conv2dGeometry): { P: number; K: number } {
  return { P: g.oh * g.ow, K: g.cin * g.kh * g.kw };
}

const largest = (slices: BatchChunk[]): number => Math.max(...slices.map((c) => c.count));

/** cols[0 .. count) = im2col of `count` samples of x, bound from the slice's first sample. */
function recordIm2col(rt: Runtime, x: GPUBufferBinding, cols: GPUBufferBinding, g: Conv2dGeometry, count: number): void {
  const { P, K } = dims(g);
  const constants = { C: g.cin, H: g.h, W: g.w, KH: g.kh, KW: g.kw, SH: g.sh, SW: g.sw, PH: g.ph, PW: g.pw, OW: g.ow, P, K };
  rt.dispatch({ ...im2colBufferWgsl, constants }, flatGrid64(rt, count * K * P), { X: x, cols }, { samples: count });
}

function forward(x: Tensor<'f32'>, w: Tensor<'f32'>, g: Conv2dGeometry, variant: TiledVariantRequest): Tensor<'f32'> {
  const rt = x.rt;
  const { P, K } = dims(g);
  const inPer = g.cin * g.h * g.w;
  const outPer = g.cout * P;
  const slices = tiledConvChunks(rt, 'conv2d (im2col, tiled GEMM)', g.n, [inPer, outPer], [K * P]);
  const maxCount = largest(slices);
  const kernel = chooseConvTiledGemm(rt, variant, NAME, 'forward', 'w@cols', g, { M: g.cout, N: P, K, transA: false, transB: false, batch: maxCount, aShared: true });
  const y = Tensor.empty(rt, [g.n, g.cout, g.oh, g.ow], 'f32', 'conv2d');
  const cols = Tensor.empty(rt, [maxCount * K * P], 'f32', 'conv2d.cols');
  for (const ch of slices) {
    const colsBinding = cols.gpuBindingRange(0, ch.count * K * P);
    recordIm2col(rt, x.gpuBindingRange(ch.start * inPer, ch.count * inPer), colsBinding, g, ch.count);
    recordTiledGemm(rt, kernel, {
      a: w,
      b: colsBinding,
      c: y.gpuBindingRange(ch.start * outPer, ch.count * outPer),
      M: g.cout,
      N: P,
      K,
      batch: ch.count,
      aBatch: 0,
      bBatch: K * P,
      cBatch: outPer,
    });
  }
  cols.release();
  return y;
}

function data(gy: Tensor<'f32'>, w: Tensor<'f32'>, g: Conv2dGeometry, variant: TiledVariantRequest): Tensor<'f32'> {
  const rt = gy.rt;
  const { P, K } = dims(g);
  const gyPer = g.cout * P;
  const gxPer = g.cin * g.h * g.w;
  const slices = tiledConvChunks(rt, 'conv2d (im2col, tiled GEMM)', g.n, [gyPer, gxPer], [K * P]);
  const maxCount = largest(slices);
  // w [Cout, K] read transposed as the A operand (K x Cout).
  const kernel = chooseConvTiledGemm(rt, variant, NAME, 'data', 'wT@gy', g, { M: K, N: P, K: g.cout, transA: true, transB: false, batch: maxCount, aShared: true });
  const gx = Tensor.empty(rt, [g.n, g.cin, g.h, g.w], 'f32', 'conv2d.gx');
  const cols = Tensor.empty(rt, [maxCount * K * P], 'f32', 'conv2d.cols');
  for (const ch of slices) {
    const colsBinding = cols.gpuBindingRange(0, ch.count * K * P);
    recordTiledGemm(rt, kernel, {
      a: w,
      b: gy.gpuBindingRange(ch.start * gyPer, ch.count * gyPer),
      c: colsBinding,
      M: K,
      N: P,
      K: g.cout,
      transA: true,
      batch: ch.count,
      aBatch: 0,
      bBatch: gyPer,
      cBatch: K * P,
    });
    recordCol2im(rt, g, colsBinding, gx.gpuBindingRange(ch.start * gxPer, ch.count * gxPer), ch.count);
  }
  cols.release();
  return gx;
}

function weight(gy: Tensor<'f32'>, x: Tensor<'f32'>, g: Conv2dGeometry, variant: TiledVariantRequest): Tensor<'f32'> {
  const rt = x.rt;
  const { P, K } = dims(g);
  const inPer = g.cin * g.h * g.w;
  const gyPer = g.cout * P;
  const gwSize = g.cout * K;
  // Scratch per sample: its im2col matrix and its partial product.
  const slices = tiledConvChunks(rt, 'conv2d (im2col, tiled GEMM)', g.n, [inPer, gyPer], [K * P, gwSize]);
  const maxCount = largest(slices);
  // cols[n] [K, P] read transposed as the B operand (P x K).
  const kernel = chooseConvTiledGemm(rt, variant, NAME, 'weight', 'gy@colsT', g, { M: g.cout, N: K, K: P, transA: false, transB: true, batch: maxCount });
  const gw = Tensor.empty(rt, [g.cout, g.cin, g.kh, g.kw], 'f32', 'conv2d.gw');
  const cols = Tensor.empty(rt, [maxCount * K * P], 'f32', 'conv2d.cols');
  const part = Tensor.empty(rt, [maxCount * gwSize], 'f32', 'conv2d.gwPart');
  slices.forEach((ch, idx) => {
    const colsBinding = cols.gpuBindingRange(0, ch.count * K * P);
    const partBinding = part.gpuBindingRange(0, ch.count * gwSize);
    recordIm2col(rt, x.gpuBindingRange(ch.start * inPer, ch.count * inPer), colsBinding, g, ch.count);
    recordTiledGemm(rt, kernel, {
      a: gy.gpuBindingRange(ch.start * gyPer, ch.count * gyPer),
      b: colsBinding,
      c: partBinding,
      M: g.cout,
      N: K,
      K: P,
      transB: true,
      batch: ch.count,
      aBatch: gyPer,
      bBatch: K * P,
      cBatch: gwSize,
    });
    // gw (+)= part[0] + part[1] + ... in sample order.
    rt.dispatch(sumPartialsWgsl, flatGrid64(rt, gwSize), { part: partBinding, out: gw }, { n: gwSize, splits: ch.count, accumulate: idx > 0 ? 1 : 0 });
  });
  cols.release();
  part.release();
  return gw;
}

/** Why one sample of this geometry cannot be bound (its scratch exceeds the limits), or null. */
function sampleTooLarge(rt: Runtime, g: Conv2dGeometry, pass: ConvPass): string | null {
  const { P, K } = dims(g);
  const scratch = [K * P, ...(pass === 'weight' ? [g.cout * K] : [])];
  const limit = Math.min(rt.bindingLimit, SCRATCH_BUDGET);
  return scratch.every((p) => p * 4 <= limit) ? null : `one sample's im2col scratch exceeds ${limit} bytes`;
}

/**
 * The im2col lowering on the tiled GPU GEMM, `variant` forcing one tiled GEMM variant for every product (tests) or
 * 'auto' (the tuner's choice per product).
 */
export function im2colTiled(variant: TiledVariantRequest = 'auto'): ConvLoweringDef<'im2colTiled'> {
  return {
    name: NAME,
    unsupported(rt, g, pass, hasBias) {
      if (pass === 'forward' && hasBias) return 'the im2colTiled forward pass takes no bias';
      return tiledGemmUnsupported(rt, variant) ?? sampleTooLarge(rt, g, pass);
    },
    // CPU drivers keep their own choices (the texture GEMM's im2col, the implicit GEMM) in 'auto'.
    offered: (rt) => !rt.ctx.isCpuDriver,
    forward(x, w, b, g) {
      if (b) throw new Error('conv2d: the im2colTiled forward pass takes no bias');
      return forward(x, w, g, variant);
    },
    data: (gy, w, g) => data(gy, w, g, variant),
    weight: (gy, x, g) => weight(gy, x, g, variant),
  };
}

export const im2colTiledLowering: ConvLoweringDef<'im2colTiled'> = im2colTiled();
