import { flatChunks } from '../../runtime/chunks.js';
import { dispatchFlat, flatLanes, type FlatLanes } from '../../runtime/flat.js';
import type { KernelDef } from '../../runtime/kernel.js';
import { Tensor } from '../../runtime/tensor.js';
import {
  accumulateKernel,
  addKernel,
  broadcastScalarKernel,
  reluBackwardKernel,
  reluForwardKernel,
  scaleByTensorKernel,
} from './elementwise.wgsl.js';

// Runs a flat kernel over every aligned slice that fits a storage binding. `operands` maps binding names to
// tensors of the same element count; `extra` binds whole (small) tensors such as a one-element scalar.
function runFlat(
  kernel: (L: FlatLanes) => KernelDef,
  n: number,
  operands: Record<string, Tensor>,
  extra: Record<string, Tensor> = {},
  params: Record<string, number> = {},
): void {
  const first = Object.values(operands)[0]!;
  const rt = first.rt;
  for (const [name, t] of Object.entries(operands)) {
    if (t.size !== n) throw new Error(`${kernel(1).name}: operand ${name} has ${t.size} elements, expected ${n}`);
  }
  for (const c of flatChunks(rt, n)) {
    const bindings: Record<string, GPUBufferBinding> = {};
    for (const [name, t] of Object.entries(operands)) bindings[name] = t.gpuBindingRange(c.start, c.count);
    for (const [name, t] of Object.entries(extra)) bindings[name] = t.gpuBinding();
    const L = flatLanes(c.start, c.count);
    dispatchFlat(rt, kernel(L), L, c.count, bindings, params);
  }
}

function sameShape(a: Tensor, b: Tensor, op: string): void {
  if (a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i])) {
    throw new Error(`${op}: shapes [${a.shape.join(', ')}] and [${b.shape.join(', ')}] differ`);
  }
}

export function reluForward(x: Tensor): Tensor<'f32'> {
  const y = Tensor.empty(x.rt, x.shape, 'f32', 'relu');
  runFlat(reluForwardKernel, x.size, { x, y });
  return y;
}

/** Gradient of relu from its output y (y > 0 exactly where the input was > 0). */
export function reluBackward(y: Tensor, gy: Tensor): Tensor<'f32'> {
  sameShape(y, gy, 'reluBackward');
  const gx = Tensor.empty(y.rt, y.shape, 'f32', 'reluGrad');
  runFlat(reluBackwardKernel, y.size, { y, gy, gx });
  return gx;
}

export function add(a: Tensor, b: Tensor): Tensor<'f32'> {
  sameShape(a, b, 'add');
  const out = Tensor.empty(a.rt, a.shape, 'f32', 'add');
  runFlat(addKernel, a.size, { a, b, out });
  return out;
}

/** acc += x in place. */
export function accumulate(acc: Tensor, x: Tensor): void {
  sameShape(acc, x, 'accumulate');
  runFlat(accumulateKernel, acc.size, { acc, x });
}

/** x * scalar[0] * factor, where scalar is a one-element GPU tensor (no readback). */
export function scaleByTensor(x: Tensor, scalar: Tensor, factor = 1): Tensor<'f32'> {
  const out = Tensor.empty(x.rt, x.shape, 'f32', 'scale');
  runFlat(scaleByTensorKernel, x.size, { x, out }, { scalar }, { factor });
  return out;
}

/** A tensor of `shape` filled with scalar[0] * factor (the gradient of a sum or mean). */
export function broadcastScalar(scalar: Tensor, shape: readonly number[], factor = 1): Tensor<'f32'> {
  const out = Tensor.empty(scalar.rt, shape, 'f32', 'broadcast');
  runFlat(broadcastScalarKernel, out.size, { out }, { scalar }, { factor });
  return out;
}
