// The implicit convolution on the tiled GPU GEMM (matmul/tiled-gemm.ts): the workgroup-memory GEMM with the
// activations read through gather functions (implicit-tiled.wgsl.ts) that fetch each window element in place and
// return 0 in the padding, so there is no padded copy and no transpose of activations. Per batch item z (wg.z):
// - forward:         y[z] (Cout x P, P = OH*OW, stored NCHW) = w (Cout x Cin*KH*KW) @ windows(x[z]), + b per row;
// - data gradient:   gx[z] (Cin x H*W) = w'^T @ taps(gy[z]), w' = w permuted to [Cout, KH, KW, Cin] (weights are
//                    small: one permute per call) read as the transposed A;
// - weight gradient: gw (Cout x Cin*KH*KW) = sum over (n, p) of gy[n, co, p] * windows(x[n]): one GEMM whose
//                    reduction (samples x P) is cut into ranges over wg.z (split-K, so that small outputs still fill
//                    the GPU), each range into its own partial, the partials summed in a fixed order.
// The tile variant per shape and pass is the tuner's (tiled-gemm.ts' TILED_GEMM_VARIANTS). Batches whose tensors
// exceed the binding limit run in slices; the weight gradient adds the slices in order. Deterministic throughout.
import { batchChunks } from '../../runtime/chunks.js';
import type { Runtime } from '../../runtime/runtime.js';
import { Tensor } from '../../runtime/tensor.js';
import { defaultTiledGemm, recordTiledGemm, TILED_GEMM_NAMES, TILED_GEMM_VARIANTS, tiledGemmApplies, type TiledGemmName } from '../matmul/tiled-gemm.js';
import { chooseMeasured } from '../tuning.js';
import { convCase } from '../workloads.js';
import { flatGrid64 } from './col2im.js';
import { sumPartialsWgsl, transposeWgsl } from './conv2d.wgsl.js';
import type { Conv2dGeometry } from './geometry.js';
import { convDataGather, convForwardGather, convWeightGather } from './implicit-tiled.wgsl.js';
import type { ConvLoweringDef, ConvPass } from './lowering.js';

export type TiledVariant = TiledGemmName | 'auto';

/** The GEMM each pass runs: rows, columns of C (for the default tile). */
function gemmDims(g: Conv2dGeometry, pass: ConvPass): { M: number; N: number } {
  if (pass === 'forward') return { M: g.cout, N: g.oh * g.ow };
  if (pass === 'data') return { M: g.cin, N: g.h * g.w };
  return { M: g.cout, N: g.cin * g.kh * g.kw };
}

/** The tuning key: pass and geometry without the batch size. */
export function implicitTiledKey(g: Conv2dGeometry, pass: ConvPass): string {
  return `conv2d.${pass}.implicitTiled ${g.cin}x${g.h}x${g.w}->${g.cout} k${g.kh}x${g.kw} s${g.sh}x${g.sw} p${g.ph}x${g.pw}`;
}

/**
 * The tile variant for a pass: `requested` when forced, else the tuner's choice among the variants the device
 * admits, defaulting to the largest tile the output fills.
 */
export function implicitTiledVariant(rt: Runtime, g: Conv2dGeometry, pass: ConvPass, requested: TiledVariant = 'auto'): TiledGemmName {
  if (requested !== 'auto') {
    if (!tiledGemmApplies(rt, requested)) throw new Error(`conv2d: the ${requested} GEMM does not fit this device's workgroup limits`);
    return requested;
  }
  const candidates = TILED_GEMM_NAMES.filter((n) => tiledGemmApplies(rt, n));
  const { M, N } = gemmDims(g, pass);
  const fallback = defaultTiledGemm(rt, M, N);
  if (!fallback) throw new Error('conv2d: no tiled GEMM variant fits this device\'s workgroup limits');
  return chooseMeasured(rt, {
    key: implicitTiledKey(g, pass),
    candidates,
    fallback,
    operands: () => convCase(rt, g),
    run({ x, w, gy }, v) {
      if (pass === 'forward') return conv2dForwardImplicitTiled(x, w, null, g, v);
      if (pass === 'data') return conv2dBackwardInputImplicitTiled(gy, w, g, v);
      return conv2dBackwardWeightImplicitTiled(gy, x, g, v);
    },
  });
}

