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
  type BatchNormTracker,
} from '../kernels/batch-norm/batch-norm.js';
import { conv2dBackwardBias, conv2dBackwardInput, conv2dBackwardWeight, conv2dForward } from '../kernels/conv2d/conv2d.js';
import {
  crossEntropyBackward,
  crossEntropyBackwardMean,
  crossEntropyBackwardScaled,
  crossEntropyForward,
} from '../kernels/cross-entropy/cross-entropy.js';
import { linearBackwardBias, linearBackwardInput, linearBackwardWeight, linearForward } from '../kernels/matmul/matmul.js';
import { maxPool2dBackward, maxPool2dForward, type MaxPool2dOptions } from '../kernels/max-pool/max-pool.js';
import { Tensor, type GradFn } from '../kernels/tensor.js';
import { needsTape, record } from './tape.js';

type Grads = (Tensor<'f32'> | null)[];

function entry(name: string, inputs: Tensor[], backward: GradFn['backward'], release: () => void = () => {}): GradFn {
  return { name, inputs, backward, release };
}

export function relu(x: Tensor): Tensor<'f32'> {
  const y = reluForward(x);
  if (!needsTape(x)) return y;
  return record(y, entry('relu', [x], (gy): Grads => [reluBackward(y, gy)]));
}

/** a + b (same shape): the residual connection. */
export function add(a: Tensor, b: Tensor): Tensor<'f32'> {
  const out = addKernel(a, b);
  if (!needsTape(a, b)) return out;
  // The gradient passes through unchanged to both. backward() owns what an entry returns and accumulates into
  // it in place, so the two inputs must not share storage: one gets a copy, the other a view of g itself.
  return record(
    out,
    entry('add', [a, b], (g, needs): Grads => [needs[0] ? copyOf(g) : null, needs[1] ? g.view(g.shape) : null]),
  );
}

function copyOf(g: Tensor<'f32'>): Tensor<'f32'> {
  const out = Tensor.empty(g.rt, g.shape, 'f32', 'gradCopy');
  g.rt.copy(g.buffer, 0, out.buffer, 0, g.byteLength);
  return out;
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
  const y = linearForward(x, w, b);
  if (!needsTape(x, w, b)) return y;
  const inputs = b ? [x, w, b] : [x, w];
  return record(
    y,
    entry('linear', inputs, (gy, needs): Grads => [
      needs[0] ? linearBackwardInput(gy, w) : null,
      needs[1] ? linearBackwardWeight(gy, x) : null,
      ...(b ? [needs[2] ? linearBackwardBias(gy) : null] : []),
    ]),
  );
}

export interface Conv2dArgs {
  stride: number;
  padding: number;
}

/** torch.nn.functional.conv2d with dilation 1 and groups 1; x NCHW, w OIHW. */
export function conv2d(x: Tensor<'f32'>, w: Tensor<'f32'>, b: Tensor<'f32'> | null, args: Conv2dArgs): Tensor<'f32'> {
  const y = conv2dForward(x, w, b, args);
  if (!needsTape(x, w, b)) return y;
  const inputs = b ? [x, w, b] : [x, w];
  return record(
    y,
    entry('conv2d', inputs, (gy, needs): Grads => [
      needs[0] ? conv2dBackwardInput(gy, w, x.shape, args) : null,
      needs[1] ? conv2dBackwardWeight(gy, x, w.shape, args) : null,
      ...(b ? [needs[2] ? conv2dBackwardBias(gy) : null] : []),
    ]),
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

/**
 * torch.nn.functional.batch_norm. Training: batch statistics, running stats updated in place (even under
 * noGrad, as torch does in train mode). Eval: running statistics.
 */
export function batchNorm2d(x: Tensor<'f32'>, s: BatchNormState, training: boolean): Tensor<'f32'> {
  const inputs = [x, s.weight, s.bias];
  if (!training) {
    const y = batchNormEvalForward(x, s.weight, s.bias, s.runningMean, s.runningVar, s.eps);
    if (!needsTape(...inputs)) return y;
    return record(
      y,
      entry('batchNorm2dEval', inputs, (gy, needs): Grads => {
        const g = batchNormEvalBackward(gy, x, s.weight, s.runningMean, s.runningVar, s.eps, {
          input: needs[0]!,
          weight: needs[1]!,
          bias: needs[2]!,
        });
        return [g.gx, g.gweight, g.gbias];
      }),
    );
  }
  const { y, saveMean, saveInvStd } = batchNormTrainForward(x, s.weight, s.bias, s.runningMean, s.runningVar, {
    momentum: s.momentum,
    eps: s.eps,
    tracker: s.tracker,
  });
  if (!needsTape(...inputs)) {
    saveMean.release();
    saveInvStd.release();
    return y;
  }
  return record(
    y,
    entry(
      'batchNorm2d',
      inputs,
      (gy, needs): Grads => {
        const g = batchNormBackward(gy, x, s.weight, saveMean, saveInvStd, { input: needs[0]!, weight: needs[1]!, bias: needs[2]! });
        return [g.gx, g.gweight, g.gbias];
      },
      () => {
        saveMean.release();
        saveInvStd.release();
      },
    ),
  );
}

export function maxPool2d(x: Tensor<'f32'>, options: MaxPool2dOptions): Tensor<'f32'> {
  const { y, indices } = maxPool2dForward(x, options);
  if (!needsTape(x)) {
    indices.release();
    return y;
  }
  return record(
    y,
    entry('maxPool2d', [x], (gy): Grads => [maxPool2dBackward(gy, indices, x.shape, options)], () => indices.release()),
  );
}

/** adaptive_avg_pool2d to 1x1. */
export function adaptiveAvgPool2d(x: Tensor<'f32'>): Tensor<'f32'> {
  const y = adaptiveAvgPool2dForward(x, 1);
  if (!needsTape(x)) return y;
  return record(y, entry('adaptiveAvgPool2d', [x], (gy): Grads => [adaptiveAvgPool2dBackward(gy, x.shape)]));
}

export type Reduction = 'none' | 'sum' | 'mean';

/** torch.nn.functional.cross_entropy on logits [N, C] and i32 labels [N] (label -100 ignored, as PyTorch's default). */
export function crossEntropy(logits: Tensor<'f32'>, labels: Tensor<'i32'>, reduction: Reduction = 'mean'): Tensor<'f32'> {
  const { losses, sum: total, mean: avg } = crossEntropyForward(logits, labels);
  const keep = reduction === 'none' ? losses : reduction === 'sum' ? total : avg;
  for (const t of [losses, total, avg]) if (t !== keep) t.release();
  if (!needsTape(logits)) return keep;
  return record(
    keep,
    entry('crossEntropy', [logits], (g): Grads => [
      reduction === 'none'
        ? crossEntropyBackward(logits, labels, g)
        : reduction === 'mean'
          ? crossEntropyBackwardMean(logits, labels, g)
          : crossEntropyBackwardScaled(logits, labels, g, 1),
    ]),
  );
}
