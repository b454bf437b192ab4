// BatchNorm with its fused epilogue, z = relu(bn(x) [+ residual]), forward and backward, train and eval, against
// float64 references: central differences at small sizes, the closed-form backward at real sizes (several stage-1
// workgroups per channel, vec4 and scalar loads, a large mean), and over the binding limit in batch slices.
import { describe, expect, it, vi } from 'vitest';
import { withBindingLimit } from '../../../test/helpers/binding-limit.js';
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
  type BatchNormBackwardEpilogue,
  type BatchNormGrads,
} from './batch-norm.js';
import {
  bnEpilogueGradRef,
  bnEpilogueRef,
  bnEvalBackwardRef,
  bnEvalRef,
  bnTrainBackwardRef,
  bnTrainRef,
  type BnShape,
} from './batch-norm.reference.js';

// maxRelError bounds, as batch-norm.test.ts: the forward 2e-6, gradients 1e-5 (5e-5 with a mean of 1000, where
// the f32 mean is only good to half an ulp, 1.5e-5 of the std).
const FORWARD_BOUND = 2e-6;
const GRAD_BOUND = 1e-5;

type Shape4 = [number, number, number, number];
type Mode = 'train' | 'eval';
interface Epilogue {
  relu: boolean;
  residual: boolean;
}

interface Data {
  x: Float32Array;
  w: Float32Array;
  b: Float32Array;
  rm: Float32Array;
  rv: Float32Array;
  r: Float32Array;
  gz: Float32Array;
}

function data(shape: Shape4, seed: number, offset = 0): Data {
  const [N, C, H, W] = shape;
  const n = N * C * H * W;
  const x = randn(n, seed, 2);
  for (let i = 0; i < n; i++) x[i] = x[i]! + offset + (Math.floor(i / (H * W)) % C);
  return {
    x,
    w: uniform(C, seed + 1, 0.5, 1.5),
    // A bias and residual of the size of the normalised values, so the relu cuts a good share of each channel.
    b: randn(C, seed + 2, 0.5),
    rm: Float32Array.from(randn(C, seed + 3), (v, c) => v + offset + c),
    rv: uniform(C, seed + 4, 2, 6),
    r: randn(n, seed + 5),
    gz: randn(n, seed + 6, 1.5),
  };
}

const bnShape = ([N, C, H, W]: Shape4): BnShape => ({ N, C, HW: H * W });
const release = (...ts: (Tensor | null | undefined)[]) => ts.forEach((t) => t?.release());

/** Forward of the float64 reference (z) for the given inputs. */
function refForward(mode: Mode, e: Epilogue, shape: Shape4, x: Float64Array, w: Float64Array, b: Float64Array, r: Float64Array, d: Data): Float64Array {
  const s = bnShape(shape);
  const y = mode === 'train' ? bnTrainRef(x, s, w, b, f64(d.rm), f64(d.rv)).y : bnEvalRef(x, s, w, b, f64(d.rm), f64(d.rv));
  return bnEpilogueRef(y, e.relu, e.residual ? r : null);
}

/** Closed-form float64 gradients of sum(z * gz). */
function refBackward(mode: Mode, e: Epilogue, shape: Shape4, d: Data): { gx: Float64Array; gweight: Float64Array; gbias: Float64Array; gresidual: Float64Array } {
  const z = refForward(mode, e, shape, f64(d.x), f64(d.w), f64(d.b), f64(d.r), d);
  const dz = bnEpilogueGradRef(f64(d.gz), z, e.relu);
  const g = mode === 'train' ? bnTrainBackwardRef(f64(d.x), bnShape(shape), f64(d.w), dz) : bnEvalBackwardRef(f64(d.x), bnShape(shape), f64(d.w), f64(d.rm), f64(d.rv), dz);
  return { ...g, gresidual: dz };
}

interface Run {
  z: Float32Array;
  rm: Float32Array;
  rv: Float32Array;
  gx: Float32Array;
  gweight: Float32Array;
  gbias: Float32Array;
  gresidual: Float32Array | null;
}

