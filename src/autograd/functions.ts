// Differentiable ops: each calls its kernels' forward and records a tape entry whose backward calls the op's
// backward kernels, only for the inputs that need a gradient. The kernels live in src/kernels/<op>/.
import { add as addKernel, broadcastScalar, reluBackward, reluForward } from '../kernels/elementwise/elementwise.js';
import { sumAll } from '../kernels/reduce/sum.js';
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
  g.rt.copy(g.buffer, 0, out.buffer, 0, Math.ceil(g.byteLength / 4) * 4);
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
