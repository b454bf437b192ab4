// conv2d (dilation 1, groups 1) with PyTorch layouts: x [N, Cin, H, W], w [Cout, Cin, KH, KW], y [N, Cout, OH, OW].
//
// Each pass (forward, data gradient, weight gradient) has several lowerings, each one file in this folder and one row
// of CONV_LOWERINGS (lowerings.ts): the implicit GEMM (implicit.ts, any adapter), im2col and Winograd on the texture
// GEMM (im2col.ts, winograd.ts: CPU drivers), col2im for the data gradient (col2im.ts), and on the tiled GPU GEMM
// the implicit GEMM with gathered windows, Winograd and im2col (implicit-tiled.ts, winograd-tiled.ts,
// im2col-tiled.ts: offered on GPUs, forced anywhere). This file checks shapes,
// asks the table which lowerings can compute a pass and the runtime's tuner which of them is fastest for the shape
// (docs/kernels-performance.md), and runs it. Shapes, options and tile sizes: geometry.ts.
import type { Runtime } from '../../runtime/runtime.js';
import { Tensor } from '../../runtime/tensor.js';
import { recordChannelSum } from '../matmul/matmul.js';
import { chooseMeasured } from '../tuning.js';
import { convCase } from '../workloads.js';
import { conv2dGeometry, type Conv2dGeometry, type Conv2dOptions, type ConvTiling } from './geometry.js';
import { hasPass, type ConvLoweringDef, type ConvPass } from './lowering.js';
import { CONV_LOWERINGS, convLoweringDef, type ConvLowering } from './lowerings.js';

export { conv2dGeometry, convTiling, type Conv2dGeometry, type Conv2dOptions, type ConvTiling } from './geometry.js';
export type { ConvLoweringDef, ConvPass } from './lowering.js';
export { CONV_LOWERINGS, type ConvLowering } from './lowerings.js';

// ---- choice of lowering -------------------------------------------------------------------------------------

const PASS_NAMES: Record<ConvPass, string> = { forward: 'forward', data: 'data-gradient', weight: 'weight-gradient' };

/** Why `l` cannot compute `pass` of `g` here, or null. */
function unsupported(rt: Runtime, l: ConvLoweringDef, g: Conv2dGeometry, pass: ConvPass, hasBias: boolean): string | null {
  return l.unsupported(rt, g, pass, hasBias) ?? (hasPass(l, pass) ? null : `${l.name} has no ${PASS_NAMES[pass]} pass`);
}

/**
 * The lowerings 'auto' chooses among for `pass` of `g`, in the table's order: supported and offered here; with a
 * forced tiling, only those that take one.
 */
export function convCandidates(rt: Runtime, g: Conv2dGeometry, pass: ConvPass, hasBias = false, tiling?: ConvTiling): ConvLowering[] {
  return (CONV_LOWERINGS as readonly ConvLoweringDef<ConvLowering>[])
    .filter((l) => (!tiling || l.takesTiling) && unsupported(rt, l, g, pass, hasBias) === null && (l.offered?.(rt, g, pass) ?? true))
    .map((l) => l.name);
}

/**
 * The lowering that computes `pass` of `g`. A requested one is checked (an error says why it cannot run). For
 * 'auto', the candidates are the table's rows that are supported and offered here (with a forced tiling, only those
 * that take one, and no measuring); the runtime's tuner (autotune.ts) measures them the first time a shape is met,
 * and until then the first row is used.
 */
export function convLowering(
  rt: Runtime,
  g: Conv2dGeometry,
  pass: ConvPass,
  requested: ConvLowering | 'auto' = 'auto',
  hasBias = false,
  tiling?: ConvTiling,
): ConvLowering {
  if (requested !== 'auto') {
    const l = convLoweringDef(requested);
    if (!l) throw new Error(`conv2d: unknown lowering '${String(requested)}' (known: ${CONV_LOWERINGS.map((r) => r.name).join(', ')})`);
    const why = unsupported(rt, l, g, pass, hasBias);
    if (why) throw new Error(`conv2d: ${why}`);
    return requested;
  }
  const candidates = convCandidates(rt, g, pass, hasBias, tiling);
  if (!candidates.length) throw new Error(`conv2d: no lowering computes the ${PASS_NAMES[pass]} pass of this convolution here`);
  if (tiling) return candidates[0]!;
  const opts = { stride: [g.sh, g.sw] as const, padding: [g.ph, g.pw] as const };
  return chooseMeasured(rt, {
    // The geometry without the batch size (which scales every lowering alike).
    key: `conv2d.${pass} ${g.cin}x${g.h}x${g.w}->${g.cout} k${g.kh}x${g.kw} s${g.sh}x${g.sw} p${g.ph}x${g.pw}`,
    candidates,
    operands: () => convCase(rt, g),
    run({ x, w, gy }, l) {
      if (pass === 'forward') return conv2dForward(x, w, null, opts, undefined, l);
      if (pass === 'data') return conv2dBackwardInput(gy, w, x.shape, opts, undefined, l);
      return conv2dBackwardWeight(gy, x, w.shape, opts, undefined, l);
    },
  });
}

