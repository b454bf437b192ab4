import { describe, expect, it, vi } from 'vitest';
import { Tensor } from '../../runtime/tensor.js';
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

  // Counts that are multiples of 4 take the vec4 kernels (asserted by name), others the scalar ones.
  it.each([4, 1000, 70_000, 70_003])('vec4 and scalar paths: accumulate, relu backward and broadcast vs the reference for %i elements', async (n) => {
    const rt = await testRuntime();
    const xs = randn(n, n + 2);
    const as = randn(n, n + 3);
    const gs = randn(n, n + 4);
    const x = Tensor.fromArray(rt, xs);
    const acc = Tensor.fromArray(rt, as);
    const gy = Tensor.fromArray(rt, gs);
    const s = Tensor.fromArray(rt, [-0.75]);
    const spy = vi.spyOn(rt, 'dispatch');
    const y = reluForward(x);
    const gx = reluBackward(y, gy);
    accumulate(acc, x);
    const b = broadcastScalar(s, [n], 2);
    const names = spy.mock.calls.map((c) => c[0].name);
    spy.mockRestore();
    const vec4 = n % 4 === 0;
    expect(names).toEqual(['reluForward', 'reluBackward', 'accumulate', 'broadcastScalar'].map((k) => (vec4 ? `${k}Vec4` : k)));
    expect(Array.from(await gx.read())).toEqual(Array.from(gs, (g, i) => (xs[i]! > 0 ? g : 0)));
    expect(Array.from(await acc.read())).toEqual(Array.from(as, (a, i) => Math.fround(a + xs[i]!)));
    expect((await b.read()).every((v) => v === -1.5)).toBe(true);
    for (const t of [x, acc, gy, s, y, gx, b]) t.release();
  });

  it.each([10_007, 10_000])('splits tensors over the binding limit into aligned slices with the same result (%i elements)', async (n) => {
    const rt = await testRuntime();
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
