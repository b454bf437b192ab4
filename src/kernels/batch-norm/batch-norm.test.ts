import { describe, expect, it, vi } from 'vitest';
import { withBindingLimit } from '../../../test/helpers/binding-limit.js';
import { loadOpFixture, toTensor, type FixtureTensor } from '../../../test/helpers/fixtures.js';
import { testRuntime } from '../../../test/helpers/gpu.js';
import { expectOpError } from '../../../test/helpers/op-errors.js';
import { dot, f64, maxRelError, numericGrad, randn, uniform } from '../../../test/helpers/gradcheck.js';
import type { Runtime } from '../../runtime/runtime.js';
import { Tensor } from '../../runtime/tensor.js';
import {
  batchNormBackward,
  batchNormEvalBackward,
  batchNormEvalForward,
  batchNormTrainForward,
  type BatchNormTracker,
} from './batch-norm.js';
import { bnEvalRef, bnTrainBackwardRef, bnTrainRef, type BnShape } from './batch-norm.reference.js';

// Errors are maxRelError = max|gpu - ref| / max|ref| over the whole output.
const FORWARD_BOUND = 2e-6;
const GRAD_BOUND = 1e-5;
const TORCH_BOUND = 1e-4;

type Shape4 = [number, number, number, number];

interface Params {
  x: Float32Array;
  w: Float32Array;
  b: Float32Array;
  rm: Float32Array;
  rv: Float32Array;
}

function params(shape: Shape4, seed: number, offset = 0): Params {
  const [N, C, H, W] = shape;
  const x = randn(N * C * H * W, seed, 2);
  for (let i = 0; i < x.length; i++) x[i] = x[i]! + offset + (Math.floor(i / (H * W)) % C);
  return {
    x,
    w: uniform(C, seed + 1, 0.5, 1.5),
    b: randn(C, seed + 2),
    rm: randn(C, seed + 3),
    rv: uniform(C, seed + 4, 0.5, 1.5),
  };
}

function upload(rt: Runtime, p: Params, shape: Shape4) {
  return {
    x: Tensor.fromArray(rt, p.x, shape),
    w: Tensor.fromArray(rt, p.w),
    b: Tensor.fromArray(rt, p.b),
    rm: Tensor.fromArray(rt, p.rm),
    rv: Tensor.fromArray(rt, p.rv),
  };
}

const bnShape = ([N, C, H, W]: Shape4): BnShape => ({ N, C, HW: H * W });
const release = (...ts: (Tensor | null)[]) => ts.forEach((t) => t?.release());
const all = { input: true, weight: true, bias: true };

