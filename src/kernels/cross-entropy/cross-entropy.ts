// Fused softmax cross-entropy as torch.nn.functional.cross_entropy over logits [N, C] and i32 labels [N], with
// PyTorch's default ignore_index: a row labelled -100 has loss 0 and a zero gradient, and the mean divides by the
// rows not ignored. Any other label outside [0, C) makes that row's loss NaN and its gradient row NaN (PyTorch
// raises an error there; a GPU kernel cannot), so a bad label shows up in the loss instead of silently training on
// a clamped class.
import { batchChunks } from '../../runtime/chunks.js';
import type { KernelDef } from '../../runtime/kernel.js';
import type { BufferSource, Runtime } from '../../runtime/runtime.js';
import { Tensor } from '../../runtime/tensor.js';
import {
  crossEntropyBackward as backwardKernel,
  crossEntropyForward as forwardKernel,
  crossEntropyMeanScale,
  crossEntropySum,
} from './cross-entropy.wgsl.js';

function check(op: string, logits: Tensor<'f32'>, labels: Tensor<'i32'>): { N: number; C: number } {
  if (logits.shape.length !== 2) throw new Error(`${op}: logits must be [N, C], got [${logits.shape.join(', ')}]`);
  const [N, C] = logits.shape as [number, number];
  if (labels.shape.length !== 1 || labels.size !== N || labels.dtype !== 'i32') throw new Error(`${op}: labels must be i32 [${N}], got ${labels.dtype} [${labels.shape.join(', ')}]`);
  if (C < 1) throw new Error(`${op}: no classes`);
  return { N, C };
}

/**
 * Records a row kernel (one invocation per row of logits) batch slice by batch slice: it binds the slice's logits
 * and labels and what `bind` adds, `rows(t, per)` being the slice of a tensor with `per` elements a row.
 */
function recordRows(
  rt: Runtime,
  def: KernelDef,
  logits: Tensor<'f32'>,
  labels: Tensor<'i32'>,
  N: number,
  C: number,
  bind: (rows: (t: Tensor, per: number) => BufferSource) => Record<string, BufferSource>,
  params: Record<string, number> = {},
): void {
  for (const ch of batchChunks(rt, N, [C, 1])) {
    const rows = (t: Tensor, per: number) => t.gpuBindingRange(ch.start * per, ch.count * per);
    const bindings = { logits: rows(logits, C), labels: rows(labels, 1), ...bind(rows) };
    rt.dispatch(def, rt.grid(ch.count), bindings, { rows: ch.count, C, negInf: -Infinity, nan: NaN, ...params });
  }
}

/** Per-example losses [N] (reduction 'none'), their sum [1] and mean over the rows not ignored [1], all on the GPU. */
export function crossEntropyForward(logits: Tensor<'f32'>, labels: Tensor<'i32'>): { losses: Tensor<'f32'>; sum: Tensor<'f32'>; mean: Tensor<'f32'> } {
  const rt = logits.rt;
  const { N, C } = check('crossEntropyForward', logits, labels);
  const losses = Tensor.empty(rt, [N], 'f32', 'crossEntropy.losses');
  recordRows(rt, forwardKernel, logits, labels, N, C, (rows) => ({ losses: rows(losses, 1) }));
  const sum = Tensor.empty(rt, [1], 'f32', 'crossEntropy.sum');
  const mean = Tensor.empty(rt, [1], 'f32', 'crossEntropy.mean');
  rt.dispatch(crossEntropySum, 1, { losses, labels, sum, mean }, { n: N, nan: NaN });
  return { losses, sum, mean };
}

function backward(rt: Runtime, logits: Tensor<'f32'>, labels: Tensor<'i32'>, N: number, C: number, g: Tensor<'f32'>, perExample: boolean, scale: number): Tensor<'f32'> {
  const dlogits = Tensor.empty(rt, [N, C], 'f32', 'crossEntropy.dlogits');
  recordRows(rt, backwardKernel, logits, labels, N, C, (rows) => ({ g: perExample ? rows(g, 1) : g, dlogits: rows(dlogits, C) }), {
    gStride: perExample ? 1 : 0,
    scale,
  });
  return dlogits;
}

/** dlogits for reduction 'none': (softmax - onehot) * gLosses[n] per row. */
export function crossEntropyBackward(logits: Tensor<'f32'>, labels: Tensor<'i32'>, gLosses: Tensor<'f32'>): Tensor<'f32'> {
  const { N, C } = check('crossEntropyBackward', logits, labels);
  if (gLosses.size !== N) throw new Error(`crossEntropyBackward: gLosses must have ${N} elements, got ${gLosses.size}`);
  return backward(logits.rt, logits, labels, N, C, gLosses, true, 1);
}

/**
 * dlogits for reduction 'sum' (scale 1): (softmax - onehot) * gScalar[0] * scale, reading the upstream gradient
 * from a one-element GPU tensor. (Scale 1/N is reduction 'mean' only when no row is ignored: see
 * crossEntropyBackwardMean.)
 */
export function crossEntropyBackwardScaled(logits: Tensor<'f32'>, labels: Tensor<'i32'>, gScalar: Tensor<'f32'>, scale: number): Tensor<'f32'> {
  const { N, C } = check('crossEntropyBackwardScaled', logits, labels);
  if (gScalar.size !== 1) throw new Error(`crossEntropyBackwardScaled: gScalar must have one element, got [${gScalar.shape.join(', ')}]`);
  return backward(logits.rt, logits, labels, N, C, gScalar, false, scale);
}

/**
 * dlogits for reduction 'mean': (softmax - onehot) * gScalar[0] / (rows not ignored), as PyTorch's mean with
 * ignore_index; the count is taken on the GPU from the labels.
 */
export function crossEntropyBackwardMean(logits: Tensor<'f32'>, labels: Tensor<'i32'>, gScalar: Tensor<'f32'>): Tensor<'f32'> {
  const rt = logits.rt;
  const { N, C } = check('crossEntropyBackwardMean', logits, labels);
  if (gScalar.size !== 1) throw new Error(`crossEntropyBackwardMean: gScalar must have one element, got [${gScalar.shape.join(', ')}]`);
  const scaled = Tensor.empty(rt, [1], 'f32', 'crossEntropy.meanScale');
  rt.dispatch(crossEntropyMeanScale, 1, { labels, g: gScalar, out: scaled }, { n: N });
  const dlogits = backward(rt, logits, labels, N, C, scaled, false, 1);
  scaled.release();
  return dlogits;
}
