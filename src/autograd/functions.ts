// Differentiable ops: each calls its kernels' forward and records a tape entry whose backward calls the op's
// backward kernels, only for the inputs that need a gradient. The kernels live in src/kernels/<op>/.
import { add as addKernel, broadcastScalar, reluBackward, reluForward } from '../kernels/elementwise/elementwise.js';
import { sumAll } from '../kernels/reduce/sum.js';
import { adaptiveAvgPool2dBackward, adaptiveAvgPool2dForward } from '../kernels/avg-pool/avg-pool.js';
import {
  batchNormBackward,
  batchNormEvalBackward,
  batchNormEvalForward,
  batchNormTrainForward,
  type BatchNormBackwardEpilogue,
  type BatchNormTracker,
} from '../kernels/batch-norm/batch-norm.js';
import { conv2dBackwardBias, conv2dBackwardInput, conv2dBackwardWeight, conv2dForward, conv2dGeometry } from '../kernels/conv2d/conv2d.js';
import { convFlop as convPassFlop } from '../kernels/workloads.js';
import {
  crossEntropyBackward,
  crossEntropyBackwardMean,
  crossEntropyBackwardScaled,
  crossEntropyForward,
} from '../kernels/cross-entropy/cross-entropy.js';
import { linearBackwardBias, linearBackwardInput, linearBackwardWeight, linearForward } from '../kernels/matmul/matmul.js';
import { maxPool2dBackward, maxPool2dForward, type MaxPool2dOptions } from '../kernels/max-pool/max-pool.js';
import { Tensor, type GradFn } from '../runtime/tensor.js';
import { needsTape, record } from './tape.js';

type Grads = (Tensor<'f32'> | null)[];

// Op scopes: `rt.profiler?.begin(kind, label, flop)` ... `rt.profiler?.end()` around each op's kernels tell the
// profiler (src/runtime/profiling) which op call the dispatches belong to. Without a profiler, `?.` skips the
// call and its arguments.

const shapeOf = (t: Tensor): string => `[${t.shape.join(',')}]`;

/** A conv call's label (shapes) for the profiler. */
function convLabel(xShape: readonly number[], wShape: readonly number[], args: Conv2dArgs): string {
  const g = conv2dGeometry(xShape, wShape, args);
  return `${g.cin}->${g.cout} ${g.kh}x${g.kw} s${g.sh} @${g.h}${g.w === g.h ? '' : `x${g.w}`} N${g.n}`;
}

/** Direct-convolution FLOPs of one conv call (each of forward, data and weight gradient): 2 N Cout OH OW Cin KH KW. */
export function convFlop(xShape: readonly number[], wShape: readonly number[], args: Conv2dArgs): number {
  return convPassFlop(conv2dGeometry(xShape, wShape, args));
}

function entry(name: string, inputs: Tensor[], backward: GradFn['backward'], release: () => void = () => {}): GradFn {
  return { name, inputs, backward, release };
}

export function relu(x: Tensor): Tensor<'f32'> {
  x.rt.profiler?.begin('relu', `relu ${shapeOf(x)}`);
  const y = reluForward(x);
  x.rt.profiler?.end();
  if (!needsTape(x)) return y;
  return record(
    y,
    entry('relu', [x], (gy): Grads => {
      gy.rt.profiler?.begin('relu', `relu backward ${shapeOf(gy)}`);
      const gx = reluBackward(y, gy);
      gy.rt.profiler?.end();
      return [gx];
    }),
  );
}

/** a + b (same shape): the residual connection. */
export function add(a: Tensor, b: Tensor): Tensor<'f32'> {
  a.rt.profiler?.begin('add', `add ${shapeOf(a)}`);
  const out = addKernel(a, b);
  a.rt.profiler?.end();
  if (!needsTape(a, b)) return out;
  // The gradient passes through unchanged to both: each gets a view of it (no copy; backward() copies on write
  // if it later accumulates into one of them while the other is alive).
  return record(
    out,
    entry('add', [a, b], (g, needs): Grads => [needs[0] ? g.view(g.shape) : null, needs[1] ? g.view(g.shape) : null]),
  );
}

/** Sum of all elements, as a one-element tensor. */
export function sum(x: Tensor): Tensor<'f32'> {
  const out = sumAll(x);
  if (!needsTape(x)) return out;
  return record(out, entry('sum', [x], (g): Grads => [broadcastScalar(g, x.shape)]));
}

/** Mean of all elements, as a one-element tensor. */
export function mean(x: Tensor): Tensor<'f32'> {
  const out = sumAll(x, 1 / x.size);
  if (!needsTape(x)) return out;
  return record(out, entry('mean', [x], (g): Grads => [broadcastScalar(g, x.shape, 1 / x.size)]));
}

