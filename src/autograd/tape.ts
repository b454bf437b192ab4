// Reverse-mode autodiff over GPU tensors. Each op's output carries a GradFn (its tape entry) naming its inputs;
// backward() walks the graph from a scalar in reverse topological order.
//
// Gradients may share storage (views): accumulation writes in place only into a gradient whose storage is its own,
// and adds into a new tensor otherwise (copy on write).
//
// Memory: every intermediate (non-leaf) tensor in the graph is released to the pool as soon as its producer's
// backward has run. In reverse topological order all of its consumers have run by then, so nothing needs it any
// more. Leaves (parameters, inputs) are never released here; mark a non-leaf with `retain = true` to keep it.
import { accumulate, add as addTensors } from '../kernels/elementwise/elementwise.js';
import { Tensor, type GradFn } from '../runtime/tensor.js';
import { isGradEnabled } from './grad-mode.js';

/** True when an op on these inputs must record a GradFn. */
export function needsTape(...inputs: (Tensor | null | undefined)[]): boolean {
  return isGradEnabled() && inputs.some((t) => t?.requiresGrad);
}

/** Attaches a tape entry to an op's output. */
export function record<T extends Tensor>(output: T, fn: GradFn): T {
  output.requiresGrad = true;
  output.gradFn = fn;
  for (const input of fn.inputs) input.tapeUses++;
  return output;
}

/**
 * The caller is done with intermediate t (a layer's output that the next layer has consumed). Taped tensors are
 * freed by backward(); an untaped one is freed now, or after backward() if a tape entry holds it as an input
 * (a frozen layer's output feeding a trained one).
 */
export function releaseIntermediate(t: Tensor): void {
  if (t.gradFn || t.retain) return;
  if (t.tapeUses > 0) t.releaseWithGraph = true;
  else t.release();
}

export interface BackwardOptions {
  /** Gradient of the root (default: 1 for a one-element root). */
  gradient?: Tensor<'f32'>;
  /**
   * Called once for each leaf whose gradient is final in this pass: the last tape entry that uses it has run (data
   * parallelism copies a layer's gradients out then, while the rest of the backward pass is still on the GPU).
   */
  onGradFinal?: (leaf: Tensor) => void;
}

/**
 * Accumulates d(root)/d(leaf) into leaf.grad for every leaf with requiresGrad, like torch's backward():
 * gradients add onto an existing .grad until it is zeroed. Frees the graph's intermediates as it goes.
 */
export function backward(root: Tensor, options: BackwardOptions = {}): void {
  if (!root.requiresGrad) throw new Error('backward(): the tensor does not require grad (no parameter with requiresGrad fed it)');
  if (!options.gradient && root.size !== 1) {
    throw new Error(`backward(): the root has shape [${root.shape.join(', ')}]; pass a gradient or reduce it to a scalar first`);
  }
  const order = topologicalOrder(root);
  const grads = new Map<number, Tensor<'f32'>>();
  grads.set(root.id, options.gradient ?? Tensor.full(root.rt, root.shape, 1, 'gradRoot'));

  for (let k = order.length - 1; k >= 0; k--) {
    const t = order[k]!;
    const fn = t.gradFn!;
    const g = grads.get(t.id);
    grads.delete(t.id);
    if (g) {
      const needs = fn.inputs.map((x) => x.requiresGrad);
      const inputGrads = fn.backward(g, needs);
      fn.inputs.forEach((input, i) => {
        const gi = inputGrads[i];
        if (!gi) return;
        if (!needs[i]) {
          gi.release();
          return;
        }
        if (input.gradFn) addInto(grads, input.id, gi);
        else if (input.grad) input.grad = accumulateInto(input.grad, gi);
        else input.grad = gi;
      });
      if (g !== options.gradient) g.release();
    }
    fn.release();
    for (const input of fn.inputs) {
      input.tapeUses--;
      if (!input.gradFn && input.tapeUses === 0 && input.releaseWithGraph) input.release();
      if (options.onGradFinal && !input.gradFn && input.tapeUses === 0 && input.requiresGrad && input.grad) options.onGradFinal(input);
    }
    t.gradFn = null;
    if (t !== root && !t.retain) t.release();
  }
}

function addInto(grads: Map<number, Tensor<'f32'>>, id: number, g: Tensor<'f32'>): void {
  const existing = grads.get(id);
  grads.set(id, existing ? accumulateInto(existing, g) : g);
}

/**
 * target + g, in place when target's storage is its own. Entries may hand out views of one gradient (add gives
 * both inputs its output's gradient), so a shared one is copied on write: target + g goes to a new tensor.
 * Releases g (and target when replaced).
 */
function accumulateInto(target: Tensor<'f32'>, g: Tensor<'f32'>): Tensor<'f32'> {
  let out = target;
  if (target.sharesStorage) {
    out = addTensors(target, g);
    target.release();
  } else accumulate(target, g);
  g.release();
  return out;
}

/** Non-leaf tensors reachable from root, each after all of its inputs. */
function topologicalOrder(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const visited = new Set<number>();
  // Iterative DFS (ResNet graphs are a few hundred nodes deep; recursion would do, but this never overflows).
  const stack: [Tensor, number][] = [[root, 0]];
  visited.add(root.id);
  while (stack.length) {
    const top = stack[stack.length - 1]!;
    const [t, i] = top;
    const inputs = t.gradFn?.inputs ?? [];
    if (i < inputs.length) {
      top[1]++;
      const next = inputs[i]!;
      if (next.gradFn && next.requiresGrad && !visited.has(next.id)) {
        visited.add(next.id);
        stack.push([next, 0]);
      }
    } else {
      stack.pop();
      if (t.gradFn) order.push(t);
    }
  }
  return order;
}

/** Sets every given tensor's .grad to null, releasing the buffers (like optimizer.zero_grad(set_to_none=True)). */
export function zeroGrad(tensors: Iterable<Tensor>): void {
  for (const t of tensors) {
    t.grad?.release();
    t.grad = null;
  }
}
