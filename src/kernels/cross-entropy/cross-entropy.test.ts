import { describe, expect, it } from 'vitest';
import { withBindingLimit } from '../../../test/helpers/binding-limit.js';
import { loadOpFixture, toLabels, toTensor, type FixtureTensor } from '../../../test/helpers/fixtures.js';
import { testRuntime } from '../../../test/helpers/gpu.js';
import { dot, f64, maxRelError, numericGrad, randn, rng } from '../../../test/helpers/gradcheck.js';
import { batchChunks } from '../chunks.js';
import type { Runtime } from '../runtime.js';
import { Tensor } from '../tensor.js';
import { crossEntropyBackward, crossEntropyBackwardScaled, crossEntropyForward } from './cross-entropy.js';
import { crossEntropyRef } from './cross-entropy.reference.js';

// Errors are maxRelError = max|gpu - ref| / max|ref|. Losses: exp/log in f32 on f32 logits; the sum is compared with
// the float64 sum of the GPU's own f32 losses (only the summation's rounding is left).
const LOSS_BOUND = 2e-6;
const SUM_BOUND = 3e-7;
const GRAD_BOUND = 2e-6;
const TORCH_BOUND = 1e-4;

function labelsFor(N: number, C: number, seed: number): Int32Array {
  const r = rng(seed);
  return Int32Array.from({ length: N }, () => Math.floor(r() * C));
}

function logitsFor(N: number, C: number, seed: number, scale = 3, offset = 0): Float32Array {
  return randn(N * C, seed, scale).map((v) => v + offset);
}

function upload(rt: Runtime, logits: Float32Array, labels: Int32Array, C: number) {
  return { logits: Tensor.fromArray(rt, logits, [labels.length, C]), labels: Tensor.fromArray(rt, labels) };
}

const f64sum = (a: ArrayLike<number>) => Array.from(a).reduce((s, v) => s + v, 0);

