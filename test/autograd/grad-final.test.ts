// backward()'s onGradFinal (src/autograd/tape.ts), which data parallelism uses to copy a layer's gradients out while
// the rest of the backward pass runs: each leaf is reported exactly once, as soon as the last tape entry that uses it
// has run (a leaf used twice only after its second use), with its gradient complete; leaves without requiresGrad
// never; the layers nearest the loss first.
import { describe, expect, it } from 'vitest';
import { add, linear, sum } from '../../src/autograd/functions.js';
import { backward } from '../../src/autograd/tape.js';
import { Tensor } from '../../src/runtime/tensor.js';
import { testRuntime } from '../helpers/gpu.js';

describe('backward onGradFinal', () => {
  it('reports each leaf once, when its gradient is final, nearest the loss first', async () => {
    const rt = await testRuntime();
    const leaf = (data: number[], shape: number[], grad = true): Tensor => {
      const t = Tensor.fromArray(rt, data, shape);
      t.requiresGrad = grad;
      return t;
    };
    const x = leaf([1, 2, -1, 0.5], [2, 2], false);
    const w1 = leaf([0.5, -1, 2, 1], [2, 2]);
    const b1 = leaf([0.1, -0.2], [2]);
    const w2 = leaf([1, 3, -2, 0.5], [2, 2]);
    // h = x w1^T + b1; y = h w2^T + h w1^T (w1 used twice: once near the input, once near the loss)
    const h = linear(x, w1, b1);
    const loss = sum(add(linear(h, w2, null), linear(h, w1, null)));
    const order: string[] = [];
    const gradAtReport = new Map<string, Promise<Float32Array>>();
    const names = new Map<Tensor, string>([[w1, 'w1'], [b1, 'b1'], [w2, 'w2'], [x, 'x']]);
    backward(loss, {
      onGradFinal: (p) => {
        const name = names.get(p) ?? '?';
        order.push(name);
        // A copy of the gradient as it is when reported (read later).
        const copy = Tensor.empty(rt, p.shape, 'f32', 'copy');
        rt.copy(p.grad!.buffer, 0, copy.buffer, 0, p.grad!.byteLength);
        gradAtReport.set(name, copy.read().then((v) => (copy.release(), Float32Array.from(v as Float32Array))));
      },
    });
    expect(order).toHaveLength(3);
    expect(new Set(order)).toEqual(new Set(['w1', 'b1', 'w2']));
    expect(order.indexOf('w2')).toBeLessThan(order.indexOf('w1'));
    for (const [name, p] of [['w1', w1], ['b1', b1], ['w2', w2]] as const) {
      expect([...(await gradAtReport.get(name)!)], name).toEqual([...(await p.grad!.read())]);
    }
    for (const t of [x, w1, b1, w2, loss]) {
      t.grad?.release();
      t.release();
    }
  });
});
