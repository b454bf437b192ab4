import { describe, expect, it, vi } from 'vitest';
import { withBindingLimit } from '../../../test/helpers/binding-limit.js';
import { loadOpFixture, toTensor, type FixtureTensor } from '../../../test/helpers/fixtures.js';
import { testRuntime } from '../../../test/helpers/gpu.js';
import { dot, f64, maxRelError, numericGrad, randn } from '../../../test/helpers/gradcheck.js';
import { Tensor } from '../../runtime/tensor.js';
import { adaptiveAvgPool2dBackward, adaptiveAvgPool2dForward } from './avg-pool.js';
import { adaptiveAvgPoolRef } from './avg-pool.reference.js';

// Errors are maxRelError = max|gpu - ref| / max|ref|: sums of up to a few hundred f32 values.
const FORWARD_BOUND = 2e-6;
const GRAD_BOUND = 2e-6;
const TORCH_BOUND = 1e-4;

type Shape4 = [number, number, number, number];
const cases: [Shape4, [number, number]][] = [
  [[2, 3, 7, 7], [1, 1]],
  [[1, 1, 1, 1], [1, 1]],
  [[3, 5, 13, 11], [1, 1]],
  [[2, 2, 19, 17], [1, 1]],
  [[2, 3, 7, 5], [3, 2]],
  [[1, 2, 4, 9], [3, 4]],
  [[2, 1, 3, 2], [5, 4]], // output larger than input: windows repeat input elements
  [[1, 2, 10, 10], [5, 5]],
];
const size = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
const shifted = (n: number, seed: number) => randn(n, seed).map((v) => v + 3);

describe('adaptive_avg_pool2d', () => {
  it.each(cases)('forward matches the float64 reference: %j -> %j', async (shape, out) => {
    const rt = await testRuntime();
    const xs = shifted(size(shape), 1);
    const x = Tensor.fromArray(rt, xs, shape);
    const y = adaptiveAvgPool2dForward(x, out);
    expect(y.shape).toEqual([shape[0], shape[1], ...out]);
    const e = maxRelError(await y.read(), adaptiveAvgPoolRef(f64(xs), ...shape, ...out));
    expect(e).toBeLessThan(FORWARD_BOUND);
    x.release();
    y.release();
  });

  it.each(cases)('backward matches central differences of the float64 reference: %j -> %j', async (shape, out) => {
    const rt = await testRuntime();
    const xs = shifted(size(shape), 2);
    const R = randn(shape[0] * shape[1] * out[0] * out[1], 3);
    const num = numericGrad(([x]) => dot(adaptiveAvgPoolRef(x!, ...shape, ...out), R), [f64(xs)], 0);
    const gy = Tensor.fromArray(rt, R, [shape[0], shape[1], ...out]);
    const gx = adaptiveAvgPool2dBackward(gy, shape);
    const e = maxRelError(await gx.read(), num);
    console.log(`avgpool gradcheck [${shape.join(',')}] -> ${out.join('x')}: ${e.toExponential(2)}`);
    expect(e).toBeLessThan(GRAD_BOUND);
    gy.release();
    gx.release();
  });

  // The global pool's backward has its own kernel (vec4 stores when H * W is a multiple of 4), others the general one.
  it.each([
    [[2, 3, 7, 7], [1, 1], 'adaptiveAvgPool2dBackwardGlobal'],
    [[2, 3, 4, 6], [1, 1], 'adaptiveAvgPool2dBackwardGlobalVec4'],
    [[1, 2, 4, 9], [3, 4], 'adaptiveAvgPool2dBackward'],
  ] as [Shape4, [number, number], string][])('backward of %j -> %j runs %s, matching the reference', async (shape, out, kernel) => {
    const rt = await testRuntime();
    const R = randn(shape[0] * shape[1] * out[0] * out[1], 7);
    const gy = Tensor.fromArray(rt, R, [shape[0], shape[1], ...out]);
    const spy = vi.spyOn(rt, 'dispatch');
    const gx = adaptiveAvgPool2dBackward(gy, shape);
    expect(spy.mock.calls.map((c) => c[0].name)).toEqual([kernel]);
    spy.mockRestore();
    const num = numericGrad(([x]) => dot(adaptiveAvgPoolRef(x!, ...shape, ...out), R), [f64(shifted(size(shape), 8))], 0);
    expect(maxRelError(await gx.read(), num)).toBeLessThan(GRAD_BOUND);
    for (const t of [gy, gx]) t.release();
  });

  it('splits tensors over the binding limit by batch slices (bitwise equal to the unsplit run)', async () => {
    const rt = await testRuntime();
    const shape: Shape4 = [9, 16, 8, 8]; // 4 KiB per sample
    const xs = shifted(size(shape), 4);
    const R = randn(9 * 16, 5);
    const run = async () => {
      const x = Tensor.fromArray(rt, xs, shape);
      const y = adaptiveAvgPool2dForward(x, 1);
      const gy = Tensor.fromArray(rt, R, y.shape);
      const gx = adaptiveAvgPool2dBackward(gy, shape);
      const r = { y: await y.read(), gx: await gx.read() };
      for (const t of [x, y, gy, gx]) t.release();
      return r;
    };
    const whole = await run();
    const before = rt.stats.dispatches;
    const split = await withBindingLimit(rt, 16 * 1024, run);
    expect(rt.stats.dispatches - before).toBe(6);
    expect(split).toEqual(whole);
  });

  describe('PyTorch parity (fixtures/ops/adaptive_avg_pool2d.json)', () => {
    interface Case {
      output: [number, number];
      input: FixtureTensor;
      y: FixtureTensor;
      gy: FixtureTensor;
      gx: FixtureTensor;
    }
    const fixture = loadOpFixture<{ cases: Case[] }>('adaptive_avg_pool2d.json');
    it.each(fixture.cases.map((c, i) => [i, c] as const))('case %i: y and gx within 1e-4 (maxRelError)', async (i, c) => {
      const rt = await testRuntime();
      const x = toTensor(rt, c.input);
      const y = adaptiveAvgPool2dForward(x, c.output);
      expect(y.shape).toEqual(c.y.shape);
      const gy = toTensor(rt, c.gy);
      const gx = adaptiveAvgPool2dBackward(gy, x.shape);
      const ey = maxRelError(await y.read(), c.y.data);
      const eg = maxRelError(await gx.read(), c.gx.data);
      console.log(`avgpool torch case ${i} -> ${c.output.join('x')}: y ${ey.toExponential(2)}, gx ${eg.toExponential(2)}`);
      expect(ey).toBeLessThan(TORCH_BOUND);
      expect(eg).toBeLessThan(TORCH_BOUND);
      for (const t of [x, y, gy, gx]) t.release();
    });
  });
});
