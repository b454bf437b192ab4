import { describe, expect, it } from 'vitest';
import { withBindingLimit } from '../../../test/helpers/binding-limit.js';
import { loadOpFixture, toLabels, toTensor, type FixtureTensor } from '../../../test/helpers/fixtures.js';
import { testRuntime } from '../../../test/helpers/gpu.js';
import { expectOpError } from '../../../test/helpers/op-errors.js';
import { dot, f64, maxRelError, numericGrad, randn, rng } from '../../../test/helpers/gradcheck.js';
import { batchChunks } from '../../runtime/chunks.js';
import type { Runtime } from '../../runtime/runtime.js';
import { Tensor } from '../../runtime/tensor.js';
import { crossEntropyBackward, crossEntropyBackwardMean, crossEntropyBackwardScaled, crossEntropyForward } from './cross-entropy.js';
import { crossEntropyMeanRef, crossEntropyRef } from './cross-entropy.reference.js';

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

  it('gives NaN loss and a NaN gradient row for out-of-range labels other than -100, leaving other rows alone', async () => {
    const rt = await testRuntime();
    const N = 5;
    const C = 3;
    const xs = logitsFor(N, C, 1);
    const ls = Int32Array.from([0, -1, 3, -100, 2]);
    const t = upload(rt, xs, ls, C);
    const { losses, sum, mean } = crossEntropyForward(t.logits, t.labels);
    const got = Array.from(await losses.read());
    const ref = crossEntropyRef(f64(xs), ls, N, C);
    expect(got.map(Number.isNaN)).toEqual([false, true, true, false, false]);
    expect(got[3]).toBe(0); // ignored
    expect(maxRelError([got[0]!, got[4]!], [ref[0]!, ref[4]!])).toBeLessThan(LOSS_BOUND);
    expect(await sum.item()).toBeNaN();
    expect(await mean.item()).toBeNaN();
    const g = Tensor.fromArray(rt, new Float32Array(N).fill(1));
    const d = Array.from(await crossEntropyBackward(t.logits, t.labels, g).read());
    expect(d.map(Number.isNaN)).toEqual([0, 1, 1, 0, 0].flatMap((bad) => new Array<boolean>(C).fill(bad === 1)));
    expect(d.slice(3 * C, 4 * C)).toEqual([0, 0, 0]);
    for (const x of [t.logits, t.labels, losses, sum, mean, g]) x.release();
  });

  // PyTorch's default ignore_index: a row labelled -100 has loss 0 and a zero gradient row, and the mean divides by
  // the rows not ignored (F.cross_entropy(reduction='mean') = sum / count of kept rows; all ignored: NaN loss, zero
  // gradient). Checked against the float64 reference (which implements exactly that) and its central differences.
  it('ignores label -100 as PyTorch: loss 0, zero gradient, left out of the mean', async () => {
    const rt = await testRuntime();
    const [N, C] = [7, 5];
    const xs = logitsFor(N, C, 21);
    const ls = labelsFor(N, C, 22);
    ls[1] = -100;
    ls[5] = -100;
    const t = upload(rt, xs, ls, C);
    const f = crossEntropyForward(t.logits, t.labels);
    const ref = crossEntropyRef(f64(xs), ls, N, C);
    const losses = await f.losses.read();
    expect([losses[1], losses[5]]).toEqual([0, 0]);
    expect(maxRelError(losses, ref)).toBeLessThan(LOSS_BOUND);
    const refMean = crossEntropyMeanRef(f64(xs), ls, N, C);
    expect(Math.abs((await f.sum.item()) - f64sum(ref)) / f64sum(ref)).toBeLessThan(LOSS_BOUND);
    // The mean over the 5 kept rows, not the 7.
    expect(Math.abs((await f.mean.item()) - refMean) / refMean).toBeLessThan(LOSS_BOUND);
    expect(refMean).toBeCloseTo(f64sum(ref) / 5, 12);

    const R = randn(N, 23);
    const numNone = numericGrad(([x]) => dot(crossEntropyRef(x!, ls, N, C), R), [f64(xs)], 0);
    const numSum = numericGrad(([x]) => f64sum(crossEntropyRef(x!, ls, N, C)), [f64(xs)], 0);
    const numMean = numericGrad(([x]) => crossEntropyMeanRef(x!, ls, N, C), [f64(xs)], 0);
    const gL = Tensor.fromArray(rt, R);
    const gS = Tensor.fromArray(rt, [0.7]);
    const grads = [
      crossEntropyBackward(t.logits, t.labels, gL),
      crossEntropyBackwardScaled(t.logits, t.labels, gS, 1),
      crossEntropyBackwardMean(t.logits, t.labels, gS),
    ];
    const want = [numNone, numSum.map((v) => v * 0.7), numMean.map((v) => v * 0.7)];
    const errs: number[] = [];
    for (const [i, g] of grads.entries()) {
      const got = Array.from(await g.read());
      for (const row of [1, 5]) expect(got.slice(row * C, (row + 1) * C), `row ${row} of gradient ${i}`).toEqual(new Array<number>(C).fill(0));
      errs.push(maxRelError(got, want[i]!));
    }
    console.log(`ce ignore_index gradcheck none/sum/mean`, errs.map((e) => e.toExponential(2)).join(' '));
    for (const e of errs) expect(e).toBeLessThan(GRAD_BOUND);
    for (const x of [t.logits, t.labels, f.losses, f.sum, f.mean, gL, gS, ...grads]) x.release();
  });

  it('with every label -100: losses and sum 0, mean NaN, every gradient 0 (as PyTorch)', async () => {
    const rt = await testRuntime();
    const [N, C] = [4, 3];
    const t = upload(rt, logitsFor(N, C, 31), new Int32Array(N).fill(-100), C);
    const f = crossEntropyForward(t.logits, t.labels);
    expect(Array.from(await f.losses.read())).toEqual([0, 0, 0, 0]);
    expect(await f.sum.item()).toBe(0);
    expect(await f.mean.item()).toBeNaN();
    const gL = Tensor.fromArray(rt, [1, 2, 3, 4]);
    const gS = Tensor.fromArray(rt, [1]);
    const grads = [
      crossEntropyBackward(t.logits, t.labels, gL),
      crossEntropyBackwardScaled(t.logits, t.labels, gS, 1),
      crossEntropyBackwardMean(t.logits, t.labels, gS),
    ];
    for (const g of grads) expect(Array.from(await g.read())).toEqual(new Array<number>(N * C).fill(0));
    for (const x of [t.logits, t.labels, f.losses, f.sum, f.mean, gL, gS, ...grads]) x.release();
  });

  it('rejects bad shapes and arguments with errors naming them, before any GPU work', async () => {
    const rt = await testRuntime();
    const logits = Tensor.zeros(rt, [2, 3]);
    const labels = Tensor.zeros(rt, [2], 'i32');
    const logits3 = Tensor.zeros(rt, [2, 3, 4]);
    const noClasses = Tensor.zeros(rt, [2, 0]);
    const floatLabels = Tensor.zeros(rt, [2]);
    const labels3 = Tensor.zeros(rt, [3], 'i32');
    const labels2d = Tensor.zeros(rt, [2, 1], 'i32');
    const g3 = Tensor.zeros(rt, [3]);
    const g2 = Tensor.zeros(rt, [2]);
    expectOpError(rt, () => crossEntropyForward(logits3, labels), /^crossEntropyForward: logits must be \[N, C\], got \[2, 3, 4\]$/);
    expectOpError(rt, () => crossEntropyForward(logits, floatLabels as unknown as Tensor<'i32'>), /^crossEntropyForward: labels must be i32 \[2\], got f32 \[2\]$/);
    expectOpError(rt, () => crossEntropyForward(logits, labels3), /^crossEntropyForward: labels must be i32 \[2\], got i32 \[3\]$/);
    expectOpError(rt, () => crossEntropyForward(logits, labels2d), /^crossEntropyForward: labels must be i32 \[2\], got i32 \[2, 1\]$/);
    expectOpError(rt, () => crossEntropyForward(noClasses, labels), /^crossEntropyForward: no classes$/);
    expectOpError(rt, () => crossEntropyBackward(logits, labels, g3), /^crossEntropyBackward: gLosses must have 2 elements, got 3$/);
    expectOpError(rt, () => crossEntropyBackwardScaled(logits, labels, g2, 1), /^crossEntropyBackwardScaled: gScalar must have one element, got \[2\]$/);
    expectOpError(rt, () => crossEntropyBackwardMean(logits, labels, g2), /^crossEntropyBackwardMean: gScalar must have one element, got \[2\]$/);
    expectOpError(rt, () => crossEntropyBackwardMean(logits3, labels, g2), /^crossEntropyBackwardMean: logits must be \[N, C\]/);
    for (const t of [logits, labels, logits3, noClasses, floatLabels, labels3, labels2d, g3, g2]) t.release();
  });

  it('splits over the binding limit by batch slices (bitwise equal to the unsplit run)', async () => {
    const rt = await testRuntime();
    const N = 600;
    const C = 20; // 80 bytes per row: a 16 KiB limit binds at most 204 rows at a time (fewer for offset alignment)
    const xs = logitsFor(N, C, 9);
    const ls = labelsFor(N, C, 10);
    for (const i of [0, 250, 599]) ls[i] = -100; // the kept-row count spans the slices
    const R = randn(N, 11);
    const run = async () => {
      const t = upload(rt, xs, ls, C);
      const f = crossEntropyForward(t.logits, t.labels);
      const gL = Tensor.fromArray(rt, R);
      const gS = Tensor.fromArray(rt, [2]);
      const d1 = crossEntropyBackward(t.logits, t.labels, gL);
      const d2 = crossEntropyBackwardScaled(t.logits, t.labels, gS, 1 / N);
      const d3 = crossEntropyBackwardMean(t.logits, t.labels, gS);
      const out = { losses: await f.losses.read(), sum: await f.sum.read(), mean: await f.mean.read(), d1: await d1.read(), d2: await d2.read(), d3: await d3.read() };
      for (const x of [t.logits, t.labels, f.losses, f.sum, f.mean, gL, gS, d1, d2, d3]) x.release();
      return out;
    };
    const whole = await run();
    const before = rt.stats.dispatches;
    const split = await withBindingLimit(rt, 16 * 1024, run);
    const slices = await withBindingLimit(rt, 16 * 1024, async () => batchChunks(rt, N, [C, 1]).length);
    expect(slices).toBeGreaterThanOrEqual(3);
    expect(rt.stats.dispatches - before).toBe(4 * slices + 2); // forward, three backwards, one sum, one mean scale
    expect(split).toEqual(whole);
  });

  describe('PyTorch parity (fixtures/ops/cross_entropy.json, cross_entropy_ignore_index.json)', () => {
    interface Case {
      logits: FixtureTensor;
      labels: FixtureTensor;
      losses: FixtureTensor;
      sum: number;
      /** null: NaN (every label ignored). */
      mean: number | null;
      gLosses: FixtureTensor;
      gradNone: FixtureTensor;
      gSum: number;
      gradSum: FixtureTensor;
      gMean: number;
      gradMean: FixtureTensor;
    }
    const cases = ['cross_entropy.json', 'cross_entropy_ignore_index.json'].flatMap((file) =>
      loadOpFixture<{ cases: Case[] }>(file).cases.map((c, i) => [`${file} case ${i}`, c] as const),
    );
    it.each(cases)('%s: losses, sum, mean and gradients within 1e-4 (maxRelError)', async (i, c) => {
      const rt = await testRuntime();
      const logits = toTensor(rt, c.logits);
      const labels = toLabels(rt, c.labels);
      const f = crossEntropyForward(logits, labels);
      const gL = toTensor(rt, c.gLosses);
      const gS = Tensor.fromArray(rt, [c.gSum]);
      const gM = Tensor.fromArray(rt, [c.gMean]);
      const dN = crossEntropyBackward(logits, labels, gL);
      const dS = crossEntropyBackwardScaled(logits, labels, gS, 1);
      const dM = crossEntropyBackwardMean(logits, labels, gM);
      const errs = {
        losses: maxRelError(await f.losses.read(), c.losses.data),
        sum: maxRelError(await f.sum.read(), [c.sum]),
        mean: c.mean === null ? (Number.isNaN(await f.mean.item()) ? 0 : Infinity) : maxRelError(await f.mean.read(), [c.mean]),
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
