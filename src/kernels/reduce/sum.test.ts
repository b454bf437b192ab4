import { describe, expect, it } from 'vitest';
import { Tensor } from '../tensor.js';
import { sumAll } from './sum.js';
import { sumReference } from './sum.reference.js';
import { randn } from '../../../test/helpers/gradcheck.js';
import { withBindingLimit } from '../../../test/helpers/binding-limit.js';
import { testRuntime } from '../../../test/helpers/gpu.js';

describe('sumAll', () => {
  it.each([0, 1, 5, 256, 257, 65_537, 1_000_001])('sums %i elements deterministically', async (n) => {
    const rt = await testRuntime();
    const xs = randn(n, n + 3);
    const x = Tensor.fromArray(rt, xs);
    const a = sumAll(x);
    const b = sumAll(x, 0.5);
    const got = await a.item();
    const ref = sumReference(xs);
    // f32 accumulation over n values: error grows ~ sqrt(n) * eps * sum|x|.
    const scale = xs.reduce((s, v) => s + Math.abs(v), 0);
    expect(Math.abs(got - ref)).toBeLessThanOrEqual(1e-6 * Math.max(1, scale));
    expect(await b.item()).toBe(Math.fround(got * 0.5));
    const again = sumAll(x);
    expect(await again.item()).toBe(got);
    for (const t of [x, a, b, again]) t.release();
  });

  it('gives the same sum when the input is bound in slices', async () => {
    const rt = await testRuntime();
    const xs = randn(50_000, 1);
    const x = Tensor.fromArray(rt, xs);
    const whole = await sumAll(x).item();
    const sliced = await withBindingLimit(rt, 16384, () => sumAll(x).item());
    expect(Math.abs(sliced - whole)).toBeLessThan(1e-3);
    expect(Math.abs(sliced - sumReference(xs))).toBeLessThan(1e-3);
    x.release();
  });
});