/** The GPU op, forward then backward, with every gradient asked for. */
async function runOp(rt: Runtime, mode: Mode, e: Epilogue, shape: Shape4, d: Data): Promise<Run> {
  const t = {
    x: Tensor.fromArray(rt, d.x, shape),
    w: Tensor.fromArray(rt, d.w),
    b: Tensor.fromArray(rt, d.b),
    rm: Tensor.fromArray(rt, d.rm),
    rv: Tensor.fromArray(rt, d.rv),
    r: e.residual ? Tensor.fromArray(rt, d.r, shape) : null,
    gz: Tensor.fromArray(rt, d.gz, shape),
  };
  const needs = { input: true, weight: true, bias: true, ...(e.residual ? { residual: true } : {}) };
  let z: Tensor<'f32'>;
  let g: BatchNormGrads;
  let saved: Tensor[] = [];
  if (mode === 'train') {
    const f = batchNormTrainForward(t.x, t.w, t.b, t.rm, t.rv, { relu: e.relu, residual: t.r });
    z = f.y;
    saved = [f.saveMean, f.saveInvStd];
    const be: BatchNormBackwardEpilogue = e.relu ? { relu: e.residual ? { output: z } : { bias: t.b } } : {};
    g = batchNormBackward(t.gz, t.x, t.w, f.saveMean, f.saveInvStd, needs, be);
  } else {
    z = batchNormEvalForward(t.x, t.w, t.b, t.rm, t.rv, 1e-5, { relu: e.relu, residual: t.r });
    const be: BatchNormBackwardEpilogue = e.relu ? { relu: e.residual ? { output: z } : { bias: t.b } } : {};
    g = batchNormEvalBackward(t.gz, t.x, t.w, t.rm, t.rv, 1e-5, needs, be);
  }
  const out: Run = {
    z: await z.read(),
    rm: await t.rm.read(),
    rv: await t.rv.read(),
    gx: await g.gx!.read(),
    gweight: await g.gweight!.read(),
    gbias: await g.gbias!.read(),
    gresidual: g.gresidual ? await g.gresidual.read() : null,
  };
  release(z, g.gx, g.gweight, g.gbias, g.gresidual, ...saved, ...Object.values(t));
  return out;
}

const epilogues: Epilogue[] = [
  { relu: true, residual: false },
  { relu: true, residual: true },
  { relu: false, residual: true },
];
const describeEpilogue = (e: Epilogue) => `${e.residual ? '+ residual ' : ''}${e.relu ? '-> relu' : ''}`.trim();