/** y = conv2d(x, w) + b: [N, Cout, OH, OW]. */
export function conv2dForwardImplicitTiled(x: Tensor<'f32'>, w: Tensor<'f32'>, b: Tensor<'f32'> | null, g: Conv2dGeometry, variant: TiledVariant = 'auto'): Tensor<'f32'> {
  const rt = x.rt;
  const v = implicitTiledVariant(rt, g, 'forward', variant);
  const y = Tensor.empty(rt, [g.n, g.cout, g.oh, g.ow], 'f32', 'conv2d');
  const inPer = g.cin * g.h * g.w;
  const P = g.oh * g.ow;
  const outPer = g.cout * P;
  for (const ch of batchChunks(rt, g.n, [inPer, outPer])) {
    recordTiledGemm(rt, v, {
      a: w,
      b: x.gpuBindingRange(ch.start * inPer, ch.count * inPer),
      c: y.gpuBindingRange(ch.start * outPer, ch.count * outPer),
      bias: b,
      rowBias: true,
      M: g.cout,
      N: P,
      K: g.cin * g.kh * g.kw,
      batch: ch.count,
      aBatch: 0,
      bBatch: inPer,
      cBatch: outPer,
      gather: convForwardGather,
      gatherParams: { H: g.h, W: g.w, KW: g.kw, KHW: g.kh * g.kw, SH: g.sh, SW: g.sw, PH: g.ph, PW: g.pw, OW: g.ow },
    });
  }
  return y;
}

/** dL/dx from gy [N, Cout, OH, OW]: [N, Cin, H, W]. */
export function conv2dBackwardInputImplicitTiled(gy: Tensor<'f32'>, w: Tensor<'f32'>, g: Conv2dGeometry, variant: TiledVariant = 'auto'): Tensor<'f32'> {
  const rt = gy.rt;
  const v = implicitTiledVariant(rt, g, 'data', variant);
  const khw = g.kh * g.kw;
  // w [Cout, Cin, KH*KW] -> [Cout, KH*KW, Cin]: row k = (co, kh, kw) of the transposed A, Cin contiguous.
  const wp = Tensor.empty(rt, [g.cout * khw, g.cin], 'f32', 'conv2d.wPerm');
  const total = g.cout * g.cin * khw;
  rt.dispatch(transposeWgsl, flatGrid64(rt, total), { src: w, dst: wp }, { total, rows: g.cin, cols: khw });
  const gx = Tensor.empty(rt, [g.n, g.cin, g.h, g.w], 'f32', 'conv2d.gx');
  const gyPer = g.cout * g.oh * g.ow;
  const gxPer = g.cin * g.h * g.w;
  for (const ch of batchChunks(rt, g.n, [gyPer, gxPer])) {
    recordTiledGemm(rt, v, {
      a: wp,
      b: gy.gpuBindingRange(ch.start * gyPer, ch.count * gyPer),
      c: gx.gpuBindingRange(ch.start * gxPer, ch.count * gxPer),
      M: g.cin,
      N: g.h * g.w,
      K: g.cout * khw,
      transA: true,
      batch: ch.count,
      aBatch: 0,
      bBatch: gyPer,
      cBatch: gxPer,
      gather: convDataGather,
      gatherParams: { W: g.w, KW: g.kw, KHW: khw, SH: g.sh, SW: g.sw, PH: g.ph, PW: g.pw, OH: g.oh, OW: g.ow },
    });
  }
  wp.release();
  return gx;
}