describe('softmax_cross_entropy', () => {
  const shapes: [number, number, number, number][] = [
    // N, C, scale, offset
    [5, 4, 3, 0],
    [1, 1, 1, 0],
    [7, 2, 2, 0],
    [3, 65, 4, 100],
    [130, 1000, 3, 0],
    [4099, 2, 2, -30],
    [17, 129, 20, 0],
  ];

  it.each(shapes)('forward: losses, sum and mean match the float64 reference: N=%i C=%i scale %f offset %f', async (N, C, scale, offset) => {
    const rt = await testRuntime();
    const xs = logitsFor(N, C, N + C, scale, offset);
    const ls = labelsFor(N, C, N);
    const t = upload(rt, xs, ls, C);
    const { losses, sum, mean } = crossEntropyForward(t.logits, t.labels);
    const ref = crossEntropyRef(f64(xs), ls, N, C);
    const got = await losses.read();
    const eLoss = maxRelError(got, ref);
    const gotSum = await sum.item();
    const eSum = Math.abs(gotSum - f64sum(got)) / Math.abs(f64sum(got));
    const eSumRef = Math.abs(gotSum - f64sum(ref)) / Math.abs(f64sum(ref));
    const eMean = Math.abs((await mean.item()) - f64sum(ref) / N) / Math.abs(f64sum(ref) / N);
    console.log(`ce N=${N} C=${C}: losses ${eLoss.toExponential(2)}, sum vs own losses ${eSum.toExponential(2)}, sum vs ref ${eSumRef.toExponential(2)}, mean ${eMean.toExponential(2)}`);
    expect(eLoss).toBeLessThan(LOSS_BOUND);
    if (f64sum(got) !== 0) expect(eSum).toBeLessThan(SUM_BOUND);
    if (f64sum(ref) !== 0) {
      expect(eSumRef).toBeLessThan(LOSS_BOUND);
      expect(eMean).toBeLessThan(LOSS_BOUND);
    }
    for (const x of [t.logits, t.labels, losses, sum, mean]) x.release();
  });

  it.each(shapes.filter(([N, C]) => N * C <= 2000))('backward matches central differences of the float64 reference: N=%i C=%i', async (N, C, scale, offset) => {
    const rt = await testRuntime();
    const xs = logitsFor(N, C, 7 * N + C, scale, offset);
    const ls = labelsFor(N, C, 3 * N);
    const R = randn(N, 5);
    const num = numericGrad(([x]) => dot(crossEntropyRef(x!, ls, N, C), R), [f64(xs)], 0);
    const numSum = numericGrad(([x]) => f64sum(crossEntropyRef(x!, ls, N, C)), [f64(xs)], 0);
    const t = upload(rt, xs, ls, C);
    const gLosses = Tensor.fromArray(rt, R);
    const gNone = crossEntropyBackward(t.logits, t.labels, gLosses);
    const gScalar = Tensor.fromArray(rt, [0.7]);
    const gSum = crossEntropyBackwardScaled(t.logits, t.labels, gScalar, 1);
    const gMean = crossEntropyBackwardScaled(t.logits, t.labels, gScalar, 1 / N);
    const errs = [
      maxRelError(await gNone.read(), num),
      maxRelError(await gSum.read(), numSum.map((v) => v * 0.7)),
      maxRelError(await gMean.read(), numSum.map((v) => (v * 0.7) / N)),
    ];
    console.log(`ce gradcheck N=${N} C=${C} none/sum/mean`, errs.map((e) => e.toExponential(2)).join(' '));
    for (const e of errs) expect(e).toBeLessThan(GRAD_BOUND);
    for (const x of [t.logits, t.labels, gLosses, gNone, gScalar, gSum, gMean]) x.release();
  });

  it('gives NaN loss and a NaN gradient row for out-of-range labels, leaving other rows alone', async () => {
    const rt = await testRuntime();
    const N = 5;
    const C = 3;
    const xs = logitsFor(N, C, 1);
    const ls = Int32Array.from([0, -1, 3, -100, 2]);
    const t = upload(rt, xs, ls, C);
    const { losses, sum, mean } = crossEntropyForward(t.logits, t.labels);
    const got = Array.from(await losses.read());
    const ref = crossEntropyRef(f64(xs), ls, N, C);
    expect(got.map(Number.isNaN)).toEqual([false, true, true, true, false]);
    expect(maxRelError([got[0]!, got[4]!], [ref[0]!, ref[4]!])).toBeLessThan(LOSS_BOUND);
    expect(await sum.item()).toBeNaN();
    expect(await mean.item()).toBeNaN();
    const g = Tensor.fromArray(rt, new Float32Array(N).fill(1));
    const d = Array.from(await crossEntropyBackward(t.logits, t.labels, g).read());
    expect(d.map(Number.isNaN)).toEqual([0, 1, 1, 1, 0].flatMap((bad) => new Array<boolean>(C).fill(bad === 1)));
    for (const x of [t.logits, t.labels, losses, sum, mean, g]) x.release();
  });

  it('splits over the binding limit by batch slices (bitwise equal to the unsplit run)', async () => {
    const rt = await testRuntime();
    const N = 600;
    const C = 20; // 80 bytes per row: a 16 KiB limit binds at most 204 rows at a time (fewer for offset alignment)
    const xs = logitsFor(N, C, 9);
    const ls = labelsFor(N, C, 10);
    const R = randn(N, 11);
    const run = async () => {
      const t = upload(rt, xs, ls, C);
      const f = crossEntropyForward(t.logits, t.labels);
      const gL = Tensor.fromArray(rt, R);
      const gS = Tensor.fromArray(rt, [2]);
      const d1 = crossEntropyBackward(t.logits, t.labels, gL);
      const d2 = crossEntropyBackwardScaled(t.logits, t.labels, gS, 1 / N);
      const out = { losses: await f.losses.read(), sum: await f.sum.read(), d1: await d1.read(), d2: await d2.read() };
      for (const x of [t.logits, t.labels, f.losses, f.sum, f.mean, gL, gS, d1, d2]) x.release();
      return out;
    };
    const whole = await run();
    const before = rt.stats.dispatches;
    const split = await withBindingLimit(rt, 16 * 1024, run);
    const slices = await withBindingLimit(rt, 16 * 1024, async () => batchChunks(rt, N, [C, 1]).length);
    expect(slices).toBeGreaterThanOrEqual(3);
    expect(rt.stats.dispatches - before).toBe(3 * slices + 1); // forward, two backwards, one sum
    expect(split).toEqual(whole);
  });

  describe('PyTorch parity (fixtures/ops/cross_entropy.json)', () => {
    interface Case {
      logits: FixtureTensor;
      labels: FixtureTensor;
      losses: FixtureTensor;
      sum: number;
      mean: number;
      gLosses: FixtureTensor;
      gradNone: FixtureTensor;
      gSum: number;
      gradSum: FixtureTensor;
      gMean: number;
      gradMean: FixtureTensor;
    }
    const fixture = loadOpFixture<{ cases: Case[] }>('cross_entropy.json');
    it.each(fixture.cases.map((c, i) => [i, c] as const))('case %i: losses, sum, mean and gradients within 1e-4 (maxRelError)', async (i, c) => {
      const rt = await testRuntime();
      const [N] = c.logits.shape as [number, number];
      const logits = toTensor(rt, c.logits);
      const labels = toLabels(rt, c.labels);
      const f = crossEntropyForward(logits, labels);
      const gL = toTensor(rt, c.gLosses);
      const gS = Tensor.fromArray(rt, [c.gSum]);
      const gM = Tensor.fromArray(rt, [c.gMean]);
      const dN = crossEntropyBackward(logits, labels, gL);
      const dS = crossEntropyBackwardScaled(logits, labels, gS, 1);
      const dM = crossEntropyBackwardScaled(logits, labels, gM, 1 / N);
      const errs = {
        losses: maxRelError(await f.losses.read(), c.losses.data),
        sum: maxRelError(await f.sum.read(), [c.sum]),
        mean: maxRelError(await f.mean.read(), [c.mean]),
        gradNone: maxRelError(await dN.read(), c.gradNone.data),
        gradSum: maxRelError(await dS.read(), c.gradSum.data),
        gradMean: maxRelError(await dM.read(), c.gradMean.data),
      };
      console.log(`ce torch case ${i} [${c.logits.shape.join(',')}]`, JSON.stringify(Object.fromEntries(Object.entries(errs).map(([k, v]) => [k, +v.toExponential(2)]))));
      for (const [k, e] of Object.entries(errs)) expect(e, k).toBeLessThan(TORCH_BOUND);
      for (const x of [logits, labels, f.losses, f.sum, f.mean, gL, gS, gM, dN, dS, dM]) x.release();
    });
  });
});