describe('batch_norm2d with a fused epilogue (relu, residual add)', () => {
  for (const mode of ['train', 'eval'] as const) {
    for (const e of epilogues) {
      // [2, 2, 3, 3]: scalar loads (9 per plane); [2, 2, 2, 4]: vec4 loads.
      it.each<Shape4>([
        [2, 2, 3, 3],
        [2, 2, 2, 4],
      ])(`${mode}, bn ${describeEpilogue(e)}: forward vs float64, backward vs central differences: [%i, %i, %i, %i]`, async (...shape) => {
        const rt = await testRuntime();
        const d = data(shape, 100 + shape[3] * 3 + (e.residual ? 1 : 0));
        const R = f64(d.gz);
        const loss = ([x, w, b, r]: Float64Array[]): number => dot(refForward(mode, e, shape, x!, w!, b!, r!, d), R);
        const inputs = [f64(d.x), f64(d.w), f64(d.b), f64(d.r)];
        const z = refForward(mode, e, shape, inputs[0]!, inputs[1]!, inputs[2]!, inputs[3]!, d);
        // Central differences straddle the relu's kink only if a pre-activation is within eps of 0; none is here.
        if (e.relu) {
          const pre = refForward(mode, { relu: false, residual: e.residual }, shape, inputs[0]!, inputs[1]!, inputs[2]!, inputs[3]!, d);
          expect(Math.min(...pre.map(Math.abs))).toBeGreaterThan(1e-4);
          const cut = z.filter((v) => v === 0).length / z.length;
          expect(cut).toBeGreaterThan(0.2);
          expect(cut).toBeLessThan(0.8);
        }
        const num = [0, 1, 2, 3].map((i) => numericGrad(loss, inputs, i));
        const got = await runOp(rt, mode, e, shape, d);
        const errs: Record<string, number> = {
          z: maxRelError(got.z, z),
          gx: maxRelError(got.gx, num[0]!),
          gweight: maxRelError(got.gweight, num[1]!),
          gbias: maxRelError(got.gbias, num[2]!),
        };
        if (e.residual) errs.gresidual = maxRelError(got.gresidual!, num[3]!);
        else expect(got.gresidual).toBeNull();
        console.log(`bn ${mode} ${describeEpilogue(e)} [${shape.join(',')}]`, Object.entries(errs).map(([k, v]) => `${k} ${v.toExponential(2)}`).join(' '));
        expect(errs.z).toBeLessThan(FORWARD_BOUND);
        for (const k of ['gx', 'gweight', 'gbias', 'gresidual']) if (k in errs) expect(errs[k], k).toBeLessThan(GRAD_BOUND);
      });
    }
  }

  // Real sizes: more than 4096 values per channel, so several stage-1 workgroups per channel (asserted from the
  // dispatched grids), vec4 loads (HW = 4480, 5184) and scalar ones (HW = 4473).
  it.each([
    { mode: 'train' as Mode, shape: [4, 3, 64, 70] as Shape4, offset: 0, fwd: FORWARD_BOUND, grad: GRAD_BOUND },
    { mode: 'train' as Mode, shape: [4, 3, 63, 71] as Shape4, offset: 0, fwd: FORWARD_BOUND, grad: GRAD_BOUND },
    { mode: 'train' as Mode, shape: [2, 2, 72, 72] as Shape4, offset: 1000, fwd: 5e-5, grad: 5e-5 },
    { mode: 'eval' as Mode, shape: [4, 3, 64, 70] as Shape4, offset: 0, fwd: FORWARD_BOUND, grad: GRAD_BOUND },
    { mode: 'eval' as Mode, shape: [4, 3, 63, 71] as Shape4, offset: 1000, fwd: 5e-5, grad: 5e-5 },
  ])('$mode, several workgroups per channel, every epilogue vs float64: $shape, mean offset $offset', async ({ mode, shape, offset, fwd, grad }) => {
    const rt = await testRuntime();
    for (const e of epilogues) {
      const d = data(shape, 200 + offset + shape[2], offset);
      const spy = vi.spyOn(rt, 'dispatch');
      let got: Run;
      try {
        got = await runOp(rt, mode, e, shape, d);
        const grids = (prefix: string) => spy.mock.calls.filter((c) => c[0].name.startsWith(prefix)).map((c) => c[1] as number[]);
        const G = Math.ceil((shape[0] * shape[2] * shape[3]) / 4096);
        expect(G).toBeGreaterThan(1);
        expect(grids('batchNormGradPartial')).toEqual([[G, shape[1]]]);
        if (mode === 'train') expect(grids('batchNormStatsPartial')).toEqual([[G, shape[1]]]);
        const vec4 = (shape[2] * shape[3]) % 4 === 0;
        expect(spy.mock.calls.filter((c) => c[0].name.startsWith('batchNormApply')).map((c) => c[0].name.endsWith('Vec4'))).toEqual([vec4]);
      } finally {
        spy.mockRestore();
      }
      const s = bnShape(shape);
      const z = refForward(mode, e, shape, f64(d.x), f64(d.w), f64(d.b), f64(d.r), d);
      const ref = refBackward(mode, e, shape, d);
      const errs: Record<string, number> = {
        z: maxRelError(got.z, z),
        gx: maxRelError(got.gx, ref.gx),
        gweight: maxRelError(got.gweight, ref.gweight),
        gbias: maxRelError(got.gbias, ref.gbias),
      };
      if (e.residual) errs.gresidual = maxRelError(got.gresidual!, ref.gresidual);
      if (mode === 'train') {
        const stats = bnTrainRef(f64(d.x), s, f64(d.w), f64(d.b), f64(d.rm), f64(d.rv));
        errs.runningMean = maxRelError(got.rm, stats.runningMean);
        errs.runningVar = maxRelError(got.rv, stats.runningVar);
      } else {
        expect(got.rm).toEqual(d.rm);
        expect(got.rv).toEqual(d.rv);
      }
      console.log(`bn ${mode} ${describeEpilogue(e)} [${shape.join(',')}] offset ${offset}`, Object.entries(errs).map(([k, v]) => `${k} ${v.toExponential(2)}`).join(' '));
      for (const [k, v] of Object.entries(errs)) expect(v, k).toBeLessThan(k === 'z' || k.startsWith('running') ? fwd : grad);
    }
  });

  it('the relu mask rebuilt from x is bitwise the one read from the forward output', async () => {
    const rt = await testRuntime();
    for (const shape of [[3, 4, 10, 12], [3, 4, 9, 11]] as Shape4[]) {
      const d = data(shape, 300 + shape[2]);
      const x = Tensor.fromArray(rt, d.x, shape);
      const [w, b, rm, rv] = [d.w, d.b, d.rm, d.rv].map((a) => Tensor.fromArray(rt, a));
      const gz = Tensor.fromArray(rt, d.gz, shape);
      const f = batchNormTrainForward(x, w!, b!, rm!, rv!, { relu: true });
      const all = { input: true, weight: true, bias: true };
      const fromX = batchNormBackward(gz, x, w!, f.saveMean, f.saveInvStd, all, { relu: { bias: b! } });
      const fromZ = batchNormBackward(gz, x, w!, f.saveMean, f.saveInvStd, all, { relu: { output: f.y } });
      expect(Array.from(await fromX.gx!.read())).toEqual(Array.from(await fromZ.gx!.read()));
      expect(Array.from(await fromX.gweight!.read())).toEqual(Array.from(await fromZ.gweight!.read()));
      const ze = batchNormEvalForward(x, w!, b!, rm!, rv!, 1e-5, { relu: true });
      const eX = batchNormEvalBackward(gz, x, w!, rm!, rv!, 1e-5, all, { relu: { bias: b! } });
      const eZ = batchNormEvalBackward(gz, x, w!, rm!, rv!, 1e-5, all, { relu: { output: ze } });
      expect(Array.from(await eX.gx!.read())).toEqual(Array.from(await eZ.gx!.read()));
      release(x, w, b, rm, rv, gz, f.y, f.saveMean, f.saveInvStd, ze, ...[fromX, fromZ, eX, eZ].flatMap((g) => [g.gx, g.gweight, g.gbias]));
    }
  });

  it('computes only the gradients asked for; the residual alone still gets dZ', async () => {
    const rt = await testRuntime();
    const shape: Shape4 = [2, 3, 4, 4];
    const d = data(shape, 400);
    const full = await runOp(rt, 'train', { relu: true, residual: true }, shape, d);
    const x = Tensor.fromArray(rt, d.x, shape);
    const r = Tensor.fromArray(rt, d.r, shape);
    const gz = Tensor.fromArray(rt, d.gz, shape);
    const [w, b, rm, rv] = [d.w, d.b, d.rm, d.rv].map((a) => Tensor.fromArray(rt, a));
    const f = batchNormTrainForward(x, w!, b!, rm!, rv!, { relu: true, residual: r });
    const live = rt.pool.stats().liveBuffers;
    const onlyR = batchNormBackward(gz, x, w!, f.saveMean, f.saveInvStd, { input: false, weight: false, bias: false, residual: true }, { relu: { output: f.y } });
    expect([onlyR.gx, onlyR.gweight, onlyR.gbias]).toEqual([null, null, null]);
    expect(Array.from(await onlyR.gresidual!.read())).toEqual(Array.from(full.gresidual!));
    expect(rt.pool.stats().liveBuffers).toBe(live + 1);
    const noR = batchNormBackward(gz, x, w!, f.saveMean, f.saveInvStd, { input: true, weight: false, bias: false, residual: false }, { relu: { output: f.y } });
    expect(noR.gresidual).toBeNull();
    expect(Array.from(await noR.gx!.read())).toEqual(Array.from(full.gx));
    release(x, r, gz, w, b, rm, rv, f.y, f.saveMean, f.saveInvStd, onlyR.gresidual, noR.gx);
  });

  it('splits tensors over the binding limit by batch slices, statistics over the whole batch', async () => {
    const rt = await testRuntime();
    // 8 KiB per sample with vec4 loads, 3.75 KiB with scalar ones (15 per plane): a 16 KiB limit binds 2 and 4
    // samples at a time (13 and 7 slices, the last one short).
    for (const [shape, slices] of [[[25, 8, 16, 16], 13], [[25, 64, 3, 5], 7]] as [Shape4, number][]) {
      for (const mode of ['train', 'eval'] as const) {
        const e = { relu: true, residual: true };
        const d = data(shape, 500 + shape[3], 3);
        const whole = await runOp(rt, mode, e, shape, d);
        const spy = vi.spyOn(rt, 'dispatch');
        let split: Run;
        try {
          split = await withBindingLimit(rt, 16 * 1024, () => runOp(rt, mode, e, shape, d));
          for (const prefix of ['batchNormApply', 'batchNormGradPartial', 'batchNormGradInput', ...(mode === 'train' ? ['batchNormStatsPartial'] : [])]) {
            expect(spy.mock.calls.filter((c) => c[0].name.startsWith(prefix)).length, prefix).toBe(slices);
          }
        } finally {
          spy.mockRestore();
        }
        const z = refForward(mode, e, shape, f64(d.x), f64(d.w), f64(d.b), f64(d.r), d);
        const ref = refBackward(mode, e, shape, d);
        expect(maxRelError(split.z, z)).toBeLessThan(FORWARD_BOUND);
        expect(maxRelError(split.gx, ref.gx)).toBeLessThan(GRAD_BOUND);
        expect(maxRelError(split.gresidual!, ref.gresidual)).toBeLessThan(GRAD_BOUND);
        for (const k of ['z', 'rm', 'rv', 'gx', 'gweight', 'gbias', 'gresidual'] as const) {
          expect(maxRelError(split[k]!, whole[k]!), `${mode} ${k}`).toBeLessThan(2e-6);
        }
      }
    }
  });

  it('rejects a residual of another shape, and a batch of one value per channel in train mode, before any GPU work', async () => {
    const rt = await testRuntime();
    const x = Tensor.zeros(rt, [2, 3, 4, 4]);
    const r = Tensor.zeros(rt, [2, 3, 4, 5]);
    const v = Tensor.full(rt, [3], 1);
    const one = Tensor.zeros(rt, [1, 3, 1, 1]);
    const tracker = { numBatchesTracked: 0 };
    expectOpError(rt, () => batchNormTrainForward(x, v, v, v, v, { relu: true, residual: r }), /^batchNormTrainForward: residual has shape \[2, 3, 4, 5\], expected the input's \[2, 3, 4, 4\]$/);
    expectOpError(rt, () => batchNormEvalForward(x, v, v, v, v, 1e-5, { residual: r }), /^batchNormEvalForward: residual has shape \[2, 3, 4, 5\], expected the input's \[2, 3, 4, 4\]$/);
    expectOpError(
      rt,
      () => batchNormTrainForward(one, v, v, v, v, { relu: true, residual: one, tracker }),
      /^batchNormTrainForward: expected more than 1 value per channel when training, got input \[1, 3, 1, 1\]$/,
    );
    expect(tracker.numBatchesTracked).toBe(0);
    expectOpError(rt, () => batchNormBackward(x, x, v, v, v, { input: true, weight: true, bias: true }, { relu: { output: r } }), /^batchNormBackward: shape \[2, 3, 4, 5\] does not match the input's \[2, 3, 4, 4\]$/);
    const v2 = Tensor.full(rt, [2], 1);
    expectOpError(rt, () => batchNormBackward(x, x, v, v, v, { input: true, weight: true, bias: true }, { relu: { bias: v2 } }), /^batchNormBackward: bias has 2 elements, expected 3 \(one per channel\)$/);
    release(x, r, v, v2, one);
  });
});