/** Workgroups the weight gradient aims for: its output alone has few tiles (layer1: 64 x 576). */
const WEIGHT_GRAD_WORKGROUPS = 256;

/** dL/dw from gy and x, summed over the batch in a fixed order: [Cout, Cin, KH, KW]. */
export function conv2dBackwardWeightImplicitTiled(gy: Tensor<'f32'>, x: Tensor<'f32'>, g: Conv2dGeometry, variant: TiledVariant = 'auto'): Tensor<'f32'> {
  const rt = gy.rt;
  const name = implicitTiledVariant(rt, g, 'weight', variant);
  const v = TILED_GEMM_VARIANTS[name];
  const R = g.cin * g.kh * g.kw;
  const P = g.oh * g.ow;
  const inPer = g.cin * g.h * g.w;
  const gyPer = g.cout * P;
  const outSize = g.cout * R;
  const gw = Tensor.empty(rt, [g.cout, g.cin, g.kh, g.kw], 'f32', 'conv2d.gw');
  const chunks = batchChunks(rt, g.n, [inPer, gyPer]);
  const maxK = Math.max(...chunks.map((c) => c.count)) * P;
  const tiles = Math.ceil(g.cout / v.bm) * Math.ceil(R / v.bn);
  // Splits of the reduction: enough workgroups, at least 4 K tiles each, and the partials bindable.
  const splits = Math.max(1, Math.min(Math.ceil(WEIGHT_GRAD_WORKGROUPS / tiles), Math.ceil(maxK / (4 * v.bk)), Math.floor(rt.bindingLimit / (4 * outSize))));
  const part = splits > 1 ? Tensor.empty(rt, [splits * outSize], 'f32', 'conv2d.gwPart') : null;
  chunks.forEach((ch, idx) => {
    const kTotal = ch.count * P;
    const kSplit = Math.ceil(kTotal / Math.min(splits, Math.ceil(kTotal / (4 * v.bk))));
    const used = Math.ceil(kTotal / kSplit);
    const into = used > 1 && part ? part.gpuBindingRange(0, used * outSize) : gw;
    recordTiledGemm(rt, name, {
      a: gy.gpuBindingRange(ch.start * gyPer, ch.count * gyPer),
      b: x.gpuBindingRange(ch.start * inPer, ch.count * inPer),
      c: into,
      M: g.cout,
      N: R,
      K: kSplit,
      transB: true,
      batch: used,
      aBatch: 0,
      bBatch: 0,
      cBatch: outSize,
      // One range: straight into gw, after the earlier slices.
      accumulate: into === gw && idx > 0,
      gather: convWeightGather,
      gatherParams: { kSplit, kTotal, P, Cin: g.cin, H: g.h, W: g.w, KW: g.kw, KHW: g.kh * g.kw, SH: g.sh, SW: g.sw, PH: g.ph, PW: g.pw, OH: g.oh, OW: g.ow },
    });
    if (into !== gw) rt.dispatch(sumPartialsWgsl, flatGrid64(rt, outSize), { part: into, out: gw }, { n: outSize, splits: used, accumulate: idx > 0 ? 1 : 0 });
  });
  part?.release();
  return gw;
}

/** The lowering: every pass, forward bias included, on any adapter and shape; 'auto' offers it on GPUs only. */
export const implicitTiledLowering: ConvLoweringDef<'implicitTiled'> = {
  name: 'implicitTiled',
  unsupported: () => null,
  // CPU drivers keep their own choices (llvmpipe runs a workgroup's invocations one after another: the tiles'
  // barriers and staging only add work there).
  offered: (rt) => !rt.ctx.isCpuDriver,
  forward: (x, w, b, g) => conv2dForwardImplicitTiled(x, w, b, g),
  data: (gy, w, g) => conv2dBackwardInputImplicitTiled(gy, w, g),
  weight: (gy, x, g) => conv2dBackwardWeightImplicitTiled(gy, x, g),
};