function row(name: ConvLowering): ConvLoweringDef {
  return convLoweringDef(name)!;
}

// ---- test hook ----------------------------------------------------------------------------------------------

/** One conv2d pass computed by a lowering other than the implicit GEMM: its operands and result, as passed. */
export interface ConvCall {
  pass: ConvPass;
  lowering: ConvLowering;
  /** forward: [x, w]; data: [gy, w]; weight: [gy, x]. */
  operands: readonly [Tensor<'f32'>, Tensor<'f32'>];
  /** The shape the pass was given: w's (forward), x's (data gradient) or w's (weight gradient). */
  shape: readonly number[];
  opts: Conv2dOptions;
  output: Tensor<'f32'>;
}

/**
 * For tests only: when `record` is set, every conv2d pass that runs a lowering other than the implicit GEMM ('implicit') reports
 * itself there right after recording its dispatches (test/nn/resnet.test.ts recomputes each call of a training step
 * with the implicit GEMM). The callback must copy what it keeps: the tensors belong to the caller.
 */
export const convCallsForTests: { record: ((call: ConvCall) => void) | null } = { record: null };

function noted(call: Omit<ConvCall, 'output'>, output: Tensor<'f32'>): Tensor<'f32'> {
  convCallsForTests.record?.({ ...call, output });
  return output;
}

// ---- the passes ---------------------------------------------------------------------------------------------

/** y = conv2d(x, w) + b, as torch.nn.functional.conv2d (dilation 1, groups 1). */
export function conv2dForward(
  x: Tensor<'f32'>,
  w: Tensor<'f32'>,
  b: Tensor<'f32'> | null,
  opts: Conv2dOptions = {},
  tiling?: ConvTiling,
  method: ConvLowering | 'auto' = 'auto',
): Tensor<'f32'> {
  const g = conv2dGeometry(x.shape, w.shape, opts);
  if (b && (b.shape.length !== 1 || b.shape[0] !== g.cout)) throw new Error(`conv2d: bias must be [${g.cout}], got [${b.shape.join(', ')}]`);
  const lowering = convLowering(x.rt, g, 'forward', method, !!b, tiling);
  const y = row(lowering).forward!(x, w, b, g, tiling);
  return lowering === 'implicit' ? y : noted({ pass: 'forward', lowering, operands: [x, w], shape: w.shape, opts }, y);
}

/** dL/dx for y = conv2d(x, w): gy [N, Cout, OH, OW] -> [N, Cin, H, W] (xShape gives H and W). */
export function conv2dBackwardInput(
  gy: Tensor<'f32'>,
  w: Tensor<'f32'>,
  xShape: readonly number[],
  opts: Conv2dOptions = {},
  tiling?: ConvTiling,
  method: ConvLowering | 'auto' = 'auto',
): Tensor<'f32'> {
  const g = conv2dGeometry(xShape, w.shape, opts);
  checkGy(gy, g);
  const lowering = convLowering(gy.rt, g, 'data', method, false, tiling);
  const gx = row(lowering).data!(gy, w, g, tiling);
  return lowering === 'implicit' ? gx : noted({ pass: 'data', lowering, operands: [gy, w], shape: xShape, opts }, gx);
}

/** dL/dw for y = conv2d(x, w): [Cout, Cin, KH, KW] (wShape), summed over the batch in a fixed order. */
export function conv2dBackwardWeight(
  gy: Tensor<'f32'>,
  x: Tensor<'f32'>,
  wShape: readonly number[],
  opts: Conv2dOptions = {},
  tiling?: ConvTiling,
  method: ConvLowering | 'auto' = 'auto',
): Tensor<'f32'> {
  const g = conv2dGeometry(x.shape, wShape, opts);
  checkGy(gy, g);
  const lowering = convLowering(gy.rt, g, 'weight', method, false, tiling);
  const gw = row(lowering).weight!(gy, x, g, tiling);
  return lowering === 'implicit' ? gw : noted({ pass: 'weight', lowering, operands: [gy, x], shape: wShape, opts }, gw);
}

function checkGy(gy: Tensor<'f32'>, g: Conv2dGeometry): void {
  const want = [g.n, g.cout, g.oh, g.ow];
  if (gy.shape.length !== 4 || gy.shape.some((d, i) => d !== want[i])) {
    throw new Error(`conv2d backward: gy is [${gy.shape.join(', ')}], expected [${want.join(', ')}]`);
  }
}

// ---- bias gradient ------------------------------------------------------------------------------------------

/** dL/db[Cout] = sum of gy over N, OH, OW (fixed-order reduction). */
export function conv2dBackwardBias(gy: Tensor<'f32'>): Tensor<'f32'> {
  const rt = gy.rt;
  if (gy.shape.length !== 4) throw new Error(`conv2dBackwardBias: gy must be [N, C, H, W], got [${gy.shape.join(', ')}]`);
  const [n, c, h, w] = gy.shape as [number, number, number, number];
  const gb = Tensor.empty(rt, [c], 'f32', 'conv2d.gb');
  recordChannelSum(rt, gy, gb, n, c, h * w);
  return gb;
}
