import { describe, expect, it, vi } from 'vitest';
import { Tensor } from '../../src/runtime/tensor.js';
import { add, crossEntropy, flatten, mean, relu, sum } from '../../src/autograd/functions.js';
import { backward, zeroGrad } from '../../src/autograd/tape.js';
import { noGrad } from '../../src/autograd/grad-mode.js';
import { testRuntime } from '../helpers/gpu.js';
import { maxRelError } from '../helpers/gradcheck.js';

async function param(values: number[], shape?: number[]): Promise<Tensor<'f32'>> {
  const t = Tensor.fromArray(await testRuntime(), values, shape);
  t.requiresGrad = true;
  return t;
}

describe('autograd tape', () => {
  it('accumulates the gradient of a tensor that feeds several ops (a residual connection)', async () => {
    // L = sum(relu(x) + x): dL/dx = (x > 0) + 1
    const x = await param([-2, -0.5, 0.5, 3]);
    const loss = sum(add(relu(x), x));
    expect(await loss.item()).toBe(0.5 + 3 - 2 - 0.5 + 0.5 + 3);
    backward(loss);
    expect(Array.from(await x.grad!.read())).toEqual([1, 1, 2, 2]);
    // A second backward adds onto .grad, as in PyTorch, until the grad is zeroed.
    backward(sum(add(x, x)));
    expect(Array.from(await x.grad!.read())).toEqual([3, 3, 4, 4]);
    zeroGrad([x]);
    expect(x.grad).toBeNull();
    loss.release();
    x.release();
  });

  it("add hands its gradient to both inputs as views, without a copy; accumulating into a shared one copies on write", async () => {
    const rt = await testRuntime();
    const p = await param([1, -2, 3, 4]);
    const q = await param([-1, 5, 6, -7]);
    const copy = vi.spyOn(rt, 'copy');
    // w = (relu(p) + relu(q)) + relu(p): relu(p)'s gradient arrives twice, the second time while the first (a view of
    // w's gradient) still shares storage with u's; an in-place sum there would also change relu(q)'s gradient.
    const a = relu(p);
    const w = add(add(a, relu(q)), a);
    const g = Tensor.fromArray(rt, [1, 2, 3, 4]);
    backward(w, { gradient: g });
    expect(copy).not.toHaveBeenCalled();
    copy.mockRestore();
    expect(Array.from(await p.grad!.read())).toEqual([2, 0, 6, 8]);
    expect(Array.from(await q.grad!.read())).toEqual([0, 2, 3, 0]);
    expect(Array.from(await g.read())).toEqual([1, 2, 3, 4]);
    // A leaf whose .grad is a view of the caller's root gradient: the next backward's sum must not write into it.
    const x = await param([1, 1]);
    const root = Tensor.fromArray(rt, [5, 7]);
    backward(add(x, x), { gradient: root });
    backward(add(x, x), { gradient: root });
    expect(Array.from(await x.grad!.read())).toEqual([20, 28]);
    expect(Array.from(await root.read())).toEqual([5, 7]);
    for (const t of [p, q, g, x, root]) {
      t.grad?.release();
      t.release();
    }
  });

  it('propagates through mean and flatten views', async () => {
    const x = await param([1, -2, 3, -4, 5, -6], [1, 2, 3]);
    const loss = mean(relu(flatten(x)));
    expect(await loss.item()).toBeCloseTo(9 / 6, 6);
    backward(loss);
    const g = await x.grad!.read();
    expect(Array.from(g).map((v) => +v.toFixed(6))).toEqual([1 / 6, 0, 1 / 6, 0, 1 / 6, 0].map((v) => +v.toFixed(6)));
    expect(x.grad!.shape).toEqual([1, 2, 3]);
  });

  it('computes no gradient for frozen tensors and records nothing under noGrad', async () => {
    const rt = await testRuntime();
    const frozen = Tensor.fromArray(rt, [1, 2]);
    const trained = await param([3, -4]);
    const out = add(frozen, trained);
    expect(out.gradFn?.name).toBe('add');
    const loss = sum(out);
    backward(loss);
    expect(frozen.grad).toBeNull();
    expect(Array.from(await trained.grad!.read())).toEqual([1, 1]);
    const quiet = noGrad(() => add(frozen, trained));
    expect(quiet.requiresGrad).toBe(false);
    expect(quiet.gradFn).toBeNull();
    expect(() => backward(sum(frozen))).toThrow(/does not require grad/);
  });

  it('frees every intermediate during backward: a repeated step leaves the pool as it was', async () => {
    const rt = await testRuntime();
    const x = await param(Array.from({ length: 1000 }, (_, i) => Math.sin(i)));
    const step = async (): Promise<number> => {
      const h = relu(x);
      const loss = sum(add(relu(add(h, x)), h));
      backward(loss);
      const v = await loss.item();
      loss.release();
      zeroGrad([x]);
      return v;
    };
    await step();
    const before = rt.pool.stats();
    const v = await step();
    const after = rt.pool.stats();
    expect(after.liveBuffers).toBe(before.liveBuffers);
    expect(after.allocations).toBe(before.allocations);
    expect(v).toBeGreaterThan(0);
  });

  it("crossEntropy's mean leaves rows labelled -100 out of the count and their gradient at 0 (PyTorch's ignore_index)", async () => {
    const rt = await testRuntime();
    const x = [
      [2, -1],
      [0.5, 3],
      [-1, 1],
    ];
    const logits = await param(x.flat(), [3, 2]);
    const labels = Tensor.fromArray(rt, Int32Array.from([0, -100, 1]));
    const loss = crossEntropy(logits, labels, 'mean');
    // Two kept rows: loss = (l0 + l2) / 2, d loss / d logits[n] = (softmax(x[n]) - onehot) / 2, row 1 zero.
    const softmax = (r: number[]) => r.map((v) => Math.exp(v) / r.reduce((s, u) => s + Math.exp(u), 0));
    const [p0, p2] = [softmax(x[0]!), softmax(x[2]!)];
    expect(await loss.item()).toBeCloseTo((-Math.log(p0[0]!) - Math.log(p2[1]!)) / 2, 6);
    backward(loss);
    const want = [(p0[0]! - 1) / 2, p0[1]! / 2, 0, 0, p2[0]! / 2, (p2[1]! - 1) / 2];
    expect(maxRelError(await logits.grad!.read(), want)).toBeLessThan(1e-6);
    for (const t of [loss, logits, labels]) t.release();
  });

  it('rejects a non-scalar root without a gradient', async () => {
    const x = await param([1, 2, 3]);
    expect(() => backward(relu(x))).toThrow(/pass a gradient or reduce it to a scalar/);
  });
});