/** Flattens dims from startDim on, as a view sharing storage (torch.flatten). */
export function flatten(x: Tensor, startDim = 1): Tensor {
  const lead = x.shape.slice(0, startDim);
  const y = x.view([...lead, -1]);
  if (!needsTape(x)) return y;
  return record(y, entry('flatten', [x], (g): Grads => [g.view(x.shape)]));
}

/** y = x @ w^T + b (torch.nn.functional.linear). */
export function linear(x: Tensor, w: Tensor, b: Tensor | null): Tensor<'f32'> {
  x.rt.profiler?.begin('linear', `linear ${shapeOf(x)} x ${shapeOf(w)}`);
  const y = linearForward(x, w, b);
  x.rt.profiler?.end();
  if (!needsTape(x, w, b)) return y;
  const inputs = b ? [x, w, b] : [x, w];
  return record(
    y,
    entry('linear', inputs, (gy, needs): Grads => {
      gy.rt.profiler?.begin('linear', `linear backward ${shapeOf(gy)} x ${shapeOf(w)}`);
      const grads = [
        needs[0] ? linearBackwardInput(gy, w) : null,
        needs[1] ? linearBackwardWeight(gy, x) : null,
        ...(b ? [needs[2] ? linearBackwardBias(gy) : null] : []),
      ];
      gy.rt.profiler?.end();
      return grads;
    }),
  );
}

export interface Conv2dArgs {
  stride: number;
  padding: number;
}

/** torch.nn.functional.conv2d with dilation 1 and groups 1; x NCHW, w OIHW. */
export function conv2d(x: Tensor<'f32'>, w: Tensor<'f32'>, b: Tensor<'f32'> | null, args: Conv2dArgs): Tensor<'f32'> {
  const rt = x.rt;
  rt.profiler?.begin('conv.forward', convLabel(x.shape, w.shape, args), convFlop(x.shape, w.shape, args));
  const y = conv2dForward(x, w, b, args);
  rt.profiler?.end();
  if (!needsTape(x, w, b)) return y;
  const inputs = b ? [x, w, b] : [x, w];
  return record(
    y,
    entry('conv2d', inputs, (gy, needs): Grads => {
      let gx: Tensor<'f32'> | null = null;
      let gw: Tensor<'f32'> | null = null;
      if (needs[0]) {
        rt.profiler?.begin('conv.backwardData', convLabel(x.shape, w.shape, args), convFlop(x.shape, w.shape, args));
        gx = conv2dBackwardInput(gy, w, x.shape, args);
        rt.profiler?.end();
      }
      if (needs[1]) {
        rt.profiler?.begin('conv.backwardWeight', convLabel(x.shape, w.shape, args), convFlop(x.shape, w.shape, args));
        gw = conv2dBackwardWeight(gy, x, w.shape, args);
        rt.profiler?.end();
      }
      return [gx, gw, ...(b ? [needs[2] ? conv2dBackwardBias(gy) : null] : [])];
    }),
  );
}

export interface BatchNormState {
  weight: Tensor<'f32'>;
  bias: Tensor<'f32'>;
  runningMean: Tensor<'f32'>;
  runningVar: Tensor<'f32'>;
  momentum: number;
  eps: number;
  tracker: BatchNormTracker;
}

/** Fused after the normalisation: z = relu(bn(x) + residual), each part optional. */
export interface BatchNormEpilogueArgs {
  relu?: boolean;
  /** Added before the relu: the end of a ResNet BasicBlock, relu(bn2(conv2(h)) + identity). */
  residual?: Tensor<'f32'> | null;
}

function bnLabel(x: Tensor, training: boolean, relu: boolean, residual: boolean): string {
  return `batchNorm2d${training ? '' : ' eval'}${residual ? '+add' : ''}${relu ? '+relu' : ''} ${shapeOf(x)}`;
}

/**
 * torch.nn.functional.batch_norm, optionally followed by a residual add and a relu in the same passes (the
 * BatchNorm kernels' epilogue). Training: batch statistics, running stats updated in place (even under noGrad, as
 * torch does in train mode). Eval: running statistics. Backward: dZ = gz * [z > 0] is folded into BatchNorm's
 * own passes (the mask recomputed from x, or read from z when a residual entered it), and the residual's gradient
 * is dZ.
 */
