import { describe, expect, it } from 'vitest';
import { Tensor } from '../tensor.js';
import { accumulate, add, broadcastScalar, reluBackward, reluForward, scaleByTensor } from './elementwise.js';
import { addReference, reluReference } from './elementwise.reference.js';
import { dot, f64, maxRelError, numericGrad, randn } from '../../../test/helpers/gradcheck.js';
import { withBindingLimit } from '../../../test/helpers/binding-limit.js';
import { testRuntime } from '../../../test/helpers/gpu.js';

describe('elementwise', () => {
  it.each([1, 7, 256, 1000, 70_001])('relu, add and scaleByTensor match the reference for %i elements', async (n) => {
    const rt = await testRuntime();
    const xs = randn(n, n);
    const ys = randn(n, n + 1);
    const x = Tensor.fromArray(rt, xs);
    const y = Tensor.fromArray(rt, ys);
    const scalar = Tensor.fromArray(rt, [-1.7]);
    const r = reluForward(x);
    const s = add(x, y);
    const scaled = scaleByTensor(x, scalar, 0.3);
    expect(maxRelError(await r.read(), reluReference(xs))).toBe(0);
    expect(maxRelError(await s.read(), addReference(xs, ys))).toBeLessThan(1e-7);
    // Two f32 products: within 2 roundings (2 * 2^-24 = 1.2e-7) of the exact value.
    expect(maxRelError(await scaled.read(), Array.from(xs, (v) => v * Math.fround(-1.7) * Math.fround(0.3)))).toBeLessThan(2e-7);
    for (const t of [x, y, scalar, r, s, scaled]) t.release();
  });

  it('relu backward: gradient check (exact: the op is piecewise linear away from 0)', async () => {
    const rt = await testRuntime();
    const xs = randn(333, 5);
    const weights = randn(333, 6);
    const x = Tensor.fromArray(rt, xs);
    const y = reluForward(x);
    const gy = Tensor.fromArray(rt, weights);
    const gx = reluBackward(y, gy);
    const numeric = numericGrad((inp) => dot(reluReference(inp[0]!), weights), [f64(xs)], 0);
    expect(maxRelError(await gx.read(), numeric)).toBeLessThan(1e-6);
    for (const t of [x, y, gy, gx]) t.release();
  });

  it('accumulates in place, scales and broadcasts by a GPU scalar', async () => {
    const rt = await testRuntime();
    const acc = Tensor.fromArray(rt, [1, 2, 3]);
    const x = Tensor.fromArray(rt, [10, 20, 30]);
    accumulate(acc, x);
    expect(Array.from(await acc.read())).toEqual([11, 22, 33]);
    // scalar 3 and factor 0.25: an identity copy, a dropped scalar (x 0.25) or a dropped factor (x 3) all differ.
    const s = Tensor.fromArray(rt, [3]);
    const scaled = scaleByTensor(acc, s, 0.25);
    expect(Array.from(await scaled.read())).toEqual([8.25, 16.5, 24.75]);
    const negative = Tensor.fromArray(rt, [-2]);
    const scaledNeg = scaleByTensor(acc, negative);
    expect(Array.from(await scaledNeg.read())).toEqual([-22, -44, -66]);
    const b = broadcastScalar(s, [2, 2], 0.5);
    expect(Array.from(await b.read())).toEqual([1.5, 1.5, 1.5, 1.5]);
    expect(() => add(acc, b)).toThrow(/shapes \[3\] and \[2, 2\] differ/);
    for (const t of [acc, x, s, scaled, negative, scaledNeg, b]) t.release();
  });

  it('splits tensors over the binding limit into aligned slices with the same result', async () => {
    const rt = await testRuntime();
    const n = 10_007;
    const xs = randn(n, 11);
    const ys = randn(n, 12);
    const x = Tensor.fromArray(rt, xs);
    const y = Tensor.fromArray(rt, ys);
    const whole = add(x, y);
    const dispatches = rt.stats.dispatches;
    await withBindingLimit(rt, 4096, async () => {
      const sliced = add(x, y);
      expect(rt.stats.dispatches - dispatches).toBe(Math.ceil(n / 1024));
      expect(Array.from(await sliced.read())).toEqual(Array.from(await whole.read()));
      sliced.release();
    });
    for (const t of [x, y, whole]) t.release();
  });
});
