import { describe, expect, it } from 'vitest';
import { Tensor } from '../../runtime/tensor.js';
import { sumAll } from './sum.js';
import { sumReference } from './sum.reference.js';
import { rng } from '../../../test/helpers/gradcheck.js';
import { withBindingLimit } from '../../../test/helpers/binding-limit.js';
import { testRuntime } from '../../../test/helpers/gpu.js';
import { flatChunks } from '../../runtime/chunks.js';

/** Random signs and magnitudes in [1, 2): leaving out (or repeating) any one element moves the sum by at least 1. */
function atLeastOne(n: number, seed: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => (r() < 0.5 ? -1 : 1) * (1 + r()));
}

/** Integers in +-[1, 8]: with n <= 10^6 every partial sum is an integer below 2^24, so the f32 sum is exact. */
function smallIntegers(n: number, seed: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => (r() < 0.5 ? -1 : 1) * (1 + Math.floor(8 * r())));
}

// Bound for atLeastOne data: 0.25 absolute. A dropped or repeated element is an error of at least 1. The rounding
// error of this summation (at most 16 sequential adds per invocation, then two 8-level trees) is about
// 2^-24 * sqrt(sum of the squared partial sums) / sqrt(3), some 3e-4 at n = 10^6: the bound is far above it.
const BOUND = 0.25;

describe('sumAll', () => {
  it.each([0, 1, 5, 256, 257, 65_537, 1_000_001])('sums %i elements deterministically, within 0.25 of the exact sum', async (n) => {
    const rt = await testRuntime();
    const xs = atLeastOne(n, n + 3);
    const x = Tensor.fromArray(rt, xs);
    const a = sumAll(x);
    const b = sumAll(x, 0.5);
    const got = await a.item();
    const err = Math.abs(got - sumReference(xs));
    console.log(`sumAll n=${n}: |gpu - float64| = ${err.toExponential(2)}`);
    expect(err).toBeLessThan(BOUND);
    expect(await b.item()).toBe(Math.fround(got * 0.5));
    const again = sumAll(x);
    expect(await again.item()).toBe(got);
    for (const t of [x, a, b, again]) t.release();
  });

  it.each([5, 257, 65_537, 1_000_001])('is exact on %i small integers (so no element is lost or counted twice)', async (n) => {
    const rt = await testRuntime();
    const xs = smallIntegers(n, 2 * n);
    const x = Tensor.fromArray(rt, xs);
    const s = sumAll(x);
    expect(await s.item()).toBe(sumReference(xs));
    for (const t of [x, s]) t.release();
  });

  it('gives the same sum when the input is bound in slices', async () => {
    const rt = await testRuntime();
    const n = 50_000;
    const ints = smallIntegers(n, 1);
    const xs = atLeastOne(n, 2);
    const xi = Tensor.fromArray(rt, ints);
    const x = Tensor.fromArray(rt, xs);
    const whole = await sumAll(x).item();
    const limit = 16384;
    const slices = await withBindingLimit(rt, limit, async () => flatChunks(rt, n).length);
    expect(slices).toBe(Math.ceil((n * 4) / limit)); // 13 slices of 4096 elements (the last one shorter)
    const d0 = rt.stats.dispatches;
    const [slicedInts, sliced] = await withBindingLimit(rt, limit, async () => [await sumAll(xi).item(), await sumAll(x).item()]);
    expect(rt.stats.dispatches - d0).toBe(2 * (slices + 1)); // one partial-sum dispatch per slice, one final
    expect(slicedInts).toBe(sumReference(ints));
    expect(Math.abs(sliced - whole)).toBeLessThan(BOUND);
    expect(Math.abs(sliced - sumReference(xs))).toBeLessThan(BOUND);
    x.release();
    xi.release();
  });
});
