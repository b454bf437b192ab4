import { describe, expect, it } from 'vitest';
import { withBindingLimit } from '../../../test/helpers/binding-limit.js';
import { loadOpFixture, toLabels, toTensor, type FixtureTensor } from '../../../test/helpers/fixtures.js';
import { testRuntime } from '../../../test/helpers/gpu.js';
import { randn, rng } from '../../../test/helpers/gradcheck.js';
import { Tensor } from '../../runtime/tensor.js';
import { accuracyCount } from './accuracy.js';
import { accuracyCountRef } from './accuracy.reference.js';

function labelsFor(N: number, C: number, seed: number): Int32Array {
  const r = rng(seed);
  return Int32Array.from({ length: N }, () => Math.floor(r() * C));
}

/** Values in {-1, 0, 1}: many rows with tied maxima. */
function tied(n: number, seed: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => Math.floor(r() * 3) - 1);
}

describe('accuracy count', () => {
  it.each([
    [1, 1, false],
    [5, 2, false],
    [128, 2, true],
    [130, 1000, false],
    [1000, 3, true],
    [70000, 2, false], // 1094 workgroups adding into one counter
  ] as const)('N=%i C=%i ties=%s matches torch.argmax semantics', async (N, C, ties) => {
    const rt = await testRuntime();
    const xs = ties ? tied(N * C, N) : randn(N * C, N);
    const ls = labelsFor(N, C, C);
    const logits = Tensor.fromArray(rt, xs, [N, C]);
    const labels = Tensor.fromArray(rt, ls);
    const count = accuracyCount(logits, labels);
    expect(count.dtype).toBe('u32');
    expect(await count.item()).toBe(accuracyCountRef(xs, ls, N, C));
    for (const t of [logits, labels, count]) t.release();
  });

  it('treats NaN as the maximum and never matches an out-of-range label', async () => {
    const rt = await testRuntime();
    const xs = Float32Array.from([1, NaN, 3, NaN, 0, NaN, 2, 2, 1, 5, 6, 7]);
    const logits = Tensor.fromArray(rt, xs, [4, 3]);
    // argmax: 1, 0, 0 (tie), 2
    const labels = Tensor.fromArray(rt, Int32Array.from([1, 0, 1, 3]));
    const count = accuracyCount(logits, labels);
    expect(await count.item()).toBe(2);
    for (const t of [logits, labels, count]) t.release();
  });

  it('splits over the binding limit by batch slices', async () => {
    const rt = await testRuntime();
    const N = 3000;
    const C = 5;
    const xs = tied(N * C, 1);
    const ls = labelsFor(N, C, 2);
    await withBindingLimit(rt, 16 * 1024, async () => {
      const logits = Tensor.fromArray(rt, xs, [N, C]);
      const labels = Tensor.fromArray(rt, ls);
      const before = rt.stats.dispatches;
      const count = accuracyCount(logits, labels);
      expect(await count.item()).toBe(accuracyCountRef(xs, ls, N, C));
      expect(rt.stats.dispatches - before).toBeGreaterThan(3);
      for (const t of [logits, labels, count]) t.release();
    });
  });

  describe('PyTorch parity (fixtures/ops/accuracy.json)', () => {
    interface Case {
      logits: FixtureTensor;
      labels: FixtureTensor;
      argmax: FixtureTensor;
      count: number;
    }
    const fixture = loadOpFixture<{ cases: Case[] }>('accuracy.json');
    it.each(fixture.cases.map((c, i) => [i, c] as const))('case %i: the same count as (logits.argmax(1) == labels).sum()', async (_i, c) => {
      const rt = await testRuntime();
      const logits = toTensor(rt, c.logits);
      const labels = toLabels(rt, c.labels);
      const count = accuracyCount(logits, labels);
      expect(await count.item()).toBe(c.count);
      // The reference's tie rule is torch's: taking torch's argmax as labels, every row counts.
      const [N, C] = c.logits.shape as [number, number];
      expect(accuracyCountRef(c.logits.data, c.argmax.data, N, C)).toBe(N);
      for (const t of [logits, labels, count]) t.release();
    });
  });
});