describe('batch_norm2d', () => {
  const shapes: Shape4[] = [
    [2, 3, 5, 5],
    [1, 1, 3, 3],
    [3, 5, 7, 9],
    [1, 2, 1, 2],
    [4, 3, 33, 35], // more than one stage-1 workgroup per channel
    [130, 2, 3, 11], // many images per stage-1 workgroup
  ];

  it.each(shapes)('train forward + running stats match the float64 reference: [%i, %i, %i, %i]', async (...shape) => {
    const rt = await testRuntime();
    const p = params(shape, 10 + shape[0]);
    const t = upload(rt, p, shape);
    const tracker: BatchNormTracker = { numBatchesTracked: 0 };
    const { y, saveMean, saveInvStd } = batchNormTrainForward(t.x, t.w, t.b, t.rm, t.rv, { tracker });
    const ref = bnTrainRef(f64(p.x), bnShape(shape), f64(p.w), f64(p.b), f64(p.rm), f64(p.rv));
    const errs = {
      y: maxRelError(await y.read(), ref.y),
      mean: maxRelError(await saveMean.read(), ref.mean),
      invStd: maxRelError(await saveInvStd.read(), ref.variance.map((v) => 1 / Math.sqrt(v + 1e-5))),
      runningMean: maxRelError(await t.rm.read(), ref.runningMean),
      runningVar: maxRelError(await t.rv.read(), ref.runningVar),
    };
    console.log(`bn train [${shape.join(',')}]`, JSON.stringify(errs));
    for (const e of Object.values(errs)) expect(e).toBeLessThan(FORWARD_BOUND);
    expect(tracker.numBatchesTracked).toBe(1);
    release(y, saveMean, saveInvStd, ...Object.values(t));
  });

  it('keeps the variance accurate when the mean is large (mean 1000, std 2)', async () => {
    const rt = await testRuntime();
    const shape: Shape4 = [8, 3, 20, 20];
    const p = params(shape, 77, 1000);
    const t = upload(rt, p, shape);
    const { y, saveMean, saveInvStd } = batchNormTrainForward(t.x, t.w, t.b, t.rm, t.rv);
    const ref = bnTrainRef(f64(p.x), bnShape(shape), f64(p.w), f64(p.b), f64(p.rm), f64(p.rv));
    const eInv = maxRelError(await saveInvStd.read(), ref.variance.map((v) => 1 / Math.sqrt(v + 1e-5)));
    const eY = maxRelError(await y.read(), ref.y);
    console.log(`bn large mean: invStd ${eInv.toExponential(2)}, y ${eY.toExponential(2)}`);
    // An f32 mean near 1000 is only good to half an ulp (3e-5 absolute, 1.5e-5 of the std), which bounds y's error.
    expect(eInv).toBeLessThan(1e-5);
    expect(eY).toBeLessThan(5e-5);
    release(y, saveMean, saveInvStd, ...Object.values(t));
  });

  it.each(shapes.slice(0, 4))('eval forward matches the reference and leaves running stats alone: [%i, %i, %i, %i]', async (...shape) => {
    const rt = await testRuntime();
    const p = params(shape, 20 + shape[1]);
    const t = upload(rt, p, shape);
    const y = batchNormEvalForward(t.x, t.w, t.b, t.rm, t.rv, 1e-5);
    const ref = bnEvalRef(f64(p.x), bnShape(shape), f64(p.w), f64(p.b), f64(p.rm), f64(p.rv));
    expect(maxRelError(await y.read(), ref)).toBeLessThan(FORWARD_BOUND);
    expect(await t.rm.read()).toEqual(p.rm);
    expect(await t.rv.read()).toEqual(p.rv);
    release(y, ...Object.values(t));
  });

  for (const mode of ['train', 'eval'] as const) {
    it.each<Shape4>([
      [2, 2, 3, 3],
      [1, 1, 2, 3],
      [3, 2, 1, 1],
    ])(`${mode} backward matches central differences of the float64 reference: [%i, %i, %i, %i]`, async (...shape) => {
      const rt = await testRuntime();
      const p = params(shape, 30 + shape[0] * 7);
      const R = randn(p.x.length, 99);
      const s = bnShape(shape);
      const loss = ([x, w, b]: Float64Array[]): number =>
        dot(mode === 'train' ? bnTrainRef(x!, s, w!, b!, f64(p.rm), f64(p.rv)).y : bnEvalRef(x!, s, w!, b!, f64(p.rm), f64(p.rv)), R);
      const inputs = [f64(p.x), f64(p.w), f64(p.b)];
      const num = [0, 1, 2].map((i) => numericGrad(loss, inputs, i));

      const t = upload(rt, p, shape);
      const gy = Tensor.fromArray(rt, R, shape);
      let grads;
      if (mode === 'train') {
        const f = batchNormTrainForward(t.x, t.w, t.b, t.rm, t.rv);
        grads = batchNormBackward(gy, t.x, t.w, f.saveMean, f.saveInvStd, all);
        release(f.y, f.saveMean, f.saveInvStd);
      } else {
        grads = batchNormEvalBackward(gy, t.x, t.w, t.rm, t.rv, 1e-5, all);
      }
      const errs = [
        maxRelError(await grads.gx!.read(), num[0]!),
        maxRelError(await grads.gweight!.read(), num[1]!),
        maxRelError(await grads.gbias!.read(), num[2]!),
      ];
      console.log(`bn ${mode} gradcheck [${shape.join(',')}] gx/gw/gb`, errs.map((e) => e.toExponential(2)).join(' '));
      for (const e of errs) expect(e).toBeLessThan(GRAD_BOUND);
      release(gy, grads.gx, grads.gweight, grads.gbias, ...Object.values(t));
    });
  }

  it('the closed-form float64 backward reference matches central differences (used at sizes too big for them)', () => {
    for (const shape of [[2, 3, 3, 4], [3, 1, 1, 2]] as Shape4[]) {
      const p = params(shape, 60 + shape[0], 500);
      const R = randn(p.x.length, 61);
      const s = bnShape(shape);
      const loss = ([x, w, b]: Float64Array[]): number => dot(bnTrainRef(x!, s, w!, b!, f64(p.rm), f64(p.rv)).y, R);
      const inputs = [f64(p.x), f64(p.w), f64(p.b)];
      const ref = bnTrainBackwardRef(f64(p.x), s, f64(p.w), f64(R));
      // Both float64; the central difference's own error is about 1e-9 relative here.
      expect(maxRelError(ref.gx, numericGrad(loss, inputs, 0))).toBeLessThan(1e-6);
      expect(maxRelError(ref.gweight, numericGrad(loss, inputs, 1))).toBeLessThan(1e-6);
      expect(maxRelError(ref.gbias, numericGrad(loss, inputs, 2))).toBeLessThan(1e-6);
    }
  });

  // Real sizes: more than REDUCE_WG * 64 = 4096 values per channel, so the statistics and the gradient sums of each
  // channel are reduced by several stage-1 workgroups and merged in stage 2 (asserted from the dispatched grids).
  // Bounds (maxRelError): the forward as above. The gradients are sums of up to 17920 f32 terms reduced in short
  // sequential runs and trees (about 1e-7 relative seen), so 1e-5; with a mean of 1000 the f32 mean is only good to
  // half an ulp (3e-5 absolute, 1.5e-5 of the std), which enters every x - mean, hence 5e-5 for y and the gradients.
  it.each([
    { shape: [4, 3, 64, 70] as Shape4, offset: 0, fwd: FORWARD_BOUND, grad: GRAD_BOUND },
    { shape: [2, 2, 72, 72] as Shape4, offset: 1000, fwd: 5e-5, grad: 5e-5 },
  ])('train forward, running stats and backward vs float64 with several workgroups per channel: $shape, mean offset $offset', async ({ shape, offset, fwd, grad }) => {
    const rt = await testRuntime();
    const p = params(shape, 70 + offset, offset);
    const R = randn(p.x.length, 71, 1.5);
    const t = upload(rt, p, shape);
    const gy = Tensor.fromArray(rt, R, shape);
    const spy = vi.spyOn(rt, 'dispatch');
    let f, g;
    try {
      f = batchNormTrainForward(t.x, t.w, t.b, t.rm, t.rv);
      g = batchNormBackward(gy, t.x, t.w, f.saveMean, f.saveInvStd, all);
      const grids = (name: string) => spy.mock.calls.filter((c) => c[0].name.startsWith(name)).map((c) => c[1] as number[]);
      for (const name of ['batchNormStatsPartial', 'batchNormGradPartial']) {
        expect(grids(name), name).toEqual([[Math.ceil((shape[0] * shape[2] * shape[3]) / 4096), shape[1]]]);
        expect(grids(name)[0]![0], name).toBeGreaterThan(1);
      }
    } finally {
      spy.mockRestore();
    }
    const s = bnShape(shape);
    const ref = bnTrainRef(f64(p.x), s, f64(p.w), f64(p.b), f64(p.rm), f64(p.rv));
    const gref = bnTrainBackwardRef(f64(p.x), s, f64(p.w), f64(R));
    const errs = {
      y: maxRelError(await f.y.read(), ref.y),
      mean: maxRelError(await f.saveMean.read(), ref.mean),
      invStd: maxRelError(await f.saveInvStd.read(), ref.variance.map((v) => 1 / Math.sqrt(v + 1e-5))),
      runningMean: maxRelError(await t.rm.read(), ref.runningMean),
      runningVar: maxRelError(await t.rv.read(), ref.runningVar),
      gx: maxRelError(await g.gx!.read(), gref.gx),
      gweight: maxRelError(await g.gweight!.read(), gref.gweight),
      gbias: maxRelError(await g.gbias!.read(), gref.gbias),
    };
    console.log(`bn real size [${shape.join(',')}] offset ${offset}`, JSON.stringify(Object.fromEntries(Object.entries(errs).map(([k, v]) => [k, +v.toExponential(2)]))));
    for (const k of ['y', 'mean', 'invStd', 'runningMean', 'runningVar'] as const) expect(errs[k], k).toBeLessThan(fwd);
    for (const k of ['gx', 'gweight', 'gbias'] as const) expect(errs[k], k).toBeLessThan(grad);
    release(gy, f.y, f.saveMean, f.saveInvStd, g.gx, g.gweight, g.gbias, ...Object.values(t));
  });

  it('rejects bad shapes and arguments with errors naming them, before any GPU work', async () => {
    const rt = await testRuntime();
    const z = (shape: number[]) => Tensor.zeros(rt, shape);
    const [x, x3, v3, v2, gyBad] = [z([2, 3, 4, 4]), z([2, 3, 16]), z([3]), z([2]), z([2, 3, 4, 5])];
    expectOpError(rt, () => batchNormTrainForward(x3, v3, v3, v3, v3), /^batchNormTrainForward: expected an NCHW tensor, got shape \[2, 3, 16\]$/);
    expectOpError(rt, () => batchNormTrainForward(x, v2, v3, v3, v3), /^batchNormTrainForward: weight has 2 elements, expected 3 \(one per channel\)$/);
    expectOpError(rt, () => batchNormTrainForward(x, v3, v3, v3, v2), /^batchNormTrainForward: runningVar has 2 elements, expected 3 \(one per channel\)$/);
    expectOpError(rt, () => batchNormTrainForward(x, v3, v3, v3, v3, { momentum: null }), /^batchNormTrainForward: momentum null \(cumulative average\) needs a tracker$/);
    expectOpError(rt, () => batchNormEvalForward(x, v3, v2, v3, v3), /^batchNormEvalForward: bias has 2 elements, expected 3 \(one per channel\)$/);
    expectOpError(rt, () => batchNormBackward(gyBad, x, v3, v3, v3, all), /^batchNormBackward: shape \[2, 3, 4, 5\] does not match the input's \[2, 3, 4, 4\]$/);
    expectOpError(rt, () => batchNormBackward(x, x, v3, v2, v3, all), /^batchNormBackward: saveMean has 2 elements, expected 3 \(one per channel\)$/);
    expectOpError(rt, () => batchNormEvalBackward(gyBad, x, v3, v3, v3, 1e-5, all), /^batchNormEvalBackward: shape \[2, 3, 4, 5\] does not match/);
    release(x, x3, v3, v2, gyBad);
  });

  it('a batch of one 1x1 image in train mode is the op\'s error (as PyTorch), leaving the state alone; eval mode takes it', async () => {
    const rt = await testRuntime();
    // PyTorch 1.13: "Expected more than 1 value per channel when training, got input size torch.Size([1, 4, 1, 1])".
    // It happens with a small --image-size (layer4 at 1x1) and a last batch of one image.
    const one: Shape4 = [1, 4, 1, 1];
    const p = params(one, 90);
    const t = upload(rt, p, one);
    const tracker: BatchNormTracker = { numBatchesTracked: 3 };
    expectOpError(
      rt,
      () => batchNormTrainForward(t.x, t.w, t.b, t.rm, t.rv, { tracker }),
      /^batchNormTrainForward: expected more than 1 value per channel when training, got input \[1, 4, 1, 1\]$/,
    );
    expect(tracker.numBatchesTracked).toBe(3);
    expect(await t.rm.read()).toEqual(p.rm);
    expect(await t.rv.read()).toEqual(p.rv);
    const y = batchNormEvalForward(t.x, t.w, t.b, t.rm, t.rv);
    expect(maxRelError(await y.read(), bnEvalRef(f64(p.x), bnShape(one), f64(p.w), f64(p.b), f64(p.rm), f64(p.rv)))).toBeLessThan(FORWARD_BOUND);
    release(y, ...Object.values(t));
    // Two values per channel, from one image or two, are enough (PyTorch agrees).
    for (const shape of [[1, 4, 1, 2], [2, 4, 1, 1]] as Shape4[]) {
      const q = params(shape, 91);
      const u = upload(rt, q, shape);
      const f = batchNormTrainForward(u.x, u.w, u.b, u.rm, u.rv);
      const ref = bnTrainRef(f64(q.x), bnShape(shape), f64(q.w), f64(q.b), f64(q.rm), f64(q.rv));
      expect(maxRelError(await f.y.read(), ref.y)).toBeLessThan(FORWARD_BOUND);
      release(f.y, f.saveMean, f.saveInvStd, ...Object.values(u));
    }
  });

  it('computes only the gradients asked for', async () => {
    const rt = await testRuntime();
    const shape: Shape4 = [2, 3, 4, 4];
    const p = params(shape, 5);
    const t = upload(rt, p, shape);
    const gy = Tensor.fromArray(rt, randn(p.x.length, 6), shape);
    const f = batchNormTrainForward(t.x, t.w, t.b, t.rm, t.rv);
    const full = batchNormBackward(gy, t.x, t.w, f.saveMean, f.saveInvStd, all);
    const live = rt.pool.stats().liveBuffers;
    const onlyW = batchNormBackward(gy, t.x, t.w, f.saveMean, f.saveInvStd, { input: false, weight: true, bias: false });
    expect(onlyW.gx).toBeNull();
    expect(onlyW.gbias).toBeNull();
    expect(Array.from(await onlyW.gweight!.read())).toEqual(Array.from(await full.gweight!.read()));
    expect(rt.pool.stats().liveBuffers).toBe(live + 1);
    const onlyX = batchNormEvalBackward(gy, t.x, t.w, t.rm, t.rv, 1e-5, { input: true, weight: false, bias: false });
    expect(onlyX.gweight).toBeNull();
    expect(onlyX.gbias).toBeNull();
    release(onlyW.gweight, onlyX.gx, full.gx, full.gweight, full.gbias, gy, f.y, f.saveMean, f.saveInvStd, ...Object.values(t));
  });

  it('splits tensors over the binding limit by batch slices with statistics over the whole batch', async () => {
    const rt = await testRuntime();
    // 8 KiB per sample: a 16 KiB limit binds 2 samples at a time (13 slices, the last one short).
    const shape: Shape4 = [25, 8, 16, 16];
    const p = params(shape, 42, 3);
    const R = randn(p.x.length, 43);
    const run = async () => {
      const t = upload(rt, p, shape);
      const gy = Tensor.fromArray(rt, R, shape);
      const f = batchNormTrainForward(t.x, t.w, t.b, t.rm, t.rv);
      const g = batchNormBackward(gy, t.x, t.w, f.saveMean, f.saveInvStd, all);
      const ye = batchNormEvalForward(t.x, t.w, t.b, t.rm, t.rv);
      const ge = batchNormEvalBackward(gy, t.x, t.w, t.rm, t.rv, 1e-5, all);
      const out = {
        y: await f.y.read(),
        rm: await t.rm.read(),
        rv: await t.rv.read(),
        gx: await g.gx!.read(),
        gw: await g.gweight!.read(),
        gb: await g.gbias!.read(),
        yEval: await ye.read(),
        gxEval: await ge.gx!.read(),
        gwEval: await ge.gweight!.read(),
      };
      release(gy, f.y, f.saveMean, f.saveInvStd, g.gx, g.gweight, g.gbias, ye, ge.gx, ge.gweight, ge.gbias, ...Object.values(t));
      return out;
    };
    const whole = await run();
    const dispatchesBefore = rt.stats.dispatches;
    const split = await withBindingLimit(rt, 16 * 1024, run);
    expect(rt.stats.dispatches - dispatchesBefore).toBeGreaterThan(50);
    const ref = bnTrainRef(f64(p.x), bnShape(shape), f64(p.w), f64(p.b), f64(p.rm), f64(p.rv));
    expect(maxRelError(split.y, ref.y)).toBeLessThan(FORWARD_BOUND);
    expect(maxRelError(split.rv, ref.runningVar)).toBeLessThan(FORWARD_BOUND);
    for (const k of Object.keys(whole) as (keyof typeof whole)[]) {
      const e = maxRelError(split[k], whole[k]);
      expect(e, k).toBeLessThan(2e-6);
    }
  });

  describe('PyTorch parity (fixtures/ops/batch_norm2d.json)', () => {
    interface Mode {
      y: FixtureTensor;
      gx: FixtureTensor;
      gweight: FixtureTensor;
      gbias: FixtureTensor;
      running_mean?: FixtureTensor;
      running_var?: FixtureTensor;
      num_batches_tracked?: number;
    }
    interface Case {
      input: FixtureTensor;
      gy: FixtureTensor;
      eps: number;
      momentum: number;
      init: Record<'weight' | 'bias' | 'running_mean' | 'running_var', FixtureTensor>;
      evalRunning: Record<'running_mean' | 'running_var', FixtureTensor>;
      train: Mode;
      eval: Mode;
    }
    const fixture = loadOpFixture<{ cases: Case[] }>('batch_norm2d.json');

    it.each(fixture.cases.map((c, i) => [i, c] as const))('case %i: train step then eval, within 1e-4 (maxRelError)', async (_i, c) => {
      const rt = await testRuntime();
      const x = toTensor(rt, c.input);
      const gy = toTensor(rt, c.gy);
      const w = toTensor(rt, c.init.weight);
      const b = toTensor(rt, c.init.bias);
      const rm = toTensor(rt, c.init.running_mean);
      const rv = toTensor(rt, c.init.running_var);
      const tracker = { numBatchesTracked: 0 };
      const f = batchNormTrainForward(x, w, b, rm, rv, { momentum: c.momentum, eps: c.eps, tracker });
      const g = batchNormBackward(gy, x, w, f.saveMean, f.saveInvStd, all);
      const errs: Record<string, number> = {
        y: maxRelError(await f.y.read(), c.train.y.data),
        gx: maxRelError(await g.gx!.read(), c.train.gx.data),
        gweight: maxRelError(await g.gweight!.read(), c.train.gweight.data),
        gbias: maxRelError(await g.gbias!.read(), c.train.gbias.data),
        running_mean: maxRelError(await rm.read(), c.train.running_mean!.data),
        running_var: maxRelError(await rv.read(), c.train.running_var!.data),
      };
      expect(tracker.numBatchesTracked).toBe(c.train.num_batches_tracked);
      // Eval runs on the running stats left by the train step.
      const ye = batchNormEvalForward(x, w, b, rm, rv, c.eps);
      const ge = batchNormEvalBackward(gy, x, w, rm, rv, c.eps, all);
      Object.assign(errs, {
        evalY: maxRelError(await ye.read(), c.eval.y.data),
        evalGx: maxRelError(await ge.gx!.read(), c.eval.gx.data),
        evalGweight: maxRelError(await ge.gweight!.read(), c.eval.gweight.data),
        evalGbias: maxRelError(await ge.gbias!.read(), c.eval.gbias.data),
      });
      console.log(`bn torch case ${_i} [${c.input.shape.join(',')}]`, JSON.stringify(Object.fromEntries(Object.entries(errs).map(([k, v]) => [k, +v.toExponential(2)]))));
      for (const [k, e] of Object.entries(errs)) expect(e, k).toBeLessThan(TORCH_BOUND);
      release(x, gy, w, b, rm, rv, f.y, f.saveMean, f.saveInvStd, g.gx, g.gweight, g.gbias, ye, ge.gx, ge.gweight, ge.gbias);
    });
  });
});