export function batchNorm2d(x: Tensor<'f32'>, s: BatchNormState, training: boolean, epilogue: BatchNormEpilogueArgs = {}): Tensor<'f32'> {
  const rt = x.rt;
  const relu = epilogue.relu ?? false;
  const residual = epilogue.residual ?? null;
  const inputs = residual ? [x, s.weight, s.bias, residual] : [x, s.weight, s.bias];
  const label = bnLabel(x, training, relu, residual !== null);
  rt.profiler?.begin('bn.forward', label);
  let y: Tensor<'f32'>;
  let saved: { saveMean: Tensor<'f32'>; saveInvStd: Tensor<'f32'> } | null = null;
  try {
    if (training) {
      const f = batchNormTrainForward(x, s.weight, s.bias, s.runningMean, s.runningVar, {
        momentum: s.momentum,
        eps: s.eps,
        tracker: s.tracker,
        relu,
        residual,
      });
      y = f.y;
      saved = { saveMean: f.saveMean, saveInvStd: f.saveInvStd };
    } else {
      y = batchNormEvalForward(x, s.weight, s.bias, s.runningMean, s.runningVar, s.eps, { relu, residual });
    }
  } finally {
    rt.profiler?.end();
  }
  const releaseSaved = (): void => {
    saved?.saveMean.release();
    saved?.saveInvStd.release();
  };
  if (!needsTape(...inputs)) {
    releaseSaved();
    return y;
  }
  // The relu mask: recomputed from x (bitwise the forward's pre-activation) unless a residual entered it.
  const backwardEpilogue: BatchNormBackwardEpilogue = relu ? { relu: residual ? { output: y } : { bias: s.bias } } : {};
  return record(
    y,
    entry(
      training ? 'batchNorm2d' : 'batchNorm2dEval',
      inputs,
      (gy, needs): Grads => {
        rt.profiler?.begin('bn.backward', `${label} backward`);
        const want = { input: needs[0]!, weight: needs[1]!, bias: needs[2]!, ...(residual ? { residual: needs[3]! } : {}) };
        const g = saved
          ? batchNormBackward(gy, x, s.weight, saved.saveMean, saved.saveInvStd, want, backwardEpilogue)
          : batchNormEvalBackward(gy, x, s.weight, s.runningMean, s.runningVar, s.eps, want, backwardEpilogue);
        rt.profiler?.end();
        return [g.gx, g.gweight, g.gbias, ...(residual ? [g.gresidual ?? null] : [])];
      },
      releaseSaved,
    ),
  );
}

export function maxPool2d(x: Tensor<'f32'>, options: MaxPool2dOptions): Tensor<'f32'> {
  x.rt.profiler?.begin('pool', `maxPool2d ${shapeOf(x)}`);
  const { y, indices } = maxPool2dForward(x, options);
  x.rt.profiler?.end();
  if (!needsTape(x)) {
    indices.release();
    return y;
  }
  return record(
    y,
    entry(
      'maxPool2d',
      [x],
      (gy): Grads => {
        gy.rt.profiler?.begin('pool', `maxPool2d backward ${shapeOf(gy)}`);
        const gx = maxPool2dBackward(gy, indices, x.shape, options);
        gy.rt.profiler?.end();
        return [gx];
      },
      () => indices.release(),
    ),
  );
}

/** adaptive_avg_pool2d to 1x1. */
export function adaptiveAvgPool2d(x: Tensor<'f32'>): Tensor<'f32'> {
  x.rt.profiler?.begin('pool', `adaptiveAvgPool2d ${shapeOf(x)}`);
  const y = adaptiveAvgPool2dForward(x, 1);
  x.rt.profiler?.end();
  if (!needsTape(x)) return y;
  return record(
    y,
    entry('adaptiveAvgPool2d', [x], (gy): Grads => {
      gy.rt.profiler?.begin('pool', `adaptiveAvgPool2d backward ${shapeOf(gy)}`);
      const gx = adaptiveAvgPool2dBackward(gy, x.shape);
      gy.rt.profiler?.end();
      return [gx];
    }),
  );
}

export type Reduction = 'none' | 'sum' | 'mean';

/** torch.nn.functional.cross_entropy on logits [N, C] and i32 labels [N] (label -100 ignored, as PyTorch's default). */
export function crossEntropy(logits: Tensor<'f32'>, labels: Tensor<'i32'>, reduction: Reduction = 'mean'): Tensor<'f32'> {
  logits.rt.profiler?.begin('crossEntropy', `crossEntropy ${shapeOf(logits)}`);
  const { losses, sum: total, mean: avg } = crossEntropyForward(logits, labels);
  logits.rt.profiler?.end();
  const keep = reduction === 'none' ? losses : reduction === 'sum' ? total : avg;
  for (const t of [losses, total, avg]) if (t !== keep) t.release();
  if (!needsTape(logits)) return keep;
  return record(
    keep,
    entry('crossEntropy', [logits], (g): Grads => {
      logits.rt.profiler?.begin('crossEntropy', `crossEntropy backward ${shapeOf(logits)}`);
      const gx =
        reduction === 'none'
          ? crossEntropyBackward(logits, labels, g)
          : reduction === 'mean'
            ? crossEntropyBackwardMean(logits, labels, g)
            : crossEntropyBackwardScaled(logits, labels, g, 1);
      logits.rt.profiler?.end();
      return [gx];
    }),
  );
}
