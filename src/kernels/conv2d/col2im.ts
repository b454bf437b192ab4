// The col2im data-gradient lowering (a storage GEMM into columns, summed back into gx), and the helpers the other
// lowerings share: the grid of their flat 64-invocation kernels, and recordCol2im (also im2col's data gradient).
import type { BufferSource, Runtime } from '../../runtime/runtime.js';
import { Tensor } from '../../runtime/tensor.js';
import { chooseGemmKernel, recordGemm } from '../matmul/matmul.js';
import { col2imWgsl } from './conv2d.wgsl.js';
import { convChunks, type Conv2dGeometry } from './geometry.js';
import type { ConvLoweringDef } from './lowering.js';

/** Workgroups for `total` invocations of a kernel with @workgroup_size(64). */
export function flatGrid64(rt: Runtime, total: number): [number, number] {
  return rt.grid(Math.ceil(total / 64));
}

/**
 * gx[n] (Cin x H x W, `count` samples) = the sum over taps of cols[n] (Cin*KH*KW rows x OH*OW positions, samples back
 * to back), as conv2d.wgsl.ts's col2im kernel (one invocation per element of gx, no atomics).
 */
export function recordCol2im(rt: Runtime, g: Conv2dGeometry, cols: BufferSource, gx: BufferSource, count: number): void {
  const total = count * g.cin * g.h * g.w;
  rt.dispatch(col2imWgsl, flatGrid64(rt, total), { cols, gx }, {
    total,
    C: g.cin,
    H: g.h,
    W: g.w,
    KH: g.kh,
    KW: g.kw,
    SH: g.sh,
    SW: g.sw,
    PH: g.ph,
    PW: g.pw,
    OH: g.oh,
    OW: g.ow,
  });
}

/**
 * With few input channels (conv1: 3) the implicit GEMM would leave most of its channel columns idle, so the data
 * gradient is computed as cols[n] = w^T @ gy[n] ([Cin*KH*KW, OH*OW] per sample, positions as GEMM columns) and
 * summed back into place by col2im. cols is scratch, one batch slice at a time.
 */
const COL2IM_BELOW_CHANNELS = 16;

function backwardInputCol2im(rt: Runtime, gy: Tensor<'f32'>, w: Tensor<'f32'>, g: Conv2dGeometry): Tensor<'f32'> {
  const rows = g.cin * g.kh * g.kw;
  const ohw = g.oh * g.ow;
  const gx = Tensor.empty(rt, [g.n, g.cin, g.h, g.w], 'f32', 'conv2d.gx');
  const gyPer = g.cout * ohw;
  const colsPer = rows * ohw;
  const gxPer = g.cin * g.h * g.w;
  const chunks = convChunks(rt, g.n, [gyPer, gxPer], [colsPer]);
  const maxCount = Math.max(...chunks.map((c) => c.count));
  const cols = Tensor.empty(rt, [maxCount * colsPer], 'f32', 'conv2d.cols');
  // On GPUs the tiled GPU GEMM where the tuner measures it faster (CPU drivers: the register-tile one).
  const kernel = chooseGemmKernel(rt, { M: rows, N: ohw, K: g.cout, transA: true, transB: false, batch: maxCount });
  for (const ch of chunks) {
    const colsBinding = cols.gpuBindingRange(0, ch.count * colsPer);
    // w is [Cout, Cin*KH*KW] = the transposed A; gy[n] is [Cout, OH*OW].
    recordGemm(rt, {
      a: w,
      b: gy.gpuBindingRange(ch.start * gyPer, ch.count * gyPer),
      c: colsBinding,
      M: rows,
      N: ohw,
      K: g.cout,
      transA: true,
      batch: ch.count,
      aBatch: 0,
      bBatch: gyPer,
      cBatch: colsPer,
      kernel,
    });
    recordCol2im(rt, g, colsBinding, gx.gpuBindingRange(ch.start * gxPer, ch.count * gxPer), ch.count);
  }
  cols.release();
  return gx;
}

export const col2imLowering: ConvLoweringDef<'col2im'> = {
  name: 'col2im',
  unsupported: (_rt, _g, pass) => (pass === 'data' ? null : 'col2im is a data-gradient lowering'),
  offered: (_rt, g) => g.cin < COL2IM_BELOW_CHANNELS,
  // It has no register tiling of its own: with a forced tiling it still serves the few-channel case it is made for.
  takesTiling: true,
  data: (gy, w, g) => backwardInputCol2im(gy.rt, gy, w, g),
};
